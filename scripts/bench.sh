#!/usr/bin/env bash
# Engine benchmark: native vs wasm (node) vs GNU factor, per input class.
# Usage: scripts/bench.sh [--quick] [--gnu-budget SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-wasm.sh >/dev/null 2>&1 || echo "wasm build failed; the wasm column will be empty" >&2
cargo bench -p crowdfactor-factor --bench classes -- "$@"
