#!/usr/bin/env bash
# Elasticsearch 7.10 OSS (optional second search target), one node, HTTP on
# 127.0.0.1:$ELASTICSEARCH_PORT, embedded by java/ElasticsearchServer.java on the jars of
# org.codelibs:elasticsearch-cluster-runner from Maven Central. OSS build, no security: plain
# HTTP without authentication. The transport layer binds 127.0.0.1 at the first free port of
# $ELASTICSEARCH_TRANSPORT_PORTS (default: HTTP port + 200 .. + 299).
#   scripts/services/elasticsearch.sh install|up|down|status|reset
# Data and logs: $POIROT_RUN/elasticsearch/ and $POIROT_RUN/elasticsearch.log; `reset` wipes the data.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=elasticsearch
# Not among lib.sh's ports: this target is optional.
ELASTICSEARCH_PORT=${ELASTICSEARCH_PORT:-19201}
ELASTICSEARCH_RUNNER_VERSION=${ELASTICSEARCH_RUNNER_VERSION:-7.10.2.0}
ELASTICSEARCH_HEAP=${ELASTICSEARCH_HEAP:-512m}
ELASTICSEARCH_TRANSPORT_PORTS=${ELASTICSEARCH_TRANSPORT_PORTS:-$((ELASTICSEARCH_PORT + 200))-$((ELASTICSEARCH_PORT + 299))}
ELASTICSEARCH_HOME=$POIROT_CACHE/elasticsearch-cluster-runner-$ELASTICSEARCH_RUNNER_VERSION
ELASTICSEARCH_DIR=$POIROT_RUN/elasticsearch
URL=http://127.0.0.1:$ELASTICSEARCH_PORT

elasticsearch_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>elasticsearch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- Elasticsearch OSS core and its standard modules (netty4 transport, painless, ...). -->
    <dependency>
      <groupId>org.codelibs</groupId>
      <artifactId>elasticsearch-cluster-runner</artifactId>
      <version>$ELASTICSEARCH_RUNNER_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$ELASTICSEARCH_HOME" "$(elasticsearch_pom)"
  javac_cached "$SERVICES_DIR/java/ElasticsearchServer.java" "$ELASTICSEARCH_HOME/lib/*" "$ELASTICSEARCH_HOME/classes"
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
  require_free_port "$NAME" "$ELASTICSEARCH_PORT"
  install
  mkdir -p "$ELASTICSEARCH_DIR/tmp"
  # The JVM options of Elasticsearch's own jvm.options that matter outside its launcher.
  start_bg "$NAME" java "-Xms$ELASTICSEARCH_HEAP" "-Xmx$ELASTICSEARCH_HEAP" -XX:+UseG1GC \
    -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30 -XX:MaxMetaspaceSize=256m \
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -Xss1m -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dfile.encoding=UTF-8 -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$ELASTICSEARCH_DIR/tmp" \
    -cp "$ELASTICSEARCH_HOME/classes:$ELASTICSEARCH_HOME/lib/*" \
    ElasticsearchServer "$ELASTICSEARCH_DIR" "$ELASTICSEARCH_PORT" "$ELASTICSEARCH_TRANSPORT_PORTS" poirot
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
    rm -rf "$ELASTICSEARCH_DIR"
    say "$NAME: data removed"
    ;;
  *) die "usage: elasticsearch.sh install|up|down|status|reset" ;;
esac
