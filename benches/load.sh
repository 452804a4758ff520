#!/usr/bin/env bash
# Runs one `rollcall-load` scenario against a fresh release server and a fresh private Redis,
# both on free ports, and stops them afterwards. The shared Redis on 6379 is never used.
#
#   cargo build --release --bins
#   benches/load.sh fanout --members 1000 --rate 200 --seconds 10
#   benches/load.sh idle --connections 10000 --sessions 100 --hold-seconds 5
#   SERVER_ARGS="--message-batch-ms 10" benches/load.sh fanout --members 1000 --rate 200
#
# The server gets a rate limit that lets a load client through (the defaults, 20/s with a burst
# of 40, would refuse most churn and publish requests). Extra server flags go in SERVER_ARGS.
# For `idle`, the server's pid is passed to the load tool. ROLLCALL_BIN runs another server
# binary (for A/B runs of a change).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/target/release"
[[ -x "$bin/rollcall" && -x "$bin/rollcall-load" ]] || {
    echo "build first: cargo build --release --bins" >&2
    exit 2
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
redis_port="$(free_port)"
server_port="$(free_port)"
cleanup() {
    [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$dir/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

# shellcheck disable=SC2086
RUST_LOG=warn "${ROLLCALL_BIN:-$bin/rollcall}" serve --bind "127.0.0.1:$server_port" \
    --redis-url "redis://127.0.0.1:$redis_port/" --database-url "sqlite://$dir/db.sqlite" \
    --rate-limit-per-second 100000 --rate-limit-burst 100000 ${SERVER_ARGS:-} \
    >"$dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
    curl -fs "http://127.0.0.1:$server_port/readyz" >/dev/null 2>&1 && break
    sleep 0.05
done

scenario="$1"
shift
extra=()
[[ "$scenario" == idle ]] && extra=(--server-pid "$server_pid")
"$bin/rollcall-load" --url "ws://127.0.0.1:$server_port/ws" "$scenario" "${extra[@]}" "$@"
