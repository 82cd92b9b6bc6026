#!/usr/bin/env bash
# Upload and download throughput of the file API over loopback, next to dd
# writing and reading the same size on the same disk, with the server's peak
# RSS in each phase (median of three runs each). Prints a table; asserts nothing.
#   bench/files.sh            # 100 MiB and 1 GiB
#   bench/files.sh 256        # sizes in MiB
set -euo pipefail
command -v curl >/dev/null || { echo "bench/files.sh needs curl (apt-get install curl)" >&2; exit 1; }
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100 1024)
cargo build --release -q -p kube-coder
work=$(mktemp -d "${BENCH_DIR:-/tmp}/kc-files-bench.XXXXXX")
mkdir -p "$work/home"
./target/release/kube-coder serve --data-dir "$work/data" --home "$work/home" \
  --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --max-upload-bytes $((64 << 30)) >"$work/out" 2>"$work/log" &
pid=$!
cleanup() { kill "$pid" "${sink_pid:-}" 2>/dev/null || true; tmux -S "$work/data/tmux.sock" kill-server 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^api:' "$work/out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/^api: *\(http:[^ ]*\).*/\1/p' "$work/out")
# The floor of an upload: the same curl into a reader that discards it.
python3 bench/tcp_sink.py >"$work/sink" &
sink_pid=$!
for _ in $(seq 50); do [ -s "$work/sink" ] && break; sleep 0.1; done
sink="http://127.0.0.1:$(head -1 "$work/sink")"
auth="Authorization: Bearer $(cat "$work/data/api-token")"

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
reset_peak() { echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; }
peak_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f", b/1048576/t}'; }

echo "disk: $(df -h "$work" | awk 'NR==2 {print $1, $2}'), $(nproc) cores, caches dropped before reads: $([ -w /proc/sys/vm/drop_caches ] && echo yes || echo no)"
printf '\n| size | dd write (fsync) | loopback floor | upload | ratio to dd | to floor | peak RSS | dd read | download | ratio | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|\n'
# Median of three timed runs of "$@" (seconds); $prep runs untimed before each.
median3() {
  local ts=()
  for _ in 1 2 3; do
    eval "$prep"
    local t0 t1; t0=$(now); "$@"; t1=$(now)
    ts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')")
  done
  printf '%s\n' "${ts[@]}" | sort -g | sed -n 2p
}
for mib in "${sizes[@]}"; do
  bytes=$((mib << 20))
  head -c "$bytes" /dev/urandom >"$work/src"
  sync
  prep='rm -f "$work/dd.out"; sync'
  dd_w=$(mbps "$bytes" "$(median3 dd if="$work/src" of="$work/dd.out" bs=4M conv=fsync status=none)")
  rm -f "$work/dd.out"
  prep=':'
  floor=$(mbps "$bytes" "$(median3 curl -sf -o /dev/null -T "$work/src" "$sink/")")
  prep='reset_peak'
  up=$(mbps "$bytes" "$(median3 curl -sf -o /dev/null -H "$auth" -T "$work/src" "$api/api/files/content?path=up.bin")")
  up_rss=$(peak_mib)
  cmp -s "$work/src" "$work/home/up.bin" || { echo "uploaded file differs" >&2; exit 1; }
  prep='drop_caches'
  dd_r=$(mbps "$bytes" "$(median3 dd if="$work/home/up.bin" of=/dev/null bs=4M status=none)")
  prep='drop_caches; reset_peak'
  down=$(mbps "$bytes" "$(median3 curl -sf -H "$auth" -o /dev/null "$api/api/files/content?path=up.bin")")
  down_rss=$(peak_mib)
  # Integrity, untimed.
  curl -sf -H "$auth" -o "$work/down.bin" "$api/api/files/content?path=up.bin"
  cmp -s "$work/src" "$work/down.bin" || { echo "downloaded file differs" >&2; exit 1; }
  rm -f "$work/down.bin" "$work/home/up.bin" "$work/src"
  printf '| %s MiB | %s MB/s | %s MB/s | %s MB/s | %s%% | %s%% | %s MiB | %s MB/s | %s MB/s | %s%% | %s MiB |\n' "$mib" \
    "$dd_w" "$floor" "$up" "$((100 * up / dd_w))" "$((100 * up / floor))" "$up_rss" "$dd_r" "$down" "$((100 * down / dd_r))" "$down_rss"
done
echo
echo "command: bench/files.sh ${sizes[*]}"
