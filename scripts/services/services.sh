#!/usr/bin/env bash
# Brings the real servers up, down, or reports their status:
#   scripts/services/services.sh up|down|status [name...]
# Writes $POIROT_RUN/env with the address of every server for tests and local runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL=(kafka neo4j opensearch opensearch-secure elasticsearch prometheus alertmanager jaeger hotrod)
action=${1:-status}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")

write_env() {
  cat >"$POIROT_RUN/env" <<ENV
export POIROT_TEST_KAFKA=127.0.0.1:$KAFKA_PORT
export POIROT_TEST_KAFKA_SASL_SSL=127.0.0.1:$KAFKA_SASL_SSL_PORT
export POIROT_TEST_KAFKA_SSL=127.0.0.1:$KAFKA_SSL_PORT
export POIROT_TEST_KAFKA_CA=$POIROT_RUN/kafka/tls/ca.pem
export POIROT_TEST_KAFKA_SCRAM_USER=$KAFKA_SCRAM_USER
export POIROT_TEST_KAFKA_SCRAM_PASSWORD=$KAFKA_SCRAM_PASSWORD
export POIROT_TEST_NEO4J=127.0.0.1:$NEO4J_BOLT_PORT
export POIROT_TEST_NEO4J_USER=$NEO4J_USER
export POIROT_TEST_NEO4J_PASSWORD=$NEO4J_PASSWORD
export POIROT_TEST_NEO4J_CA=$POIROT_RUN/neo4j/tls/ca.pem
export POIROT_TEST_OPENSEARCH=http://127.0.0.1:$OPENSEARCH_PORT
export POIROT_TEST_OPENSEARCH_SECURE=https://127.0.0.1:$OPENSEARCH_SECURE_PORT
export POIROT_TEST_OPENSEARCH_SECURE_CA=$POIROT_RUN/opensearch-secure/tls/ca.pem
export POIROT_TEST_OPENSEARCH_SECURE_USER=$OPENSEARCH_SECURE_USER
export POIROT_TEST_OPENSEARCH_SECURE_PASSWORD=$OPENSEARCH_SECURE_PASSWORD
export POIROT_TEST_OPENSEARCH_SECURE_CLIENT_CERT=$POIROT_RUN/opensearch-secure/tls/poirot-client.pem
export POIROT_TEST_OPENSEARCH_SECURE_CLIENT_KEY=$POIROT_RUN/opensearch-secure/tls/poirot-client.key
export POIROT_TEST_ELASTICSEARCH=http://127.0.0.1:${ELASTICSEARCH_PORT:-19201}
export POIROT_TEST_PROMETHEUS=http://127.0.0.1:$PROMETHEUS_PORT
export POIROT_TEST_ALERTMANAGER=http://127.0.0.1:$ALERTMANAGER_PORT
export POIROT_TEST_JAEGER_OTLP_GRPC=127.0.0.1:$JAEGER_OTLP_GRPC_PORT
export POIROT_TEST_JAEGER_OTLP_HTTP=http://127.0.0.1:$JAEGER_OTLP_HTTP_PORT
export POIROT_TEST_JAEGER_V1_OTLP_HTTP=http://127.0.0.1:$JAEGER_V1_OTLP_HTTP_PORT
export POIROT_TEST_JAEGER_QUERY=http://127.0.0.1:$JAEGER_QUERY_PORT
export POIROT_TEST_JAEGER_QUERY_INDEX_PREFIX=$JAEGER_QUERY_INDEX_PREFIX
export POIROT_TEST_HOTROD=http://127.0.0.1:$HOTROD_PORT
export POIROT_TEST_POIROT_METRICS=127.0.0.1:${POIROT_METRICS_PORT:-18088}
export POIROT_TEST_POIROT_METRICS_TOKEN_FILE=$POIROT_RUN/prometheus/poirot_metrics_token
export POIROT_RUN=$POIROT_RUN
export POIROT_CACHE=$POIROT_CACHE
ENV
}

case "$action" in
  up)
    start=$SECONDS
    for n in "${names[@]}"; do
      "$SERVICES_DIR/$n.sh" up
    done
    write_env
    say "up in $((SECONDS - start)) s; addresses in $POIROT_RUN/env"
    ;;
  down)
    # Reverse order: producers of data stop before what they write to.
    for ((i = ${#names[@]} - 1; i >= 0; i--)); do
      "$SERVICES_DIR/${names[$i]}.sh" down
    done
    ;;
  status)
    for n in "${names[@]}"; do
      "$SERVICES_DIR/$n.sh" status
    done
    ;;
  install)
    for n in "${names[@]}"; do
      "$SERVICES_DIR/$n.sh" install
    done
    ;;
  *) die "usage: services.sh up|down|status|install [name...]" ;;
esac
