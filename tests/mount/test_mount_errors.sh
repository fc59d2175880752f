#!/bin/bash
# tests/mount/test_mount_errors.sh - docs/design.md "Errors" through a real
# mount: unknown repo and revision, an unreachable server, private and
# gated repos with and without a token, a corrupt safetensors header, a
# 5xx answer, a stalled server (EIO within --timeout, other files still
# readable), umount with a read in flight.
. tests/lib.sh
. tests/mount/lib_mount.sh

SRC=$MFS_DATA/models/stories260K-hf
echo "hf_alicetoken alice" >"$MFS_TMP/tokens"
: >"$MFS_TMP/fault"
hub_start --token-file "$MFS_TMP/tokens" --fault-file "$MFS_TMP/fault" || exit 1
hub_import "$SRC" karpathy/stories260K >/dev/null || { fail "import"; exit 1; }
hub_import "$SRC" alice/secret --private >/dev/null || fail "import --private"
hub_import "$SRC" alice/gated --gated >/dev/null || fail "import --gated"

# expect_mount_fail DESC PATTERN REPO [options]: fails, non-zero, one clear line.
expect_mount_fail() {
    local desc=$1 pat=$2 repo=$3 mnt=$MFS_TMP/fail
    shift 3
    mkdir -p "$mnt"
    if "$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/cache" "$@" "$repo" "$mnt" \
            2>"$MFS_TMP/err"; then
        fail "$desc: mount succeeded"
        fusermount3 -u -z "$mnt"
    elif [ "$(wc -l <"$MFS_TMP/err")" = 1 ] && grep -q "^modelfs: .*$pat" "$MFS_TMP/err"; then
        ok "$desc: $(cat "$MFS_TMP/err")"
    else
        fail "$desc: message '$(cat "$MFS_TMP/err")' lacks '$pat'"
    fi
    grep -qs " $mnt " /proc/mounts && fail "$desc: left a mount behind"
}

expect_mount_fail "unknown repo" "nobody/nothing" nobody/nothing
expect_mount_fail "unknown revision" "nope" karpathy/stories260K --revision nope
expect_mount_fail "private repo without a token" "alice/secret" alice/secret
expect_mount_fail "private repo with a wrong token" "alice/secret" alice/secret --token hf_wrong
expect_mount_fail "unreachable server" "karpathy/stories260K" karpathy/stories260K \
    --endpoint http://127.0.0.1:1
expect_mount_fail "offline, never cached" "not cached" karpathy/stories260K --offline \
    --cache-dir "$MFS_TMP/empty-cache"

M=$MFS_TMP/private
if mfs_mount alice/secret "$M" --token hf_alicetoken 2>"$MFS_TMP/err"; then
    cmp -s "$SRC/config.json" "$M/config.json" && ok "private repo with --token reads" ||
        fail "private repo bytes"
    "$MFS_BIN" umount "$M"
else
    fail "private repo with --token: $(cat "$MFS_TMP/err")"
fi
if HF_TOKEN=hf_alicetoken mfs_mount alice/secret "$M" 2>"$MFS_TMP/err"; then
    ok "HF_TOKEN is used"; "$MFS_BIN" umount "$M"
else
    fail "HF_TOKEN: $(cat "$MFS_TMP/err")"
fi
mkdir -p "$MFS_TMP/hfhome"; echo " hf_alicetoken " >"$MFS_TMP/hfhome/token"
if HF_TOKEN= HF_HOME=$MFS_TMP/hfhome mfs_mount alice/secret "$M" 2>"$MFS_TMP/err"; then
    ok "the token file \$HF_HOME/token is used"; "$MFS_BIN" umount "$M"
else
    fail "HF_HOME/token: $(cat "$MFS_TMP/err")"
fi

# Gated: the listing is public, the bytes need a token (EACCES, log names the repo).
G=$MFS_TMP/gated
# Its own cache: the same bytes fetched for another repo would be shared.
if mfs_mount alice/gated "$G" --cache-dir "$MFS_TMP/cgated" 2>"$MFS_TMP/err"; then
    ok "gated repo mounts anonymously"
    [ "$(stat -c %s "$G/config.json")" = "$(stat -c %s "$SRC/config.json")" ] &&
        ok "gated: sizes listed" || fail "gated: sizes"
    cat "$G/config.json" >/dev/null 2>"$MFS_TMP/err"
    grep -q "Permission denied" "$MFS_TMP/err" && ok "gated: reading gives EACCES" ||
        fail "gated read: $(cat "$MFS_TMP/err")"
    grep -q "alice/gated" "$G/.modelfs/log" && ok "gated: the log line names the repo" ||
        fail "gated log: $(cat "$G/.modelfs/log")"
    "$MFS_BIN" umount "$G"
else
    fail "gated mount: $(cat "$MFS_TMP/err")"
fi

# A corrupt header in one shard: its tensors are left out and logged, the
# rest of the mount works.
C=$MFS_TMP/corrupt-src
cp -r "$MFS_DATA/models/stories260K-hf-sharded" "$C"
printf '{"bad json' | dd of="$C/model-00002-of-00004.safetensors" bs=1 seek=8 conv=notrunc \
    2>/dev/null
hub_import "$C" test/corrupt >/dev/null || fail "import corrupt"
if mfs_mount test/corrupt "$MFS_TMP/corrupt" 2>"$MFS_TMP/err"; then
    S2=$MFS_DATA/models/stories260K-hf-sharded/model-00002-of-00004.safetensors
    n_bad=$("$MNT_TOOL" slices "$S2" | wc -l)
    n=$(ls "$MFS_TMP/corrupt/tensors" | wc -l)
    [ "$n" = $((47 - n_bad)) ] && ok "corrupt shard: its $n_bad tensors left out, $n shown" ||
        fail "corrupt shard: $n tensors shown, want $((47 - n_bad))"
    set -- $(check_tensors "$C/model-00001-of-00004.safetensors" "$MFS_TMP/corrupt")
    [ "$4" = 0 ] && [ "$2" -gt 0 ] && ok "corrupt shard: the other shards' tensors are right" ||
        fail "corrupt shard: other tensors $*"
    grep -q "model-00002-of-00004.safetensors" "$MFS_TMP/corrupt/.modelfs/log" &&
        ok "corrupt shard: a log line names the file" || fail "corrupt shard: no log line"
    cmp -s "$C/model-00002-of-00004.safetensors" \
        "$MFS_TMP/corrupt/model-00002-of-00004.safetensors" &&
        ok "corrupt shard: the file itself still reads as stored" || fail "corrupt file bytes"
    "$MFS_BIN" umount "$MFS_TMP/corrupt"
else
    fail "mount with a corrupt shard: $(cat "$MFS_TMP/err")"
fi

# 5xx: EIO with the cause in the log, and no lasting damage once it heals.
M=$MFS_TMP/m500
mfs_mount karpathy/stories260K "$M" --cache-dir "$MFS_TMP/c500" || fail "mount for 500"
echo "500 tokenizer.json" >"$MFS_TMP/fault"
"$MNT_TOOL" readall "$M/tokenizer.json" >/dev/null 2>"$MFS_TMP/err"
[ "$(cat "$MFS_TMP/err")" = EIO ] && ok "HTTP 500: EIO" || fail "HTTP 500: $(cat "$MFS_TMP/err")"
grep -q "tokenizer.json" "$M/.modelfs/log" && ok "HTTP 500: log line names the file" ||
    fail "HTTP 500: no log line"
: >"$MFS_TMP/fault"
cmp -s "$SRC/tokenizer.json" "$M/tokenizer.json" && ok "after the fault heals the file reads" ||
    fail "after 500 the file still fails"

# A stalled server: that read fails with EIO within --timeout; other files
# keep working meanwhile.  (tokenizer.json: nothing reads it at mount.)
"$MFS_BIN" umount "$M"
mfs_mount karpathy/stories260K "$M" --cache-dir "$MFS_TMP/cstall" --timeout 2 || fail "mount"
echo "stall tokenizer.json" >"$MFS_TMP/fault"
start=$(date +%s)
"$MNT_TOOL" readall "$M/tokenizer.json" >"$MFS_TMP/stalled" 2>"$MFS_TMP/err" &
rp=$!
sleep 0.5
timeout 10 cmp -s "$SRC/config.json" "$M/config.json" &&
    ok "a stalled read does not block other files" || fail "other files blocked by a stall"
wait $rp
secs=$(( $(date +%s) - start ))
[ "$(cat "$MFS_TMP/err")" = EIO ] && [ $secs -le 30 ] &&
    ok "stalled read: EIO after ${secs}s (--timeout 2)" ||
    fail "stalled read: '$(cat "$MFS_TMP/err")' after ${secs}s"
[ ! -s "$MFS_TMP/stalled" ] && ok "no bytes came out of the stalled read" ||
    fail "the stalled read gave $(stat -c %s "$MFS_TMP/stalled") bytes"
grep -q "tokenizer.json" "$M/.modelfs/log" && ok "the stall is logged" || fail "stall not logged"

# umount with a read in flight (default 30 s timeout) finishes within seconds.
"$MFS_BIN" umount "$M"
mfs_mount karpathy/stories260K "$M" --cache-dir "$MFS_TMP/cstall2" || fail "mount"
pid=$(mount_pid "$M")
"$MNT_TOOL" readall "$M/tokenizer.json" >/dev/null 2>"$MFS_TMP/err" &
rp=$!
sleep 1
kill -0 $rp 2>/dev/null && ok "the read is in flight (stalled)" || fail "the read ended early"
start=$(date +%s)
"$MFS_BIN" umount "$M" && ok "umount with a read in flight" || fail "umount in flight"
secs=$(( $(date +%s) - start ))
[ $secs -le 10 ] && ok "it took ${secs}s" || fail "umount took ${secs}s"
wait $rp && fail "the read in flight succeeded" || ok "the read in flight failed"
wait_gone "$pid" 5 && ok "daemon gone" || fail "daemon still running"
: >"$MFS_TMP/fault"

# The server killed mid-read: the read fails with EIO, and what it gave
# before is a true prefix of the file (never wrong bytes).
hub_stop
hub_start --delay-ms 300 || exit 1
BIG=$MFS_DATA/models/tiny-random-llama/model.safetensors
hub_import "$MFS_DATA/models/tiny-random-llama" test/llama >/dev/null || fail "import llama"
K=$MFS_TMP/killed
if mfs_mount test/llama "$K" --cache-dir "$MFS_TMP/ckill" --timeout 5; then
    "$MNT_TOOL" readall "$K/model.safetensors" >"$MFS_TMP/partial" 2>"$MFS_TMP/err" &
    rp=$!
    sleep 0.5
    kill -9 "$HUB_PID"
    wait "$HUB_PID" 2>/dev/null
    HUB_PID=""
    if wait $rp; then
        fail "server killed mid-read: the read succeeded (too fast to catch?)"
    else
        [ "$(cat "$MFS_TMP/err")" = EIO ] && ok "server killed mid-read: EIO" ||
            fail "server killed mid-read: '$(cat "$MFS_TMP/err")'"
    fi
    n=$(stat -c %s "$MFS_TMP/partial")
    [ "$n" -lt "$(stat -c %s "$BIG")" ] && cmp -s -n "$n" "$MFS_TMP/partial" "$BIG" &&
        ok "the $n bytes before the failure are right" || fail "wrong bytes before the kill"
    grep -q "model.safetensors" "$K/.modelfs/log" && ok "the failure is logged" ||
        fail "kill not logged"
    "$MFS_BIN" umount "$K" || fail "umount after the kill"
else
    fail "mount llama"
fi

# A daemon that does not answer at all (stopped): umount still detaches the
# mount within seconds instead of hanging on it.
hub_start || exit 1
H=$MFS_TMP/hung
if mfs_mount karpathy/stories260K "$H" --cache-dir "$MFS_TMP/chung"; then
    pid=$(mount_pid "$H")
    kill -STOP "$pid"
    start=$(date +%s)
    timeout 30 "$MFS_BIN" umount "$H" 2>"$MFS_TMP/err" && ok "umount of a stopped daemon" ||
        fail "umount of a stopped daemon: $(cat "$MFS_TMP/err")"
    secs=$(( $(date +%s) - start ))
    [ $secs -le 10 ] && ok "it took ${secs}s" || fail "umount of a stopped daemon took ${secs}s"
    grep -qs " $H " /proc/mounts && fail "still mounted" || ok "the mount is gone"
    kill -CONT "$pid"
    wait_gone "$pid" 5 && ok "the daemon exits once it runs again" ||
        { fail "daemon $pid lingers"; kill -9 "$pid"; }
else
    fail "mount for the stopped-daemon case"
fi
