#!/usr/bin/env bash
# Brings the real servers up, runs the tests that need them, and stops them again
# unless KEEP_SERVICES=1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
  if [ "${KEEP_SERVICES:-0}" != 1 ]; then
    "$SERVICES_DIR/services.sh" down || true
  fi
}
trap cleanup EXIT

"$SERVICES_DIR/services.sh" up
# shellcheck disable=SC1091
source "$POIROT_RUN/env"
cd "$ROOT"
cargo test --test services --test run --test groups --test stack --test security --test sink_tls --test faults -- --ignored --test-threads=1
