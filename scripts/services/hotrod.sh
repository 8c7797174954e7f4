#!/usr/bin/env bash
# HotROD, Jaeger's demo app (examples/hotrod of the same Jaeger module pin as jaeger.sh),
# all four services in one process (`hotrod all`), exporting OTLP/HTTP to the Jaeger v2
# collector started by jaeger.sh.
#
#   scripts/services/hotrod.sh install|up|down|status
#   scripts/services/hotrod.sh drive N     N real /dispatch requests, one after another;
#                                          prints how many succeeded (exit 1 unless all did)
#
# Service names it emits (resource service.name): frontend, customer, driver, route,
# mysql (customer's simulated database) and redis-manual (driver's simulated Redis).
# HOTROD_OTLP_ENDPOINT overrides where spans go, e.g. the v1 collector:
#   HOTROD_OTLP_ENDPOINT=http://127.0.0.1:$JAEGER_V1_OTLP_HTTP_PORT scripts/services/hotrod.sh up
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SERVICES_DIR/jaeger/go-build.sh"

NAME=hotrod
HOTROD_CUSTOMER_PORT=${HOTROD_CUSTOMER_PORT:-18081}
HOTROD_DRIVER_PORT=${HOTROD_DRIVER_PORT:-18082}
HOTROD_ROUTE_PORT=${HOTROD_ROUTE_PORT:-18083}
HOTROD_OTLP_ENDPOINT=${HOTROD_OTLP_ENDPOINT:-http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT}
# Seconds `drive` waits after the last request so HotROD's batch exporter (1 s) flushes.
HOTROD_DRIVE_FLUSH_SECONDS=${HOTROD_DRIVE_FLUSH_SECONDS:-3}
# HotROD's four customers.
HOTROD_CUSTOMERS=(123 392 731 567)

install() { go_build_jaeger hotrod github.com/jaegertracing/jaeger/examples/hotrod; }

# All four services listen (no request is sent: a request would make spans).
all_listening() {
  port_in_use "$HOTROD_PORT" && port_in_use "$HOTROD_CUSTOMER_PORT" &&
    port_in_use "$HOTROD_DRIVER_PORT" && port_in_use "$HOTROD_ROUTE_PORT"
}

up() {
  if is_running "$NAME"; then
    say "$NAME: already running"
    return 0
  fi
  install
  local p
  for p in HOTROD_PORT HOTROD_CUSTOMER_PORT HOTROD_DRIVER_PORT HOTROD_ROUTE_PORT; do
    require_free_port "$NAME ($p)" "${!p}"
  done
  local collector=${HOTROD_OTLP_ENDPOINT#http://}
  collector=${collector%%/*}
  port_in_use "${collector##*:}" ||
    say "$NAME: warning: nothing listens on $HOTROD_OTLP_ENDPOINT yet; spans are dropped until it does (scripts/services/services.sh up jaeger)"
  local start=$SECONDS
  # The *-hostname flags are both where each service listens and where the frontend
  # calls it: all loopback. The tracer reads the standard OTEL_* variables.
  start_bg "$NAME" env \
    OTEL_EXPORTER_OTLP_ENDPOINT="$HOTROD_OTLP_ENDPOINT" \
    OTEL_EXPORTER_OTLP_INSECURE=true \
    GOMEMLIMIT=128MiB \
    "$(jaeger_bin hotrod)" all \
    --otel-exporter=otlp \
    --frontend-service-hostname=127.0.0.1 --frontend-service-port="$HOTROD_PORT" \
    --customer-service-hostname=127.0.0.1 --customer-service-port="$HOTROD_CUSTOMER_PORT" \
    --driver-service-hostname=127.0.0.1 --driver-service-port="$HOTROD_DRIVER_PORT" \
    --route-service-hostname=127.0.0.1 --route-service-port="$HOTROD_ROUTE_PORT" \
    --jaeger-ui=http://127.0.0.1:16686
  wait_for "$NAME" 60 all_listening
  say "$NAME: up in $((SECONDS - start)) s ($(address))"
}

address() {
  echo "http://127.0.0.1:$HOTROD_PORT (customer :$HOTROD_CUSTOMER_PORT driver :$HOTROD_DRIVER_PORT" \
    "route :$HOTROD_ROUTE_PORT) -> otlp $HOTROD_OTLP_ENDPOINT"
}

# drive N: N dispatch requests in turn over HotROD's customers; each waits for its answer.
drive() {
  local n=${1:-1} ok=0 i customer
  [[ "$n" =~ ^[0-9]+$ ]] || die "usage: hotrod.sh drive N"
  port_in_use "$HOTROD_PORT" || die "$NAME: nothing on 127.0.0.1:$HOTROD_PORT (scripts/services/hotrod.sh up)"
  for ((i = 0; i < n; i++)); do
    customer=${HOTROD_CUSTOMERS[$((i % ${#HOTROD_CUSTOMERS[@]}))]}
    if curl -fsS --noproxy '*' -o /dev/null --max-time 60 \
      "http://127.0.0.1:$HOTROD_PORT/dispatch?customer=$customer&nonse=$RANDOM$RANDOM"; then
      ok=$((ok + 1))
    fi
  done
  [ "$n" -eq 0 ] || sleep "$HOTROD_DRIVE_FLUSH_SECONDS"
  echo "hotrod: $ok/$n requests succeeded"
  [ "$ok" -eq "$n" ]
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status)
    line=$(status_line "$NAME" "$(address)")
    is_running "$NAME" && line="$line rss $(rss_of "$(cat "$(pid_file "$NAME")")")"
    echo "$line"
    ;;
  drive) drive "${2:-1}" ;;
  *) die "usage: hotrod.sh install|up|down|status|drive N" ;;
esac
