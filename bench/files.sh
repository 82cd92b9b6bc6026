#!/usr/bin/env bash
# Upload and download throughput of the file API over loopback, next to dd
# writing and reading the same size on the same disk, with the server's peak
# RSS in each phase (medians of BENCH_ROUNDS=5 interleaved rounds). Prints a table; asserts nothing.
#   bench/files.sh            # 100 MiB and 1 GiB
#   bench/files.sh 256        # sizes in MiB
set -euo pipefail
command -v curl >/dev/null || { echo "bench/files.sh needs curl (apt-get install curl)" >&2; exit 1; }
cd "$(dirname "$0")/.."
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100 1024)
rounds=${BENCH_ROUNDS:-5}
cargo build --release -q -p kube-coder
. bench/lib.sh
work=$(mktemp -d "${BENCH_DIR:-/tmp}/kc-files-bench.XXXXXX")
cleanup() { kill "${sink_pid:-}" 2>/dev/null || true; kc_stop "$work"; rm -rf "$work"; }
trap cleanup EXIT
kc_serve "$work" ./target/release/kube-coder --max-upload-bytes $((64 << 30))
pid=$(cat "$work/pid") api=$(cat "$work/api")
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

echo "disk: $(df -h "$work" | awk 'NR==2 {print $1, $2}'), $(nproc) cores, caches dropped before reads: $([ -w /proc/sys/vm/drop_caches ] && echo yes || echo no), $rounds rounds"
printf '\n| size | dd write (bs=1M, fsync) | loopback floor | upload | ratio to dd | to floor | peak RSS | dd read | download | ratio | from page cache | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n'
# Seconds taken by "$@".
timed() {
  local t0 t1; t0=$(now); "$@"; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for mib in "${sizes[@]}"; do
  bytes=$((mib << 20))
  head -c "$bytes" /dev/urandom >"$work/src"
  sync
  # Rounds interleave dd and the upload, so a disk that speeds up or slows
  # down during the run weighs on both alike; each starts with no old file
  # and nothing dirty.
  : >"$work/t.dd"; : >"$work/t.floor"; : >"$work/t.up"; up_rss=0
  for _ in $(seq "$rounds"); do
    rm -f "$work/dd.out" "$work/home/up.bin"; sync
    timed dd if="$work/src" of="$work/dd.out" bs=1M conv=fsync status=none >>"$work/t.dd"
    rm -f "$work/dd.out"; sync
    reset_peak
    timed curl -sf -o /dev/null -H "$auth" -T "$work/src" "$api/api/files/content?path=up.bin" >>"$work/t.up"
    up_rss=$(awk -v a="$up_rss" -v b="$(peak_mib)" 'BEGIN {print (b > a) ? b : a}')
    timed curl -sf -o /dev/null -T "$work/src" "$sink/" >>"$work/t.floor"
  done
  dd_w=$(mbps "$bytes" "$(median <"$work/t.dd")")
  floor=$(mbps "$bytes" "$(median <"$work/t.floor")")
  up=$(mbps "$bytes" "$(median <"$work/t.up")")
  cmp -s "$work/src" "$work/home/up.bin" || { echo "uploaded file differs" >&2; exit 1; }
  : >"$work/t.ddr"; : >"$work/t.down"; : >"$work/t.cached"; down_rss=0
  for _ in $(seq "$rounds"); do
    drop_caches
    timed dd if="$work/home/up.bin" of=/dev/null bs=1M status=none >>"$work/t.ddr"
    drop_caches; reset_peak
    timed curl -sf -H "$auth" -o /dev/null "$api/api/files/content?path=up.bin" >>"$work/t.down"
    # The file is in the page cache now (just read whole).
    timed curl -sf -H "$auth" -o /dev/null "$api/api/files/content?path=up.bin" >>"$work/t.cached"
    down_rss=$(awk -v a="$down_rss" -v b="$(peak_mib)" 'BEGIN {print (b > a) ? b : a}')
  done
  dd_r=$(mbps "$bytes" "$(median <"$work/t.ddr")")
  down=$(mbps "$bytes" "$(median <"$work/t.down")")
  cached=$(mbps "$bytes" "$(median <"$work/t.cached")")
  # Integrity, untimed.
  curl -sf -H "$auth" -o "$work/down.bin" "$api/api/files/content?path=up.bin"
  cmp -s "$work/src" "$work/down.bin" || { echo "downloaded file differs" >&2; exit 1; }
  rm -f "$work/down.bin" "$work/home/up.bin" "$work/src"
  printf '| %s MiB | %s MB/s | %s MB/s | %s MB/s | %s%% | %s%% | %s MiB | %s MB/s | %s MB/s | %s%% | %s MB/s | %s MiB |\n' "$mib" \
    "$dd_w" "$floor" "$up" "$((100 * up / dd_w))" "$((100 * up / floor))" "$up_rss" "$dd_r" "$down" "$((100 * down / dd_r))" "$cached" "$down_rss"
done
echo
echo "command: BENCH_ROUNDS=$rounds bench/files.sh ${sizes[*]}"
