#!/usr/bin/env bash
# The egress gateway's model port: its added latency (answer head, each
# streamed event) and throughput next to calling the provider straight, in
# the same run, and its RSS and CPU with 200 open model streams
# (bench/src/bin/model-gateway.rs). Prints a table; asserts nothing.
#   bench/models.sh [--samples 300] [--bytes N] [--streams 200]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p kube-coder -p kube-coder-bench
exec ./target/release/model-gateway --bin target/release/kube-coder "$@"
