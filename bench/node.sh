#!/usr/bin/env bash
# The real node, measured (run through hack/with-cluster as root after the
# images are built, as `make bench` does): image sizes and build times,
# `kube-coder user add` → Ready cold (the workspace image first removed from
# the node and imported again, as a pull would bring it) and warm (p50 of
# 5), `user stop` → `user start` → Ready, stopped → a request with its
# token through the ingress controller (Traefik) wakes it → the same request
# answered (p50 of 5), and the RSS and CPU of an idle workspace's server.
# Prints figures; asserts nothing.
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

api() { # METHOD PATH [TYPE] (body on stdin)
  curl -s --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    -X "$1" -H "Content-Type: ${3:-application/json}" ${3:+--data-binary @-} \
    "https://127.0.0.1:$(cat "$dir/apiserver.port")$2"
}
"$kc" crd | api POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions application/yaml >/dev/null || true
# The waker on this host, reached from the node's pods at the node's
# address through the Service the chart would make (kube-coder-waker).
waker_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])')
node_ip=$(cat "$dir/node-ip")
echo '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-coder-system"}}' | api POST /api/v1/namespaces >/dev/null
# Applied (a test may have left them with another port).
apply='application/apply-patch+yaml'
echo '{"apiVersion":"v1","kind":"Service","metadata":{"name":"kube-coder-waker"},"spec":{"ports":[{"name":"http","port":80,"targetPort":'"$waker_port"',"protocol":"TCP"}]}}' \
  | api PATCH '/api/v1/namespaces/kube-coder-system/services/kube-coder-waker?fieldManager=kube-coder-bench&force=true' "$apply" >/dev/null
echo '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"kube-coder-waker-local","labels":{"kubernetes.io/service-name":"kube-coder-waker"}},
  "addressType":"IPv4","endpoints":[{"addresses":["'"$node_ip"'"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":'"$waker_port"',"protocol":"TCP"}]}' \
  | api PATCH '/apis/discovery.k8s.io/v1/namespaces/kube-coder-system/endpointslices/kube-coder-waker-local?fieldManager=kube-coder-bench&force=true' "$apply" >/dev/null
"$kc" operator --listen 127.0.0.1:0 --broker-listen 127.0.0.1:0 --waker-listen "0.0.0.0:$waker_port" \
  --workspace-node-selector kube-coder.dev/node=real --workspace-toleration kube-coder.dev/node:NoSchedule \
  --ingress-namespace kube-coder-ingress --ingress-class traefik >/dev/null 2>&1 &
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

echo "== stopped → a request with its token through the ingress → the same request answered (wake on request)"
"$kc" user add bench-wake --storage 1Gi --host bench-wake.ws.test --timeout 300 >/dev/null
token=$("$kc" token bench-wake)
# The api host, resolved to Traefik's Service (hack/node.sh) as DNS would.
ask() { curl -s -o /dev/null -w '%{http_code}' --resolve bench-wake-api.ws.test:80:10.96.0.80 \
  -H "Authorization: Bearer $token" http://bench-wake-api.ws.test/api/tasks; }
pods() { api GET /api/v1/namespaces/ws-bench-wake/pods | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'; }
at_waker() { curl -s -D - -o /dev/null --resolve bench-wake-api.ws.test:80:10.96.0.80 http://bench-wake-api.ws.test/ | grep -qi '^x-kube-coder-waker'; }
within() { # SECONDS WHAT COMMAND...: run COMMAND until it succeeds, or say what never came
  local until=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    [ "$SECONDS" -lt "$until" ] || { echo "bench/node.sh: $what did not happen in time" >&2; exit 1; }
    sleep 0.1
  done
}
answers() { [ "$(ask)" = 200 ]; }
stopped() { [ "$(pods)" = 0 ]; }
wakes=()
for i in 1 2 3 4 5; do
  within 120 "an answer through the ingress" answers
  "$kc" user stop bench-wake >/dev/null
  within 120 "the pod's end" stopped
  # The hosts lead to the waker once the operator has seen the stop.
  within 60 "the hosts leading to the waker" at_waker
  t0=$(ms)
  first=$(ask)
  within 180 "the woken workspace answering" answers
  wakes+=("$(( $(ms) - t0 ))")
  [ "$first" = 503 ] || echo "  (run $i: the first answer was $first, not 503)"
done
echo "  p50 $(printf '%s\n' "${wakes[@]}" | p50) ms of 5 (${wakes[*]} ms; the first request gets 503 and Retry-After, polled every 100 ms)"
purge bench-wake

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
