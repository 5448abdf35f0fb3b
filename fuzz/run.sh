#!/usr/bin/env bash
# `make fuzz`: run every cargo-fuzz target for a bounded time (FUZZ_SECS, default 60 s each),
# starting from the seeds and the repository's fixtures. A crash is copied to
# regressions/<target>/ (replayed by `cargo test --no-default-features` in fuzz/) and the
# script fails. Needs a nightly toolchain; installs cargo-fuzz (pinned) when it is missing.
# CI runs it after `make ci` (`.ci/run`: FUZZ_SECS=15).
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-60}
targets=(${FUZZ_TARGETS:-sse_codec jsonrpc anthropic_stream openai_answer config http_head http_chunked request_body responses_stream responses_request})

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION:-0.13.1}" --locked

# The fixtures make good starting points; one leading byte is the targets' read size.
seed_from_fixtures() {
  local target=$1 dir=$2 ext=$3
  for f in "$dir"/*."$ext"; do
    [ -e "$f" ] || continue
    { printf '\x07'; cat "$f"; } > "corpus/$target/fixture-$(basename "$f")"
  done
}

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "regressions/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  case $t in
    sse_codec|anthropic_stream) seed_from_fixtures "$t" ../tests/fixtures/anthropic/stream sse ;;
    responses_stream) seed_from_fixtures "$t" ../tests/fixtures/openai_responses/stream sse ;;
    config) cp ../config.example.yaml "corpus/$t/example.yaml"
            cp ../tests/fixtures/config/*.yaml "corpus/$t/" 2>/dev/null || true ;;
  esac
  echo "== fuzzing $t for ${secs}s"
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- \
       -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
       -print_final_stats=1 2>&1 | tail -n 25; then
    failed+=("$t")
  fi
  for a in artifacts/"$t"/*; do
    [ -e "$a" ] || continue
    cp "$a" "regressions/$t/"
    echo "saved $(basename "$a") to fuzz/regressions/$t/ (replayed by: cd fuzz && cargo test --no-default-features)"
  done
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: no crash in ${targets[*]} (${secs}s each)"
