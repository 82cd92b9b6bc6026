#!/usr/bin/env bash
# Installs what `make run` (hack/setup.sh run) and `make test` (hack/setup.sh
# test) need when it is missing, or says in one line how to get it. Safe to
# run again: it only acts on what is absent.
set -euo pipefail
purpose=${1:-run}

need_apt=()

have() { command -v "$1" >/dev/null 2>&1; }

if ! have cargo; then
  echo "setup: Rust is missing: install it with rustup (https://rustup.rs), then run make again" >&2
  exit 1
fi

have tmux || need_apt+=(tmux)
if [ "$purpose" = test ]; then
  if ! have go; then
    echo "setup: Go is missing (it builds the test control plane): install Go 1.26 (https://go.dev/dl), then run make test again" >&2
    exit 1
  fi
  have openssl || need_apt+=(openssl)
  have curl || need_apt+=(curl)
  have python3 || need_apt+=(python3)
  # The documentation test runs the README's examples, which use jq.
  have jq || need_apt+=(jq)
  # The SSH tests drive the real OpenSSH client, and rsync over it.
  { have ssh && have ssh-keygen; } || need_apt+=(openssh-client)
  have rsync || need_apt+=(rsync)
  # The browser tests drive Debian's Chromium (testing.md).
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need_apt+=(chromium)
fi
if [ "$purpose" = test ] || [ "$purpose" = images ]; then
  # Images (images/build.sh): root filesystems from Debian packages.
  have mmdebstrap || need_apt+=(mmdebstrap)
  # The real node: runc's seccomp support, kube-proxy's tools.
  [ -f /usr/include/seccomp.h ] || need_apt+=(libseccomp-dev)
  have iptables || need_apt+=(iptables)
  have conntrack || need_apt+=(conntrack)
  # NetworkPolicy on the real node (kube-router) and its forward guard.
  have ipset || need_apt+=(ipset)
  have nft || need_apt+=(nftables)
  have npm || { echo "setup: npm is missing (the workspace image's agents come from npm): install Node.js 20 with npm, then run make again" >&2; exit 1; }
fi

if ((${#need_apt[@]})); then
  if have apt-get && [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  elif have apt-get && have sudo; then
    echo "setup: installing ${need_apt[*]} with sudo apt-get"
    sudo apt-get update -qq >/dev/null 2>&1 || true
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing ${need_apt[*]}: install with your package manager (e.g. apt-get install ${need_apt[*]}), then run make again" >&2
    exit 1
  fi
fi
