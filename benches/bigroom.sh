#!/usr/bin/env bash
# Runs the `bigroom` scenario of rollcall-load: two fresh release servers on one fresh private
# Redis (see benches/servers.sh), one session filled to 10,000 members. Arguments go to the
# scenario (`rollcall-load bigroom --help`); ROLLCALL_BIN runs another server binary.
#
#   cargo build --release --bins
#   benches/bigroom.sh                      # 10,000 members: 10 full, 9,990 in presence counts
#   benches/bigroom.sh --members 2000
set -euo pipefail
source "$(dirname "$0")/servers.sh"

start_redis
start_server a
start_server b
pids=()
for pid in "${server_pids[@]}"; do pids+=(--server-pid "$pid"); done
"$bin/rollcall-load" "${server_urls[@]}" bigroom --redis-url "redis://127.0.0.1:$redis_port/" \
    "${pids[@]}" "$@"
