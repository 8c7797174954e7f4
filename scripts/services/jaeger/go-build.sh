# Builds Jaeger's binaries from Go modules. Sourced by jaeger.sh and hotrod.sh after lib.sh.
#
# Everything comes from the Go module proxy: the wrapper module
# scripts/services/go/jaeger pins github.com/jaegertracing/jaeger (go.mod, `tool` lines)
# with the `replace` directive of Jaeger's own go.mod, and its go.sum is complete
# (seeded from Jaeger's go.sum), so no checksum-database look-up is needed.
# Module downloads and the build cache live under $POIROT_CACHE/go, binaries under
# $POIROT_CACHE/bin, named after the pin and a hash of go.mod+go.sum: a second
# install finds them and takes well under a second. `go_env` (the Go settings) is in lib.sh.

JAEGER_GO_MODULE=$SERVICES_DIR/go/jaeger
# The pinned version of github.com/jaegertracing/jaeger (read from the wrapper's go.mod).
JAEGER_MODULE_VERSION=$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$JAEGER_GO_MODULE/go.mod")

# jaeger_bin NAME: where the binary NAME of the current pin lives.
jaeger_bin() {
  local h
  h=$(cat "$JAEGER_GO_MODULE/go.mod" "$JAEGER_GO_MODULE/go.sum" | sha256sum | cut -c1-10)
  echo "$POIROT_CACHE/bin/$1-$JAEGER_MODULE_VERSION-$h"
}

# go_build_jaeger NAME PACKAGE: build PACKAGE (in the wrapper's module graph) once.
go_build_jaeger() {
  local name=$1 pkg=$2 out log start
  out=$(jaeger_bin "$name")
  [ -x "$out" ] && return 0
  go_env
  mkdir -p "$POIROT_CACHE/bin" "$POIROT_CACHE/go"
  log=$POIROT_CACHE/go/build-$name.log
  start=$SECONDS
  say "$name: building $pkg@$JAEGER_MODULE_VERSION with $("$GO" env GOVERSION) (minutes on a cold cache)"
  if ! (cd "$JAEGER_GO_MODULE" && "$GO" mod download) >"$log" 2>&1; then
    local why
    why=$(grep -m1 -E 'requires go|proxy|[0-9]{3} |dial tcp|no such host|timeout|verifying' "$log" || tail -n 1 "$log")
    die "$name: go could not fetch the modules from $GOPROXY: $why (log: $log)"
  fi
  if ! (cd "$JAEGER_GO_MODULE" && "$GO" build -trimpath -ldflags="-s -w" -o "$out.tmp" "$pkg") >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "$name: go build of $pkg failed (log: $log)"
  fi
  mv "$out.tmp" "$out"
  say "$name: built $out in $((SECONDS - start)) s"
  # Binaries of older pins go (a running one keeps its inode until it exits).
  local old
  for old in "$POIROT_CACHE/bin/$name"-v[0-9]*; do
    [ "$old" = "$out" ] || [ ! -f "$old" ] || rm -f "$old"
  done
}

# rss_of PID: resident memory of PID in MiB (empty when it is gone).
rss_of() {
  awk '/^VmRSS:/ { printf "%d MiB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || true
}

# http_ok URL: the URL answers 2xx within 2 s (loopback only).
http_ok() {
  need curl "apt-get install curl"
  curl -fsS --noproxy '*' -o /dev/null --max-time 2 "$1"
}

# kafka_required: fail in one line when nothing listens on the Kafka port.
kafka_required() {
  port_in_use "$KAFKA_PORT" ||
    die "$1: no Kafka on 127.0.0.1:$KAFKA_PORT (start it first: scripts/services/services.sh up kafka)"
}
