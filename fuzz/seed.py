#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made by poirot itself.

    fuzz/seed.py POIROT_BINARY CORPUS_DIR

`poirot simulate` writes the demo pipeline's traces in every format (a clean
batch, and one with lost messages, recursive chains and failed steps); each
record of those files becomes a seed of its format's target, a few of every
format seed `auto_detect`, and small whole files seed `pipeline` (which reads a
file as `poirot replay` does). Seeds are files named `seed-*` in
CORPUS_DIR/<target>/, rewritten on every run; what libFuzzer adds beside them
is kept.
"""

import os
import subprocess
import sys
import tempfile

FORMATS = {
    "jaeger-proto": "jaeger_proto",
    "jaeger-json": "jaeger_json",
    "jaeger-ui": "jaeger_ui",
    "otlp-proto": "otlp_proto",
    "otlp-json": "otlp_json",
}

# (name, simulator seed, extra simulate arguments)
BATCHES = [
    ("clean", 1, []),
    ("faulty", 2, ["--loss-rate", "0.4", "--loop-rate", "0.4", "--s3", "ERROR"]),
]
# A record of jaeger-proto or jaeger-json is one span: a batch of 12 traces gives
# many small seeds. A record of the other formats holds many spans (a whole
# file for jaeger-ui, 50 spans for OTLP): one trace per record keeps each seed
# a few KB, and libFuzzer fast; the variety comes from one seed per fault.
SPAN_TRACES = 12
ONE_TRACE_VARIANTS = [
    [],
    ["--loss-rate", "1"],
    ["--loop-rate", "1"],
    ["--s3", "ERROR"],
    ["--s3", "PROBABILISTIC"],
    ["--loss-rate", "1", "--loop-rate", "1", "--s3", "ERROR"],
]

# Whole files for the pipeline target stay small so that libFuzzer mutates them quickly.
PIPELINE_TRACES = 3
# Most seeds per format and batch: more add little coverage and slow the start.
MAX_RECORDS = 60
AUTO_PER_FORMAT = 8


def records(fmt, data):
    """Splits a file `poirot simulate` wrote into its records."""
    if fmt in ("jaeger-proto", "otlp-proto"):
        out, pos = [], 0
        while pos < len(data):
            n, shift = 0, 0
            while True:
                b = data[pos]
                pos += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            out.append(data[pos : pos + n])
            pos += n
        return out
    if fmt == "jaeger-ui":
        return [data]
    return [line + b"\n" for line in data.split(b"\n") if line.strip()]


def simulate(poirot, fmt, traces, extra, path):
    cmd = [poirot, "simulate", "--format", fmt, "--traces", str(traces), "--out", path] + extra
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if run.returncode != 0:
        sys.stderr.write(run.stderr.decode(errors="replace"))
        sys.exit(f"fuzz/seed.py: {' '.join(cmd)} failed")
    with open(path, "rb") as f:
        return f.read()


def write(corpus, target, name, data, counts):
    counts[target] = counts.get(target, 0) + 1
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    poirot, corpus = sys.argv[1], sys.argv[2]
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out")
        for fmt, target in FORMATS.items():
            for batch, seed, extra in BATCHES:
                if fmt in ("jaeger-proto", "jaeger-json"):
                    more = extra + ["--seed", str(seed)]
                    recs = records(fmt, simulate(poirot, fmt, SPAN_TRACES, more, path))[:MAX_RECORDS]
                elif batch == "clean":
                    recs = []
                    for k, variant in enumerate(ONE_TRACE_VARIANTS):
                        more = variant + ["--seed", str(100 + k)]
                        recs += records(fmt, simulate(poirot, fmt, 1, more, path))
                else:
                    recs = []
                for i, r in enumerate(recs):
                    write(corpus, target, f"{batch}-{i:03}", r, counts)
                for i, r in enumerate(recs[:AUTO_PER_FORMAT]):
                    write(corpus, "auto_detect", f"{fmt}-{batch}-{i:03}", r, counts)
                whole = simulate(poirot, fmt, PIPELINE_TRACES, extra + ["--seed", str(seed)], path)
                write(corpus, "pipeline", f"{fmt}-{batch}", whole, counts)
    print("seeds: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
