#!/usr/bin/env bash
# Hook delivery benchmark against a fresh release server that may reach
# 127.0.0.1 (the receiver) and retries slowly (so a refused outbox stays
# queued until the benchmark releases it). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
work=$(mktemp -d /tmp/kc-hooks-bench.XXXXXX)
mkdir -p "$work/home"
./target/release/kube-coder serve --data-dir "$work/data" --home "$work/home" \
  --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --max-tasks 64 \
  --allow-internal-hooks true --hook-retry-base-ms 600000 >"$work/out" 2>"$work/log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; tmux -S "$work/data/tmux.sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^api:' "$work/out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^api: *\(http:[^ ]*\).*/\1/p' "$work/out")
./target/release/hook-delivery --base-url "$api" --token-file "$work/data/api-token" "$@"
