#!/bin/sh
# What thread identity costs, two revisions of stormguard side by side:
# Redis round trips per message class (standalone and a 3-master Cluster,
# counted by a proxy between the daemons and Redis) and the p99 added at
# end of headers over the no-op milter at 1000 msg/s of storm-shaped
# mail, the revisions interleaved round by round (bench/identity).
#
#   ./bench/identity.sh 92f0a77 HEAD        # git revisions; "." is the working tree as it is
#   ROUNDS=7 DURATION=6s RATE=1000 CONNS=16 INSTANCES=5 ./bench/identity.sh BEFORE AFTER
#
# Each revision's cmd/stormguard is built from `git archive` in a temporary
# directory (the checkout is not touched); the harness is this checkout's.
# Needs redis-server and redis-cli. The report goes to stdout and
# bench/results/identity-<date>.md (the test's whole output to .md.log).
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 BEFORE AFTER   (git revisions; . for the working tree)" >&2
	exit 2
fi
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# build REV NAME: REV's stormguard binary as $dir/NAME.
build() {
	if [ "$1" = . ]; then
		go build -o "$dir/$2" ./cmd/stormguard
		return
	fi
	if ! git rev-parse --verify --quiet "$1^{commit}" >/dev/null; then
		echo "$1: not a git revision" >&2
		exit 2
	fi
	mkdir "$dir/src-$2"
	git archive "$1" | tar -x -C "$dir/src-$2"
	(cd "$dir/src-$2" && go build -o "$dir/$2" ./cmd/stormguard)
}

# describe REV: what the report calls it.
describe() {
	if [ "$1" = . ]; then
		changes=""
		git diff --quiet HEAD || changes=", with uncommitted changes"
		echo "the working tree (on $(git rev-parse --short HEAD)$changes)"
	else
		echo "$1 ($(git rev-parse --short "$1^{commit}"))"
	fi
}

build "$1" before
build "$2" after
mkdir -p bench/results
out="bench/results/identity-$(date -u +%Y%m%dT%H%M%SZ).md"
STORMGUARD_BENCH_IDENTITY=1 STORMGUARD_REQUIRE_SERVERS=1 \
	BEFORE_BIN="$dir/before" AFTER_BIN="$dir/after" BEFORE_REV="$(describe "$1")" AFTER_REV="$(describe "$2")" \
	go test -count=1 -timeout 60m -run '^TestIdentityCost$' -v ./bench/identity/ | tee "$out.log" |
	grep -v '^=== \|^--- PASS\|^    --- PASS\|^PASS$\|^ok ' | tee "$out"
