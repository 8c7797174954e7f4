#!/usr/bin/env bash
# The real Jaeger collectors, built from Go modules, writing the spans they receive to Kafka:
#   jaeger     Jaeger v2 (cmd/jaeger, an OpenTelemetry Collector): OTLP in; Kafka out to
#              $JAEGER_TOPIC_PROTO (jaeger_proto) and $JAEGER_TOPIC_JSON (jaeger_json),
#              one message per span keyed by trace id. Config: jaeger/config-v2.yaml.
#   jaeger-v1  Jaeger v1 collector (cmd/collector) with SPAN_STORAGE_TYPE=kafka: OTLP in;
#              Kafka out to $JAEGER_V1_TOPIC in $JAEGER_V1_ENCODING (json|protobuf).
#   jaeger-query  Jaeger v2 (the same binary) as query only: the Jaeger API/UI on
#              127.0.0.1:$JAEGER_QUERY_PORT over the harness's OpenSearch, index prefix
#              $JAEGER_QUERY_INDEX_PREFIX (where poirot writes Jaeger's dependency documents).
#              Config: jaeger/config-query.yaml. OpenSearch must be up first.
#
#   scripts/services/jaeger.sh install|up|down|status [v2] [v1] [query]
# Which instances `up` starts: the arguments, else $JAEGER_INSTANCES (default "v2 v1 query").
# `down` and `status` cover both unless told otherwise. Kafka must be up first.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$SERVICES_DIR/jaeger/go-build.sh"

JAEGER_METRICS_PORT=${JAEGER_METRICS_PORT:-18888}
JAEGER_TOPIC_PROTO=${JAEGER_TOPIC_PROTO:-jaeger-spans}
JAEGER_TOPIC_JSON=${JAEGER_TOPIC_JSON:-jaeger-spans-json}
JAEGER_V1_GRPC_PORT=${JAEGER_V1_GRPC_PORT:-24250}
JAEGER_V1_HTTP_PORT=${JAEGER_V1_HTTP_PORT:-24268}
JAEGER_V1_TOPIC=${JAEGER_V1_TOPIC:-jaeger-spans-v1}
JAEGER_V1_ENCODING=${JAEGER_V1_ENCODING:-json}
# Kafka protocol version the v1 collector's client (sarama) speaks.
JAEGER_V1_KAFKA_VERSION=${JAEGER_V1_KAFKA_VERSION:-2.8.0}
# A soft memory limit for each collector (Go runtime), to keep them modest.
JAEGER_GOMEMLIMIT=${JAEGER_GOMEMLIMIT:-256MiB}

JAEGER_QUERY_GRPC_PORT=${JAEGER_QUERY_GRPC_PORT:-26685}
JAEGER_QUERY_HEALTH_PORT=${JAEGER_QUERY_HEALTH_PORT:-23133}

V2=jaeger
V1=jaeger-v1
Q=jaeger-query

install_v2() { go_build_jaeger jaeger github.com/jaegertracing/jaeger/cmd/jaeger; }
install_v1() { go_build_jaeger jaeger-collector-v1 github.com/jaegertracing/jaeger/cmd/collector; }
install_query() { install_v2; }

up_query() {
  if is_running "$Q"; then
    say "$Q: already running"
    return 0
  fi
  install_query
  http_ok "http://127.0.0.1:$OPENSEARCH_PORT/" || die "$Q: OpenSearch is not up on 127.0.0.1:$OPENSEARCH_PORT (scripts/services/opensearch.sh up)"
  require_free_port "$Q HTTP" "$JAEGER_QUERY_PORT"
  require_free_port "$Q gRPC" "$JAEGER_QUERY_GRPC_PORT"
  require_free_port "$Q health" "$JAEGER_QUERY_HEALTH_PORT"
  local start=$SECONDS
  start_bg "$Q" env \
    OPENSEARCH_PORT="$OPENSEARCH_PORT" \
    JAEGER_QUERY_PORT="$JAEGER_QUERY_PORT" \
    JAEGER_QUERY_GRPC_PORT="$JAEGER_QUERY_GRPC_PORT" \
    JAEGER_QUERY_HEALTH_PORT="$JAEGER_QUERY_HEALTH_PORT" \
    JAEGER_QUERY_INDEX_PREFIX="$JAEGER_QUERY_INDEX_PREFIX" \
    GOMEMLIMIT="$JAEGER_GOMEMLIMIT" \
    "$(jaeger_bin jaeger)" --config "file:$SERVICES_DIR/jaeger/config-query.yaml"
  wait_for "$Q" 60 http_ok "http://127.0.0.1:$JAEGER_QUERY_HEALTH_PORT/status"
  say "$Q: up in $((SECONDS - start)) s ($(addr_query))"
}

up_v2() {
  if is_running "$V2"; then
    say "$V2: already running"
    return 0
  fi
  install_v2
  kafka_required "$V2"
  require_free_port "$V2 OTLP gRPC" "$JAEGER_OTLP_GRPC_PORT"
  require_free_port "$V2 OTLP HTTP" "$JAEGER_OTLP_HTTP_PORT"
  require_free_port "$V2 health" "$JAEGER_HEALTH_PORT"
  require_free_port "$V2 metrics" "$JAEGER_METRICS_PORT"
  local start=$SECONDS
  start_bg "$V2" env \
    KAFKA_PORT="$KAFKA_PORT" \
    JAEGER_OTLP_GRPC_PORT="$JAEGER_OTLP_GRPC_PORT" \
    JAEGER_OTLP_HTTP_PORT="$JAEGER_OTLP_HTTP_PORT" \
    JAEGER_HEALTH_PORT="$JAEGER_HEALTH_PORT" \
    JAEGER_METRICS_PORT="$JAEGER_METRICS_PORT" \
    JAEGER_TOPIC_PROTO="$JAEGER_TOPIC_PROTO" \
    JAEGER_TOPIC_JSON="$JAEGER_TOPIC_JSON" \
    GOMEMLIMIT="$JAEGER_GOMEMLIMIT" \
    "$(jaeger_bin jaeger)" --config "file:$SERVICES_DIR/jaeger/config-v2.yaml"
  wait_for "$V2" 60 http_ok "http://127.0.0.1:$JAEGER_HEALTH_PORT/status"
  say "$V2: up in $((SECONDS - start)) s ($(addr_v2))"
}

up_v1() {
  if is_running "$V1"; then
    say "$V1: already running"
    return 0
  fi
  case "$JAEGER_V1_ENCODING" in
    json | protobuf) ;;
    *) die "$V1: JAEGER_V1_ENCODING must be json or protobuf, not '$JAEGER_V1_ENCODING'" ;;
  esac
  install_v1
  kafka_required "$V1"
  local p
  for p in JAEGER_V1_OTLP_GRPC_PORT JAEGER_V1_OTLP_HTTP_PORT JAEGER_V1_ADMIN_PORT \
    JAEGER_V1_GRPC_PORT JAEGER_V1_HTTP_PORT; do
    require_free_port "$V1 ($p)" "${!p}"
  done
  local start=$SECONDS
  # Zipkin (9411) stays off (its flag defaults to empty); the Jaeger gRPC (14250) and
  # HTTP (14268) endpoints cannot be turned off, so they bind loopback on our ports.
  start_bg "$V1" env \
    SPAN_STORAGE_TYPE=kafka \
    GOMEMLIMIT="$JAEGER_GOMEMLIMIT" \
    "$(jaeger_bin jaeger-collector-v1)" \
    --kafka.producer.brokers="127.0.0.1:$KAFKA_PORT" \
    --kafka.producer.topic="$JAEGER_V1_TOPIC" \
    --kafka.producer.encoding="$JAEGER_V1_ENCODING" \
    --kafka.producer.protocol-version="$JAEGER_V1_KAFKA_VERSION" \
    --collector.otlp.enabled=true \
    --collector.otlp.grpc.host-port="127.0.0.1:$JAEGER_V1_OTLP_GRPC_PORT" \
    --collector.otlp.http.host-port="127.0.0.1:$JAEGER_V1_OTLP_HTTP_PORT" \
    --collector.grpc-server.host-port="127.0.0.1:$JAEGER_V1_GRPC_PORT" \
    --collector.http-server.host-port="127.0.0.1:$JAEGER_V1_HTTP_PORT" \
    --collector.zipkin.host-port= \
    --admin.http.host-port="127.0.0.1:$JAEGER_V1_ADMIN_PORT" \
    --log-level=info
  # The admin port answers 200 on / once the collector is serving, 503 before.
  wait_for "$V1" 60 http_ok "http://127.0.0.1:$JAEGER_V1_ADMIN_PORT/"
  say "$V1: up in $((SECONDS - start)) s ($(addr_v1))"
}

addr_v2() {
  echo "otlp grpc 127.0.0.1:$JAEGER_OTLP_GRPC_PORT http http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT," \
    "health http://127.0.0.1:$JAEGER_HEALTH_PORT/status," \
    "kafka 127.0.0.1:$KAFKA_PORT $JAEGER_TOPIC_PROTO(jaeger_proto) $JAEGER_TOPIC_JSON(jaeger_json)"
}

addr_query() {
  echo "api/ui http://127.0.0.1:$JAEGER_QUERY_PORT, opensearch 127.0.0.1:$OPENSEARCH_PORT prefix $JAEGER_QUERY_INDEX_PREFIX"
}

addr_v1() {
  echo "otlp grpc 127.0.0.1:$JAEGER_V1_OTLP_GRPC_PORT http http://127.0.0.1:$JAEGER_V1_OTLP_HTTP_PORT," \
    "admin http://127.0.0.1:$JAEGER_V1_ADMIN_PORT/," \
    "kafka 127.0.0.1:$KAFKA_PORT $JAEGER_V1_TOPIC($JAEGER_V1_ENCODING)"
}

status_one() {
  local name=$1 addr=$2 line
  line=$(status_line "$name" "$addr")
  if is_running "$name"; then
    line="$line rss $(rss_of "$(cat "$(pid_file "$name")")")"
  fi
  echo "$line"
}

action=${1:-status}
shift || true
instances=("$@")
if [ ${#instances[@]} -eq 0 ]; then
  case "$action" in
    up | install) read -r -a instances <<<"${JAEGER_INSTANCES:-v2 v1 query}" ;;
    *) instances=(v2 v1 query) ;;
  esac
fi
for i in "${instances[@]}"; do
  case "$i" in
    v2 | v1 | query) ;;
    *) die "jaeger: unknown instance '$i' (v2, v1 or query)" ;;
  esac
done

case "$action" in
  install)
    for i in "${instances[@]}"; do "install_$i"; done
    ;;
  up)
    for i in "${instances[@]}"; do "up_$i"; done
    ;;
  down)
    for i in "${instances[@]}"; do
      case "$i" in
        v2) stop "$V2" ;;
        v1) stop "$V1" ;;
        query) stop "$Q" ;;
      esac
    done
    ;;
  status)
    for i in "${instances[@]}"; do
      case "$i" in
        v2) status_one "$V2" "$(addr_v2)" ;;
        v1) status_one "$V1" "$(addr_v1)" ;;
        query) status_one "$Q" "$(addr_query)" ;;
      esac
    done
    ;;
  *) die "usage: jaeger.sh install|up|down|status [v2] [v1] [query]" ;;
esac
