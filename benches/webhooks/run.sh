#!/usr/bin/env bash
# Churn with webhooks off and on, interleaved in one run: what the outbox and its deliverer cost a
# join+leave cycle (server and Redis CPU per cycle, cycles per second), with a receiver that
# answers at once. Needs target/release/rollcall (cargo build --release --bins) and what
# benches/peers/run.sh needs.
#
#   benches/webhooks/run.sh            # 4 rounds of off/on
#   ROUNDS=2 benches/webhooks/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rounds="${ROUNDS:-4}"
out="${OUT:-$here/results/$(date -u +%Y%m%d-%H%M%S)}"
mkdir -p "$out"

# A receiver that acknowledges every POST with 204 and counts the events it got.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 - "$port" "$out/received" <<'PY' &
import http.server, json, sys
port, path = int(sys.argv[1]), sys.argv[2]
count = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        count += len(json.loads(body)["events"])
        self.send_response(204)
        self.end_headers()
        with open(path, "w") as f:
            f.write(str(count))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT

hooks="--webhook-url http://127.0.0.1:$port/ --webhook-secret bench-secret"
for round in $(seq "$rounds"); do
    for mode in off on; do
        args=""
        [[ "$mode" == on ]] && args="$hooks"
        OUT="$out/$mode-$round" RUNS=1 TARGETS=rollcall SCENARIOS=churn SERVER_ARGS="$args" \
            "$root/benches/peers/run.sh" >/dev/null
        tr '\n' ' ' <"$out/$mode-$round/results.jsonl" | sed "s/^/$mode /" >>"$out/rounds.txt"
        echo >>"$out/rounds.txt"
        echo "round $round webhooks $mode: done"
    done
done
echo "events received: $(cat "$out/received" 2>/dev/null || echo 0)"
python3 - "$out/rounds.txt" <<'PY'
import json, statistics, sys
rows = {"off": [], "on": []}
for line in open(sys.argv[1]):
    mode, _, rest = line.strip().partition(" ")
    if rest:
        result = json.loads(rest)
        rows[mode].append(result.get("figures", result))
def med(mode, key):
    return statistics.median(r[key] for r in rows[mode])
keys = ["cycles_per_s", "server_cpu_us", "redis_cpu_us", "total_cpu_us", "join_p99_ms"]
print("| churn (median of %d rounds) | webhooks off | webhooks on | on / off |" % len(rows["on"]))
print("|---|---|---|---|")
for key in keys:
    try:
        off, on = med("off", key), med("on", key)
    except KeyError:
        continue
    print("| %s | %.4g | %.4g | %.2f |" % (key, off, on, on / off))
PY
