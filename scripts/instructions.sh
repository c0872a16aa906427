#!/bin/sh
# Instructions per scrape of the per-scrape path (examples/scrape_path.rs), counted by
# cachegrind. Unlike time, an instruction count does not move with the host's load, so
# two builds can be compared on a shared VM where wall-clock timings swing by half; it
# does not see cache misses or stalls, so read it beside the load rig, not instead of it.
#
#   scripts/instructions.sh [SCRAPES]          # default 300
#
# Prints: scrapes, samples per scrape, instructions per scrape and per sample. The count
# includes setup (config, body generation, the uncounted warm-up scrape): a run of one
# scrape is subtracted to leave the steady scrapes alone.
# Needs valgrind (Debian: apt-get install valgrind).
set -eu

scrapes=${1:-300}
case $scrapes in
'' | *[!0-9]* | 0 | 1)
	echo "usage: $0 [SCRAPES > 1]" >&2
	exit 2
	;;
esac
command -v valgrind >/dev/null || {
	echo "$0: needs valgrind (apt-get install valgrind)" >&2
	exit 1
}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example scrape_path
bin=${CARGO_TARGET_DIR:-target}/release/examples/scrape_path
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions of one run of `$1` scrapes; its stdout goes to $out/stdout.
count() {
	valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$out/cg" \
		"$bin" "$1" >"$out/stdout" 2>"$out/stderr" || {
		cat "$out/stderr" >&2
		exit 1
	}
	sed -n 's/^==[0-9]*== I *refs: *//p' "$out/stderr" | tr -d ,
}

one=$(count 1)
all=$(count "$scrapes")
samples=$(sed -n 's/.*samples=\([0-9]*\).*/\1/p' "$out/stdout")
awk -v n="$scrapes" -v one="$one" -v all="$all" -v samples="$samples" 'BEGIN {
	per = (all - one) / (n - 1)
	printf "scrapes=%d samples_per_scrape=%d instructions_per_scrape=%.0f instructions_per_sample=%.0f\n",
		n, samples / n, per, per / (samples / n)
}'
