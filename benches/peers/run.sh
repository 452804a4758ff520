#!/usr/bin/env bash
# Peer comparison of rollcall with Socket.IO + its Redis adapter (README.md in this folder).
# Builds nothing: needs target/release/rollcall (cargo build --release --bins) and Node ≥ 20.
#
#   benches/peers/run.sh                                  # 5 runs of churn, idle and fanout
#   RUNS=2 SCENARIOS=churn benches/peers/run.sh
#   FANOUT_ARGS="--rate 100" SERVER_ARGS="--message-batch-ms 0" benches/peers/run.sh
#
# Every run of every scenario gets a fresh private redis-server on a free port and a fresh server
# under test, rollcall and Socket.IO interleaved; then summarize.js prints the medians.
# Env: RUNS (5), SCENARIOS ("churn idle fanout"), TARGETS ("rollcall socketio"),
#      CHURN_ARGS / IDLE_ARGS / FANOUT_ARGS (extra load.js options), ROLLCALL_BIN, SERVER_ARGS
#      (extra rollcall flags), OUT (results folder, default benches/peers/results/<time>).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rollcall_bin="${ROLLCALL_BIN:-$root/target/release/rollcall}"
runs="${RUNS:-5}"
scenarios="${SCENARIOS:-churn idle fanout}"
targets="${TARGETS:-rollcall socketio}"
out="${OUT:-$here/results/$(date -u +%Y%m%d-%H%M%S)}"

if [[ " $targets " == *" rollcall "* && ! -x "$rollcall_bin" ]]; then
    echo "no $rollcall_bin: build first with cargo build --release --bins" >&2
    exit 2
fi
for tool in node redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
[[ -d "$here/node_modules" ]] || (cd "$here" && npm ci --no-audit --no-fund)

# 5000 idle connections need 5000+ descriptors in the server and in the load generator.
hard="$(ulimit -Hn)"
if [[ "$hard" == unlimited || "$hard" -ge 20000 ]]; then ulimit -n 20000; else ulimit -n "$hard"; fi
(( $(ulimit -n) >= 11000 )) || echo "warning: open file limit $(ulimit -n) is low for idle" >&2

mkdir -p "$out"
tmp="$(mktemp -d)"
server_pid=""
redis_pid=""
stop_all() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; fi
    if [[ -n "$redis_pid" ]]; then kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null || true; fi
    server_pid="" redis_pid=""
}
trap 'stop_all; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
    redis_port="$(free_port)"
    # In the foreground of a background job, so that its pid is ours to stop and to reap.
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        --logfile "$tmp/redis.log" >/dev/null &
    redis_pid=$!
    for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.05; done
    echo "redis did not start" >&2
    exit 1
}

# Starts the server under test on a free port; sets server_pid and url.
start_server() {
    local target="$1" log="$2" port ready
    port="$(free_port)"
    if [[ "$target" == rollcall ]]; then
        # As benches/servers.sh: a rate limit that lets the load through, a fresh sqlite database.
        rm -f "$tmp"/rollcall.sqlite*
        # shellcheck disable=SC2086
        RUST_LOG=warn "$rollcall_bin" serve --bind "127.0.0.1:$port" --instance-name bench-peers \
            --redis-url "redis://127.0.0.1:$redis_port/" --database-url "sqlite://$tmp/rollcall.sqlite" \
            --rate-limit-per-second 100000 --rate-limit-burst 100000 ${SERVER_ARGS:-} >"$log" 2>&1 &
        url="ws://127.0.0.1:$port/ws"
        ready="http://127.0.0.1:$port/readyz"
    else
        node "$here/socketio-server.js" --port "$port" --redis-url "redis://127.0.0.1:$redis_port/" >"$log" 2>&1 &
        url="http://127.0.0.1:$port"
        ready="http://127.0.0.1:$port/socket.io/?EIO=4&transport=websocket" # 400 once listening
    fi
    server_pid=$!
    for _ in $(seq 200); do
        if [[ "$target" == rollcall ]]; then
            curl -fs -o /dev/null "$ready" && return
        else
            curl -s -o /dev/null --max-time 1 "$ready" && return
        fi
        sleep 0.05
    done
    echo "$target did not become ready; its log:" >&2
    cat "$log" >&2
    exit 1
}

echo "results and logs: $out (load average now $(cut -d' ' -f1 /proc/loadavg), $(nproc) cores)"
for run in $(seq "$runs"); do
    for scenario in $scenarios; do
        for target in $targets; do
            log="$out/$scenario-$target-$run.log"
            start_redis
            start_server "$target" "$out/$scenario-$target-$run.server.log"
            extra_var="${scenario^^}_ARGS"
            # shellcheck disable=SC2086
            if node "$here/load.js" --target "$target" --url "$url" --server-pid "$server_pid" \
                --redis-port "$redis_port" "$scenario" ${!extra_var:-} >"$log" 2>&1; then
                grep '^RESULT ' "$log" | cut -d' ' -f2- >>"$out/results.jsonl"
                echo "run $run $scenario $target: ok"
            else
                echo "run $run $scenario $target: FAILED (see $log):" >&2
                tail -5 "$log" >&2
            fi
            stop_all
            sleep 1
        done
    done
done

[[ -s "$out/results.jsonl" ]] || { echo "no results" >&2; exit 1; }
node "$here/summarize.js" "$out/results.jsonl" | tee "$out/summary.md"
