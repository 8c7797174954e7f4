# One Elasticsearch-compatible node embedded by a codelibs runner: the body shared by
# opensearch.sh and elasticsearch.sh. Source it after setting:
#   NAME PORT HEAP TRANSPORT_PORTS RUNNER_GROUP RUNNER_ARTIFACT RUNNER_VERSION LAUNCHER
# (LAUNCHER is the class in java/LAUNCHER.java), then call `search_main "$@"`.
# Data and logs: $POIROT_RUN/$NAME/ and $POIROT_RUN/$NAME.log; `reset` wipes the data.

RUNNER_HOME=$POIROT_CACHE/$RUNNER_ARTIFACT-$RUNNER_VERSION
DATA_DIR=$POIROT_RUN/$NAME
URL=http://127.0.0.1:$PORT

runner_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>$NAME</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- The server core and its standard modules (netty4 transport, painless, ...). -->
    <dependency>
      <groupId>$RUNNER_GROUP</groupId>
      <artifactId>$RUNNER_ARTIFACT</artifactId>
      <version>$RUNNER_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$RUNNER_HOME" "$(runner_pom)"
  javac_cached "$SERVICES_DIR/java/$LAUNCHER.java" "$RUNNER_HOME/lib/*" "$RUNNER_HOME/classes"
}

# Healthy when the cluster health API answers green or yellow.
healthy() {
  curl -fsS --max-time 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null |
    grep -Eq '"status":"(green|yellow)"'
}

up() {
  if already_up "$NAME" 180 healthy; then
    say "$NAME: already running (pid $(cat "$(pid_file "$NAME")")) on $URL"
    return 0
  fi
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  need curl "install curl: apt-get install curl"
  require_free_port "$NAME" "$PORT"
  install
  mkdir -p "$DATA_DIR/tmp"
  # The JVM options of the server's own jvm.options that matter outside its launcher.
  start_bg "$NAME" java "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC \
    -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30 -XX:MaxMetaspaceSize=256m \
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -Xss1m -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dfile.encoding=UTF-8 -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$DATA_DIR/tmp" \
    -cp "$RUNNER_HOME/classes:$RUNNER_HOME/lib/*" \
    "$LAUNCHER" "$DATA_DIR" "$PORT" "$TRANSPORT_PORTS" poirot
  wait_for "$NAME" 180 healthy
  say "$NAME: up (pid $(cat "$(pid_file "$NAME")")) on $URL"
}

search_main() {
  case "${1:-status}" in
    install) install ;;
    up) up ;;
    down) stop "$NAME" ;;
    status) status_line "$NAME" "$URL" ;;
    reset)
      stop "$NAME"
      rm -rf "$DATA_DIR"
      say "$NAME: data removed"
      ;;
    *) die "usage: $NAME.sh install|up|down|status|reset" ;;
  esac
}
