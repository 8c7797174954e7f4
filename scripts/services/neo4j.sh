#!/usr/bin/env bash
# Neo4j Community 5.26 (LTS) with Bolt on 127.0.0.1:$NEO4J_BOLT_PORT, embedded in a small
# launcher (java/Neo4jServer.java) on the jars from Maven Central. No HTTP connector.
#   scripts/services/neo4j.sh install|up|down|status|reset
#   scripts/services/neo4j.sh query CYPHER [PARAMS_JSON]   # on a running server, JSON per record
# Auth: on by default, user $NEO4J_USER with password $NEO4J_PASSWORD (set on every start,
# at least 8 characters); NEO4J_AUTH=none turns it off (then any credentials are accepted).
# TLS: NEO4J_BOLT_TLS=optional (default) | required | disabled sets server.bolt.tls_level, with
# a certificate for 127.0.0.1 and localhost signed by a test CA this script makes with openssl
# (once per run directory): clients trust $POIROT_RUN/neo4j/tls/ca.pem (bolt+s://). Optional
# lets plain Bolt clients (the other tests, bolt.py) in as well; with `required` this script
# talks TLS itself (bolt.py with NEO4J_CA).
# Data and logs: $POIROT_RUN/neo4j/ (Neo4j's own debug.log in $POIROT_RUN/neo4j/home/logs/)
# and $POIROT_RUN/neo4j.log (the launcher's output); `reset` wipes the data and certificates.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=neo4j
NEO4J_VERSION=${NEO4J_VERSION:-5.26.30}
NEO4J_HEAP=${NEO4J_HEAP:-512m}
NEO4J_PAGECACHE=${NEO4J_PAGECACHE:-64m}
NEO4J_HOME=$POIROT_CACHE/neo4j-$NEO4J_VERSION
NEO4J_DIR=$POIROT_RUN/neo4j
ADDRESS=127.0.0.1:$NEO4J_BOLT_PORT
TLS_DIR=$NEO4J_DIR/tls
NEO4J_BOLT_TLS=${NEO4J_BOLT_TLS:-optional}
case ${NEO4J_BOLT_TLS,,} in
  optional | required | disabled) ;;
  *) die "neo4j: NEO4J_BOLT_TLS must be optional, required or disabled, got '$NEO4J_BOLT_TLS'" ;;
esac
export NEO4J_USER NEO4J_PASSWORD
export NEO4J_AUTH=${NEO4J_AUTH:-}
# bolt.py speaks TLS (trusting this CA) when it is set: needed when plain Bolt is refused.
if [ "${NEO4J_BOLT_TLS,,}" = required ]; then
  export NEO4J_CA=$TLS_DIR/ca.pem
fi

neo4j_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>neo4j</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- Community edition; brings neo4j-bolt, the Cypher runtime and a log4j backend. -->
    <dependency>
      <groupId>org.neo4j</groupId>
      <artifactId>neo4j</artifactId>
      <version>$NEO4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$NEO4J_HOME" "$(neo4j_pom)"
  javac_cached "$SERVICES_DIR/java/Neo4jServer.java" "$NEO4J_HOME/lib/*" "$NEO4J_HOME/classes"
}

write_config() {
  mkdir -p "$NEO4J_DIR/home"
  cat >"$NEO4J_DIR/neo4j.conf" <<EOF
# Written by scripts/services/neo4j.sh on every start; edits are lost.
server.default_listen_address=127.0.0.1
server.default_advertised_address=127.0.0.1
server.bolt.enabled=true
server.bolt.listen_address=127.0.0.1:$NEO4J_BOLT_PORT
server.bolt.advertised_address=127.0.0.1:$NEO4J_BOLT_PORT
server.bolt.tls_level=${NEO4J_BOLT_TLS^^}
dbms.ssl.policy.bolt.enabled=$([ "${NEO4J_BOLT_TLS,,}" = disabled ] && echo false || echo true)
dbms.ssl.policy.bolt.base_directory=$TLS_DIR
dbms.ssl.policy.bolt.private_key=server.key
dbms.ssl.policy.bolt.public_certificate=server.pem
dbms.ssl.policy.bolt.trusted_dir=$TLS_DIR/trusted
dbms.ssl.policy.bolt.revoked_dir=$TLS_DIR/revoked
dbms.ssl.policy.bolt.client_auth=NONE
server.http.enabled=false
server.https.enabled=false
dbms.routing.enabled=false
dbms.usage_report.enabled=false
server.memory.pagecache.size=$NEO4J_PAGECACHE
dbms.memory.transaction.total.max=256m
db.tx_log.preallocate=false
db.tx_log.rotation.retention_policy=100M size
db.logs.query.enabled=OFF
EOF
}

bolt() {
  need python3 "install Python 3: apt-get install python3"
  python3 "$SERVICES_DIR/bolt.py" "$@"
}

# Healthy when a Bolt client can log in with the configured credentials and run a query.
healthy() {
  port_in_use "$NEO4J_BOLT_PORT" || return 1
  timeout 20 python3 "$SERVICES_DIR/bolt.py" query 127.0.0.1 "$NEO4J_BOLT_PORT" "RETURN 1" >/dev/null 2>&1
}

up() {
  if already_up "$NAME" 120 healthy; then
    say "$NAME: already running (pid $(cat "$(pid_file "$NAME")")) on bolt://$ADDRESS"
    return 0
  fi
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  need python3 "install Python 3: apt-get install python3"
  if [ "${NEO4J_AUTH,,}" != none ] && [ ${#NEO4J_PASSWORD} -lt 8 ]; then
    die "$NAME: NEO4J_PASSWORD must have at least 8 characters (Neo4j's minimum), or set NEO4J_AUTH=none"
  fi
  require_free_port "$NAME" "$NEO4J_BOLT_PORT"
  install
  make_certs "$TLS_DIR" "$NEO4J_DIR/tls.log" server:server
  mkdir -p "$TLS_DIR/trusted" "$TLS_DIR/revoked"
  write_config
  start_bg "$NAME" java "-Xms$NEO4J_HEAP" "-Xmx$NEO4J_HEAP" -XX:+UseG1GC -XX:MaxMetaspaceSize=256m \
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Djdk.nio.maxCachedBufferSize=1024 -Dio.netty.tryReflectionSetAccessible=true -Dlog4j2.disable.jmx=true \
    --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED \
    -cp "$NEO4J_HOME/classes:$NEO4J_HOME/lib/*" Neo4jServer "$NEO4J_DIR/home" "$NEO4J_DIR/neo4j.conf"
  wait_for "$NAME" 180 healthy
  say "$NAME: up (pid $(cat "$(pid_file "$NAME")")) on bolt://$ADDRESS ($(bolt handshake 127.0.0.1 "$NEO4J_BOLT_PORT" | sed 's/^/Bolt /'), auth $([ "${NEO4J_AUTH,,}" = none ] && echo off || echo "user $NEO4J_USER"), TLS ${NEO4J_BOLT_TLS,,})"
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status) status_line "$NAME" "bolt://$ADDRESS" ;;
  reset)
    stop "$NAME"
    rm -rf "$NEO4J_DIR"
    say "$NAME: data removed"
    ;;
  query)
    shift
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: neo4j.sh query CYPHER [PARAMS_JSON]"; fi
    is_running "$NAME" || die "$NAME: not running (scripts/services/neo4j.sh up)"
    bolt query 127.0.0.1 "$NEO4J_BOLT_PORT" "$@"
    ;;
  *) die "usage: neo4j.sh install|up|down|status|reset|query CYPHER [PARAMS_JSON]" ;;
esac
