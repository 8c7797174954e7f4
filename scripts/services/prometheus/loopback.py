#!/usr/bin/python3
"""Adapts the stack's Prometheus and Alertmanager configs (docker/) to the test
harness: every address becomes a loopback one, so the tests run the very rules,
scrape job and routing the swarm stack deploys.

  loopback.py prometheus IN OUT --prometheus-port P --alertmanager-port A --poirot HOST:PORT
              [--poirot-metrics-token-file FILE]
  loopback.py alertmanager IN OUT

Prometheus: intervals of 2 s (tests wait seconds, not minutes), the poirot job's
swarm DNS discovery (tasks.poirot) becomes one static target, Alertmanager and
self-scrape targets move to loopback, other DNS-discovered jobs (Jaeger's own
metrics) are dropped, and rule files become absolute paths beside IN. The poirot
job's bearer token (a docker secret under /run/secrets in the stack) is read from
FILE instead, or dropped without --poirot-metrics-token-file; a poirot whose
/metrics is open ignores the token, one with run.metrics_token_file needs it.
Alertmanager: webhook receivers point at a closed loopback port (alerts stay
listed in the API; nothing leaves the machine); the routing is kept.
"""
import argparse
import os
import sys

import yaml  # Debian's python3-yaml

CLOSED_PORT_URL = "http://127.0.0.1:9/poirot-test-receiver"


def prometheus(cfg, src_dir, prometheus_port, alertmanager_port, poirot, poirot_token_file=None):
    cfg.setdefault("global", {})
    cfg["global"]["scrape_interval"] = "2s"
    cfg["global"]["evaluation_interval"] = "2s"
    cfg["rule_files"] = [os.path.abspath(os.path.join(src_dir, f)) for f in cfg.get("rule_files", [])]
    for am in cfg.get("alerting", {}).get("alertmanagers", []):
        am["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
    jobs = []
    for job in cfg.get("scrape_configs", []):
        name = job.get("job_name")
        if name == "poirot":
            job.pop("dns_sd_configs", None)
            job["static_configs"] = [{"targets": [poirot]}]
            if "authorization" in job:
                if poirot_token_file:
                    job["authorization"]["credentials_file"] = os.path.abspath(poirot_token_file)
                else:
                    del job["authorization"]
        elif name == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{prometheus_port}"]}]
        elif name == "alertmanager":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]
        elif "dns_sd_configs" in job:
            continue  # swarm-only targets
        jobs.append(job)
    cfg["scrape_configs"] = jobs
    return cfg


def alertmanager(cfg):
    for receiver in cfg.get("receivers", []):
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = CLOSED_PORT_URL
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["prometheus", "alertmanager"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--prometheus-port")
    ap.add_argument("--alertmanager-port")
    ap.add_argument("--poirot")
    ap.add_argument("--poirot-metrics-token-file")
    a = ap.parse_args()
    with open(a.src) as f:
        cfg = yaml.safe_load(f)
    if a.kind == "prometheus":
        if not (a.prometheus_port and a.alertmanager_port and a.poirot):
            sys.exit("prometheus needs --prometheus-port, --alertmanager-port and --poirot")
        cfg = prometheus(
            cfg, os.path.dirname(a.src), a.prometheus_port, a.alertmanager_port, a.poirot, a.poirot_metrics_token_file
        )
    else:
        cfg = alertmanager(cfg)
    with open(a.dst, "w") as f:
        f.write(f"# Generated from {a.src} by {os.path.basename(__file__)}: loopback addresses only.\n")
        yaml.safe_dump(cfg, f, sort_keys=False)


if __name__ == "__main__":
    main()
