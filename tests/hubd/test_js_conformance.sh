#!/bin/bash
# tests/hubd/test_js_conformance.sh - `modelfs hub serve` driven by the
# official @huggingface/hub JavaScript client (docs/hub-api.md section 11).
#
# Installs the pinned client into tests/js/node_modules when missing, imports
# real model repos from $MFS_DATA/models plus a folder of more small files
# than one tree page, starts the hub with two users' tokens and runs
# tests/js/conformance.mjs, which prints the ok / not ok lines.
#
# MULTIPART_SIZE (bytes, default 24 MiB) sizes the upload meant to be above the
# server's multipart threshold; 0 skips it.
MFS_ROOT=${MFS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$MFS_ROOT/tests/lib.sh"

JS=$MFS_ROOT/tests/js
js_client_ready "$JS" || exit 1

# Two users: the owner of every repo below, and someone else.
export HUB_USER=alice
export HF_TOKEN=hf_conformAliceToken0123456789
export HF_TOKEN_OTHER=hf_conformBobToken0123456789
printf '# conformance users\n%s alice\n%s bob\n' "$HF_TOKEN" "$HF_TOKEN_OTHER" >"$MFS_TMP/tokens"

# More small files than one tree page (1000 by default on the Hub), in ten folders.
export MANY_DIR=$MFS_TMP/many
for d in 0 1 2 3 4 5 6 7 8 9; do
    mkdir -p "$MANY_DIR/d$d"
    for i in $(seq -w 0 119); do
        printf 'file %s of folder %s\n' "$i" "$d" >"$MANY_DIR/d$d/f$i.txt"
    done
done

HUB_ROOT=$MFS_TMP/hub
mkdir -p "$HUB_ROOT"
import_repo() {   # VAR SRC REPO [options]: import, keep the commit oid in VAR
    local var=$1 src=$2 repo=$3 oid
    shift 3
    oid=$(hub_import "$src" "$repo" "$@" 2>"$MFS_TMP/import.err" | tail -1)
    if [[ "$oid" =~ ^[0-9a-f]{40}$ ]]; then
        ok "import $repo"
    else
        fail "import $repo: got '$oid' $(head -c 300 "$MFS_TMP/import.err")"
    fi
    export "$var=$oid"
}
M=$MFS_DATA/models
export REPO_SINGLE=alice/stories260K REPO_SHARDED=alice/stories260K-sharded
export REPO_PRIVATE=alice/stories260K-private REPO_GATED=alice/stories260K-gated
export REPO_MANY=alice/many-files REPO_DATASET=alice/stories260K-data
import_repo COMMIT_SINGLE "$M/stories260K-hf" "$REPO_SINGLE"
import_repo COMMIT_SHARDED "$M/stories260K-hf-sharded" "$REPO_SHARDED"
import_repo COMMIT_PRIVATE "$M/stories260K-hf" "$REPO_PRIVATE" --private
import_repo COMMIT_GATED "$M/stories260K-hf" "$REPO_GATED" --gated
import_repo COMMIT_MANY "$MANY_DIR" "$REPO_MANY"
import_repo COMMIT_DATASET "$M/stories260K-hf" "$REPO_DATASET" --repo-type dataset

if ! hub_start --token-file "$MFS_TMP/tokens"; then
    fail "hub serve starts"
    exit 1
fi
export HUB_URL MFS_DATA MFS_TMP
export MULTIPART_SIZE=${MULTIPART_SIZE:-25165824}

node "$JS/conformance.mjs"
rc=$?

# The server must still be serving after everything the suite threw at it.
if curl -sf "$HUB_URL/api/_modelfs/stats" >/dev/null; then
    ok "server still serving after the JS suite"
else
    fail "server still serving after the JS suite"
fi
# Stop the server cleanly and look at what it said on stderr: under SAN=1 any
# AddressSanitizer/UBSan/LeakSanitizer report is a server bug this suite provoked.
hub_stop
SAN_RE='AddressSanitizer\|LeakSanitizer\|ThreadSanitizer\|runtime error:'
if grep -q "$SAN_RE" "$MFS_TMP/hub.err"; then
    fail "no sanitizer report from the server: $(grep -m1 "$SAN_RE" "$MFS_TMP/hub.err")"
    grep -A12 "$SAN_RE" "$MFS_TMP/hub.err" | head -40
else
    ok "no sanitizer report from the server"
fi
exit $rc
