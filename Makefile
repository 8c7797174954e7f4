# poirot: the two commands a person needs are `make run` and `make test`.
CARGO ?= cargo
DEMO_LISTEN ?= 127.0.0.1:8080

.PHONY: run test lint build bench fmt clean

build:
	$(CARGO) build --release

## The built-in demo pipeline: no servers needed. Open the printed address.
run: build
	@echo "poirot demo: web page http://$(DEMO_LISTEN)/  metrics http://$(DEMO_LISTEN)/metrics  (Ctrl-C stops)"
	./target/release/poirot demo --listen $(DEMO_LISTEN)

## The whole test suite.
test: lint
	$(CARGO) test --all-targets
	$(CARGO) test --doc

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench pipeline

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
