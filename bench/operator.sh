#!/usr/bin/env bash
# Operator provisioning benchmark against the test control plane (run it
# through hack/with-cluster, as `make bench` does): a release operator
# binary, then 100 and 500 Workspaces created at once. Prints latency,
# throughput, RSS and API requests at idle; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?run through hack/with-cluster (make bench), or eval \$(hack/cluster env)}"
cargo build --release -q -p kube-coder -p kube-coder-bench
./target/release/operator-provisioning --operator ./target/release/kube-coder "$@"
