#!/usr/bin/env bash
# Prints the four headline figures of BENCHMARKS.md as a Markdown table,
# each in instructions per op under valgrind (tools/icount.sh) with the
# median time per op of a short `go test -bench` run beside it:
#
#   BenchmarkLifecycle (root): instructions per connection, goal <= 6000
#   BenchmarkDataSegment/plain (root): instructions per op, goal <= 250
#   interop/bench BenchmarkLifecycle: tcpfsm's instructions over seqs', goal <= 0.8
#   interop/bench BenchmarkSegment: the same ratio, goal <= 0.8
#
#   tools/figures.sh        prints the table (about 1 to 3 minutes)
#   tools/figures.sh -w     also writes it into BENCHMARKS.md, between the
#                           two marker comments of its Goals section
#
# BENCHTIME (default 0.5s) and COUNT (default 3) set the timed runs. Time
# per op moves by up to 2x with the host's load; the counts do not. Needs
# valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
write=false
[ "${1:-}" = -w ] && write=true
benchtime=${BENCHTIME:-0.5s}
runs=${COUNT:-3}

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . 2>/dev/null || commit="$commit + uncommitted changes"
when=$(date -u '+%Y-%m-%d %H:%M UTC')

counts=$(tools/icount.sh lifecycle plain bench/lifecycle/tcpfsm bench/lifecycle/seqs \
	bench/segment/tcpfsm bench/segment/seqs)
times=$( (
	go test -run '^$' -bench '^(BenchmarkLifecycle|BenchmarkDataSegment)$' \
		-benchtime "$benchtime" -count "$runs" .
	cd interop && go test -run '^$' -bench '^(BenchmarkLifecycle|BenchmarkSegment)$' \
		-benchtime "$benchtime" -count "$runs" ./bench
) | grep '^Benchmark')

# icount <what>: the count tools/icount.sh printed for it.
icount() { echo "$counts" | awk -v w="$1:" '$1 == w {print $2}'; }

# nsop <pkg> <name>: the median ns/op of the runs of one benchmark; pkg
# is "root" or "bench" (interop/bench, where the names repeat).
nsop() {
	echo "$times" | awk -v pkg="$1" -v name="$2" '
		/^BenchmarkLifecycle-|^BenchmarkDataSegment\// { p = "root" }
		/^BenchmarkLifecycle\/|^BenchmarkSegment\// { p = "bench" }
		{ n = $1; sub(/-[0-9]+$/, "", n) }
		p == pkg && n == name { for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") v[k++] = $i }
		END {
			if (k == 0) exit 1
			for (i = 0; i < k; i++) for (j = i + 1; j < k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
			print v[int((k - 1) / 2)]
		}'
}

# human <ns>: a time per op in ns or µs.
human() { awk -v t="$1" 'BEGIN { if (t >= 1000) printf "%.2f µs", t / 1000; else printf "%.1f ns", t }'; }

# row <figure> <value> <goal> <time column>; value and goal as numbers.
row() {
	awk -v f="$1" -v v="$2" -v g="$3" -v tm="$4" 'BEGIN {
		met = (v + 0 <= g + 0) ? "met" : "**not met**"
		if (v ~ /\./) { vs = sprintf("%.2fx", v); gs = sprintf("<= %.1fx", g) } else { vs = commas(v); gs = "<= " commas(g) }
		printf "| %s | %s | %s | %s | %s |\n", f, vs, tm, gs, met
	}
	function commas(n) { while (n ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", n); return n }'
}

lc=$(icount lifecycle)
ds=$(icount plain)
lt=$(icount bench/lifecycle/tcpfsm) ls=$(icount bench/lifecycle/seqs)
st=$(icount bench/segment/tcpfsm) ss=$(icount bench/segment/seqs)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
tlc=$(nsop root BenchmarkLifecycle) tds=$(nsop root BenchmarkDataSegment/plain)
tlt=$(nsop bench BenchmarkLifecycle/tcpfsm) tls=$(nsop bench BenchmarkLifecycle/seqs)
tst=$(nsop bench BenchmarkSegment/tcpfsm) tss=$(nsop bench BenchmarkSegment/seqs)

table() {
	echo "Measured at $commit, $when; time per op: median of $runs runs of $benchtime."
	echo
	echo "| figure | now (instructions) | time per op | goal | |"
	echo "|---|--:|--:|--:|---|"
	row '`BenchmarkLifecycle`, instructions per connection' "$lc" 6000 "$(human "$tlc")"
	row '`BenchmarkDataSegment/plain`, instructions per op' "$ds" 250 "$(human "$tds")"
	row "\`interop/bench\` \`BenchmarkLifecycle\`, tcpfsm / seqs ($lt / $ls)" "$(ratio "$lt" "$ls")" 0.8 \
		"$(ratio "$tlt" "$tls" | awk '{printf "%.2fx", $1}') ($(human "$tlt") / $(human "$tls"))"
	row "\`interop/bench\` \`BenchmarkSegment\`, tcpfsm / seqs ($st / $ss)" "$(ratio "$st" "$ss")" 0.8 \
		"$(ratio "$tst" "$tss" | awk '{printf "%.2fx", $1}') ($(human "$tst") / $(human "$tss"))"
}

out=$(table)
echo "$out"
if $write; then
	# Between the markers, keep the markers and replace the rest.
	awk -v new="$out" '
		/^<!-- tools\/figures.sh -w rewrites from here -->$/ { print; print new; skip = 1; found = 1; next }
		/^<!-- to here -->$/ { skip = 0 }
		!skip { print }
		END { if (!found) exit 1 }' BENCHMARKS.md >BENCHMARKS.md.new ||
		{ rm -f BENCHMARKS.md.new; echo "figures.sh: no markers in BENCHMARKS.md" >&2; exit 1; }
	mv BENCHMARKS.md.new BENCHMARKS.md
fi
