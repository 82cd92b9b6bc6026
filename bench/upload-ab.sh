#!/usr/bin/env bash
# Two builds of the server side by side: uploads of the same file to each,
# alternating with dd bs=1M conv=fsync on the same disk, one line per round,
# so a change to the upload path is judged in one run on one disk state.
# Asserts nothing.
#   bench/upload-ab.sh OLD_BINARY NEW_BINARY [MiB=1024] [rounds=7]
# (a binary of another commit: git worktree add /tmp/old REV && cargo build
# --release -p kube-coder --manifest-path /tmp/old/Cargo.toml)
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,9p "$0" >&2; exit 2; }
old=$1 new=$2 size=${3:-1024} rounds=${4:-7}
. "$(dirname "$0")/lib.sh"
w=$(mktemp -d "${BENCH_DIR:-/tmp}/kc-upload-ab.XXXXXX")
trap 'kc_stop "$w/old"; kc_stop "$w/new"; rm -rf "$w"' EXIT
head -c $((size << 20)) /dev/urandom >"$w/src"
sync
kc_serve "$w/old" "$old" --max-upload-bytes $((64 << 30))
kc_serve "$w/new" "$new" --max-upload-bytes $((64 << 30))
url() { cat "$w/$1/api"; }
mibps() {
  local a b
  a=$(date +%s.%N); "$@"; b=$(date +%s.%N)
  awk -v a="$a" -v b="$b" -v s="$size" 'BEGIN {printf "%.0f", s / (b - a)}'
}
upload() { curl -sf -o /dev/null -H "Authorization: Bearer $(cat "$w/$1/data/api-token")" -T "$w/src" "$(url "$1")/api/files/content?path=up.bin"; }
echo "$size MiB, $rounds rounds (MiB/s)"
for r in $(seq "$rounds"); do
  rm -f "$w/dd.out" "$w"/*/home/up.bin; sync
  d=$(mibps dd if="$w/src" of="$w/dd.out" bs=1M conv=fsync status=none)
  rm -f "$w/dd.out"; sync
  o=$(mibps upload old); sync
  n=$(mibps upload new)
  echo "round $r: dd $d old $o new $n"
done
