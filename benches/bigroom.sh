#!/usr/bin/env bash
# Runs the `bigroom` scenario of rollcall-load: two fresh release servers on one fresh private
# Redis (all on free ports, stopped afterwards), one session filled to 10,000 members. Arguments go
# to the scenario (see `rollcall-load bigroom --help`); ROLLCALL_BIN runs another server binary.
#
#   cargo build --release --bins
#   benches/bigroom.sh                      # 10,000 members: 10 full, 9,990 in presence counts
#   benches/bigroom.sh --members 2000
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
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$dir/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

urls=()
server_pids=()
for name in a b; do
    port="$(free_port)"
    # shellcheck disable=SC2086
    RUST_LOG=warn "${ROLLCALL_BIN:-$bin/rollcall}" serve --bind "127.0.0.1:$port" \
        --instance-name "bigroom-$name" \
        --redis-url "redis://127.0.0.1:$redis_port/" --database-url "sqlite://$dir/$name.sqlite" \
        --rate-limit-per-second 100000 --rate-limit-burst 100000 ${SERVER_ARGS:-} \
        >"$dir/server-$name.log" 2>&1 &
    pids+=($!)
    server_pids+=(--server-pid $!)
    urls+=(--url "ws://127.0.0.1:$port/ws")
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.05
    done
done

"$bin/rollcall-load" "${urls[@]}" bigroom --redis-url "redis://127.0.0.1:$redis_port/" \
    "${server_pids[@]}" "$@"
