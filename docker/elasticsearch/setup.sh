#!/bin/bash
# One-shot setup of the stack's Elasticsearch and Kibana (stack.yml, service es-setup). Runs in
# the Elasticsearch image (it has bash and curl) and is safe to run again:
#   1. waits until Elasticsearch answers with the `elastic` password;
#   2. sets the password of the built-in `kibana_system` user (Kibana 8 refuses to connect as
#      `elastic`) from the kibana_system_password secret;
#   3. waits for Kibana and creates the data view `poirot-anomalies-*` (time field @timestamp),
#      so the anomaly documents poirot writes can be opened in Discover right away.
set -euo pipefail

ES_URL=${ES_URL:-http://elasticsearch:9200}
KIBANA_URL=${KIBANA_URL:-http://kibana:5601}
ELASTIC_PASSWORD=$(cat /run/secrets/elastic_password)
KIBANA_SYSTEM_PASSWORD=$(cat /run/secrets/kibana_system_password)

log() { echo "es-setup: $*"; }

# wait_for NAME URL TRIES: until URL answers 200 with the elastic user's credentials.
wait_for() {
  local name=$1 url=$2 tries=$3 code
  for ((i = 1; i <= tries; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u "elastic:$ELASTIC_PASSWORD" "$url" || true)
    if [ "$code" = 200 ]; then
      log "$name is up"
      return 0
    fi
    sleep 5
  done
  log "$name did not answer 200 at $url (last status $code)"
  return 1
}

wait_for elasticsearch "$ES_URL/_cluster/health?wait_for_status=yellow&timeout=5s" 120

# The password goes in a JSON body; build it without a shell-quoting hazard.
body=$(printf '{"password":"%s"}' "$(printf '%s' "$KIBANA_SYSTEM_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')")
curl -fsS -u "elastic:$ELASTIC_PASSWORD" -H 'Content-Type: application/json' \
  -X POST "$ES_URL/_security/user/kibana_system/_password" -d "$body" >/dev/null
log "kibana_system password set"

wait_for kibana "$KIBANA_URL/api/status" 180

curl -fsS -u "elastic:$ELASTIC_PASSWORD" -H 'Content-Type: application/json' -H 'kbn-xsrf: poirot' \
  -X POST "$KIBANA_URL/api/data_views/data_view" \
  -d '{"override": true, "data_view": {"id": "poirot-anomalies", "name": "poirot anomalies", "title": "poirot-anomalies-*", "timeFieldName": "@timestamp"}}' \
  >/dev/null
log "Kibana data view poirot-anomalies-* ready"
