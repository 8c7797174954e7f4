# shellcheck shell=bash
# Builds the OpenTelemetry collector of the peer benchmark (scripts/bench-peers.sh) with the
# collector builder (ocb). Source it after lib.sh; it defines otelcol_bin and
# go_build_otelcol.
#
# The manifest is scripts/services/go/otelcol/builder-config.yaml: the Kafka receiver, the
# span-metrics connector and the Prometheus exporter (contrib v0.165.1) on collector core
# v0.165.0. Everything comes from the Go module proxy (go_env in lib.sh): first the builder
# itself (`go install`), then the builder writes a main package and a go.mod for the
# manifest, resolves it (`go mod tidy`, checked against the checksum database as usual) and
# builds it. Module downloads and the build cache live under $POIROT_CACHE/go (shared with
# the Jaeger builds), the sources under $POIROT_CACHE/go/otelcol-bench, the binaries under
# $POIROT_CACHE/bin: the builder as ocb-<version>, the collector as
# otelcol-bench-<version>-<hash of the manifest>, so a second run finds it and skips the
# build. A cold build takes several minutes on 2 cores (docs/benchmarks.md has the figure).

OTELCOL_BUILDER_VERSION=v0.165.0
OTELCOL_MANIFEST=$SERVICES_DIR/go/otelcol/builder-config.yaml

# otelcol_bin: where the collector of the current manifest lives.
otelcol_bin() {
  local h
  h=$(sha256sum "$OTELCOL_MANIFEST" | cut -c1-10)
  echo "$POIROT_CACHE/bin/otelcol-bench-$OTELCOL_BUILDER_VERSION-$h"
}

# go_fetch_failed LOG WHAT: die with the first line of LOG that says why go could not fetch.
go_fetch_failed() {
  local why
  why=$(grep -m1 -E 'requires go|proxy|[0-9]{3} |dial tcp|no such host|timeout|verifying|unknown revision|not found' "$1" || tail -n 1 "$1")
  die "$2: go could not fetch the modules from $GOPROXY: $why (log: $1)"
}

# go_build_otelcol: build the collector once (nothing to do when its binary exists).
go_build_otelcol() {
  local out ocb src log start
  out=$(otelcol_bin)
  [ -x "$out" ] && return 0
  go_env
  # The builder runs `go mod tidy` and `go get` on the module it writes: no -mod=readonly.
  export GOFLAGS=-buildvcs=false
  mkdir -p "$POIROT_CACHE/bin" "$POIROT_CACHE/go"
  log=$POIROT_CACHE/go/build-otelcol-bench.log
  : >"$log"
  start=$SECONDS
  ocb=$POIROT_CACHE/bin/ocb-$OTELCOL_BUILDER_VERSION
  if [ ! -x "$ocb" ]; then
    say "otelcol: installing the collector builder $OTELCOL_BUILDER_VERSION"
    local gobin
    gobin=$(mktemp -d "$POIROT_CACHE/bin/.ocb.XXXXXX")
    if ! GOBIN=$gobin "$GO" install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_BUILDER_VERSION" >>"$log" 2>&1; then
      rm -rf "$gobin"
      go_fetch_failed "$log" "the collector builder"
    fi
    mv "$gobin/builder" "$ocb"
    rm -rf "$gobin"
  fi
  src=$POIROT_CACHE/go/otelcol-bench
  mkdir -p "$src"
  # The manifest with this machine's paths filled in (the builder reads no variables there).
  sed -e "s|@OUTPUT_PATH@|$src|" -e "s|@GO@|$GO|" "$OTELCOL_MANIFEST" >"$src/builder-config.yaml"
  say "otelcol: building the collector with ocb $OTELCOL_BUILDER_VERSION and $("$GO" env GOVERSION) (minutes on a cold cache; log: $log)"
  if ! (cd "$src" && "$ocb" --config builder-config.yaml --ldflags="-s -w") >>"$log" 2>&1; then
    if grep -q 'go subcommand error' "$log" && ! grep -q '"Compiling"\|Compiling$' "$log"; then
      go_fetch_failed "$log" "otelcol"
    fi
    tail -n 20 "$log" >&2
    die "otelcol: the collector build failed (log: $log)"
  fi
  mv "$src/otelcol-bench" "$out"
  say "otelcol: built $out in $((SECONDS - start)) s"
  # Binaries of older manifests go (a running one keeps its inode until it exits).
  local old
  for old in "$POIROT_CACHE/bin/otelcol-bench-"*; do
    [ "$old" = "$out" ] || [ ! -f "$old" ] || rm -f "$old"
  done
}
