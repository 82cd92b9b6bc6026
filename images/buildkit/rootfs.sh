#!/usr/bin/env bash
# The builder of brokered image builds: BuildKit's daemon and client and runc,
# built from Go modules by hack/build.sh, on the C library and libseccomp
# (runc's seccomp filters). The operator runs it as a build pod it fully
# controls (crates/operator/src/manifests/build_pod.rs).
# Usage: rootfs.sh base ROOT | rootfs.sh binaries ROOT (BUILDKITD_BIN, BUILDCTL_BIN, RUNC_BIN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
case $1 in
  base)
    distroless "$2" 1000 builder
    # busybox: the runc wrapper's shell, and tar to unpack a build's context.
    debs_into "$2" libseccomp2 busybox-static
    rm -rf "$2/usr/share" "$2/var/lib/dpkg/info"
    mkdir -p "$2/var/lib/buildkit" "$2/run/buildkit" "$2/work"
    install -D -m 0755 "$here/buildkit-runc" "$2/usr/local/bin/buildkit-runc"
    ;;
  binaries)
    install -D -m 0755 "$BUILDKITD_BIN" "$2/usr/local/bin/buildkitd"
    install -D -m 0755 "$BUILDCTL_BIN" "$2/usr/local/bin/buildctl"
    install -D -m 0755 "$RUNC_BIN" "$2/usr/local/bin/runc"
    ;;
esac
