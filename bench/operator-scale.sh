#!/usr/bin/env bash
# Scale benchmark against the test control plane with kwok nodes (run it
# through hack/with-cluster): Workspaces created in steps (steady rates and
# a burst) up to 5,250, each step first by a plain client applying the same
# objects with no operator (the API server's limit on this machine), then
# through the release operator; then idle and restart figures. Prints
# figures; asserts nothing. Takes a long while at the default steps:
#   hack/with-cluster bench/operator-scale.sh
#   hack/with-cluster bench/operator-scale.sh --steps 500@25,500@burst
#   hack/with-cluster bench/operator-scale.sh --existing 4000 --steps 1000@50
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?run through hack/with-cluster, or eval \$(hack/cluster env)}"
cargo build --release -q -p kube-coder -p kube-coder-bench
./target/release/operator-scale --operator ./target/release/kube-coder "$@"
