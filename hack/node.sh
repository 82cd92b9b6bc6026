# The real node of the test cluster (sourced by hack/cluster, never run):
# containerd with its CRI plugin and runc, the CNI bridge, a kubelet and
# kube-proxy on this machine, CoreDNS, Traefik and local-path-provisioner, and the
# images of images/ imported into containerd. It runs real pods beside
# kwok's fake nodes; it is tainted, so only pods that tolerate
# kube-coder.dev/node=real:NoSchedule land on it.
#
# Uses from hack/cluster: $dir $bin $hack, say, start, wait_for, api, leaf,
# kubeconfig, ours. Needs root (mounts, network, cgroups).
#
# No packet leaves the machine: the pod range's bridge, a blackhole route for
# the rest of the pod range and for the test hosts' ranges, and the Service
# range on the bridge are set before anything starts, and the host forwards
# nothing that comes from the bridge except to the bridge and to test hosts.
#
# NetworkPolicy is enforced: kube-router's policy controller (iptables and
# ipsets; the kernel here lacks nft_queue, which kube-network-policies
# needs) runs beside kube-proxy, and cluster DNS runs as a pod, so a
# workspace's DNS rule (egress to kube-dns pods) means what it says.

NODE_POD_RANGE=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
NODE_POD_GATEWAY=10.244.0.1
NODE_SERVICE_RANGE=10.96.0.0/16
NODE_DNS_IP=10.96.0.10
# The ingress controller (Traefik): its namespace and class, which the
# operator of the real-node tests is given (tests/cluster/src/lib.rs), and
# its Service's address, port 80 (tests reach it from this host).
NODE_INGRESS_NAMESPACE=kube-coder-ingress
NODE_INGRESS_CLASS=traefik
NODE_INGRESS_IP=10.96.0.80
NODE_BRIDGE=kcbr0
# Test hosts (tests/cluster/src/test_host.rs): each lives in a network
# namespace reached through a veth whose host end is named kcth*; pods get
# a route to these addresses, and the host a blackhole for the rest of
# each range, so nothing sent there can take the default route out. A
# metadata address, a private one and a public-range one.
NODE_TEST_HOSTS="169.254.169.254 192.168.255.10 11.22.33.44"
NODE_TEST_RANGES="169.254.0.0/16 192.168.255.0/24 11.22.33.0/24"
NODE_TEST_IFACES="kcth"
# The forward guard: an nftables table of its own, ahead of every filter
# chain (kube-router keeps its own jump first in FORWARD).
NODE_NFT_TABLE=kube-coder-node
NODE_TAINT_KEY=kube-coder.dev/node
# The images every node start imports (target/images/NAME.tar).
NODE_IMAGES="busybox kube-coder workspace oauth2-proxy buildkit"

node_name() { hostname | tr 'A-Z_' 'a-z-'; }

pod_ready() { # NAMESPACE NAME: the pod reports Ready=True
  api GET "/api/v1/namespaces/$1/pods/$2" | python3 -c 'import json, sys
p = json.load(sys.stdin)
ok = any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
sys.exit(0 if ok else 1)'
}

# The machine's own non-loopback address: pods, the API server and the
# kubelet reach each other on it (a loopback node IP leaves exec, logs and
# port-forward with no address to reach).
node_ip() {
  if [ -n "${KUBE_CODER_NODE_IP:-}" ]; then echo "$KUBE_CODER_NODE_IP"; return; fi
  ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1
}

# Whether this machine can run the real node; prints why not.
node_possible() {
  [ "$(id -u)" = 0 ] || { echo "it needs root"; return 1; }
  [ -n "$(node_ip)" ] || { echo "this machine has no non-loopback IPv4 address"; return 1; }
  local i
  for i in $NODE_IMAGES; do
    [ -f "$hack/../target/images/$i.tar" ] || { echo "target/images/$i.tar is missing: run make images (PROFILE=debug for tests)"; return 1; }
  done
  command -v iptables >/dev/null || { echo "iptables is missing: apt-get install iptables"; return 1; }
  command -v ipset >/dev/null || { echo "ipset is missing (kube-router's policies need it): apt-get install ipset"; return 1; }
  command -v nft >/dev/null || { echo "nft is missing: apt-get install nftables"; return 1; }
}

node_net_up() {
  local n=$dir/node
  # Routes first: nothing for these ranges may follow the default route out.
  ip link add "$NODE_BRIDGE" type bridge 2>/dev/null || true
  ip addr replace "$NODE_POD_GATEWAY/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  ip route replace blackhole "$NODE_POD_RANGE"
  # The Service range goes to the bridge, not to a blackhole: the kernel
  # refuses a connect() to a blackholed address before kube-proxy's DNAT
  # can rewrite it. A Service address with no rule dies on the bridge,
  # which holds nothing but this node's pods.
  ip route replace "$NODE_SERVICE_RANGE" dev "$NODE_BRIDGE"
  local r
  for r in $NODE_TEST_RANGES; do ip route replace blackhole "$r"; done
  # Pods talk to pods on the bridge, to this host and to test hosts, never
  # beyond: the host forwards nothing that enters from the bridge to any
  # other interface. Before the filter chains, where kube-router's accepts
  # cannot come first.
  nft -f - <<NFT
table inet $NODE_NFT_TABLE {
  chain forward {
    type filter hook forward priority -200; policy accept;
    iifname "$NODE_BRIDGE" oifname != "$NODE_BRIDGE" oifname != "$NODE_TEST_IFACES*" drop
  }
}
NFT
  echo "$NODE_BRIDGE" >"$n/bridge"
  # Forwarding on, for traffic between pods that kube-proxy rewrote
  # (a Service's address to a pod on the same bridge).
  cat /proc/sys/net/ipv4/ip_forward >"$n/ip_forward.before"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  modprobe br_netfilter 2>/dev/null || true
  if [ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]; then echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables; fi
  mkdir -p "$n/cni/net.d" "$n/cni/bin"
  local p
  for p in bridge loopback host-local portmap; do
    ln -sf "$bin/cni-$p-$CNI_PLUGINS_VERSION" "$n/cni/bin/$p"
  done
  # Routes in the pod: its range, the Services, this host, the test hosts;
  # no default route, so any other address fails at once instead of leaving.
  local routes="{\"dst\": \"$NODE_POD_RANGE\"}, {\"dst\": \"$NODE_SERVICE_RANGE\"}, {\"dst\": \"$(node_ip)/32\"}" h
  for h in $NODE_TEST_HOSTS; do routes="$routes, {\"dst\": \"$h/32\"}"; done
  cat >"$n/cni/net.d/10-kube-coder.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "kube-coder", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_POD_GATEWAY"}]],
            "dataDir": "$n/cni/ipam",
            "routes": [$routes]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}
]}
CNI
}

node_net_down() {
  local n=$dir/node
  [ -f "$n/bridge" ] || return 0
  nft delete table inet "$NODE_NFT_TABLE" 2>/dev/null || true
  ip route del blackhole "$NODE_POD_RANGE" 2>/dev/null || true
  local r
  for r in $NODE_TEST_RANGES; do ip route del blackhole "$r" 2>/dev/null || true; done
  ip route del "$NODE_SERVICE_RANGE" 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  if [ -f "$n/ip_forward.before" ]; then cat "$n/ip_forward.before" >/proc/sys/net/ipv4/ip_forward; fi
  # kube-proxy's chains: it removes them itself with --cleanup.
  "$bin/kube-proxy-$KUBERNETES_VERSION" --cleanup >/dev/null 2>&1 || true
  node_policy_cleanup
  rm -f "$n/bridge"
}

node_containerd() {
  local n=$dir/node
  mkdir -p "$n/bin" "$n/containerd" "$n/containerd-state" "$n/registry-hosts"
  # containerd finds the shim, and the shim runc, on the PATH.
  ln -sf "$bin/containerd-shim-runc-v2-$CONTAINERD_VERSION" "$n/bin/containerd-shim-runc-v2"
  ln -sf "$bin/runc-$RUNC_VERSION" "$n/bin/runc"
  cat >"$n/containerd.toml" <<TOML
version = 3
root = "$n/containerd"
state = "$n/containerd-state"
[grpc]
  address = "$n/containerd.sock"
[ttrpc]
  address = "$n/containerd.sock.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "ghcr.io/kube-coder/busybox:1"
  # Per-registry settings (hosts.toml), read at each pull: tests put a plain
  # HTTP registry on the node's address there (tests/cluster/tests/builds.rs).
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$n/registry-hosts"
[plugins.'io.containerd.cri.v1.runtime']
  # This machine may not lower oom_score_adj (no CAP_SYS_RESOURCE); the
  # kubelet asks for -998 on sandboxes.
  restrict_oom_score_adj = true
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$n/bin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$n/cni/bin"]
    conf_dir = "$n/cni/net.d"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
  PATH="$n/bin:$PATH" start containerd "$bin/containerd-$CONTAINERD_VERSION" --config "$n/containerd.toml" --log-level warn
  wait_for containerd 60 "$bin/ctr-$CONTAINERD_VERSION" --address "$n/containerd.sock" version
  local i t0
  for i in $NODE_IMAGES; do
    t0=$SECONDS
    "$bin/ctr-$CONTAINERD_VERSION" --address "$n/containerd.sock" -n k8s.io images import \
      --local --no-unpack=false "$hack/../target/images/$i.tar" >>"$dir/logs/images.log" 2>&1 \
      || { say "importing target/images/$i.tar into containerd failed; see $dir/logs/images.log"; return 1; }
    say "node: image $(cut -d' ' -f1 "$hack/../target/images/$i.ref") imported in $((SECONDS - t0))s"
  done
}

node_kubelet() {
  local n=$dir/node name ip port
  name=$(node_name); ip=$(node_ip); port=$(free_port)
  leaf kubelet "/O=system:nodes/CN=system:node:$name" "IP:$ip,DNS:$name"
  kubeconfig kubelet
  mkdir -p "$n/kubelet" "$n/pod-logs"
  : >"$n/resolv.conf"
  cat >"$n/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 (hybrid); kubelet 1.35+ refuses them unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
# emptyDir size limits and ephemeral-storage limits are enforced (the
# build pods' disk limit); volume usage is measured every 10 s, not every
# minute, so a build over its disk is stopped within seconds.
localStorageCapacityIsolation: true
volumeStatsAggPeriod: 10s
containerRuntimeEndpoint: unix://$n/containerd.sock
podCIDR: $NODE_POD_CIDR
address: $ip
port: $port
readOnlyPort: 0
healthzPort: 0
tlsCertFile: $dir/pki/kubelet.crt
tlsPrivateKeyFile: $dir/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$NODE_DNS_IP]
clusterDomain: cluster.local
resolvConf: $n/resolv.conf
podLogsDir: $n/pod-logs
serializeImagePulls: false
# Mounted ConfigMaps and Secrets follow their objects within this (default
# 1m): an egress allow list or a rotated token reaches its pod in seconds.
syncFrequency: 10s
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: real, effect: NoSchedule}
nodeLabels: {$NODE_TAINT_KEY: real}
YAML
  # nodeLabels is not a KubeletConfiguration field: labels go on the command line.
  sed -i '/^nodeLabels:/d' "$n/kubelet.yaml"
  start kubelet "$bin/kubelet-$KUBERNETES_VERSION" --config "$n/kubelet.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" --root-dir "$n/kubelet" --hostname-override "$name" \
    --node-ip "$ip" --node-labels "$NODE_TAINT_KEY=real" --oom-score-adj 0 --v 1
  wait_for kubelet 120 node_ready "$name"
}

node_proxy() {
  local n=$dir/node healthz
  healthz=$(free_port)
  leaf kube-proxy "/CN=system:kube-proxy"
  kubeconfig kube-proxy
  cat >"$n/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $(node_name)
clusterCIDR: $NODE_POD_RANGE
mode: iptables
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$healthz
metricsBindAddress: 127.0.0.1:$(free_port)
oomScoreAdj: 0
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$bin/kube-proxy-$KUBERNETES_VERSION" --config "$n/kube-proxy.yaml"
  # Healthy once it has written the Service rules.
  wait_for kube-proxy 60 curl -sf "http://127.0.0.1:$healthz/healthz"
}

# NetworkPolicy: kube-router's policy controller alone (no routing, no
# Service proxy: the bridge and kube-proxy do those). It keeps every local
# pod's policies as iptables chains and ipsets, checks egress to this host
# too (INPUT), and lets this host reach its pods (probes, port-forward).
node_policy() {
  local port
  port=$(free_port)
  start kube-router "$bin/kube-router-$KUBE_ROUTER_VERSION" --run-firewall=true --run-router=false \
    --run-service-proxy=false --kubeconfig "$dir/admin.kubeconfig" --hostname-override "$(node_name)" \
    --service-cluster-ip-range "$NODE_SERVICE_RANGE" --health-port "$port" --metrics-port 0
  wait_for kube-router 60 curl -sf "http://127.0.0.1:$port/healthz"
}

# kube-router's chains and ipsets, removed by name: its own --cleanup-config
# reports success but leaves them (v2.1.0), then crashes in the Service
# proxy's half.
node_policy_cleanup() {
  local c r
  for c in INPUT FORWARD OUTPUT; do
    iptables -w -S "$c" | sed -n 's/^-A \(.*-j KUBE-ROUTER-.*\)/-D \1/p' | while read -r r; do
      eval "iptables -w $r" || true
    done
  done
  for c in $(iptables -w -S | awk '/^-N KUBE-(ROUTER|POD-FW|NWPLCY)-/ {print $2}'); do iptables -w -F "$c"; done
  for c in $(iptables -w -S | awk '/^-N KUBE-(ROUTER|POD-FW|NWPLCY)-/ {print $2}'); do iptables -w -X "$c" || true; done
  for c in $(ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-'); do ipset destroy "$c" || true; done
}

# Cluster DNS: CoreDNS in a pod on the node behind the kube-dns Service, as
# on a real cluster, so the workspace policy's DNS rule (egress to kube-dns
# pods only) is what lets pods resolve. The binary is the one built here,
# mounted into the kube-coder image (it has the libc CoreDNS links against);
# it answers for cluster.local only and reads the API as its own account.
node_dns() {
  local n=$dir/node image
  image=$(cut -d' ' -f1 "$hack/../target/images/kube-coder.ref")
  api POST /api/v1/namespaces/kube-system/serviceaccounts '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"coredns","namespace":"kube-system"}}' >/dev/null
  api POST /apis/rbac.authorization.k8s.io/v1/clusterroles '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"kube-coder-test:coredns"},"rules":[{"apiGroups":[""],"resources":["services","pods","namespaces"],"verbs":["list","watch"]},{"apiGroups":["discovery.k8s.io"],"resources":["endpointslices"],"verbs":["list","watch"]}]}' >/dev/null
  api POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"kube-coder-test:coredns"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kube-coder-test:coredns"},"subjects":[{"kind":"ServiceAccount","name":"coredns","namespace":"kube-system"}]}' >/dev/null
  NODE_IP=$(node_ip) python3 - <<'PY' | api POST /api/v1/namespaces/kube-system/configmaps @- >/dev/null
import json, os
corefile = """cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    errors
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
    }
}
# The test hosts' names (tests/cluster/src/test_host.rs), and the API server's
# (this machine), for egress by name.
egress.test:53 {
    errors
    hosts {
        11.22.33.44 public.egress.test other.egress.test
        192.168.255.10 private.egress.test
        169.254.169.254 metadata.egress.test
        NODE_IP apiserver.egress.test
    }
}
.:53 {
    # No names outside the cluster: this machine has no upstream DNS to give.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
""".replace("NODE_IP", os.environ["NODE_IP"])
print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": corefile}}))
PY
  api POST /api/v1/namespaces/kube-system/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"coredns","namespace":"kube-system","labels":{"k8s-app":"kube-dns"}},
    "spec":{"serviceAccountName":"coredns","nodeSelector":{"'"$NODE_TAINT_KEY"'":"real"},
      "tolerations":[{"key":"'"$NODE_TAINT_KEY"'","operator":"Exists","effect":"NoSchedule"}],
      "securityContext":{"runAsUser":65532,"runAsGroup":65532,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"},
        "sysctls":[{"name":"net.ipv4.ip_unprivileged_port_start","value":"53"}]},
      "containers":[{"name":"coredns","image":"'"$image"'","imagePullPolicy":"Never",
        "command":["/coredns/coredns","-conf","/etc/coredns/Corefile"],
        "ports":[{"name":"dns","containerPort":53,"protocol":"UDP"},{"name":"dns-tcp","containerPort":53,"protocol":"TCP"}],
        "readinessProbe":{"httpGet":{"path":"/ready","port":8181},"periodSeconds":1},
        "securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}},
        "volumeMounts":[{"name":"binary","mountPath":"/coredns/coredns","readOnly":true},{"name":"config","mountPath":"/etc/coredns","readOnly":true}]}],
      "volumes":[{"name":"binary","hostPath":{"path":"'"$bin/coredns-$COREDNS_VERSION"'","type":"File"}},
        {"name":"config","configMap":{"name":"coredns"}}]}}' >/dev/null
  api POST /api/v1/namespaces/kube-system/services '{"apiVersion":"v1","kind":"Service","metadata":{"name":"kube-dns","namespace":"kube-system","labels":{"k8s-app":"kube-dns"}},"spec":{"clusterIP":"'"$NODE_DNS_IP"'","selector":{"k8s-app":"kube-dns"},"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"name":"dns-tcp","port":53,"protocol":"TCP"}]}}' >/dev/null
  wait_for coredns 90 pod_ready kube-system coredns
}

# Ingress: Traefik in a pod on the node, in a namespace of its own behind a
# Service, routing the Ingresses of its class (the operator's) to pods, as
# on a real cluster: its traffic to a workspace comes from the namespace the
# workspace's policy names; it follows ExternalName Services, which lead a
# workspace that is not Ready to the operator's waker. Like CoreDNS, the binary is the one built here,
# mounted into the kube-coder image; it reads the API as its own account.
node_ingress() {
  local image ns=$NODE_INGRESS_NAMESPACE
  image=$(cut -d' ' -f1 "$hack/../target/images/kube-coder.ref")
  api POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"'"$ns"'"}}' >/dev/null
  api POST "/api/v1/namespaces/$ns/serviceaccounts" '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"traefik"}}' >/dev/null
  api POST /apis/rbac.authorization.k8s.io/v1/clusterroles '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"kube-coder-test:traefik"},"rules":[
    {"apiGroups":[""],"resources":["services","secrets","nodes"],"verbs":["get","list","watch"]},
    {"apiGroups":["discovery.k8s.io"],"resources":["endpointslices"],"verbs":["list","watch"]},
    {"apiGroups":["networking.k8s.io"],"resources":["ingresses","ingressclasses"],"verbs":["get","list","watch"]},
    {"apiGroups":["networking.k8s.io"],"resources":["ingresses/status"],"verbs":["update"]}]}' >/dev/null
  api POST /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"kube-coder-test:traefik"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"kube-coder-test:traefik"},"subjects":[{"kind":"ServiceAccount","name":"traefik","namespace":"'"$ns"'"}]}' >/dev/null
  api POST /apis/networking.k8s.io/v1/ingressclasses '{"apiVersion":"networking.k8s.io/v1","kind":"IngressClass","metadata":{"name":"'"$NODE_INGRESS_CLASS"'"},"spec":{"controller":"traefik.io/ingress-controller"}}' >/dev/null
  api POST "/api/v1/namespaces/$ns/pods" '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"traefik","labels":{"app":"traefik"}},
    "spec":{"serviceAccountName":"traefik","nodeSelector":{"'"$NODE_TAINT_KEY"'":"real"},
      "tolerations":[{"key":"'"$NODE_TAINT_KEY"'","operator":"Exists","effect":"NoSchedule"}],
      "securityContext":{"runAsUser":65532,"runAsGroup":65532,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},
      "containers":[{"name":"traefik","image":"'"$image"'","imagePullPolicy":"Never",
        "command":["/traefik/traefik","--entryPoints.web.address=:8000","--entryPoints.traefik.address=:8080","--ping=true",
          "--providers.kubernetesingress=true","--providers.kubernetesingress.ingressClass='"$NODE_INGRESS_CLASS"'",
          "--providers.kubernetesingress.allowExternalNameServices=true",
          "--accesslog=true","--global.checkNewVersion=false","--global.sendAnonymousUsage=false"],
        "ports":[{"name":"web","containerPort":8000}],
        "readinessProbe":{"httpGet":{"path":"/ping","port":8080},"periodSeconds":1},
        "securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}},
        "volumeMounts":[{"name":"binary","mountPath":"/traefik/traefik","readOnly":true}]}],
      "volumes":[{"name":"binary","hostPath":{"path":"'"$bin/traefik-$TRAEFIK_VERSION"'","type":"File"}}]}}' >/dev/null
  api POST "/api/v1/namespaces/$ns/services" '{"apiVersion":"v1","kind":"Service","metadata":{"name":"traefik"},"spec":{"clusterIP":"'"$NODE_INGRESS_IP"'","selector":{"app":"traefik"},"ports":[{"name":"web","port":80,"targetPort":"web","protocol":"TCP"}]}}' >/dev/null
  wait_for traefik 90 pod_ready "$ns" traefik
}

# Storage: local-path-provisioner on this host; its helper pods (which make
# and remove the directories) run on the node from the busybox image.
node_storage() {
  local n=$dir/node
  mkdir -p "$n/local-path" "$n/local-path-config"
  cat >"$n/local-path-config/config.json" <<JSON
{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$n/local-path"]}]}
JSON
  cat >"$n/local-path-config/helperPod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: helper-pod}
spec:
  tolerations: [{key: $NODE_TAINT_KEY, operator: Exists, effect: NoSchedule}]
  containers:
  - name: helper-pod
    image: ghcr.io/kube-coder/busybox:1
    imagePullPolicy: Never
    # The volume directories belong to root on the node.
    securityContext: {runAsUser: 0}
YAML
  cat >"$n/local-path-config/setup" <<'SH'
#!/bin/sh
set -eu
mkdir -m 0777 -p "$VOL_DIR"
SH
  cat >"$n/local-path-config/teardown" <<'SH'
#!/bin/sh
set -eu
rm -rf "$VOL_DIR"
SH
  api POST /api/v1/namespaces '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"local-path-storage"}}' >/dev/null
  python3 - "$n/local-path-config" <<'PY' | api POST /api/v1/namespaces/local-path-storage/configmaps @- >/dev/null
import json, os, sys
d = sys.argv[1]
data = {f: open(os.path.join(d, f)).read() for f in ("config.json", "helperPod.yaml", "setup", "teardown")}
print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "local-path-config", "namespace": "local-path-storage"}, "data": data}))
PY
  api POST /apis/storage.k8s.io/v1/storageclasses '{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"local-path","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},"provisioner":"rancher.io/local-path","volumeBindingMode":"WaitForFirstConsumer","reclaimPolicy":"Delete"}' >/dev/null
  start local-path-provisioner "$bin/local-path-provisioner-$LOCAL_PATH_PROVISIONER_VERSION" start \
    --kubeconfig "$dir/admin.kubeconfig" --namespace local-path-storage --configmap-name local-path-config \
    --helper-image ghcr.io/kube-coder/busybox:1 --service-account-name default
}

node_up() {
  local why t0=$SECONDS
  if ! why=$(node_possible); then
    say "no real node: $why (the kwok fake nodes run alone)"
    return 0
  fi
  mkdir -p "$dir/node"
  local t=$SECONDS
  node_net_up
  node_containerd
  say "node: containerd up with the images in $((SECONDS - t))s"
  t=$SECONDS; node_kubelet; say "node: kubelet registered the node Ready in $((SECONDS - t))s"
  t=$SECONDS; node_proxy; say "node: kube-proxy healthy in $((SECONDS - t))s"
  t=$SECONDS; node_policy; say "node: kube-router enforcing NetworkPolicy in $((SECONDS - t))s"
  t=$SECONDS; node_storage; node_dns; say "node: local-path-provisioner started, CoreDNS pod Ready in $((SECONDS - t))s"
  t=$SECONDS; node_ingress; say "node: Traefik pod Ready (ingress class $NODE_INGRESS_CLASS) in $((SECONDS - t))s"
  echo "$(node_name)" >"$dir/node/name"
  say "node: $(node_name) Ready on $(node_ip) in $((SECONDS - t0))s (taint $NODE_TAINT_KEY=real:NoSchedule)"
}

# Stop the node so that nothing is left behind: the kubelet first (it would
# restart what is killed), then every container and sandbox, containerd,
# the mounts under the node's directory, the network.
node_down() {
  local n=$dir/node pid f
  [ -d "$n" ] || return 0
  local stopped=()
  for f in kubelet kube-proxy kube-router local-path-provisioner; do
    [ -f "$dir/pids/$f" ] || continue
    pid=$(cat "$dir/pids/$f")
    if ours "$pid"; then kill "$pid" 2>/dev/null || true; stopped+=("$pid"); fi
  done
  # Gone before their rules are removed, so none is written again.
  local i
  for i in $(seq 50); do
    kill -0 "${stopped[@]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -S "$n/containerd.sock" ]; then
    local ctr=("$bin/ctr-$CONTAINERD_VERSION" --address "$n/containerd.sock" -n k8s.io)
    for c in $("${ctr[@]}" tasks list -q 2>/dev/null); do
      "${ctr[@]}" tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for c in $("${ctr[@]}" tasks list -q 2>/dev/null); do
      "${ctr[@]}" tasks delete -f "$c" >/dev/null 2>&1 || true
    done
    for c in $("${ctr[@]}" containers list -q 2>/dev/null); do
      "${ctr[@]}" containers delete "$c" >/dev/null 2>&1 || true
    done
  fi
  # containerd's shims outlive it: ours run from the node's bin directory
  # (containerd finds them on the PATH there).
  pkill -9 -f "^$n/bin/containerd-shim-runc-v2" 2>/dev/null || true
  if [ -f "$dir/pids/containerd" ]; then
    pid=$(cat "$dir/pids/containerd")
    if ours "$pid"; then kill "$pid" 2>/dev/null || true; sleep 0.5; kill -9 "$pid" 2>/dev/null || true; fi
  fi
  # Deepest first: volumes, then the sandboxes' and snapshots' mounts.
  awk -v n="$n/" 'index($2, n) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  awk 'index($2, "/run/netns/cni-") == 1 {print $2}' /proc/self/mounts | while read -r m; do
    umount -l "$m" 2>/dev/null || true
    rm -f "$m"
  done
  node_net_down
}
