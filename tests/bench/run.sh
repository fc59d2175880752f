#!/bin/bash
# tests/bench/run.sh - `make bench`: runs every tests/bench/bench_*.sh and
# build/tests/bench/bench_* program.  Each prints its own lines of
# "name: ours X, baseline Y, ratio R (target T)"; synthetic models are
# generated at bench time under a temp dir, never committed.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export MFS_ROOT=$PWD MFS_DATA=$PWD/data MFS_BIN=$PWD/$BUILD/modelfs MFS_BUILD=$PWD/$BUILD
pattern=${BENCH:-}
for b in tests/bench/bench_*.sh "$BUILD"/tests/bench/bench_*; do
    [ -f "$b" ] || continue
    [ -n "$pattern" ] && [[ "$b" != *$pattern* ]] && continue
    echo "== $b"
    tmp=$(mktemp -d /tmp/mfs-bench.XXXXXX)
    if [[ "$b" == *.sh ]]; then MFS_TMP=$tmp bash "$b"; else MFS_TMP=$tmp "$b"; fi
    grep -qs " $tmp" /proc/mounts && awk -v t="$tmp" '$2 ~ "^"t {print $2}' /proc/mounts |
        xargs -r -n1 fusermount3 -u -z 2>/dev/null
    rm -rf "$tmp"
done
