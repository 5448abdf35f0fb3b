#!/usr/bin/env bash
# `make deny`: cargo-deny's licenses, bans and sources checks (deny.toml), always; its
# advisories check only when the RustSec advisory database can be fetched. Offline (or on a
# network that reaches only package registries) that one check is skipped with a note, and
# the others still decide. cargo-deny itself is installed by scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo deny --version >/dev/null
cargo deny --log-level error check licenses bans sources

# The database lives in $CARGO_HOME/advisory-dbs; `fetch db` clones or updates it (git).
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error check --disable-fetch advisories
else
  echo "cargo deny: advisories skipped (the advisory database could not be fetched);" \
    "licenses, bans and sources checked"
fi
