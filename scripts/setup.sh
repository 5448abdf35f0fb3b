#!/usr/bin/env bash
# Set-up for `make ci` on a fresh Debian machine with rustup, Node and Python: the rustup musl
# targets, and the Debian packages the static builds and the tests need. Idempotent: installs only
# what is missing. As root it installs; otherwise it stops at once and prints the exact commands.
#
#   musl-tools                x86_64 static build (musl-gcc compiles ring's C)
#   gcc-aarch64-linux-gnu     aarch64 static build: C compiler for ring
#   libc6-dev-arm64-cross     its headers (only "recommended" by the compiler package, so a
#                             --no-install-recommends install leaves them out and ring fails with
#                             bits/libc-header-start.h: No such file or directory)
#   qemu-user-static          runs the aarch64 binary in the tests (ops::qemu)
#   nginx                     the reverse-proxy tests (ops::nginx)
#   systemd                   systemd-analyze verifies the shipped unit (ops::deploy)
#   curl, file                README example test, static-binary check
#   chromium                  the CORS test in a real headless browser (tests/browser.rs, driven
#                             by playwright-core from tests/peers with executablePath)
#   python3-venv              the test peers' venvs (Debian's python3 lacks ensurepip without it)
# and, after those, cargo-deny (pinned, `cargo install --locked`) for `make deny`.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2

need_apt=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have musl-gcc || need_apt+=(musl-tools)
have aarch64-linux-gnu-gcc || need_apt+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/bits/libc-header-start.h ] || need_apt+=(libc6-dev-arm64-cross)
have qemu-aarch64-static || need_apt+=(qemu-user-static)
have nginx || need_apt+=(nginx)
have systemd-analyze || need_apt+=(systemd)
have curl || need_apt+=(curl)
have file || need_apt+=(file)
# tests/peers/install.sh makes venvs: Debian's python3 needs python3-venv for that.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
have chromium || need_apt+=(chromium)

need_targets=()
for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target list --installed 2>/dev/null | grep -qx "$t" || need_targets+=("$t")
done

if [ ${#need_targets[@]} -gt 0 ]; then
  rustup target add "${need_targets[@]}"
fi

# cargo-deny, unless this version is there: compiled from crates.io, once per machine (about
# 4 min of CPU; 10-15 min of wall time on a busy 2-core machine).
install_cargo_deny() {
  if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked)"
    cargo install --quiet --locked cargo-deny --version "$CARGO_DENY_VERSION"
  fi
}

if [ ${#need_apt[@]} -eq 0 ]; then
  install_cargo_deny
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make ci needs these Debian packages; run once, then make ci again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need_apt[*]}" >&2
  exit 1
fi
echo "installing: ${need_apt[*]}"
apt-get update -qq
# Packages with services (nginx, systemd) must not start them here: the tests run their own.
added_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  added_policy=1
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
install_cargo_deny
