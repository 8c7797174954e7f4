#!/usr/bin/env bash
# Peer benchmark (`make bench-peers`): `poirot run` next to the OpenTelemetry collector
# (Kafka receiver -> span-metrics connector -> Prometheus exporter), both computing the same
# RED metrics from the same Kafka topics. Not part of `make test`: the default run takes a
# while. docs/benchmarks.md ("Peer benchmark") has what it measures and the figures.
#
#   1. builds poirot (release) and the collector (scripts/services/otelcol/go-build.sh,
#      cached under $POIROT_CACHE/bin after the first time);
#   2. starts Kafka (scripts/services/kafka.sh) unless one answers on $KAFKA_PORT, and stops
#      again what it started;
#   3. loads two topics of BENCH_PARTITIONS partitions with `poirot simulate`: the same
#      BENCH_TRACES traces as Jaeger protobuf (one span per message, keyed by trace id, as the
#      Jaeger collector writes) and as OTLP protobuf (50-span requests, no key, as an
#      OpenTelemetry collector writes); a topic that already holds them is kept;
#   4. per topic, BENCH_ROUNDS rounds, each consumer in turn, each with a fresh consumer
#      group from the start of the topic: starts it, polls its /metrics until the calls
#      counted (the sum of traces_span_metrics_calls_total) reach the spans loaded, takes
#      wall time since its start, CPU time (utime+stime of all its threads, /proc/PID/stat)
#      and peak RSS (VmHWM) there, and stops it;
#   5. checks that every run ended with the same traces_span_metrics_calls_total series (on
#      the labels both expose) and the same duration histogram buckets, and fails otherwise;
#   6. prints the medians (and writes them with every round to BENCH_OUT).
#
# Knobs (environment): BENCH_TRACES (142857, about 2,000,000 spans), BENCH_ROUNDS (3),
# BENCH_PARTITIONS (6), BENCH_TIMEOUT (s per run, 1800), BENCH_POLL (s between scrapes, 0.2),
# BENCH_POIROT_PORT (19464), BENCH_OTELCOL_PORT (19465), BENCH_RELOAD=1 (load the topics
# again), BENCH_ENCODINGS ("jaeger-proto otlp-proto", or one of them), BENCH_POIROT_ENV (more
# VAR=VALUE settings for poirot run, e.g. POIROT_KAFKA__REPARTITION=never), BENCH_OUT
# (target/bench-peers.md), KAFKA_PORT and the other ports of lib.sh, CARGO.
# shellcheck source=services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/services/lib.sh"
# shellcheck source=services/otelcol/go-build.sh
source "$SERVICES_DIR/otelcol/go-build.sh"

BENCH_TRACES=${BENCH_TRACES:-142857}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_PARTITIONS=${BENCH_PARTITIONS:-6}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
BENCH_POLL=${BENCH_POLL:-0.2}
BENCH_POIROT_PORT=${BENCH_POIROT_PORT:-19464}
BENCH_OTELCOL_PORT=${BENCH_OTELCOL_PORT:-19465}
BENCH_RELOAD=${BENCH_RELOAD:-0}
BENCH_ENCODINGS=${BENCH_ENCODINGS:-jaeger-proto otlp-proto}
BENCH_POIROT_ENV=${BENCH_POIROT_ENV:-}
CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BENCH_OUT=${BENCH_OUT:-$TARGET_DIR/bench-peers.md}
POIROT=$TARGET_DIR/release/poirot
BROKERS=127.0.0.1:$KAFKA_PORT
WORK=$POIROT_RUN/bench-peers
RUN_ID=$(date +%Y%m%d-%H%M%S)-$$
RESULTS=$WORK/results-$RUN_ID.tsv
# The collector's connector is set up to match src/analysis/red.rs: namespace
# traces.span.metrics, the default dimensions (service.name, span.name, span.kind,
# status.code), unit ms and these bounds (red::BUCKETS_MS).
BUCKETS="2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, 200ms, 400ms, 800ms, 1s, 1400ms, 2s, 5s, 10s, 15s"
# The labels compared: poirot's RED labels, and le of the histogram buckets.
COMPARED_LABELS="service_name span_name span_kind status_code le"

note() { echo "bench-peers: $*" >&2; }
fail() {
  echo "bench-peers: FAILED: $*" >&2
  exit 1
}

[[ $BENCH_TRACES =~ ^[1-9][0-9]*$ ]] || fail "BENCH_TRACES must be a positive whole number"
[[ $BENCH_ROUNDS =~ ^[1-9][0-9]*$ ]] || fail "BENCH_ROUNDS must be a positive whole number"
[[ $BENCH_PARTITIONS =~ ^[1-9][0-9]*$ ]] || fail "BENCH_PARTITIONS must be a positive whole number"
read -r -a ENCODINGS <<<"$BENCH_ENCODINGS"
[ ${#ENCODINGS[@]} -gt 0 ] || fail "BENCH_ENCODINGS names no encoding"
for enc in "${ENCODINGS[@]}"; do
  case $enc in jaeger-proto | otlp-proto) ;; *) fail "BENCH_ENCODINGS: $enc is not jaeger-proto or otlp-proto" ;; esac
done
read -r -a POIROT_EXTRA_ENV <<<"$BENCH_POIROT_ENV"
for v in "${POIROT_EXTRA_ENV[@]}"; do
  [[ $v =~ ^POIROT_[A-Z0-9_]+=.*$ ]] || fail "BENCH_POIROT_ENV: $v is not POIROT_...=VALUE"
done
need curl "apt-get install curl"
mkdir -p "$WORK" "$(dirname "$BENCH_OUT")"

# --- cleanup: only what this script started, by pid --------------------------------------
CURRENT_PID=""
KAFKA_STARTED=0
# stop_pid PID: TERM, KILL after 30 s, reap.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  if [ -n "$CURRENT_PID" ]; then
    stop_pid "$CURRENT_PID"
  fi
  if [ "$KAFKA_STARTED" = 1 ]; then
    note "stopping the Kafka this run started"
    "$SERVICES_DIR/kafka.sh" down || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. builds ---------------------------------------------------------------------------
note "building poirot (release)"
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR "$CARGO" build --release --quiet) || fail "cargo build --release"
OTELCOL=$(otelcol_bin)
if [ ! -x "$OTELCOL" ]; then
  build_start=$SECONDS
  go_build_otelcol
  OTELCOL_BUILD_SECONDS=$((SECONDS - build_start))
  note "the collector took $OTELCOL_BUILD_SECONDS s to build"
fi

# --- 2. Kafka ----------------------------------------------------------------------------
if port_in_use "$KAFKA_PORT"; then
  note "using the Kafka that answers on $BROKERS"
else
  note "no Kafka on $BROKERS: starting one (stopped again at the end)"
  KAFKA_STARTED=1
  "$SERVICES_DIR/kafka.sh" up
fi
kafka_topics() { "$SERVICES_DIR/kafka.sh" topics "$@"; }

# end_offsets TOPIC: messages in TOPIC (the sum of its partitions' end offsets; 0 if none).
end_offsets() {
  "$SERVICES_DIR/kafka.sh" run org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BROKERS" \
    --topic "$1" --time -1 2>/dev/null | awk -F: '{ s += $NF } END { print s + 0 }'
}

topic_exists() { kafka_topics --list 2>/dev/null | grep -qx -- "$1"; }

# delete_topic TOPIC: delete it and wait until it is gone.
delete_topic() {
  topic_exists "$1" || return 0
  kafka_topics --delete --topic "$1" >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do
    topic_exists "$1" || return 0
    sleep 1
  done
  fail "topic $1 was not deleted within 60 s"
}

# --- 3. the topics -----------------------------------------------------------------------
# load_topic FORMAT TOPIC: the spans in TOPIC (loads it unless it holds them already).
load_topic() {
  local format=$1 topic=$2 stamp spans msgs log
  stamp=$WORK/$topic.stamp
  if [ "$BENCH_RELOAD" != 1 ] && [ -f "$stamp" ]; then
    read -r spans msgs <"$stamp"
    if [ "$(end_offsets "$topic")" = "$msgs" ]; then
      note "$topic already holds $spans spans in $msgs messages"
      echo "$spans"
      return 0
    fi
  fi
  rm -f "$stamp"
  delete_topic "$topic"
  kafka_topics --create --topic "$topic" --partitions "$BENCH_PARTITIONS" --replication-factor 1 >/dev/null
  log=$WORK/simulate-$topic.log
  note "loading $topic: poirot simulate --traces $BENCH_TRACES --format $format"
  local start=$SECONDS
  if ! POIROT_LOG=info "$POIROT" simulate --traces "$BENCH_TRACES" --brokers "$BROKERS" --topic "$topic" \
    --format "$format" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "poirot simulate into $topic (log: $log)"
  fi
  spans=$(grep -o 'spans=[0-9]*' "$log" | tail -n 1 | cut -d= -f2)
  [ -n "$spans" ] || fail "poirot simulate did not say how many spans it wrote (log: $log)"
  msgs=$(end_offsets "$topic")
  note "$topic: $spans spans in $msgs messages, loaded in $((SECONDS - start)) s"
  echo "$spans $msgs" >"$stamp"
  echo "$spans"
}

topic_of() { echo "bench-peers-$1-${BENCH_TRACES}t-${BENCH_PARTITIONS}p"; }
SPANS=""
for enc in "${ENCODINGS[@]}"; do
  n=$(load_topic "$enc" "$(topic_of "$enc")")
  [ -z "$SPANS" ] || [ "$n" = "$SPANS" ] || fail "the topics hold different spans: $SPANS and $n"
  SPANS=$n
done

# --- 4. the runs -------------------------------------------------------------------------
# calls_sum PORT: the sum of traces_span_metrics_calls_total on 127.0.0.1:PORT/metrics
# (empty while it does not answer). A sample is `name{labels} value`, no timestamp.
calls_sum() {
  local body
  body=$(curl -fsS --noproxy '*' --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null) || return 0
  awk '/^traces_span_metrics_calls_total[{ ]/ { s += $NF } END { printf "%.0f\n", s }' <<<"$body"
}

# proc_cpu PID: utime + stime of every thread of PID, in seconds.
CLK_TCK=$(getconf CLK_TCK)
proc_cpu() {
  # Fields after the command name (which may hold spaces): state is 3, utime 14, stime 15.
  sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$CLK_TCK" '{ printf "%.2f\n", ($12 + $13) / hz }'
}

# proc_hwm_kib PID: peak resident memory (VmHWM) in KiB.
proc_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# A child's environment without poirot settings of the caller (no Neo4j, no search index,
# no other config file): poirot run computes RED and its analyses, and serves /metrics.
scrubbed_env() {
  local v
  SCRUB=()
  for v in $(compgen -e); do
    case $v in POIROT_*__* | POIROT_CONFIG) SCRUB+=(-u "$v") ;; esac
  done
}

write_otelcol_config() {
  local file=$1 topic=$2 encoding=$3 group=$4
  cat >"$file" <<EOF
# Written by scripts/bench-peers.sh for one run.
receivers:
  kafka:
    brokers: ["$BROKERS"]
    client_id: bench-peers-otelcol
    group_id: $group
    initial_offset: earliest
    traces:
      topics: ["$topic"]
      encoding: $encoding
connectors:
  spanmetrics:
    namespace: traces.span.metrics
    aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE
    histogram:
      unit: ms
      explicit:
        buckets: [$BUCKETS]
    # The default is 60 s: the last counts would show up to a minute late.
    metrics_flush_interval: 1s
exporters:
  prometheus:
    endpoint: 127.0.0.1:$BENCH_OTELCOL_PORT
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [spanmetrics]
    metrics:
      receivers: [spanmetrics]
      exporters: [prometheus]
EOF
}

# run_one KIND ENCODING TOPIC ROUND: one consumer from start to drained; appends a line to
# RESULTS and keeps the final scrape in $WORK/$RUN_ID-KIND-ENCODING-ROUND.prom.
run_one() {
  local kind=$1 enc=$2 topic=$3 round=$4 group port log pid t0 t1 n cpu hwm wall
  group=bench-peers-$kind-$enc-$RUN_ID-$round
  log=$WORK/$RUN_ID-$kind-$enc-$round.log
  case $kind in
    poirot) port=$BENCH_POIROT_PORT ;;
    otelcol) port=$BENCH_OTELCOL_PORT ;;
  esac
  require_free_port "$kind" "$port"
  case $kind in
    poirot)
      scrubbed_env
      # The last traces close when their partition turned idle (read to its end, then
      # idle_timeout of reading time) and event time, moving with the clock from then on,
      # passed their last span by inactivity_gap + out_of_orderness. The defaults (30 s,
      # 10 s, 5 s) would add 45 s to every run; these are the values the end-to-end tests
      # use on the same simulated traces (tests/run.rs), and they leave about 4 s. RED
      # counts every span whatever they are; everything else is poirot's default.
      t0=$EPOCHREALTIME
      env "${SCRUB[@]}" POIROT_LOG=warn POIROT_ASSEMBLY__IDLE_TIMEOUT=1s \
        POIROT_ASSEMBLY__INACTIVITY_GAP=2s POIROT_ASSEMBLY__OUT_OF_ORDERNESS=1s "${POIROT_EXTRA_ENV[@]}" \
        "$POIROT" run --brokers "$BROKERS" --topic "$topic" --group "$group" \
        --listen "127.0.0.1:$port" >"$log" 2>&1 </dev/null &
      pid=$!
      ;;
    otelcol)
      local encoding=${enc/-/_}
      write_otelcol_config "$WORK/$RUN_ID-otelcol-$enc-$round.yaml" "$topic" "$encoding" "$group"
      t0=$EPOCHREALTIME
      "$OTELCOL" --config "$WORK/$RUN_ID-otelcol-$enc-$round.yaml" >"$log" 2>&1 </dev/null &
      pid=$!
      ;;
  esac
  CURRENT_PID=$pid
  while :; do
    sleep "$BENCH_POLL"
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      fail "$kind on $topic exited before it counted every span (log: $log)"
    fi
    n=$(calls_sum "$port")
    if [ "${n:-0}" -ge "$SPANS" ]; then
      t1=$EPOCHREALTIME
      cpu=$(proc_cpu "$pid")
      hwm=$(proc_hwm_kib "$pid")
      break
    fi
    if awk -v a="$EPOCHREALTIME" -v b="$t0" -v t="$BENCH_TIMEOUT" 'BEGIN { exit !(a - b > t) }'; then
      tail -n 20 "$log" >&2
      fail "$kind on $topic counted ${n:-nothing} of $SPANS spans in ${BENCH_TIMEOUT}s (log: $log)"
    fi
  done
  wall=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.2f", a - b }')
  curl -fsS --noproxy '*' --max-time 5 "http://127.0.0.1:$port/metrics" >"$WORK/$RUN_ID-$kind-$enc-$round.prom" ||
    fail "$kind: the final scrape failed"
  stop_pid "$pid"
  CURRENT_PID=""
  [ "$n" -eq "$SPANS" ] || fail "$kind on $topic counted $n spans, more than the $SPANS loaded"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$enc" "$round" "$wall" "$cpu" "$hwm" >>"$RESULTS"
  note "$(printf '%-7s %-12s round %s: %7.2f s wall, %7.2f s CPU, %6d MiB peak RSS' \
    "$kind" "$enc" "$round" "$wall" "$cpu" "$((hwm / 1024))")"
  # poirot's internal topic (re-keyed spans and links) of this group: not needed again.
  [ "$kind" != poirot ] || delete_topic "$group-repartition"
}

note "$SPANS spans per topic; $BENCH_ROUNDS rounds of each consumer on each topic"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BENCH_START=$SECONDS
for enc in "${ENCODINGS[@]}"; do
  topic=$(topic_of "$enc")
  for round in $(seq 1 "$BENCH_ROUNDS"); do
    run_one poirot "$enc" "$topic" "$round"
    run_one otelcol "$enc" "$topic" "$round"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- 5. same results ---------------------------------------------------------------------
# normalise FAMILY FILE: the samples of FAMILY in FILE as `label=value,... <tab> value`, only
# the COMPARED_LABELS in a fixed order (le as a number), equal keys summed, sorted.
# Other label names go to FILE.extra, one a line.
normalise() {
  awk -v fam="$1" -v keep="$COMPARED_LABELS" -v extra="$2.extra" '
    BEGIN { nk = split(keep, order, " "); for (i = 1; i <= nk; i++) kept[order[i]] = 1 }
    index($0, fam "{") == 1 {
      s = substr($0, length(fam) + 2)
      delete lab
      # name="value" pairs; values may hold escaped quotes, commas and braces.
      while (s !~ /^}/) {
        eq = index(s, "=")
        if (eq == 0) break
        name = substr(s, 1, eq - 1)
        s = substr(s, eq + 2)
        val = ""
        while (1) {
          c = substr(s, 1, 1)
          if (c == "") break
          if (c == "\\") { val = val substr(s, 1, 2); s = substr(s, 3); continue }
          s = substr(s, 2)
          if (c == "\"") break
          val = val c
        }
        if (name in kept) lab[name] = val; else seen[name] = 1
        sub(/^,/, "", s)
      }
      value = s
      sub(/^} */, "", value)
      sub(/ .*/, "", value)
      if ("le" in lab && lab["le"] != "+Inf") lab["le"] = sprintf("%g", lab["le"] + 0)
      key = ""
      for (i = 1; i <= nk; i++) if (order[i] in lab) key = key order[i] "=\"" lab[order[i]] "\","
      sum[key] += value
    }
    END {
      for (k in sum) printf "%s\t%.0f\n", k, sum[k]
      for (n in seen) print n > extra
    }' "$2" | LC_ALL=C sort
}

verdict=""
ref=""
for f in "$WORK/$RUN_ID"-*.prom; do
  for fam in traces_span_metrics_calls_total traces_span_metrics_duration_milliseconds_bucket; do
    rm -f "$f.extra"
    normalise "$fam" "$f" >"$f.$fam"
    [ -s "$f.$fam" ] || fail "no $fam samples in $f"
  done
  if [ -z "$ref" ]; then
    ref=$f
    continue
  fi
  for fam in traces_span_metrics_calls_total traces_span_metrics_duration_milliseconds_bucket; do
    if ! cmp -s "$ref.$fam" "$f.$fam"; then
      echo "bench-peers: $fam differs between $(basename "$ref") and $(basename "$f"):" >&2
      diff "$ref.$fam" "$f.$fam" | head -n 40 >&2 || true
      verdict="$verdict $fam"
    fi
  done
done
[ -z "$verdict" ] || fail "the consumers disagree on:$verdict (scrapes in $WORK)"
SERIES=$(wc -l <"$ref.traces_span_metrics_calls_total")
extra_labels() {
  local kind=$1 f
  for f in "$WORK/$RUN_ID-$kind"-*.prom.extra; do
    if [ -f "$f" ]; then cat "$f"; fi
  done | sort -u | paste -sd, - | sed 's/,/, /g'
}
EXTRA_POIROT=$(extra_labels poirot)
EXTRA_OTELCOL=$(extra_labels otelcol)
note "all $((BENCH_ROUNDS * 2 * ${#ENCODINGS[@]})) runs agree: $SERIES calls series, summing to $SPANS, and the same duration buckets"

# --- 6. the table ------------------------------------------------------------------------
# median KIND ENCODING EXPR: the median over the rounds of the awk expression EXPR of a
# result line (wall s $4, CPU s $5, peak RSS KiB $6, `spans`).
median() {
  awk -F'\t' -v k="$1" -v e="$2" -v spans="$SPANS" "\$1 == k && \$2 == e { print $3 }" "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { printf f, v }'; }

declare -A SPCPU SPS
{
  echo "## Peer benchmark: poirot run vs the OpenTelemetry collector"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), poirot $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), collector $(basename "$OTELCOL");"
  echo "$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), load average $LOAD_BEFORE before, $LOAD_AFTER after;"
  [ -z "$BENCH_POIROT_ENV" ] || echo "poirot run also with: $BENCH_POIROT_ENV;"
  echo "$BENCH_TRACES traces = $SPANS spans per topic, $BENCH_PARTITIONS partitions, medians of $BENCH_ROUNDS rounds (each consumer alone, fresh group, from the start of the topic, until its /metrics counted every span)."
  echo
  echo "| consumer | topic | wall s | CPU s | spans/s | spans per CPU-s | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for enc in "${ENCODINGS[@]}"; do
    for kind in poirot otelcol; do
      # shellcheck disable=SC2016 # awk expressions, expanded by awk
      wall=$(median "$kind" "$enc" '$4')
      # shellcheck disable=SC2016
      cpu=$(median "$kind" "$enc" '$5')
      # shellcheck disable=SC2016
      sps=$(median "$kind" "$enc" 'spans / $4')
      # shellcheck disable=SC2016
      spc=$(median "$kind" "$enc" 'spans / $5')
      # shellcheck disable=SC2016
      rss=$(median "$kind" "$enc" '$6 / 1024')
      SPS[$kind-$enc]=$sps
      SPCPU[$kind-$enc]=$spc
      name="poirot run"
      [ "$kind" = poirot ] || name="otelcol (kafka → spanmetrics → prometheus)"
      echo "| $name | $enc | $(fmt "$wall" %.1f) | $(fmt "$cpu" %.1f) | $(fmt "$sps" %.0f) | $(fmt "$spc" %.0f) | $(fmt "$rss" %.0f) |"
    done
  done
  echo
  for enc in "${ENCODINGS[@]}"; do
    echo "- $enc: poirot/collector spans per CPU-s $(awk -v a="${SPCPU[poirot-$enc]}" -v b="${SPCPU[otelcol-$enc]}" 'BEGIN { printf "%.2f", a / b }'),"\
      "spans/s $(awk -v a="${SPS[poirot-$enc]}" -v b="${SPS[otelcol-$enc]}" 'BEGIN { printf "%.2f", a / b }')"
  done
  echo
  echo "Same results: every run ended with the same $SERIES traces_span_metrics_calls_total series (sum $SPANS) and the same duration buckets, compared on the labels ${COMPARED_LABELS// /, }."
  echo "Labels left out of the comparison: poirot ${EXTRA_POIROT:-none}; collector ${EXTRA_OTELCOL:-none}."
  echo
  echo "Every round (wall s, CPU s, peak RSS MiB):"
  echo
  echo "| consumer | topic | round | wall s | CPU s | peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|"
  awk -F'\t' '{ printf "| %s | %s | %s | %.2f | %.2f | %.0f |\n", $1, $2, $3, $4, $5, $6 / 1024 }' "$RESULTS"
  echo
  echo "Runs took $((SECONDS - BENCH_START)) s in all.${OTELCOL_BUILD_SECONDS:+ The collector was built first, in $OTELCOL_BUILD_SECONDS s.}"
} >"$BENCH_OUT"
cat "$BENCH_OUT"
note "written to $BENCH_OUT"
