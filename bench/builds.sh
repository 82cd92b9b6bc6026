#!/usr/bin/env bash
# Image builds on the real node, measured (run through hack/with-cluster as
# root after the images are built, as `make bench` does). The cluster tests
# that build print their figures as they go; this runs them RUNS times
# (default 3) and prints each figure's runs and median:
#   - a small Containerfile (FROM busybox in a password registry, COPY,
#     RUN) through the operator: request → pushed, cold; the same again in
#     a new pod, warm (its steps from the registry cache);
#   - the same 3-step build inside one build pod (buildctl alone), cold
#     and warm: the floor the brokered figures are beside;
#   - from inside a workspace pod, FROM the workspace image itself:
#     `kube-coder build` cold (the base pulled into a new builder), the
#     same context through the workspace server warm;
#   - the broker's overhead: request → build pod running with BuildKit
#     answering.
# Prints figures; asserts nothing (the tests it runs do assert).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?run through hack/with-cluster (make bench), or eval \$(hack/cluster env)}"
runs=${RUNS:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build -q -p kube-coder
for i in $(seq "$runs"); do
  for t in builds builds_in_pod; do
    cargo test -q -p kube-coder-cluster-tests --test "$t" -- --nocapture >"$out/$t-$i.log" 2>&1 ||
      { echo "bench/builds.sh: $t failed (run $i); its log:" >&2; tail -40 "$out/$t-$i.log" >&2; exit 1; }
  done
done

# figure NAME SED-EXPRESSION: the number the expression extracts from each
# run's log, and their median.
figure() {
  local values
  values=$(cat "$out"/*.log | sed -n "$2" | sort -n)
  [ -n "$values" ] || { printf '  %-58s (not printed)\n' "$1"; return; }
  local n median
  n=$(echo "$values" | wc -l)
  median=$(echo "$values" | sed -n "$(( (n + 1) / 2 ))p")
  printf '  %-58s p50 %6s s   runs: %s\n' "$1" "$median" "$(echo "$values" | tr '\n' ' ')"
}
echo "== image builds on the real node ($runs runs, $(nproc) cores)"
figure "brokered, FROM busybox + COPY + RUN: request → pushed (cold)" \
  's/.*brokered build: pushed .*, \([0-9.]*\) s from the request$/\1/p'
figure "brokered, the same in a new pod (warm: registry cache)" \
  's/.*the same build again: \([0-9.]*\) s, .*/\1/p'
figure "in one build pod, 3 steps, buildctl alone (cold)" \
  's/.*build of a 3-step Containerfile: cold \([0-9.]*\) s, .*/\1/p'
figure "in one build pod, 3 steps, buildctl alone (warm)" \
  's/.*build of a 3-step Containerfile: .*, warm \([0-9.]*\) s .*/\1/p'
figure "in a workspace pod, FROM the workspace image (cold)" \
  's/.*kube-coder build in a workspace pod.*: pushed [0-9.]* MiB in \([0-9.]*\) s .*/\1/p'
figure "in a workspace pod, the same via /api/builds (warm)" \
  's/.*POST \/api\/builds in the workspace server, same context (warm): \([0-9.]*\) s,.*/\1/p'
figure "broker overhead: request → build pod running, BuildKit up" \
  's/.*build pod \(was \)\{0,1\}ready after \([0-9.]*\) s.*/\2/p'
