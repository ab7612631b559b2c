#!/bin/sh
# RSS of the real stormguard binary over MESSAGES messages of the driver's
# mix, with the Redis store (BACKEND=redis, the default: it starts its own
# redis-server on a free port in a temp dir) or the memory store
# (BACKEND=memory).
#   ./bench/rss.sh                 # 1,000,000 messages, Redis store
#   BACKEND=memory ./bench/rss.sh
#   MESSAGES=2000000 ./bench/rss.sh
set -eu
cd "$(dirname "$0")/.."
messages="${MESSAGES:-1000000}"
backend="${BACKEND:-redis}"
case "$backend" in redis | memory) ;; *) echo "BACKEND must be redis or memory, not $backend" >&2; exit 2 ;; esac
dir=$(mktemp -d)
trap 'kill $sg $rd 2>/dev/null || true; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port); mport=$(free_port); hport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
rd=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do :; done
redis-cli -p "$rport" HSET stormguard:lists all-staff@bench.example 20000 >/dev/null
go build -o "$dir/stormguard" ./cmd/stormguard
STORMGUARD_STORE_BACKEND="$backend" STORMGUARD_REDIS_ADDRS="127.0.0.1:$rport" \
STORMGUARD_LISTS="all-staff@bench.example=20000" \
STORMGUARD_LISTEN="inet:127.0.0.1:$mport" STORMGUARD_HTTP_LISTEN="127.0.0.1:$hport" \
	"$dir/stormguard" serve 2>"$dir/stormguard.log" &
sg=$!
until grep -q "stormguard started" "$dir/stormguard.log" 2>/dev/null; do :; done
mkdir -p bench/results
go run ./bench/driver -addr "127.0.0.1:$mport" -pid "$sg" -messages "$messages" -rounds 1 -warmup 0 2>&1 |
	tee "bench/results/rss-$backend-$(date -u +%Y%m%dT%H%M%SZ).txt"
