#!/usr/bin/env bash
# Prometheus (and promtool) from Debian's `prometheus` package, run by hand on 127.0.0.1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=prometheus
POIROT_METRICS_PORT=${POIROT_METRICS_PORT:-18088}
DIR=$POIROT_RUN/prometheus
CONFIG=$DIR/prometheus.yml
# The bearer token Prometheus sends to poirot's /metrics (the stack's poirot_metrics_token secret);
# tests start poirot with run.metrics_token_file pointing here (POIROT_TEST_POIROT_METRICS_TOKEN_FILE).
TOKEN_FILE=$DIR/poirot_metrics_token

# Installs Debian packages without letting their maintainer scripts start services
# (they would listen on 0.0.0.0).
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need apt-get "this needs a Debian system to install ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root (apt-get install ${missing[*]})"
  say "installing ${missing[*]} from Debian (once)"
  local policy=/usr/sbin/policy-rc.d restore=""
  [ -e "$policy" ] && restore=$(mktemp) && cp "$policy" "$restore"
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
  local ok=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
    >"$POIROT_RUN/apt.log" 2>&1 || ok=$?
  if [ -n "$restore" ]; then mv "$restore" "$policy"; else rm -f "$policy"; fi
  if [ "$ok" -ne 0 ]; then
    tail -n 10 "$POIROT_RUN/apt.log" >&2
    die "apt-get could not install ${missing[*]} (log: $POIROT_RUN/apt.log)"
  fi
}

install() {
  apt_install prometheus python3-yaml
  need prometheus "apt-get install prometheus"
  need promtool "apt-get install prometheus"
}

# The swarm stack's config (docker/prometheus/), with its rules, on loopback addresses.
write_config() {
  mkdir -p "$DIR/data"
  if [ ! -s "$TOKEN_FILE" ]; then
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE") || die "cannot write $TOKEN_FILE"
  fi
  /usr/bin/python3 "$SERVICES_DIR/prometheus/loopback.py" prometheus "$ROOT/docker/prometheus/prometheus.yml" "$CONFIG" \
    --prometheus-port "$PROMETHEUS_PORT" --alertmanager-port "$ALERTMANAGER_PORT" \
    --poirot "127.0.0.1:$POIROT_METRICS_PORT" --poirot-metrics-token-file "$TOKEN_FILE" \
    || die "cannot adapt docker/prometheus/prometheus.yml"
  promtool check config "$CONFIG" >"$DIR/promtool.log" 2>&1 || {
    cat "$DIR/promtool.log" >&2
    die "promtool rejects $CONFIG"
  }
}

ready() {
  curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
}

up() {
  install
  if is_running "$NAME"; then
    say "$NAME: already running"
    return 0
  fi
  require_free_port "$NAME" "$PROMETHEUS_PORT"
  write_config
  start_bg "$NAME" prometheus \
    --config.file="$CONFIG" \
    --storage.tsdb.path="$DIR/data" \
    --storage.tsdb.retention.time=1d \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-lifecycle \
    --enable-feature=exemplar-storage
  wait_for "$NAME" 60 ready
  say "$NAME: ready on http://127.0.0.1:$PROMETHEUS_PORT (scrapes poirot on 127.0.0.1:$POIROT_METRICS_PORT)"
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status) status_line "$NAME" "http://127.0.0.1:$PROMETHEUS_PORT" ;;
  check-config) install && write_config && cat "$DIR/promtool.log" ;;
  install-packages) shift && apt_install "$@" ;;
  *) die "usage: prometheus.sh install|up|down|status|check-config|install-packages PKG..." ;;
esac
