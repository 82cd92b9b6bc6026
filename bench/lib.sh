# What the benchmark scripts share, sourced by them: a server started in a
# scratch dir, and stopped together with every tmux server it started (a
# workspace runs eight, `tmux.sock` and `tmux-1.sock` … in its data dir).

# kc_serve DIR BIN [serve flags...]: start `BIN serve` with its data dir and
# home in DIR, on free loopback ports, and wait until it listens. Its pid
# goes to DIR/pid, its api URL to DIR/api.
kc_serve() {
  local dir=$1 bin=$2
  shift 2
  mkdir -p "$dir/home"
  # Tasks' login shells read this HOME's profile, not the machine user's (a
  # slow profile, pyenv's for one, would be measured with every task).
  HOME="$dir/home" "$bin" serve --data-dir "$dir/data" --home "$dir/home" \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 "$@" >"$dir/out" 2>"$dir/log" &
  echo $! >"$dir/pid"
  for _ in $(seq 100); do grep -q '^api:' "$dir/out" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^api: *\(http:[^ ]*\).*/\1/p' "$dir/out" >"$dir/api"
  if [ ! -s "$dir/api" ]; then
    echo "the server in $dir did not start:" >&2
    cat "$dir/log" >&2
    return 1
  fi
}

# kc_stop DIR: stop the server started in DIR and its tmux servers.
kc_stop() {
  local dir=$1 socket
  if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
  for socket in "$dir"/data/tmux*.sock; do
    if [ -S "$socket" ]; then tmux -S "$socket" kill-server 2>/dev/null || true; fi
  done
}
