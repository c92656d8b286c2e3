#!/usr/bin/env bash
# Counts the instructions of one op of a benchmark under valgrind
# (callgrind): TestInstructionCountLoop runs the benchmark's op function
# many times, and callgrind counts only the instructions executed inside
# that function and what it calls (--toggle-collect), so neither the
# loop's own bookkeeping nor the Go runtime's background threads (whose
# work grows with the run's length under valgrind) are counted. Two runs
# of different lengths, so a first call's one-off work cancels out. The
# count is exact: the same binary gives the same figure every run, and,
# unlike time per op, it does not move with the host's load.
#
#   tools/icount.sh [what...]    (default: plain)
#
#   plain, options         BenchmarkDataSegment/plain, /ts+sack+ws (root):
#                          stepData, one segment stepped and the benchmark's
#                          own move to the next
#   lifecycle              BenchmarkLifecycle, one connection (root):
#                          replayLifecycle
#   lifecycle-steps        the same, step by step: each step's count is the
#                          difference between replaying the steps up to it
#                          and up to the one before
#   checksum               BenchmarkChecksum/64KiB, one checksum (root): Checksum
#   stack                  BenchmarkStackConnections, one connection
#                          (./tcpstack): stackConnection
#   bulk, bulklarge        BenchmarkEndpointBulk/segments and /large, 64 KiB
#                          (./tcpstack): (*bulk).op
#   bench/lifecycle/tcpfsm, bench/lifecycle/seqs
#   bench/segment/tcpfsm, bench/segment/seqs
#                          one side of BenchmarkLifecycle or BenchmarkSegment
#                          in interop/bench: (*fsmPair) or (*seqsPair)
#                          .lifecycle or .segment
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

# count <binary> <ICOUNT_WHAT> <ops> <function> [VAR=value...]: the
# instructions executed inside <function> (a callgrind pattern) during a
# run of that many ops; a failed run, or one that never entered the
# function (renamed, or inlined into the loop), prints its output and
# fails.
count() {
	local out n
	# No asynchronous preemption: its signals would be counted when they
	# land inside the function, and callgrind has failed on them.
	if ! out=$(env "${@:5}" GOMAXPROCS=1 GOGC=off GODEBUG=asyncpreemptoff=1 ICOUNT_N=$3 ICOUNT_WHAT=$2 valgrind --tool=callgrind \
		--toggle-collect="$4" --callgrind-out-file=/dev/null "$1" -test.run '^TestInstructionCountLoop$' -test.v 2>&1); then
		echo "icount.sh: ICOUNT_WHAT=$2 ICOUNT_N=$3 failed:" >&2
		echo "$out" | grep -v '^==' >&2
		return 1
	fi
	n=$(echo "$out" | awk '/Collected :/ {print $NF}')
	if [ -z "$n" ] || [ "$n" -eq 0 ]; then
		echo "icount.sh: ICOUNT_WHAT=$2: nothing counted inside $4" >&2
		return 1
	fi
	echo "$n"
}

for what in "$@"; do
	if [ "$what" = lifecycle-steps ]; then
		bin=$(binary . .)
		prev=0
		mapfile -t steps < <(ICOUNT_N=1 ICOUNT_WHAT=lifecycle-prefix ICOUNT_LIST=1 "$bin" -test.run '^TestInstructionCountLoop$' | grep '^step ')
		for k in $(seq 0 ${#steps[@]}); do
			a=$(count "$bin" lifecycle-prefix 2000 '*tcpfsm.replayLifecycle' ICOUNT_K=$k)
			b=$(count "$bin" lifecycle-prefix 4000 '*tcpfsm.replayLifecycle' ICOUNT_K=$k)
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
	dir=. pkg=. icw=$what n1=50000 n2=100000 fn='*tcpfsm.stepData'
	case $what in
	plain | options) ;;
	lifecycle) n1=5000 n2=10000 fn='*tcpfsm.replayLifecycle' ;;
	checksum) n1=500 n2=1000 fn='github.com/tcpfsm/tcpfsm.Checksum' ;;
	stack) pkg=./tcpstack n1=500 n2=1000 fn='*tcpstack.stackConnection' ;;
	bulk | bulklarge) pkg=./tcpstack n1=20 n2=40 fn='*tcpstack.(*bulk).op' ;;
	bench/lifecycle/tcpfsm) dir=interop pkg=./bench icw=${what#bench/} n1=5000 n2=10000 fn='*bench.(*fsmPair).lifecycle' ;;
	bench/lifecycle/seqs) dir=interop pkg=./bench icw=${what#bench/} n1=5000 n2=10000 fn='*bench.(*seqsPair).lifecycle' ;;
	bench/segment/tcpfsm) dir=interop pkg=./bench icw=${what#bench/} fn='*bench.(*fsmPair).segment' ;;
	bench/segment/seqs) dir=interop pkg=./bench icw=${what#bench/} fn='*bench.(*seqsPair).segment' ;;
	*)
		echo "icount.sh: unknown $what" >&2
		exit 2
		;;
	esac
	bin=$(binary "$dir" "$pkg")
	a=$(count "$bin" "$icw" $n1 "$fn")
	b=$(count "$bin" "$icw" $n2 "$fn")
	echo "$what: $(((b - a) / (n2 - n1))) instructions per op"
done
