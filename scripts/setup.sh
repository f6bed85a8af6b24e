#!/usr/bin/env bash
# Installs what crowdfactor needs on a Debian machine with rustup, only when
# missing: the wasm32 target (Debian's rustc-web as offline fallback),
# wasm-bindgen-cli at the exact version in Cargo.lock, wasm-pack, and
# (with --browser) Chromium + chromedriver and Firefox ESR + geckodriver for
# the browser tests.
# Idempotent: quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
want_browser=0
[[ "${1:-}" == "--browser" ]] && want_browser=1

apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# 1. wasm32 target: rustup first, Debian's std-from-source toolchain otherwise.
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  :
elif rustup target add wasm32-unknown-unknown >&2; then
  log "installed the wasm32-unknown-unknown target with rustup"
else
  log "rustup could not add wasm32; falling back to Debian's rustc-web (build-std)"
  dpkg -s rustc-web cargo-web rust-web-src lld-22 >/dev/null 2>&1 || apt_install rustc-web cargo-web rust-web-src lld-22
  mkdir -p target && touch target/.wasm-build-std
fi

# 2. wasm-bindgen-cli, exactly the version of the wasm-bindgen crate in Cargo.lock.
[[ -f Cargo.lock ]] || cargo generate-lockfile >&2
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wb_version" ]]; then
  log "installing wasm-bindgen-cli $wb_version (several minutes)"
  # --locked can name a dependency version the registry mirror lacks; the
  # version of wasm-bindgen-cli itself stays pinned either way.
  cargo install wasm-bindgen-cli --version "=$wb_version" --locked --force >&2 \
    || cargo install wasm-bindgen-cli --version "=$wb_version" --force >&2
fi

# 3. wasm-pack.
if ! command -v wasm-pack >/dev/null; then
  log "installing wasm-pack (several minutes)"
  cargo install wasm-pack --locked >&2 || cargo install wasm-pack >&2
fi

# 4. Browsers and their WebDriver servers for the page tests; GNU factor for
#    differential tests. geckodriver is not packaged by Debian: it is a Rust
#    crate, built from crates.io.
geckodriver_version=0.37.1
if [[ $want_browser == 1 ]]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v firefox-esr >/dev/null || missing+=(firefox-esr)
  command -v factor >/dev/null || missing+=(coreutils)
  [[ ${#missing[@]} -eq 0 ]] || apt_install "${missing[@]}"
  if [[ "$(geckodriver --version 2>/dev/null | head -1 | awk '{print $2}')" != "$geckodriver_version" ]]; then
    log "installing geckodriver $geckodriver_version (a few minutes)"
    cargo install geckodriver --version "=$geckodriver_version" --locked >&2 \
      || cargo install geckodriver --version "=$geckodriver_version" >&2
  fi
fi
log "toolchain ready"
