#!/usr/bin/env bash
# Counts the instructions of one BenchmarkDataSegment op ("plain" or
# "options"), one BenchmarkLifecycle op ("lifecycle") or one
# BenchmarkStackConnections op ("stack") under valgrind: two
# runs of different lengths, so start-up cancels out. Unlike time per op,
# the count does not move with the host's load; compare commits with it.
#   tools/icount.sh [plain|options|lifecycle|stack]
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
what=${1:-plain}
cd "$(dirname "$0")/.."
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
pkg=.
[ "$what" = stack ] && pkg=./tcpstack
go test -c -tags icount -o "$bin" "$pkg"
n1=50000 n2=100000
case $what in lifecycle) n1=5000 n2=10000 ;; stack) n1=500 n2=1000 ;; esac
count() {
	GOMAXPROCS=1 GOGC=off ICOUNT_N=$1 ICOUNT_WHAT=$what valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file=/dev/null "$bin" -test.run '^TestInstructionCountLoop$' 2>&1 |
		awk '/I *refs/ {gsub(",", "", $NF); print $NF}'
}
a=$(count $n1)
b=$(count $n2)
echo "$what: $(((b - a) / (n2 - n1))) instructions per op"
