#!/usr/bin/env bash
# `make bench`: build aiproxy (release, plus the static musl build when musl-gcc exists) and the
# harness, then run the suite and write bench/RESULTS.md. Not part of CI's pass/fail.
#   BENCH_SECS (3)  measured seconds per run     BENCH_REPEATS (3)  repeats of each pair
#   BENCH_STATIC (auto)  0 skips the static build and measures the glibc build instead (the
#                        static binary, which ships and is measured otherwise, is then not sized)
#   BENCH_ONLY           `responses`: only the Responses API vs chat completions scenario;
#                        `streams`: only the 1,000-stream capacity run (both printed,
#                        RESULTS.md untouched)
#   BENCH_PIN (0)        1 pins the load generator to CPU 1 and the servers (fake upstream,
#                        aiproxy, nginx) to CPU 0 with taskset; the default is unpinned
#   BENCH_NGINX (1)      0 leaves out the nginx reference row (it is skipped anyway when
#                        nginx is not installed; `make setup` installs it)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
secs=${BENCH_SECS:-3}
repeats=${BENCH_REPEATS:-3}

echo "== building aiproxy (release)"
cargo build --release --quiet
static_args=()
measured=target/release/aiproxy
if [ "${BENCH_STATIC:-1}" != "0" ] && command -v musl-gcc >/dev/null 2>&1 \
   && rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  echo "== building the static binary (make static)"
  make --no-print-directory static >/dev/null
  # Every figure is of the binary that ships.
  measured=target/x86_64-unknown-linux-musl/release/aiproxy
  static_args=(--static "$measured")
else
  echo "== static build skipped (needs musl-gcc and the x86_64-unknown-linux-musl target)"
fi
echo "== building the harness (bench/)"
cargo build --release --quiet --manifest-path bench/Cargo.toml --target-dir target/bench-harness

run_args=()
[ "${BENCH_PIN:-0}" = "1" ] && run_args+=(--pin)
if [ "${BENCH_ONLY:-}" = "responses" ]; then
  mkdir -p target/bench
  exec target/bench-harness/release/aiproxy-bench responses "${run_args[@]}" \
    --aiproxy "$measured" --work target/bench --secs "$secs" --repeats "$repeats"
fi
[ "${BENCH_NGINX:-1}" = "0" ] && run_args+=(--no-nginx)
echo "== running (about $(( (secs * 80 + 100) * repeats / 3 + 60 )) s)"
mkdir -p target/bench
target/bench-harness/release/aiproxy-bench run \
  --aiproxy "$measured" "${static_args[@]}" \
  --work target/bench --out bench/RESULTS.md \
  --secs "$secs" --repeats "$repeats" ${BENCH_ONLY:+--only "$BENCH_ONLY"} "${run_args[@]}"
