# One Elasticsearch-compatible node embedded by a codelibs runner: the body shared by
# opensearch.sh and elasticsearch.sh. Source it after setting:
#   NAME PORT HEAP TRANSPORT_PORTS RUNNER_GROUP RUNNER_ARTIFACT RUNNER_VERSION LAUNCHER
# (LAUNCHER is the class in java/LAUNCHER.java), then call `search_main "$@"`.
# SECURITY=1 (OpenSearch only) adds the security plugin: see opensearch-secure.sh.
# Data and logs: $POIROT_RUN/$NAME/ and $POIROT_RUN/$NAME.log; `reset` wipes the data.

RUNNER_HOME=$POIROT_CACHE/$RUNNER_ARTIFACT-$RUNNER_VERSION
DATA_DIR=$POIROT_RUN/$NAME
SECURITY=${SECURITY:-0}
if [ "$SECURITY" = 1 ]; then
  URL=https://127.0.0.1:$PORT
  # The plugin's distribution (a zip on Maven Central: the plugin's jar and its libraries).
  SECURITY_HOME=$POIROT_CACHE/opensearch-security-$RUNNER_VERSION
  TLS_DIR=$DATA_DIR/tls
else
  URL=http://127.0.0.1:$PORT
fi

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

security_pom() {
  cat <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>poirot.services</groupId>
  <artifactId>opensearch-security</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- Published as the installable zip only (no jar, no pom): Maven warns, and copies it. -->
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>opensearch-security</artifactId>
      <version>$RUNNER_VERSION</version>
      <type>zip</type>
    </dependency>
  </dependencies>
</project>
POM
}

install() {
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mvn_fetch "$RUNNER_HOME" "$(runner_pom)"
  javac_cached "$SERVICES_DIR/java/$LAUNCHER.java" "$RUNNER_HOME/lib/*" "$RUNNER_HOME/classes"
  if [ "$SECURITY" = 1 ] && [ ! -f "$SECURITY_HOME/plugin/.complete" ]; then
    need python3 "install Python 3: apt-get install python3"
    mvn_fetch "$SECURITY_HOME" "$(security_pom)"
    rm -rf "$SECURITY_HOME/plugin"
    python3 -m zipfile -e "$SECURITY_HOME/lib/opensearch-security-$RUNNER_VERSION.zip" "$SECURITY_HOME/plugin" ||
      die "$NAME: cannot unpack the security plugin in $SECURITY_HOME"
    touch "$SECURITY_HOME/plugin/.complete"
  fi
}

# curl with the CA and the credentials of the secure instance.
search_curl() {
  if [ "$SECURITY" = 1 ]; then
    curl --cacert "$TLS_DIR/ca.pem" -u "$OPENSEARCH_SECURE_USER:$OPENSEARCH_SECURE_PASSWORD" "$@"
  else
    curl "$@"
  fi
}

# Healthy when the cluster health API answers green or yellow.
healthy() {
  search_curl -fsS --max-time 10 "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" 2>/dev/null |
    grep -Eq '"status":"(green|yellow)"'
}

# The security plugin's setup: certificates (a test CA; `node` for HTTPS and the transport
# layer, `admin` for the plugin's admin tools, `poirot-client` for clients that authenticate
# with a certificate), node settings, and the security configuration the plugin loads into
# its index at first start: the user $OPENSEARCH_SECURE_USER (password hashed with the
# plugin's own Hasher) and the certificate user poirot-client, both all_access; basic auth
# or a client certificate.
write_security() {
  local sec=$DATA_DIR/security hash
  make_certs "$TLS_DIR" "$DATA_DIR/tls.log" node:node admin:client poirot-client:client
  mkdir -p "$sec"
  cp "$SECURITY_HOME"/plugin/config/*.yml "$sec/"
  cat >"$DATA_DIR/settings.yml" <<EOF
# Written by scripts/services/$NAME.sh on every start; edits are lost.
plugins.security.ssl.transport.pemcert_filepath: $TLS_DIR/node.pem
plugins.security.ssl.transport.pemkey_filepath: $TLS_DIR/node.key
plugins.security.ssl.transport.pemtrustedcas_filepath: $TLS_DIR/ca.pem
plugins.security.ssl.transport.enforce_hostname_verification: false
plugins.security.ssl.http.enabled: true
plugins.security.ssl.http.pemcert_filepath: $TLS_DIR/node.pem
plugins.security.ssl.http.pemkey_filepath: $TLS_DIR/node.key
plugins.security.ssl.http.pemtrustedcas_filepath: $TLS_DIR/ca.pem
plugins.security.ssl.http.clientauth_mode: OPTIONAL
plugins.security.allow_default_init_securityindex: true
plugins.security.authcz.admin_dn: ["CN=admin"]
plugins.security.nodes_dn: ["CN=node"]
plugins.security.audit.type: noop
EOF
  hash=$(HASH_PASSWORD=$OPENSEARCH_SECURE_PASSWORD java -cp "$RUNNER_HOME/lib/*:$SECURITY_HOME/plugin/*" \
    org.opensearch.security.tools.Hasher -env HASH_PASSWORD 2>>"$DATA_DIR/tls.log" | tail -n 1)
  case $hash in
    '$2'*) ;;
    *) die "$NAME: hashing the password failed (log: $DATA_DIR/tls.log)" ;;
  esac
  cat >"$sec/internal_users.yml" <<EOF
_meta:
  type: "internalusers"
  config_version: 2
$OPENSEARCH_SECURE_USER:
  hash: "$hash"
  description: "poirot's tests"
EOF
  cat >"$sec/roles_mapping.yml" <<EOF
_meta:
  type: "rolesmapping"
  config_version: 2
all_access:
  users: ["$OPENSEARCH_SECURE_USER", "poirot-client"]
EOF
  cat >"$sec/config.yml" <<'EOF'
_meta:
  type: "config"
  config_version: 2
config:
  dynamic:
    http:
      anonymous_auth_enabled: false
    authc:
      clientcert_auth_domain:
        http_enabled: true
        transport_enabled: false
        order: 0
        http_authenticator:
          type: clientcert
          config:
            username_attribute: cn
          challenge: false
        authentication_backend:
          type: noop
      basic_internal_auth_domain:
        http_enabled: true
        transport_enabled: true
        order: 1
        http_authenticator:
          type: basic
          challenge: true
        authentication_backend:
          type: intern
EOF
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
  local classpath="$RUNNER_HOME/classes:$RUNNER_HOME/lib/*" settings="" extra=()
  if [ "$SECURITY" = 1 ]; then
    write_security
    # After the runner's jars: a library both ship is taken from the runner's.
    classpath="$classpath:$SECURITY_HOME/plugin/*"
    settings=$DATA_DIR/settings.yml
    extra=("-Dsecurity.default_init.dir=$DATA_DIR/security/")
  fi
  # The JVM options of the server's own jvm.options that matter outside its launcher.
  start_bg "$NAME" env OPENSEARCH_SETTINGS_FILE="$settings" OPENSEARCH_SECURITY="$SECURITY" java "-Xms$HEAP" "-Xmx$HEAP" -XX:+UseG1GC \
    -XX:G1ReservePercent=25 -XX:InitiatingHeapOccupancyPercent=30 -XX:MaxMetaspaceSize=256m \
    -XX:+ExitOnOutOfMemoryError -XX:-OmitStackTraceInFastThrow -Xss1m -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
    -Dfile.encoding=UTF-8 -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true \
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$DATA_DIR/tmp" "${extra[@]}" \
    -cp "$classpath" \
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
