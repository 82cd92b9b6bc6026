#!/usr/bin/env bash
# The test node's busybox image: Debian's static busybox with the few
# applets the node needs. It is the pod sandbox ("pause") image, which only
# sleeps, and the image of local-path-provisioner's helper pods, which make
# and remove volume directories. No registry is reachable here, so the node
# cannot pull the upstream images; containerd and the provisioner are
# pointed at this one.
# Usage: rootfs.sh base ROOT | rootfs.sh binaries ROOT (none)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"
if [ "$1" = base ]; then
  debs_into "$2" busybox-static
  rm -rf "$2/usr/share" "$2/var/lib/dpkg/info"
  for applet in sh sleep mkdir rm chmod ls cat; do
    ln -s busybox "$2/bin/$applet"
  done
  mkdir -p "$2/tmp" && chmod 1777 "$2/tmp"
fi
