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
PORT=${ELASTICSEARCH_PORT:-19201}
HEAP=${ELASTICSEARCH_HEAP:-512m}
TRANSPORT_PORTS=${ELASTICSEARCH_TRANSPORT_PORTS:-$((PORT + 200))-$((PORT + 299))}
RUNNER_GROUP=org.codelibs
RUNNER_ARTIFACT=elasticsearch-cluster-runner
RUNNER_VERSION=${ELASTICSEARCH_RUNNER_VERSION:-7.10.2.0}
LAUNCHER=ElasticsearchServer
# shellcheck source=search-runner.sh
source "$SERVICES_DIR/search-runner.sh"
search_main "$@"
