#!/bin/sh
# Throughput of a private Postfix (loopback, relaying to smtp-sink, loaded
# with smtp-source) with no milter, the no-op go-milter baseline (and the
# same with the CONNECT/HELO/DATA skip flags, to show the 40 ms stall),
# stormguard with the memory store and stormguard with Redis. Needs root,
# postfix (smtp-source, smtp-sink) and redis-server.
#
#   ./bench/postfix.sh                       # 3 interleaved rounds, concurrency 1 10 20
#   ROUNDS=5 MESSAGES=2000 CONCURRENCY="1 10 20 50" ./bench/postfix.sh
#   SETUPS="none noop noop-nr-qa memory redis redis-unix" ./bench/postfix.sh   # see bench/postfix/postfix_test.go
#
# Besides msg/s: CPU ms per message of the milter, of the Postfix instance
# and of redis-server, and TCP segments per message each way on the milter
# socket.
# The table goes to stdout and bench/results/postfix-<date>.md.
set -eu
cd "$(dirname "$0")/.."
mkdir -p bench/results
out="bench/results/postfix-$(date -u +%Y%m%dT%H%M%SZ).md"
STORMGUARD_BENCH_POSTFIX=1 STORMGUARD_REQUIRE_SERVERS=1 \
ROUNDS="${ROUNDS:-3}" MESSAGES="${MESSAGES:-1000}" CONCURRENCY="${CONCURRENCY:-1 10 20}" \
	go test -count=1 -timeout 60m -run '^TestPostfixThroughput$' -v ./bench/postfix/ | tee "$out.log" |
	grep -v '^\s*postfix_test.go\|^=== RUN\|^--- \|^PASS\|^ok ' | tee "$out"
