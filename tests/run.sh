#!/bin/bash
# tests/run.sh - runs every test and prints "N passed, N failed".
#
# A test is a C program build/tests/<area>/test_* (tests/check.h) or a shell
# script tests/<area>/test_*.sh (tests/lib.sh).  Each prints "ok - ..." or
# "not ok - ..." lines; a test that exits non-zero without a "not ok" line
# counts as one failure.  Each test runs with its own temp dir (MFS_TMP) and a
# time limit.  TESTS="pattern" picks tests by path substring.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export MFS_ROOT=$PWD
export MFS_DATA=$PWD/data
export MFS_BIN=$PWD/$BUILD/modelfs
export MFS_BUILD=$PWD/$BUILD
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LIMIT=${TEST_TIMEOUT:-600}
pattern=${TESTS:-}

passed=0
failed=0
failures=()
logdir=$(mktemp -d /tmp/mfs-testlog.XXXXXX)

tests=()
for t in "$BUILD"/tests/*/test_*; do
    [ -x "$t" ] && [ -f "$t" ] && tests+=("$t")
done
for t in tests/*/test_*.sh; do
    [ -f "$t" ] && tests+=("$t")
done

for t in "${tests[@]}"; do
    [ -n "$pattern" ] && [[ "$t" != *$pattern* ]] && continue
    name=${t#"$BUILD"/}
    log="$logdir/$(echo "$name" | tr '/' '_').log"
    tmp=$(mktemp -d /tmp/mfs-test.XXXXXX)
    start=$(date +%s)
    if [[ "$t" == *.sh ]]; then
        MFS_TMP=$tmp timeout -k 10 "$LIMIT" bash "$t" >"$log" 2>&1
    else
        MFS_TMP=$tmp timeout -k 10 "$LIMIT" "$t" >"$log" 2>&1
    fi
    rc=$?
    secs=$(( $(date +%s) - start ))
    ok=$(grep -c '^ok ' "$log")
    bad=$(grep -c '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1
        echo "not ok - $name exited with status $rc" >>"$log"
    fi
    passed=$((passed + ok))
    failed=$((failed + bad))
    printf '%-48s %4d ok %4d failed  %4ds\n' "$name" "$ok" "$bad" "$secs"
    if [ "$bad" -gt 0 ]; then
        failures+=("$name")
        grep '^not ok ' "$log" | head -20 | sed 's/^/    /'
        tail -5 "$log" | sed 's/^/    | /'
    fi
    # Leave no mount behind, whatever the test did.
    grep -qs " $tmp" /proc/mounts && awk -v t="$tmp" '$2 ~ "^"t {print $2}' /proc/mounts |
        xargs -r -n1 fusermount3 -u -z 2>/dev/null
    rm -rf "$tmp" 2>/dev/null
done

echo
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]} (logs in $logdir)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
