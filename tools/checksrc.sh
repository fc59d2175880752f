#!/bin/sh
# tools/checksrc.sh - `make checksrc`: the style rules of docs style.md rule 21
# that a grep can check: banned calls, tabs, lines over 100 columns.
cd "$(dirname "$0")/.." || exit 1
files=$(git ls-files '*.c' '*.h' | grep -v '^data/')
rc=0
if grep -nE '\b(strcpy|strcat|sprintf|vsprintf|strtok|atoi|atol|gets)[[:space:]]*\(' $files; then
    echo "checksrc: banned call (use snprintf, mfs_buf, strtok_r, strtoull)"; rc=1
fi
if grep -nP '\t' $files; then echo "checksrc: tab character"; rc=1; fi
if awk 'length > 100 { print FILENAME ":" FNR ": line over 100 columns"; bad=1 } END { exit bad }' $files; then :; else rc=1; fi
[ $rc -eq 0 ] && echo "checksrc: clean"
exit $rc
