#!/usr/bin/env bash
# Counts the instructions of one op of a benchmark under valgrind
# (cachegrind): two runs of TestInstructionCountLoop of different lengths,
# so start-up cancels out. Unlike time per op, the count does not move with
# the host's load; compare commits with it.
#
#   tools/icount.sh [what...]    (default: plain)
#
#   plain, options         BenchmarkDataSegment/plain, /ts+sack+ws (root)
#   lifecycle              BenchmarkLifecycle, one connection (root)
#   lifecycle-steps        the same, step by step: each step's count is the
#                          difference between replaying the steps up to it
#                          and up to the one before
#   checksum               BenchmarkChecksum/64KiB, one checksum (root)
#   stack                  BenchmarkStackConnections, one connection (./tcpstack)
#   bulk, bulklarge        BenchmarkEndpointBulk/segments and /large, 64 KiB (./tcpstack)
#   bench/lifecycle/tcpfsm, bench/lifecycle/seqs
#   bench/segment/tcpfsm, bench/segment/seqs
#                          one side of BenchmarkLifecycle or BenchmarkSegment
#                          in interop/bench
#
# Prints "<what>: <n> instructions per op" for each. Each test binary is
# built once (with the icount tag). Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ $# -gt 0 ] || set -- plain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# binary <module dir> <package>: builds the package's test binary once.
binary() {
	local bin=$tmp/$(echo "$1/$2" | tr -c 'a-zA-Z0-9\n' _).test
	if [ ! -x "$bin" ]; then
		(cd "$root/$1" && go test -c -tags icount -o "$bin" "$2")
	fi
	echo "$bin"
}

# count <binary> <ICOUNT_WHAT> <ops> [VAR=value...]: instructions of a run
# of that many ops; a failed run prints its output and fails.
count() {
	local out
	if ! out=$(env "${@:4}" GOMAXPROCS=1 GOGC=off ICOUNT_N=$3 ICOUNT_WHAT=$2 valgrind --tool=cachegrind --cache-sim=no \
		--cachegrind-out-file=/dev/null "$1" -test.run '^TestInstructionCountLoop$' -test.v 2>&1); then
		echo "icount.sh: ICOUNT_WHAT=$2 ICOUNT_N=$3 failed:" >&2
		echo "$out" | grep -v '^==' >&2
		return 1
	fi
	echo "$out" | awk '/I *refs/ {gsub(",", "", $NF); print $NF}'
}

for what in "$@"; do
	if [ "$what" = lifecycle-steps ]; then
		bin=$(binary . .)
		prev=0
		mapfile -t steps < <(ICOUNT_N=1 ICOUNT_WHAT=lifecycle-prefix ICOUNT_LIST=1 "$bin" -test.run '^TestInstructionCountLoop$' | grep '^step ')
		for k in $(seq 0 ${#steps[@]}); do
			a=$(count "$bin" lifecycle-prefix 2000 ICOUNT_K=$k)
			b=$(count "$bin" lifecycle-prefix 4000 ICOUNT_K=$k)
			c=$(((b - a) / 2000))
			if [ "$k" -eq 0 ]; then
				echo "lifecycle-steps: two fresh TCBs: $c instructions"
			else
				echo "lifecycle-steps: ${steps[k - 1]}: $((c - prev)) instructions"
			fi
			prev=$c
		done
		continue
	fi
	dir=. pkg=. icw=$what n1=50000 n2=100000
	case $what in
	plain | options) ;;
	lifecycle) n1=5000 n2=10000 ;;
	checksum) n1=500 n2=1000 ;;
	stack) pkg=./tcpstack n1=500 n2=1000 ;;
	bulk | bulklarge) pkg=./tcpstack n1=20 n2=40 ;;
	bench/lifecycle/tcpfsm | bench/lifecycle/seqs) dir=interop pkg=./bench icw=${what#bench/} n1=5000 n2=10000 ;;
	bench/segment/tcpfsm | bench/segment/seqs) dir=interop pkg=./bench icw=${what#bench/} ;;
	*)
		echo "icount.sh: unknown $what" >&2
		exit 2
		;;
	esac
	bin=$(binary "$dir" "$pkg")
	a=$(count "$bin" "$icw" $n1)
	b=$(count "$bin" "$icw" $n2)
	echo "$what: $(((b - a) / (n2 - n1))) instructions per op"
done
