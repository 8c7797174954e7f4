# Shared helpers for the service scripts. Source it; do not run it.
#
# Conventions every service script follows:
#   scripts/services/<name>.sh install|up|down|status
#   - install: fetch or build into $POIROT_CACHE (idempotent; a second run takes seconds)
#   - up:      install if needed, start in the background bound to 127.0.0.1 only,
#              record the pid in $POIROT_RUN/<name>.pid, wait until it really answers
#   - down:    stop exactly the pid in the pid file (never by name)
#   - status:  print one line: "<name>: running (pid N) <address>" or "<name>: stopped"
# Ports come from environment variables with defaults (see ports below), so two
# runs on one machine can use different ports and run directories.

set -euo pipefail

SERVICES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SERVICES_DIR/../.." && pwd)
# Downloads and builds, kept between runs and checkouts (the user's cache directory).
POIROT_CACHE=${POIROT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/poirot}
# Pid files, logs, data and the env file of this checkout's servers (git-ignored).
POIROT_RUN=${POIROT_RUN:-$ROOT/.cache/run}
mkdir -p "$POIROT_CACHE" "$POIROT_RUN"

# Ports (all on 127.0.0.1).
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-19096} # TLS + SCRAM-SHA-256/512
KAFKA_SSL_PORT=${KAFKA_SSL_PORT:-19097}           # TLS only
KAFKA_SCRAM_USER=${KAFKA_SCRAM_USER:-poirot}
KAFKA_SCRAM_PASSWORD=${KAFKA_SCRAM_PASSWORD:-poirot-scram-pw}
NEO4J_BOLT_PORT=${NEO4J_BOLT_PORT:-17687}
NEO4J_USER=${NEO4J_USER:-neo4j}
NEO4J_PASSWORD=${NEO4J_PASSWORD:-poirot-test-pw}
OPENSEARCH_PORT=${OPENSEARCH_PORT:-19200}
OPENSEARCH_SECURE_PORT=${OPENSEARCH_SECURE_PORT:-19202} # security plugin: HTTPS + basic auth
OPENSEARCH_SECURE_USER=${OPENSEARCH_SECURE_USER:-poirot}
OPENSEARCH_SECURE_PASSWORD=${OPENSEARCH_SECURE_PASSWORD:-poirot-search-pw}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
ALERTMANAGER_PORT=${ALERTMANAGER_PORT:-19094}
JAEGER_OTLP_GRPC_PORT=${JAEGER_OTLP_GRPC_PORT:-14317}
JAEGER_OTLP_HTTP_PORT=${JAEGER_OTLP_HTTP_PORT:-14318}
JAEGER_HEALTH_PORT=${JAEGER_HEALTH_PORT:-13133}
JAEGER_V1_OTLP_GRPC_PORT=${JAEGER_V1_OTLP_GRPC_PORT:-24317}
JAEGER_V1_OTLP_HTTP_PORT=${JAEGER_V1_OTLP_HTTP_PORT:-24318}
JAEGER_V1_ADMIN_PORT=${JAEGER_V1_ADMIN_PORT:-24269}
JAEGER_QUERY_PORT=${JAEGER_QUERY_PORT:-26686}
JAEGER_QUERY_INDEX_PREFIX=${JAEGER_QUERY_INDEX_PREFIX:-poirot-test}
HOTROD_PORT=${HOTROD_PORT:-18080}

die() {
  echo "services: $*" >&2
  exit 1
}

say() {
  echo "services: $*" >&2
}

# need CMD HINT: fail with one line when a tool is missing.
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_free_port NAME PORT
require_free_port() {
  if port_in_use "$2"; then
    die "$1: port $2 on 127.0.0.1 is already in use (set another with its *_PORT variable)"
  fi
}

pid_file() { echo "$POIROT_RUN/$1.pid"; }
log_file() { echo "$POIROT_RUN/$1.log"; }

is_running() {
  local f
  f=$(pid_file "$1")
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_bg NAME CMD...: start CMD detached, output to the log, pid to the pid file.
start_bg() {
  local name=$1
  shift
  : >"$(log_file "$name")"
  setsid "$@" >>"$(log_file "$name")" 2>&1 </dev/null &
  echo $! >"$(pid_file "$name")"
}

# stop NAME: TERM the recorded pid, then KILL after 30 s. Never by name.
stop() {
  local name=$1 f pid
  f=$(pid_file "$name")
  if [ ! -f "$f" ]; then
    say "$name: not running"
    return 0
  fi
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name: did not stop in 30 s, killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
  say "$name: stopped"
}

# wait_for NAME TIMEOUT_SECONDS CHECK_CMD...: poll until CHECK_CMD succeeds.
# On timeout or when the process died: the tail of its log, and fail.
wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! is_running "$name"; then
      tail -n 40 "$(log_file "$name")" >&2 || true
      die "$name exited before it answered (log: $(log_file "$name"))"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$(log_file "$name")" >&2 || true
      die "$name did not answer within ${timeout}s (log: $(log_file "$name"))"
    fi
    sleep 1
  done
}

# status_line NAME ADDRESS
status_line() {
  if is_running "$1"; then
    echo "$1: running (pid $(cat "$(pid_file "$1")")) $2"
  else
    echo "$1: stopped"
  fi
}

# mvn_fetch DIR POM_XML: copy an artifact and its runtime dependencies into DIR/lib once.
mvn_fetch() {
  local dir=$1 pom=$2
  if [ -f "$dir/.complete" ]; then
    return 0
  fi
  need mvn "install Maven: apt-get install maven"
  need java "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  mkdir -p "$dir"
  printf '%s\n' "$pom" >"$dir/pom.xml"
  say "fetching $(basename "$dir") from Maven Central (once)"
  if ! mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$dir/lib" -DincludeScope=runtime >"$dir/mvn.log" 2>&1; then
    tail -n 20 "$dir/mvn.log" >&2
    die "Maven could not fetch $(basename "$dir") (log: $dir/mvn.log)"
  fi
  touch "$dir/.complete"
}

# javac_cached SRC CLASSPATH OUTDIR: compile one Java source file into OUTDIR; again only
# when the source changed (its checksum is kept in OUTDIR). Needs a JDK's javac.
javac_cached() {
  local src=$1 cp=$2 out=$3 sum tmp
  sum=$(sha256sum "$src" | cut -d' ' -f1)
  if [ -f "$out/.source.sha256" ] && [ "$(cat "$out/.source.sha256")" = "$sum" ]; then
    return 0
  fi
  need javac "install a JDK 17: apt-get install openjdk-17-jdk-headless"
  tmp=$(mktemp -d "$out.tmp.XXXXXX")
  if ! javac -nowarn -encoding UTF-8 -d "$tmp" -cp "$cp" "$src" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2
    rm -rf "$tmp" "$tmp.log"
    die "could not compile $src"
  fi
  rm -f "$tmp.log"
  echo "$sum" >"$tmp/.source.sha256"
  rm -rf "$out"
  mv "$tmp" "$out"
}

# already_up NAME TIMEOUT CHECK_CMD...: for `up`. 0 when NAME's recorded process runs and
# answers CHECK_CMD (waiting up to TIMEOUT s for one still starting; fails with the log tail
# when it runs but never answers). 1 when nothing runs, also when the process died or is
# dying (a zombie); a stale pid file is removed then, so `up` can start it anew.
already_up() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout)) pid state
  while is_running "$name"; do
    pid=$(cat "$(pid_file "$name")")
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    case $state in
      "" | Z*)
        # Exited or exiting: give its threads and sockets up to 15 s to go away.
        for _ in $(seq 1 30); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.5
        done
        break
        ;;
    esac
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$(log_file "$name")" >&2 || true
      die "$name runs (pid $pid) but did not answer within ${timeout}s (log: $(log_file "$name"))"
    fi
    sleep 1
  done
  rm -f "$(pid_file "$name")"
  return 1
}

# make_certs DIR LOG NAME:KIND...: a test CA (DIR/ca.pem, DIR/ca.key) and, for each NAME,
# DIR/NAME.pem and DIR/NAME.key (PKCS#8) signed by it, subject CN=NAME. KIND is `server`
# (SANs 127.0.0.1 and localhost), `client`, or `node` (both: a cluster node's transport).
# Made once per DIR (a .complete marker); openssl's output goes to LOG.
make_certs() {
  local dir=$1 log=$2 spec name kind eku
  shift 2
  if [ -f "$dir/.complete" ]; then
    return 0
  fi
  need openssl "install OpenSSL: apt-get install openssl"
  rm -rf "$dir"
  mkdir -p "$dir"
  chmod 700 "$dir"
  : >"$log"
  # One chain of && (set -e does not apply inside a command whose status is tested).
  if ! (cd "$dir" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=poirot test CA" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign) >>"$log" 2>&1; then
    cat "$log" >&2
    die "making the test CA in $dir failed (log: $log)"
  fi
  for spec in "$@"; do
    name=${spec%%:*}
    kind=${spec#*:}
    case $kind in
      server) eku=serverAuth ;;
      client) eku=clientAuth ;;
      node) eku=serverAuth,clientAuth ;;
      *) die "make_certs: unknown kind $kind" ;;
    esac
    {
      echo basicConstraints=CA:FALSE
      echo keyUsage=critical,digitalSignature,keyEncipherment
      echo "extendedKeyUsage=$eku"
      [ "$kind" = client ] || echo subjectAltName=IP:127.0.0.1,DNS:localhost
    } >"$dir/$name.ext"
    if ! (cd "$dir" &&
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" &&
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
        -extfile "$name.ext" -out "$name.pem") >>"$log" 2>&1; then
      cat "$log" >&2
      die "making the test certificate $name in $dir failed (log: $log)"
    fi
  done
  chmod 600 "$dir"/*.key
  chmod 644 "$dir"/*.pem
  touch "$dir/.complete"
}

# go_env: find go (>= 1.24.6, the Jaeger wrapper's `go` line), keep all its state under
# $POIROT_CACHE/go (shared by every Go build: jaeger/go-build.sh, otelcol/go-build.sh).
go_env() {
  if [ -z "${GO:-}" ]; then
    GO=$(command -v go || true)
    [ -n "$GO" ] || [ ! -x /usr/local/go/bin/go ] || GO=/usr/local/go/bin/go
  fi
  [ -n "$GO" ] && [ -x "$GO" ] || die "go is not installed (need Go >= 1.24.6 on PATH or at /usr/local/go/bin/go)"
  export GOPATH=$POIROT_CACHE/go
  export GOMODCACHE=$POIROT_CACHE/go/pkg/mod
  export GOCACHE=$POIROT_CACHE/go/cache
  # Modules only through the proxy, never straight from their source hosts.
  export GOPROXY=${POIROT_GOPROXY:-https://proxy.golang.org}
  export GOTOOLCHAIN=local
  export GOFLAGS="-mod=readonly -buildvcs=false"
}
