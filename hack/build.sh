#!/usr/bin/env bash
# Build the test control plane from Go modules at the versions pinned in
# hack/versions.env: kube-apiserver, kube-controller-manager, kube-scheduler
# (k8s.io/kubernetes through the wrapper module in hack/k8s), etcd, helm,
# kwok, and oauth2-proxy with a local OIDC provider (mockoidc) for the login
# tests. Binaries are cached by version in $KUBE_CODER_CACHE/bin (default
# ~/.cache/kube-coder/bin); only a missing or re-pinned one is built.
set -euo pipefail
hack=$(cd "$(dirname "$0")" && pwd)
. "$hack/versions.env"
bin=${KUBE_CODER_CACHE:-$HOME/.cache/kube-coder}/bin
mkdir -p "$bin"
command -v go >/dev/null || { echo "build: Go is missing: install Go 1.26 (https://go.dev/dl), then run make again" >&2; exit 1; }
export GOFLAGS=-mod=mod

# The Go module and build caches are scratch space for these builds only: they
# grow to about 8 GB for Kubernetes, while the binaries we keep are 0.5 GB.
# They live under our cache and are removed once every binary is built (kept
# after a failure so a retry resumes). KUBE_CODER_KEEP_GO_CACHE=1 keeps them.
scratch=${KUBE_CODER_CACHE:-$HOME/.cache/kube-coder}/go-scratch
export GOMODCACHE="$scratch/mod" GOCACHE="$scratch/build"

k=${KUBERNETES_VERSION#v}
kver="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/component-base/version.gitMajor=${k%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$k" | cut -d. -f2) \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=${k%%.*} -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$k" | cut -d. -f2)"

# build NAME VERSION MODULE_DIR PACKAGE LDFLAGS [TAGS]
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=$5 tags=${6:-}
  local out="$bin/$name-$version"
  if [ -x "$out" ]; then
    return
  fi
  echo "build: $name $version from Go modules (first time only; several minutes on 2 cores)..."
  local t0=$SECONDS
  (cd "$hack/$dir" && go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "build: $name done in $((SECONDS - t0))s ($(du -h "$out" | cut -f1))"
}

build kube-apiserver "$KUBERNETES_VERSION" k8s k8s.io/kubernetes/cmd/kube-apiserver "$kver"
build kube-controller-manager "$KUBERNETES_VERSION" k8s k8s.io/kubernetes/cmd/kube-controller-manager "$kver"
build kube-scheduler "$KUBERNETES_VERSION" k8s k8s.io/kubernetes/cmd/kube-scheduler "$kver"
build etcd "$ETCD_VERSION" etcd . ""
build helm "$HELM_VERSION" helm helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
build kwok "$KWOK_VERSION" kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"

build oauth2-proxy "$OAUTH2_PROXY_VERSION" oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7 "-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=$OAUTH2_PROXY_VERSION"

# The real node: kubelet and kube-proxy from the same Kubernetes module, the
# container runtime (containerd v2 with its CRI plugin, runc with seccomp), the
# CNI plugins, CoreDNS, local-path-provisioner, and a registry (distribution)
# for password-protected images, and Traefik as the ingress controller.
build kubelet "$KUBERNETES_VERSION" k8s k8s.io/kubernetes/cmd/kubelet "$kver"
build kube-proxy "$KUBERNETES_VERSION" k8s k8s.io/kubernetes/cmd/kube-proxy "$kver"
# No btrfs/devmapper snapshotters: the node uses overlayfs, and those need C headers.
build containerd "$CONTAINERD_VERSION" containerd github.com/containerd/containerd/v2/cmd/containerd \
  "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "no_btrfs no_devmapper"
build ctr "$CONTAINERD_VERSION" containerd github.com/containerd/containerd/v2/cmd/ctr \
  "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "no_btrfs no_devmapper"
build containerd-shim-runc-v2 "$CONTAINERD_VERSION" containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" "no_btrfs no_devmapper"
# runc needs cgo and libseccomp for the seccomp profiles the operator sets.
CGO_ENABLED=1 build runc "$RUNC_VERSION" runc github.com/opencontainers/runc "-X main.version=${RUNC_VERSION#v}" seccomp
for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
  build "cni-${plugin#*/}" "$CNI_PLUGINS_VERSION" cni "github.com/containernetworking/plugins/plugins/$plugin" ""
done
build coredns "$COREDNS_VERSION" coredns github.com/coredns/coredns ""
build registry "$REGISTRY_VERSION" registry github.com/distribution/distribution/v3/cmd/registry \
  "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION"
build local-path-provisioner "$LOCAL_PATH_PROVISIONER_VERSION" local-path github.com/rancher/local-path-provisioner ""
build kube-router "$KUBE_ROUTER_VERSION" kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router \
  "-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION"

# Traefik's go.mod replaces some of its own dependencies, and a replace applies
# only in the main module: it builds inside a copy of its module source, not
# through a wrapper module like the others.
build_in_source() {
  local name=$1 version=$2 module=$3 pkg=$4 ldflags=$5
  local out="$bin/$name-$version"
  if [ -x "$out" ]; then
    return
  fi
  echo "build: $name $version from its module source (first time only; about 5 minutes on 2 cores)..."
  local t0=$SECONDS dir src="$scratch/src/$name-$version"
  dir=$(cd / && go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "build: cannot download $module@$version from the Go module proxy" >&2; exit 1; }
  rm -rf "$src" && mkdir -p "$(dirname "$src")" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  (cd "$src" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "build: $name done in $((SECONDS - t0))s ($(du -h "$out" | cut -f1))"
}
build_in_source traefik "$TRAEFIK_VERSION" github.com/traefik/traefik/v3 ./cmd/traefik \
  "-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
# BuildKit, the builder of brokered image builds (images/buildkit); its own
# go.mod pins what it was released with.
for cmd in buildkitd buildctl; do
  build_in_source "$cmd" "$BUILDKIT_VERSION" github.com/moby/buildkit "./cmd/$cmd" \
    "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION"
done

# Our own small main around the mockoidc module: keyed by its source.
build mockoidc "$(cat "$hack/mockoidc/main.go" "$hack/mockoidc/go.mod" | sha256sum | cut -c1-12)" mockoidc . ""

# kwok's built-in lifecycle stages ship as YAML in its module, not in the binary.
stages="$bin/kwok-stages-$KWOK_VERSION"
if [ ! -d "$stages" ]; then
  (cd "$hack/kwok" && go mod download sigs.k8s.io/kwok)
  src=$(cd "$hack/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  [ -n "$src" ] || { echo "build: cannot find the sigs.k8s.io/kwok module source" >&2; exit 1; }
  rm -rf "$stages.tmp" && mkdir -p "$stages.tmp"
  cp "$src/kustomize/stage/node/fast/node-initialize.yaml" \
     "$src/kustomize/stage/node/heartbeat/node-heartbeat.yaml" \
     "$src/kustomize/stage/pod/fast/pod-ready.yaml" \
     "$src/kustomize/stage/pod/fast/pod-complete.yaml" \
     "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$stages.tmp/"
  mv "$stages.tmp" "$stages"
fi

if [ -d "$scratch" ] && [ "${KUBE_CODER_KEEP_GO_CACHE:-0}" != 1 ]; then
  echo "build: removing the Go scratch caches ($(du -sh "$scratch" | cut -f1))"
  go clean -modcache -cache
  rm -rf "$scratch"
fi
