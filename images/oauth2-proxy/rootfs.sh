#!/usr/bin/env bash
# oauth2-proxy for oauth2 mode in a pod, from the binary hack/build.sh builds
# from Go modules (tests only: the chart's default stays the upstream image).
# Usage: rootfs.sh base ROOT | rootfs.sh binaries ROOT (OAUTH2_PROXY_BIN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
case $1 in
  base) distroless "$2" 65532 nonroot ;;
  binaries) install -D -m 0755 "$OAUTH2_PROXY_BIN" "$2/bin/oauth2-proxy" ;;
esac
