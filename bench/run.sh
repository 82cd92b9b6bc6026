#!/usr/bin/env bash
# Start a fresh release server in a temp dir, run the benchmark against it,
# stop it. Prints a table of figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
. bench/lib.sh
work=$(mktemp -d /tmp/kc-bench.XXXXXX)
trap 'kc_stop "$work"; rm -rf "$work"' EXIT
kc_serve "$work" ./target/release/kube-coder --max-tasks 256
pid=$(cat "$work/pid") api=$(cat "$work/api")
echo "server: $api (pid $pid), data in $work; $(nproc) cores"
${BENCH_WRAP:-} ./target/release/kube-coder-bench --base-url "$api" --token-file "$work/data/api-token" --pid "$pid" --home "$work/home" \
  --tmux-socket "$work/data/tmux.sock" "$@"
