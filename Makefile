# Quick start: `make demo`, then `make test`. Everything provisioned lives in .tenantry/ (ignored).
SHELL := /bin/bash
CARGO ?= cargo
ENV := source .tenantry/env

.PHONY: setup build demo test lint openapi clean-data llm llm-stop

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

demo: build
	@$(ENV) && python3 scripts/demo.py

# Tests run against the release profile: one dependency build serves the binary and the tests.
test: setup
	$(ENV) && $(CARGO) test --release --locked --workspace -- --test-threads=2

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

# Regenerate the committed OpenAPI document after changing the API.
openapi:
	$(CARGO) run --release --locked -q -- openapi > schemas/openapi.json

clean-data:
	rm -rf .tenantry/data .tenantry/demo .tenantry/demo-bench

# A real local LLM (OpenAI-compatible, 127.0.0.1:8088) for the end-to-end answer test. The server
# wheel is built once per machine (~10-18 min) and cached in ~/.cache/tenantry/llm.
llm:
	@scripts/llm.sh

llm-stop:
	@scripts/llm.sh stop
