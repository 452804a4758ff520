#!/usr/bin/env bash
# Runs one `rollcall-load` scenario against a fresh release server and a fresh private Redis,
# both on free ports, and stops them afterwards (see benches/servers.sh).
#
#   cargo build --release --bins
#   benches/load.sh fanout --members 1000 --rate 200 --seconds 10
#   benches/load.sh idle --connections 10000 --sessions 100 --hold-seconds 5
#   SERVER_ARGS="--message-batch-ms 10" benches/load.sh fanout --members 1000 --rate 200
#
# For `idle`, the server's pid is passed to the load tool. ROLLCALL_BIN runs another server
# binary (for A/B runs of a change).
set -euo pipefail
source "$(dirname "$0")/servers.sh"

start_redis
start_server one

scenario="$1"
shift
extra=()
[[ "$scenario" == idle ]] && extra=(--server-pid "${server_pids[0]}")
"$bin/rollcall-load" "${server_urls[@]}" "$scenario" "${extra[@]}" "$@"
