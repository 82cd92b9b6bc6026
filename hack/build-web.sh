#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which the kube-coder binary
# embeds at compile time. Installs npm packages from the lock file when they
# are missing or the lock file changed. Without Node.js: `run` carries on
# (the binary then serves a page that says how to build the dashboard),
# `test` stops with one line.
set -euo pipefail
purpose=${1:-run}
cd "$(dirname "$0")/../web"

node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)||a>=22?0:1)'
}

if ! node_ok; then
  msg="Node.js 20.19+ with npm is needed to build the dashboard (https://nodejs.org, or your package manager)"
  if [ "$purpose" = test ]; then
    echo "build-web: $msg; install it, then run make test again" >&2
    exit 1
  fi
  echo "build-web: $msg; starting without the dashboard app" >&2
  exit 0
fi

stamp=node_modules/.kube-coder-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "build-web: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi
# Rebuild only when a source is newer than the last build: a new web/dist
# makes cargo recompile the crate that embeds it.
if [ -f dist/index.html ] && [ -z "$(find src index.html vite.config.ts tsconfig.json package-lock.json scripts -newer dist/index.html -print -quit)" ]; then
  echo "build-web: web/dist is up to date"
  exit 0
fi
npm run --silent build
