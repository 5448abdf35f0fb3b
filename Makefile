# aiproxy — the two commands of the README are `make run` and `make ci`.
SHELL := /bin/bash
CARGO ?= cargo
MUSL_X86 := x86_64-unknown-linux-musl
MUSL_ARM := aarch64-unknown-linux-musl

.PHONY: run build test peers lint fmt clippy ci static static-x86 static-arm bench fuzz clean

## run: build and start the gateway (the embedded demo config when there is no ./config.yaml)
run:
	$(CARGO) run --release --quiet -- serve $(ARGS)

build:
	$(CARGO) build --release

## peers: install the pinned real test peers (npm MCP servers + conformance, Python SDKs)
peers:
	./tests/peers/install.sh

## test: unit + integration tests (installs the test peers first)
test: peers
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --profile ci; \
	else \
		$(CARGO) test -- --test-threads 4; \
	fi

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

lint: fmt clippy

## static: release builds for x86_64 and aarch64 musl, checked static with `file`
static: static-x86

static-x86:
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --release --target $(MUSL_X86)
	@file target/$(MUSL_X86)/release/aiproxy | tee /dev/stderr | grep -Eq 'static(-pie)? linked|statically linked'
	@ls -l target/$(MUSL_X86)/release/aiproxy

## ci: everything CI checks: format, lints, tests, the static build
ci: lint test static

## bench: release builds + the benchmark suite (bench/), writes bench/RESULTS.md (not in CI)
bench:
	./bench/run.sh

## fuzz: each cargo-fuzz target for FUZZ_SECS (60) seconds; crashes kept in fuzz/regressions/ (needs nightly; not in CI)
fuzz:
	./fuzz/run.sh

clean:
	$(CARGO) clean
