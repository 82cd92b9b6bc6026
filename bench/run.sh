#!/usr/bin/env bash
# Start a fresh release server in a temp dir, run the benchmark against it,
# stop it. Prints a table of figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
work=$(mktemp -d /tmp/kc-bench.XXXXXX)
mkdir -p "$work/home"
# Tasks' login shells read this HOME's profile, not the machine user's (a
# slow profile, pyenv's for one, would be measured with every task).
HOME="$work/home" ./target/release/kube-coder serve --data-dir "$work/data" --home "$work/home" \
  --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --max-tasks 256 >"$work/out" 2>"$work/log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; tmux -S "$work/data/tmux.sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^api:' "$work/out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^api: *\(http:[^ ]*\).*/\1/p' "$work/out")
echo "server: $api (pid $pid), data in $work; $(nproc) cores"
${BENCH_WRAP:-} ./target/release/kube-coder-bench --base-url "$api" --token-file "$work/data/api-token" --pid "$pid" --home "$work/home" \
  --tmux-socket "$work/data/tmux.sock" "$@"
