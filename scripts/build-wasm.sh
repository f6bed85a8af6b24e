#!/usr/bin/env bash
# Builds the browser factorizer (wasm-worker/) into web/pkg with wasm-pack;
# the server embeds web/ at compile time, so build this before the server.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# pack OUT_DIR: wasm-pack wasm-worker into OUT_DIR (absolute).
pack() {
  local args=(build wasm-worker --release --target web --out-dir "$1" --out-name crowdfactor_wasm --no-typescript --no-pack)
  if [[ -f target/.wasm-build-std ]]; then
    # Offline fallback: Debian's rustc-web builds std for wasm32 from source.
    PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 wasm-pack "${args[@]}" -- -Zbuild-std=std,panic_abort
  else
    wasm-pack "${args[@]}"
  fi
}
pack "$PWD/web/pkg"
# Debian bookworm's binaryen (108) mangles wasm-bindgen's externref table
# (the module then fails to load): only a recent wasm-opt is used.
wasm_opt_version=$(wasm-opt --version 2>/dev/null | grep -o '[0-9]\+' | head -1 || true)
if [[ -n "$wasm_opt_version" && "$wasm_opt_version" -ge 116 ]]; then
  wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext --enable-reference-types \
    web/pkg/crowdfactor_wasm_bg.wasm -o web/pkg/crowdfactor_wasm_bg.wasm
fi
# The same crate built for the wide-arithmetic proposal (64×64→128-bit
# multiplies, 1.15–2.5× faster in Chromium): web/worker.js loads it where
# the browser implements the proposal. The JS glue comes out identical, so only
# the .wasm is kept. Optional: without it the page uses the build above.
wide_out=$(mktemp -d)
if CARGO_TARGET_DIR="$PWD/target/wasm-wide" RUSTFLAGS="-C target-feature=+wide-arithmetic" pack "$wide_out" \
  && cmp -s "$wide_out/crowdfactor_wasm.js" web/pkg/crowdfactor_wasm.js; then
  cp "$wide_out/crowdfactor_wasm_bg.wasm" web/pkg/crowdfactor_wasm_wide_bg.wasm
else
  echo "warning: no wide-arithmetic build; the page will use the standard one everywhere" >&2
  rm -f web/pkg/crowdfactor_wasm_wide_bg.wasm
fi
rm -rf "$wide_out"
ls -l web/pkg >&2
