#!/usr/bin/env bash
# The operator and admin CLI image: the kube-coder binary, the C library it
# links, CA certificates and the user nonroot (65532). Nothing else.
# Usage: rootfs.sh base ROOT | rootfs.sh binaries ROOT (KUBE_CODER_BIN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
case $1 in
  base) distroless "$2" 65532 nonroot ;;
  binaries) install -D -s -m 0755 "$KUBE_CODER_BIN" "$2/usr/local/bin/kube-coder" ;;
esac
