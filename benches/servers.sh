# Shared by the bench scripts (sourced, not run): a private Redis and release rollcall servers on
# free ports, all stopped on exit. The shared Redis on 6379 is never used.
#
#   source benches/servers.sh
#   start_redis                 # sets redis_port
#   start_server NAME [FLAGS…]  # appends to server_pids and server_urls; sets server_port
# ROLLCALL_BIN runs another server binary (A/B runs); SERVER_ARGS adds flags to every server.

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/target/release"
[[ -x "$bin/rollcall" && -x "$bin/rollcall-load" ]] || {
    echo "build first: cargo build --release --bins" >&2
    exit 2
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir="$(mktemp -d)"
server_pids=()
server_urls=()
stop_all() {
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    [[ -n "${redis_port:-}" ]] && redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1
    rm -rf "$dir"
}
trap stop_all EXIT

start_redis() {
    redis_port="$(free_port)"
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --logfile "$dir/redis.log" >/dev/null
    for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done
}

# The server gets a rate limit that lets a load client through (the defaults, 20/s with a burst
# of 40, would refuse most churn and publish requests).
start_server() {
    local name="$1"
    shift
    server_port="$(free_port)"
    # shellcheck disable=SC2086
    RUST_LOG=warn "${ROLLCALL_BIN:-$bin/rollcall}" serve --bind "127.0.0.1:$server_port" \
        --instance-name "bench-$name" \
        --redis-url "redis://127.0.0.1:$redis_port/" --database-url "sqlite://$dir/$name.sqlite" \
        --rate-limit-per-second 100000 --rate-limit-burst 100000 ${SERVER_ARGS:-} "$@" \
        >"$dir/server-$name.log" 2>&1 &
    server_pids+=($!)
    server_urls+=(--url "ws://127.0.0.1:$server_port/ws")
    for _ in $(seq 200); do
        curl -fs "http://127.0.0.1:$server_port/readyz" >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "server $name did not become ready; its log:" >&2
    cat "$dir/server-$name.log" >&2
    exit 1
}
