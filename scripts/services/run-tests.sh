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
# A one-off machine (CI) builds the Go binaries once: their compiler cache is only disk now.
if [ "${POIROT_TRIM_BUILD_CACHES:-0}" = 1 ] && [ -d "$POIROT_CACHE/go/cache" ]; then
  rm -rf "$POIROT_CACHE/go/cache"
fi
# shellcheck disable=SC1091
source "$POIROT_RUN/env"
cd "$ROOT"
cargo test --test services --test run --test hotrod --test groups --test stack --test security --test sink_tls --test faults -- --ignored --test-threads=1
