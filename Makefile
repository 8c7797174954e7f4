# poirot: the two commands a person needs are `make run` and `make test`.
CARGO ?= cargo
DEMO_LISTEN ?= 127.0.0.1:8080
SERVICES := scripts/services/services.sh

.PHONY: run test unit lint fuzz fuzz-smoke fuzz-check build bench bench-peers fmt clean services-up services-down services-status services-test stack-check browser-test image

build:
	$(CARGO) build --release

## The built-in demo pipeline: no servers needed. Open the printed address.
run: build
	@echo "poirot demo: web page http://$(DEMO_LISTEN)/  metrics http://$(DEMO_LISTEN)/metrics  (Ctrl-C stops)"
	./target/release/poirot demo --listen $(DEMO_LISTEN)

## The whole test suite: lints, unit/property/CLI tests, every fuzz target for 5 s, the real
## servers (which include the dashboard and alerting test of the stack's configs), then the
## deployment checks, and the live page in a real browser.
test: lint unit fuzz-check services-test stack-check browser-test

unit:
	$(CARGO) test --all-targets
	$(CARGO) test --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --lib --no-default-features -- -D warnings

## Fuzzing (cargo-fuzz, libFuzzer, on the installed nightly toolchain; README "Fuzzing").
## fuzz-smoke: every target for FUZZ_SECONDS (10) s, failing on a crash.
## fuzz: the long run, every target (or FUZZ_TARGETS) for FUZZ_SECONDS (600) s.
fuzz-smoke:
	CARGO=$(CARGO) scripts/fuzz.sh smoke

## The short run `make test` includes: every target for 5 s from its seeds.
fuzz-check:
	FUZZ_SECONDS=5 CARGO=$(CARGO) scripts/fuzz.sh smoke

fuzz:
	CARGO=$(CARGO) scripts/fuzz.sh long $(FUZZ_TARGETS)

## Real servers (Kafka, Neo4j, OpenSearch, Prometheus, Alertmanager, Jaeger, HotROD) on 127.0.0.1.
services-up:
	$(SERVICES) up

services-down:
	$(SERVICES) down

services-status:
	$(SERVICES) status

## Brings the servers up, runs tests/services.rs against them, and stops them again
## (KEEP_SERVICES=1 leaves them running).
services-test:
	scripts/services/run-tests.sh

## The live page in Debian's chromium (installed when missing, as is playwright-core);
## the screenshot is target/test-artifacts/page.png.
browser-test:
	scripts/browser/setup.sh
	$(CARGO) test --test browser -- --ignored

## Static checks of docker/, stack.yml and dashboards/: hadolint, docker stack config,
## promtool (config, rules, rule unit tests), amtool, dashboard JSON and PromQL.
stack-check:
	scripts/stack-check.sh

## The container image (needs a Docker engine; none on the test machines).
image:
	docker build -f docker/Dockerfile -t poirot:0.1.0 .

bench:
	$(CARGO) bench --bench pipeline

## The peer benchmark (not in `make test`: the default run takes a while): `poirot run` next to
## the OpenTelemetry collector on the same Kafka topics; builds the collector once, starts
## Kafka if none runs (docs/benchmarks.md "Peer benchmark"). BENCH_TRACES=20000 BENCH_ROUNDS=1
## for a quick run.
bench-peers:
	CARGO=$(CARGO) scripts/bench-peers.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
