#!/usr/bin/env bash
# The egress gateway's added latency and throughput next to a direct
# connection in the same run, and its RSS and CPU with 200 open streams
# (bench/src/bin/egress-gateway.rs). Prints a table; asserts nothing.
#   bench/egress.sh [--samples 300] [--bytes N] [--streams 200]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
exec ./target/release/egress-gateway --bin target/release/kube-coder "$@"
