#!/usr/bin/env bash
# Apache Kafka, one node in KRaft mode (broker and controller in one JVM), from
# Maven Central. Listens on 127.0.0.1 only:
#   $KAFKA_PORT            PLAINTEXT clients (and the broker's own traffic)
#   $KAFKA_CONTROLLER_PORT controller quorum
#   $KAFKA_SASL_SSL_PORT   SASL_SSL clients: TLS, then SCRAM-SHA-256 or SCRAM-SHA-512 as
#                          $KAFKA_SCRAM_USER / $KAFKA_SCRAM_PASSWORD (created at format time)
#   $KAFKA_SSL_PORT        SSL clients (TLS, no authentication)
# The TLS listeners use a test CA and a server certificate for 127.0.0.1 / localhost that this
# script makes with openssl (once per run directory): clients trust $POIROT_RUN/kafka/tls/ca.pem.
#   scripts/services/kafka.sh install|up|down|status|reset
#   scripts/services/kafka.sh topics-create NAME [PARTITIONS]   # on a running broker
#   scripts/services/kafka.sh topics [ARGS...]                  # TopicCommand, e.g. --list
#   scripts/services/kafka.sh run CLASS [ARGS...]               # any Kafka tool class
# Data and logs: $POIROT_RUN/kafka/ and $POIROT_RUN/kafka.log; `reset` wipes the data.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=kafka
KAFKA_VERSION=${KAFKA_VERSION:-3.9.2}
KAFKA_SCALA=2.13
SLF4J_VERSION=1.7.36 # the slf4j line Kafka 3.9 is built against
KAFKA_HEAP=${KAFKA_HEAP:-512m}
KAFKA_HOME=$POIROT_CACHE/kafka-$KAFKA_VERSION
KAFKA_DIR=$POIROT_RUN/kafka
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
TLS_DIR=$KAFKA_DIR/tls

kafka_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$KAFKA_SCALA</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <!-- ZooKeeper's logback would compete with the reload4j binding below. -->
        <exclusion><groupId>ch.qos.logback</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <!-- TopicCommand, ConsoleConsumer and friends live in kafka-tools. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>ch.qos.logback</groupId><artifactId>*</artifactId></exclusion>
      </exclusions>
    </dependency>
    <!-- Kafka's POM publishes no logging backend. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

# Log4j 1 configurations: the server logs INFO to stdout (the service log), tools only WARN to stderr.
write_log4j() {
  if [ ! -f "$KAFKA_HOME/log4j.properties" ]; then
    cat >"$KAFKA_HOME/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
  fi
  if [ ! -f "$KAFKA_HOME/tools-log4j.properties" ]; then
    cat >"$KAFKA_HOME/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
EOF
  fi
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$KAFKA_HOME" "$(kafka_pom)"
  write_log4j
}

# kafka_tool_argv CLASS ARGS...: the command line of a Kafka tool class on the cached
# classpath (small heap, quick start, WARN logging) in KAFKA_TOOL_ARGV.
kafka_tool_argv() {
  local class=$1
  shift
  KAFKA_TOOL_ARGV=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
    -Dlog4j.configuration="file:$KAFKA_HOME/tools-log4j.properties"
    -cp "$KAFKA_HOME/lib/*" "$class" "$@")
}

kafka_tool() {
  kafka_tool_argv "$@"
  "${KAFKA_TOOL_ARGV[@]}"
}

# make_tls: a test CA, and a server certificate for 127.0.0.1 and localhost (SANs) signed by
# it, in a PKCS12 keystore with a random password; clients trust $TLS_DIR/ca.pem. Made once
# per run directory (`reset` removes them with the data).
make_tls() {
  if [ -f "$TLS_DIR/.complete" ]; then
    return 0
  fi
  need openssl "install OpenSSL: apt-get install openssl"
  say "$NAME: making a test CA and a server certificate in $TLS_DIR"
  rm -rf "$TLS_DIR"
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  printf '%s\n' basicConstraints=CA:FALSE keyUsage=critical,digitalSignature,keyEncipherment \
    extendedKeyUsage=serverAuth subjectAltName=IP:127.0.0.1,DNS:localhost >"$TLS_DIR/server.ext"
  # One chain of && (set -e does not apply inside a command whose status is tested).
  if ! (cd "$TLS_DIR" &&
    head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >keystore.password &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=poirot test CA" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign &&
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile server.ext -out server.pem &&
    openssl pkcs12 -export -in server.pem -inkey server.key -certfile ca.pem -name kafka \
      -out server.p12 -passout file:keystore.password) >"$KAFKA_DIR/tls.log" 2>&1; then
    cat "$KAFKA_DIR/tls.log" >&2
    die "$NAME: making the test certificates failed (log: $KAFKA_DIR/tls.log)"
  fi
  chmod 600 "$TLS_DIR"/*.key "$TLS_DIR/keystore.password" "$TLS_DIR/server.p12"
  chmod 644 "$TLS_DIR/ca.pem"
  touch "$TLS_DIR/.complete"
}

write_config() {
  mkdir -p "$KAFKA_DIR/data"
  local keystore_password
  keystore_password=$(cat "$TLS_DIR/keystore.password")
  (umask 077 && : >"$KAFKA_DIR/server.properties")
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Written by scripts/services/kafka.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# TLS of the SASL_SSL and SSL listeners; clients are not asked for certificates.
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/server.p12
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.client.auth=none
# SCRAM on the SASL_SSL listener; the users' credentials live in the cluster metadata.
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$KAFKA_DIR/data
num.partitions=6
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# A Kafka cluster id: 16 random bytes, base64url without padding; not starting with '-'
# (the tools would read it as an option), as Kafka's own Uuid.randomUuid() avoids too.
random_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    case $id in -*) ;; *) break ;; esac
  done
  echo "$id"
}

# What the SCRAM users were created with (a digest, not the password), to notice a change.
scram_stamp() {
  printf '%s:%s' "$KAFKA_SCRAM_USER" "$KAFKA_SCRAM_PASSWORD" | sha256sum | cut -d' ' -f1
}

# The SCRAM credentials of KAFKA_SCRAM_USER, one per mechanism, as the tools write them.
# (The password must not contain ',', ']' or '=': the tools' syntax has no quoting.)
scram_credentials() {
  local m
  for m in SCRAM-SHA-256 SCRAM-SHA-512; do
    echo "$m=[name=$KAFKA_SCRAM_USER,password=$KAFKA_SCRAM_PASSWORD]"
  done
}

format_storage() {
  if [ -f "$KAFKA_DIR/data/meta.properties" ]; then
    return 0
  fi
  say "$NAME: formatting KRaft storage in $KAFKA_DIR/data (SCRAM user $KAFKA_SCRAM_USER)"
  local scram=() c
  while read -r c; do
    scram+=(--add-scram "$c")
  done < <(scram_credentials)
  if ! kafka_tool kafka.tools.StorageTool format --ignore-formatted "${scram[@]}" \
    -t "$(random_cluster_id)" -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/format.log" 2>&1; then
    cat "$KAFKA_DIR/format.log" >&2
    die "$NAME: formatting the storage failed (log: $KAFKA_DIR/format.log)"
  fi
  scram_stamp >"$KAFKA_DIR/scram.stamp"
}

# Storage formatted before SCRAM users existed here, or with another user or password: set
# them on the running broker (over PLAINTEXT) instead.
ensure_scram_users() {
  if [ "$(cat "$KAFKA_DIR/scram.stamp" 2>/dev/null)" = "$(scram_stamp)" ]; then
    return 0
  fi
  say "$NAME: setting SCRAM credentials of $KAFKA_SCRAM_USER"
  local c
  : >"$KAFKA_DIR/scram.log"
  # One mechanism per request: Kafka refuses to alter one user's credentials twice in one.
  while read -r c; do
    if ! kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter --entity-type users \
      --entity-name "$KAFKA_SCRAM_USER" --add-config "${c/name=$KAFKA_SCRAM_USER,/}" >>"$KAFKA_DIR/scram.log" 2>&1; then
      cat "$KAFKA_DIR/scram.log" >&2
      die "$NAME: setting the SCRAM credentials failed (log: $KAFKA_DIR/scram.log)"
    fi
  done < <(scram_credentials)
  scram_stamp >"$KAFKA_DIR/scram.stamp"
}

# Answers when the broker answers a metadata request (list topics) on its PLAINTEXT port.
answers() {
  port_in_use "$KAFKA_PORT" || return 1
  kafka_tool_argv org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list
  timeout 30 "${KAFKA_TOOL_ARGV[@]}" >/dev/null 2>&1
}

# Healthy when it answers and its TLS listeners accept connections.
tls_listening() {
  port_in_use "$KAFKA_SASL_SSL_PORT" && port_in_use "$KAFKA_SSL_PORT"
}

healthy() {
  answers && tls_listening
}

up() {
  if already_up "$NAME" 120 answers; then
    if tls_listening; then
      ensure_scram_users
      say "$NAME: already running (pid $(cat "$(pid_file "$NAME")")) on $BOOTSTRAP"
      return 0
    fi
    # Started by an older version of this script, without the TLS listeners.
    say "$NAME: running without the SASL_SSL and SSL listeners: restarting it"
    stop "$NAME"
  fi
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  require_free_port "$NAME" "$KAFKA_PORT"
  require_free_port "$NAME controller" "$KAFKA_CONTROLLER_PORT"
  require_free_port "$NAME SASL_SSL" "$KAFKA_SASL_SSL_PORT"
  require_free_port "$NAME SSL" "$KAFKA_SSL_PORT"
  install
  make_tls
  write_config
  format_storage
  start_bg "$NAME" java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:MaxMetaspaceSize=256m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dlog4j.configuration="file:$KAFKA_HOME/log4j.properties" \
    -cp "$KAFKA_HOME/lib/*" kafka.Kafka "$KAFKA_DIR/server.properties"
  wait_for "$NAME" 120 healthy
  ensure_scram_users
  say "$NAME: up (pid $(cat "$(pid_file "$NAME")")) on $BOOTSTRAP, SASL_SSL 127.0.0.1:$KAFKA_SASL_SSL_PORT, SSL 127.0.0.1:$KAFKA_SSL_PORT"
}

topics_create() {
  local topic=${1:?usage: kafka.sh topics-create NAME [PARTITIONS]} partitions=${2:-6}
  is_running "$NAME" || die "$NAME: not running (scripts/services/kafka.sh up)"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --create --if-not-exists --topic "$topic" --partitions "$partitions" --replication-factor 1
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status) status_line "$NAME" "$BOOTSTRAP, SASL_SSL 127.0.0.1:$KAFKA_SASL_SSL_PORT, SSL 127.0.0.1:$KAFKA_SSL_PORT" ;;
  reset)
    stop "$NAME"
    rm -rf "$KAFKA_DIR"
    say "$NAME: data removed"
    ;;
  topics-create)
    shift
    topics_create "$@"
    ;;
  topics)
    shift
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
    ;;
  run)
    shift
    [ $# -ge 1 ] || die "usage: kafka.sh run CLASS [ARGS...]"
    install >/dev/null
    kafka_tool "$@"
    ;;
  *) die "usage: kafka.sh install|up|down|status|reset|topics-create NAME [PARTITIONS]|topics ARGS|run CLASS ARGS" ;;
esac
