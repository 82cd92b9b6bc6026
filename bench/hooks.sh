#!/usr/bin/env bash
# Hook delivery benchmark against a fresh release server that may reach
# 127.0.0.1 (the receiver) and retries slowly (so a refused outbox stays
# queued until the benchmark releases it). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
. bench/lib.sh
work=$(mktemp -d /tmp/kc-hooks-bench.XXXXXX)
trap 'kc_stop "$work"; rm -rf "$work"' EXIT
kc_serve "$work" ./target/release/kube-coder --max-tasks 64 \
  --allow-internal-hooks true --hook-retry-base-ms 600000
api=$(cat "$work/api")
./target/release/hook-delivery --base-url "$api" --token-file "$work/data/api-token" "$@"
