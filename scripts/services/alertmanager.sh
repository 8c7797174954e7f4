#!/usr/bin/env bash
# Alertmanager (and amtool) from Debian's `prometheus-alertmanager` package, run by hand on 127.0.0.1.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAME=alertmanager
DIR=$POIROT_RUN/alertmanager
BIN=prometheus-alertmanager

install() {
  # loopback.py adapts the stack's config with Debian's python3-yaml.
  "$SERVICES_DIR/prometheus.sh" install-packages python3-yaml
  if ! command -v "$BIN" >/dev/null 2>&1; then
    # prometheus.sh knows how to install Debian packages without starting them.
    "$SERVICES_DIR/prometheus.sh" install-packages prometheus-alertmanager
  fi
  need "$BIN" "apt-get install prometheus-alertmanager"
  need amtool "apt-get install prometheus-alertmanager"
}

ready() {
  curl -fsS "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready"
}

up() {
  install
  if is_running "$NAME"; then
    say "$NAME: already running"
    return 0
  fi
  require_free_port "$NAME" "$ALERTMANAGER_PORT"
  mkdir -p "$DIR/data"
  # The swarm stack's routing (docker/alertmanager/), its receivers pointed at loopback.
  /usr/bin/python3 "$SERVICES_DIR/prometheus/loopback.py" alertmanager \
    "$ROOT/docker/alertmanager/alertmanager.yml" "$DIR/alertmanager.yml" || die "cannot adapt alertmanager.yml"
  amtool check-config "$DIR/alertmanager.yml" >"$DIR/amtool.log" 2>&1 || {
    cat "$DIR/amtool.log" >&2
    die "amtool rejects alertmanager.yml"
  }
  # An empty cluster address turns gossip off (it would listen on 0.0.0.0:9094).
  start_bg "$NAME" "$BIN" \
    --config.file="$DIR/alertmanager.yml" \
    --storage.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
    --cluster.listen-address=
  wait_for "$NAME" 60 ready
  say "$NAME: ready on http://127.0.0.1:$ALERTMANAGER_PORT"
}

case "${1:-status}" in
  install) install ;;
  up) up ;;
  down) stop "$NAME" ;;
  status) status_line "$NAME" "http://127.0.0.1:$ALERTMANAGER_PORT" ;;
  *) die "usage: alertmanager.sh install|up|down|status" ;;
esac
