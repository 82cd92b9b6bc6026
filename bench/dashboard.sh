#!/usr/bin/env bash
# The dashboard in a real browser: load time and size, output-to-browser
# latency, terminal key round trips. Builds the app and a release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/build-web.sh test
cargo build --release -p kube-coder
export KUBE_CODER_BIN=$PWD/target/release/kube-coder
echo "# bench/dashboard.sh ($(date -u +%F), $(nproc) cores, $(/usr/bin/chromium --version 2>/dev/null | head -c 40))"
cd web && exec node_modules/.bin/vite-node ../bench/dashboard.ts
