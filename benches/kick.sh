#!/usr/bin/env bash
# Cross-instance kick latency of the server API: two fresh release servers on one fresh private
# Redis (see benches/servers.sh); members connect to b, the kicks go to a's API, one at a time;
# the time runs from the HTTP request to the `kicked` frame at the client. Arguments go to the
# scenario (`rollcall-load kick --help`).
#
#   cargo build --release --bins
#   benches/kick.sh                  # 500 kicks
#   benches/kick.sh --kicks 2000
set -euo pipefail
source "$(dirname "$0")/servers.sh"

key="bench-key-$$"
start_redis
start_server a --api-key "$key"
api="127.0.0.1:$server_port"
start_server b --api-key "$key"
"$bin/rollcall-load" "${server_urls[@]}" kick --api "$api" --api-key "$key" "$@"
