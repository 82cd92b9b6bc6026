#!/usr/bin/env bash
# The real node, measured (run through hack/with-cluster as root after the
# images are built, as `make bench` does): image sizes and build times,
# `kube-coder user add` → Ready cold (the workspace image first removed from
# the node and imported again, as a pull would bring it) and warm (p50 of
# 5), `user stop` → `user start` → Ready, and the RSS and CPU of an idle
# workspace's server. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?run through hack/with-cluster (make bench), or eval \$(hack/cluster env)}"
. hack/versions.env
bin=${KUBE_CODER_CACHE:-$HOME/.cache/kube-coder}/bin
dir=${KUBE_CODER_CLUSTER_DIR:-/tmp/kube-coder-cluster}
[ -d "$dir/node" ] || { echo "bench/node.sh: the cluster has no real node (hack/cluster up as root, images built)" >&2; exit 1; }
kc=./target/debug/kube-coder
[ -x "$kc" ] || cargo build -q --workspace --bins
ctr=("$bin/ctr-$CONTAINERD_VERSION" --address "$dir/node/containerd.sock" -n k8s.io)

echo "== images (target/images; images/build.sh prints how long each took)"
for s in target/images/*.summary; do
  name=$(basename "$s" .summary)
  printf '  %-13s %6s archive  %s\n' "$name" "$(du -h "target/images/$name.tar" | cut -f1)" "$(sed 's/^[^(]*(\(.*\))$/\1/' "$s")"
done

"$kc" crd | curl -s -o /dev/null -X POST -H 'Content-Type: application/yaml' --data-binary @- \
  --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
  "https://127.0.0.1:$(cat "$dir/apiserver.port")/apis/apiextensions.k8s.io/v1/customresourcedefinitions" || true
"$kc" operator --listen 127.0.0.1:0 --workspace-node-selector kube-coder.dev/node=real \
  --workspace-toleration kube-coder.dev/node:NoSchedule >/dev/null 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT
sleep 2

ms() { date +%s%3N; }
add() { # NAME → milliseconds from user add to Ready
  local t0; t0=$(ms)
  "$kc" user add "$1" --storage 1Gi --timeout 300 >/dev/null
  echo $(( $(ms) - t0 ))
}
purge() { "$kc" user delete "$1" --purge --yes >/dev/null; }
p50() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== user add → Ready"
image=$(cut -d' ' -f1 target/images/workspace.ref)
"${ctr[@]}" images rm --sync "$image" >/dev/null 2>&1
# Content and snapshots go with the last reference: the import starts from nothing.
"${ctr[@]}" content prune references >/dev/null 2>&1 || true
t0=$(ms)
"${ctr[@]}" images import --local target/images/workspace.tar >/dev/null 2>&1
import=$(( $(ms) - t0 ))
cold=$(add bench-cold)
echo "  cold: ${import} ms to bring the image to the node (import), then ${cold} ms user add → Ready"
purge bench-cold
warm=()
for i in 1 2 3 4 5; do
  warm+=("$(add "bench-warm-$i")")
  purge "bench-warm-$i"
done
echo "  warm: p50 $(printf '%s\n' "${warm[@]}" | p50) ms of 5 (${warm[*]} ms)"

echo "== user stop → user start → Ready"
add bench-restart >/dev/null
"$kc" user stop bench-restart >/dev/null
t0=$(ms)
"$kc" user start bench-restart --timeout 300 >/dev/null
echo "  $(( $(ms) - t0 )) ms"

echo "== an idle workspace (bench-restart), 30 s after its start"
sleep 30
# The server itself, not tini before it (whose arguments hold the same words).
pid=$(pgrep -f -- "^/usr/local/bin/kube-coder serve .*--name=bench-restart" | head -1)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
t1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); sleep 10; t2=$(awk '{print $14 + $15}' "/proc/$pid/stat")
echo "  kube-coder serve: RSS $((rss / 1024)) MiB; CPU $((t2 - t1)) ticks in 10 s"
cg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$pid/cgroup")
[ -f "/sys/fs/cgroup/memory$cg/memory.usage_in_bytes" ] && \
  echo "  charged to the pod's memory cgroup: $(( $(cat "/sys/fs/cgroup/memory$cg/memory.usage_in_bytes") / 1048576 )) MiB (the image's pages are charged to whoever read them first)"
purge bench-restart
