#!/usr/bin/env bash
# Instructions Redis executes per join+leave cycle of rollcall's own scripts, counted by callgrind
# (repeatable: the same count whatever else the machine is doing), with where they go.
#
#   benches/peers/script-cost.sh            # 3,000 cycles after 500 warm-up cycles
#   CYCLES=5000 benches/peers/script-cost.sh
#   PLANNED=1 benches/peers/script-cost.sh  # every join and leave offered its plan, as the engine does
#   BATCH=4 benches/peers/script-cost.sh    # planned joins and leaves written 4 at a time (write_plans)
#   OUTBOX=1 benches/peers/script-cost.sh   # every change also kept in its outbox (webhooks on)
#
# Needs valgrind, redis-server, redis-cli and Node (packages of this folder; npm ci if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cycles="${CYCLES:-3000}"
for tool in valgrind callgrind_control callgrind_annotate redis-server redis-cli node python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done
[[ -d "$here/node_modules" ]] || (cd "$here" && npm ci --no-audit --no-fund)

tmp="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$tmp/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done

# The driver waits after its warm-up; the counters are zeroed then, and dumped after the cycles.
mkfifo "$tmp/go"
node "$here/script-cost.js" --port "$port" --cycles "$cycles" ${PLANNED:+--planned} ${BATCH:+--batch "$BATCH"} ${OUTBOX:+--outbox} <"$tmp/go" >"$tmp/driver.log" 2>&1 &
driver_pid=$!
exec 3>"$tmp/go"
until grep -q '^ready' "$tmp/driver.log"; do
    kill -0 "$driver_pid" 2>/dev/null || { cat "$tmp/driver.log" >&2; exit 1; }
    sleep 0.2
done
callgrind_control -z "$redis_pid" >/dev/null 2>&1
echo go >&3
exec 3>&-
wait "$driver_pid" || { cat "$tmp/driver.log" >&2; exit 1; }
callgrind_control -d "$redis_pid" >/dev/null 2>&1
dump="$(ls -t "$tmp"/callgrind.out* | grep -v '^$' | head -1)"
callgrind_annotate --inclusive=yes "$dump" >"$tmp/inclusive.txt" 2>/dev/null

python3 - "$tmp/inclusive.txt" "$cycles" "$tmp/driver.log" <<'PY'
import re, sys
text, cycles = open(sys.argv[1]).read(), int(sys.argv[2])
# The driver says how many cycles it ran (a batch run rounds down to whole batches).
ran = re.findall(r'^done (\d+)', open(sys.argv[3]).read(), re.M)
cycles = int(ran[-1]) if ran else cycles
def ir(pattern):
    m = re.search(r'^\s*([\d,]+) \([^)]*\)\s+' + pattern, text, re.M)
    return int(m.group(1).replace(',', '')) if m else 0
total = ir(r'PROGRAM TOTALS')
rows = [
    ('all of Redis', total),
    ('EVALSHA (the scripts, everything inside)', ir(r'\S*:evalGenericCommand ')),
    ('  the Lua chunk (lua_pcall)', ir(r'\S*:lua_pcall ')),
    ('    commands called from Lua (scriptCall: dispatch and execution)', ir(r'\S*:scriptCall ')),
    ('    their replies turned into Lua values (parseReply)', ir(r'\S*:parseReply ')),
    ('    Lua strings made (lua_pushlstring)', ir(r'\S*:lua_pushlstring ')),
    ('    floating-point formatting (printf_fp)', ir(r'\S*:__printf_fp ')),
    ('    number parsing (strtod)', ir(r'\S*strtod.c:strtod ')),
    ('reading, parsing and answering the clients', total - ir(r'\S*:evalGenericCommand ')),
]
print(f'{cycles} join+leave cycles; instructions per cycle (callgrind Ir, inclusive)\n')
print(open(sys.argv[3]).read().strip().splitlines()[-1] + ' (join and leave operations)\n')
print('| part | instructions per cycle | share |')
print('|---|---|---|')
for name, value in rows:
    print(f'| {name} | {value / cycles:,.0f} | {100 * value / total:.1f}% |')
PY
