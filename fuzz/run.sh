#!/usr/bin/env bash
# `make fuzz`: run every cargo-fuzz target for a bounded time (FUZZ_SECS, default 60 s each),
# starting from the seeds and the repository's fixtures. A crash is copied to
# regressions/<target>/ (replayed by `cargo test --no-default-features` in fuzz/) and the
# script fails. Needs a nightly toolchain; installs cargo-fuzz (pinned) when it is missing.
# CI runs it after `make ci` (`.ci/run`: FUZZ_SECS=15). Targets run FUZZ_JOBS at a time (default:
# one per CPU; libFuzzer uses one core each), after one build of them all.
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

mkdir -p logs
echo "== building the fuzz targets"
cargo +nightly fuzz build

# One target: fuzz it for $secs, its output in logs/<target>.log, its status in logs/<target>.rc.
fuzz_one() {
  local t=$1 rc=0
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 > "logs/$t.log" 2>&1 || rc=$?
  echo "$rc" > "logs/$t.rc"
}

jobs=${FUZZ_JOBS:-$(nproc)}
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "regressions/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  case $t in
    sse_codec|anthropic_stream) seed_from_fixtures "$t" ../tests/fixtures/anthropic/stream sse ;;
    responses_stream) seed_from_fixtures "$t" ../tests/fixtures/openai_responses/stream sse ;;
    config) cp ../config.example.yaml "corpus/$t/example.yaml"
            cp ../tests/fixtures/config/*.yaml "corpus/$t/" 2>/dev/null || true ;;
  esac
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "== fuzzing $t for ${secs}s"
  fuzz_one "$t" &
done
wait

failed=()
for t in "${targets[@]}"; do
  echo "== $t"
  tail -n 25 "logs/$t.log"
  [ "$(cat "logs/$t.rc" 2>/dev/null)" = 0 ] || failed+=("$t")
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
echo "fuzzing: no crash in ${targets[*]} (${secs}s each, $jobs at a time)"
