#!/usr/bin/env bash
# `make images`: build the container images into target/images/ without a
# Docker daemon. For each image NAME (kube-coder, workspace, oauth2-proxy,
# busybox, buildkit): images/NAME/rootfs.sh makes the root filesystem (Debian packages by
# mmdebstrap or unpacked .debs, npm packages, our binaries), and
# kube-coder-image packs it into NAME.tar (an OCI archive), NAME.spdx.json
# (its SBOM) and NAME.ref (its full name and manifest digest).
#
#   images/build.sh [NAME...]       default: all of them
#   PROFILE=debug images/build.sh   use target/debug binaries (what make test does)
#   GZIP_LEVEL=1 images/build.sh    faster, larger layers (make test; default 6)
#
# Reproducible: every time in an image is SOURCE_DATE_EPOCH (default: the
# commit time of HEAD), so the same inputs give the same digest. Two caches
# keep rebuilds short: an image whose inputs did not change is not built
# again, and the part of a root filesystem that does not hold our binaries
# (the slow part: packages and npm) is kept in $IMAGES_CACHE by its inputs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. hack/versions.env
profile=${PROFILE:-release}
gzip_level=${GZIP_LEVEL:-6}
out=target/images
export IMAGES_CACHE=${IMAGES_CACHE:-${KUBE_CODER_CACHE:-$HOME/.cache/kube-coder}/images}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
names=("$@")
((${#names[@]})) || names=(kube-coder workspace oauth2-proxy busybox buildkit)

say() { echo "images: $*" >&2; }
if [ "$(id -u)" != 0 ]; then
  say "building images needs root (mmdebstrap installs packages as their owners): run sudo make images"
  exit 1
fi
for tool in mmdebstrap dpkg-deb apt-get npm; do
  command -v "$tool" >/dev/null || { say "$tool is missing: apt-get install mmdebstrap (make test installs it)"; exit 1; }
done

t0=$SECONDS
# Debug binaries as the test build makes them (make test has just run it, so
# this is a no-op there; a plain `cargo build` unifies features differently
# and would rebuild much of the tree).
if [ "$profile" = release ]; then
  cargo build -q --release --workspace --bins
else
  cargo test -q --workspace --no-run
fi
export KUBE_CODER_BIN=$repo/target/$profile/kube-coder
gobin=${KUBE_CODER_CACHE:-$HOME/.cache/kube-coder}/bin
export OAUTH2_PROXY_BIN=$gobin/oauth2-proxy-$OAUTH2_PROXY_VERSION
export BUILDKITD_BIN=$gobin/buildkitd-$BUILDKIT_VERSION BUILDCTL_BIN=$gobin/buildctl-$BUILDKIT_VERSION
export RUNC_BIN=$gobin/runc-$RUNC_VERSION
packer=$repo/target/$profile/kube-coder-image
mkdir -p "$out" "$IMAGES_CACHE/base"

reference() {
  case $1 in
    oauth2-proxy) echo "ghcr.io/kube-coder/oauth2-proxy:$OAUTH2_PROXY_VERSION" ;;
    buildkit) echo "ghcr.io/kube-coder/buildkit:$BUILDKIT_VERSION" ;;
    busybox) echo "ghcr.io/kube-coder/busybox:1" ;;
    *) echo "ghcr.io/kube-coder/$1:$version" ;;
  esac
}

# hash FILE...: one digest of the files' contents and names
hash() { sha256sum "$@" | sha256sum | cut -c1-16; }

for name in "${names[@]}"; do
  dir=images/$name
  [ -x "$dir/rootfs.sh" ] || { say "no image named $name (images/*/rootfs.sh)"; exit 2; }
  ref=$(reference "$name")
  # The base: everything but our binaries, keyed by its definition.
  base_inputs=$(cd "$dir" && find . -type f ! -name image.toml ! -name Containerfile | sort | xargs -d '\n' cat | cat - ../lib.sh | sha256sum | cut -c1-16)
  base=$IMAGES_CACHE/base/$name-$base_inputs
  binaries=()
  case $name in
    kube-coder) binaries=("$KUBE_CODER_BIN") ;;
    # buildctl: kube-coder build talks to the in-pod builder with it.
    workspace) binaries=("$KUBE_CODER_BIN" "$BUILDCTL_BIN") ;;
    oauth2-proxy) binaries=("$OAUTH2_PROXY_BIN") ;;
    buildkit) binaries=("$BUILDKITD_BIN" "$BUILDCTL_BIN" "$RUNC_BIN") ;;
  esac
  for b in "${binaries[@]}"; do
    [ -x "$b" ] || { say "$name needs $b: build it first (hack/build.sh builds oauth2-proxy and BuildKit)"; exit 1; }
  done
  inputs="$base_inputs $(hash "$dir/image.toml" "$packer" ${binaries[@]+"${binaries[@]}"}) $SOURCE_DATE_EPOCH $ref $gzip_level"
  if [ -f "$out/$name.tar" ] && [ "$(cat "$out/$name.inputs" 2>/dev/null)" = "$inputs" ]; then
    say "$name: up to date ($(cut -d' ' -f2 "$out/$name.ref"), $(du -h "$out/$name.tar" | cut -f1))"
    continue
  fi
  t=$SECONDS
  if [ ! -d "$base" ]; then
    say "$name: making the root filesystem (first time for these inputs)..."
    # Older bases of this image, and what a failed build left.
    rm -rf "$IMAGES_CACHE/base/$name-"*
    "$dir/rootfs.sh" base "$base.tmp" >&2
    mv "$base.tmp" "$base"
    say "$name: root filesystem made in $((SECONDS - t))s"
  fi
  root=$(mktemp -d "$IMAGES_CACHE/root-$name.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  # Hard links: the base stays untouched, the copy costs nothing.
  cp -al "$base/." "$root/"
  "$dir/rootfs.sh" binaries "$root"
  npm_locks=()
  [ -f "$dir/agents/package-lock.json" ] && npm_locks=(--npm-lock "$dir/agents/package-lock.json")
  cargo_lock=()
  [ "$name" = kube-coder ] || [ "$name" = workspace ] && cargo_lock=(--cargo-lock Cargo.lock)
  "$packer" pack --rootfs "$root" --definition "$dir/image.toml" --reference "$ref" \
    --out "$out/$name.tar" --sbom "$out/$name.spdx.json" --gzip-level "$gzip_level" ${npm_locks[@]+"${npm_locks[@]}"} \
    ${cargo_lock[@]+"${cargo_lock[@]}"} >"$out/$name.summary"
  rm -rf "$root"; trap - EXIT
  digest=$(sed -n 's/^[^ ]*: \(sha256:[0-9a-f]*\).*/\1/p' "$out/$name.summary")
  echo "$ref $digest" >"$out/$name.ref"
  echo "$inputs" >"$out/$name.inputs"
  say "$name: $(cat "$out/$name.summary") in $((SECONDS - t))s"
done
say "done in $((SECONDS - t0))s"
