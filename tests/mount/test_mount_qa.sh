#!/bin/bash
# tests/mount/test_mount_qa.sh - a first-time user's and an attacker's
# session (issues #3, #4): mountpoint and repo id checks, everyday tools
# (cp -r, tar, md5sum, odd read sizes), tiny reads of control files,
# garbage requests, two mounts on one cache, remount, offline remount, a
# hub that stalls while mounting.
. tests/lib.sh
. tests/mount/lib_mount.sh

SRC=$MFS_DATA/models/stories260K-hf
: >"$MFS_TMP/fault"
hub_start --fault-file "$MFS_TMP/fault" || exit 1
hub_import "$SRC" test/s >/dev/null || { fail "import"; exit 1; }

# ---- mountpoint and repo id --------------------------------------------
mkdir -p "$MFS_TMP/full"
echo keep >"$MFS_TMP/full/mine.txt"
"$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/cache" test/s "$MFS_TMP/full" \
    2>"$MFS_TMP/err"
rc=$?
grep -qs " $MFS_TMP/full " /proc/mounts && { fail "mounted over a non-empty folder";
    fusermount3 -u -z "$MFS_TMP/full"; }
[ $rc = 1 ] && grep -q "not empty" "$MFS_TMP/err" &&
    ok "non-empty mountpoint refused (exit 1): $(cat "$MFS_TMP/err")" ||
    fail "non-empty mountpoint: exit $rc, '$(cat "$MFS_TMP/err")'"
"$MFS_BIN" mount --endpoint "$HUB_URL" test/s "$MFS_TMP/full/mine.txt" 2>"$MFS_TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "mine.txt" "$MFS_TMP/err" && ok "a file as mountpoint refused (exit 1)" ||
    fail "file as mountpoint: exit $rc, '$(cat "$MFS_TMP/err")'"
"$MFS_BIN" mount --endpoint "$HUB_URL" test/s "$MFS_TMP/nowhere" 2>"$MFS_TMP/err"
rc=$?
[ $rc = 1 ] && grep -q "No such file" "$MFS_TMP/err" && ok "missing mountpoint refused (exit 1)" ||
    fail "missing mountpoint: exit $rc, '$(cat "$MFS_TMP/err")'"
mkdir -p "$MFS_TMP/e"
for id in "../etc" "test/../s" "a b/c" "a/b/c" "test/s " "x-/y" "test/s." "a//b" "/abs"; do
    "$MFS_BIN" mount --endpoint "$HUB_URL" "$id" "$MFS_TMP/e" >/dev/null 2>"$MFS_TMP/err"
    rc=$?
    [ $rc = 2 ] && grep -q "bad repo id" "$MFS_TMP/err" && ok "repo id '$id': usage error" ||
        fail "repo id '$id': exit $rc, '$(head -1 "$MFS_TMP/err")'"
done
"$MFS_BIN" mount --no-such-option test/s "$MFS_TMP/e" >/dev/null 2>&1
[ $? = 2 ] && ok "unknown option: exit 2" || fail "unknown option: exit $?"
grep -qs " $MFS_TMP/e " /proc/mounts && fail "a bad request left a mount"

# ---- everyday tools ---------------------------------------------------
M=$MFS_TMP/m
mfs_mount test/s "$M" 2>"$MFS_TMP/err" || { fail "mount: $(cat "$MFS_TMP/err")"; exit 1; }
"$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/cache" test/s "$M" 2>"$MFS_TMP/err"
rc=$?
[ $rc = 1 ] && [ "$(grep -c " $M " /proc/mounts)" = 1 ] &&
    ok "mounting again on a live mount refused: $(cat "$MFS_TMP/err")" ||
    fail "second mount on $M: exit $rc, $(grep -c " $M " /proc/mounts) mounts"
cp -r "$M/." "$MFS_TMP/copy" && diff -r -x tensors -x .modelfs -x .gitattributes \
    "$SRC" "$MFS_TMP/copy" >/dev/null && ok "cp -r MNT/. dst: files identical" ||
    fail "cp -r MNT/. dst"
n1=$(tar cf - -C "$M" --exclude=./.modelfs . | tar tf - | wc -l)
n2=$(find "$M" -path "$M/.modelfs" -prune -o -print | wc -l)
[ "$n1" = "$n2" ] && ok "tar c lists what find sees ($n1)" || fail "tar $n1 vs find $n2"
(cd "$M/tensors" && md5sum -- *) >"$MFS_TMP/md5a"
(cd "$M/tensors" && md5sum -- *) >"$MFS_TMP/md5b"
[ -s "$MFS_TMP/md5a" ] && cmp -s "$MFS_TMP/md5a" "$MFS_TMP/md5b" &&
    ok "md5sum tensors/* stable ($(wc -l <"$MFS_TMP/md5a") tensors)" || fail "md5sum tensors/*"
for bs in 1 7 4093 65537 1048577; do
    dd if="$M/model.safetensors" bs=$bs 2>/dev/null | cmp -s - "$SRC/model.safetensors" &&
        ok "dd bs=$bs reads model.safetensors exactly" || fail "dd bs=$bs differs"
done
for f in info status load log; do
    a=$(dd if="$M/.modelfs/$f" bs=1 2>/dev/null | jq -c 'del(.bytes_cached, .hub, .cache,
        .bytes_fetched, .transfers)' 2>/dev/null || dd if="$M/.modelfs/$f" bs=1 2>/dev/null)
    b=$(jq -c 'del(.bytes_cached, .hub, .cache, .bytes_fetched, .transfers)' \
        "$M/.modelfs/$f" 2>/dev/null || cat "$M/.modelfs/$f")
    [ "$a" = "$b" ] && ok "dd bs=1 of .modelfs/$f = cat" || fail ".modelfs/$f: bs=1 '$a' vs '$b'"
done

# ---- hostile control-file requests -------------------------------------
head -c 3000000 /dev/urandom >"$MFS_TMP/junk"
for f in load generate tokenize embed; do
    timeout 20 cp "$MFS_TMP/junk" "$M/.modelfs/$f" 2>"$MFS_TMP/err" &&
        fail "3 MB of random bytes to $f accepted" ||
        ok "3 MB of random bytes to $f: $(sed 's/.*: //' "$MFS_TMP/err" | head -1)"
done
for f in info status log; do
    (echo hi >"$M/.modelfs/$f") 2>/dev/null && fail "write to $f accepted" ||
        ok "write to read-only $f refused"
done
cmp -s "$SRC/config.json" "$M/config.json" && jq -e . "$M/.modelfs/status" >/dev/null &&
    ok "the mount still works after the garbage" || fail "mount damaged by garbage"

# ---- two mounts on one cache, remount, offline remount -------------------
M2=$MFS_TMP/m2
if mfs_mount test/s "$M2" --read-only 2>"$MFS_TMP/err"; then
    cmp -s "$M/model.safetensors" "$M2/model.safetensors" &&
        ok "two mounts (one --read-only) of one repo on one cache read the same bytes" || fail "two mounts differ"
    mfs_umount "$M2"
else
    fail "second mount on the same cache: $(cat "$MFS_TMP/err")"
fi
"$MFS_BIN" umount "$M" || fail "umount"
mfs_mount test/s "$M" 2>"$MFS_TMP/err" && cmp -s "$SRC/config.json" "$M/config.json" &&
    ok "remount after umount" || fail "remount: $(cat "$MFS_TMP/err")"
mfs_umount "$M"
HF_HUB_OFFLINE=1 mfs_mount test/s "$M" 2>"$MFS_TMP/err" &&
    cmp -s "$SRC/model.safetensors" "$M/model.safetensors" &&
    ok "HF_HUB_OFFLINE=1 remount reads the cached files" ||
    fail "offline remount: $(cat "$MFS_TMP/err")"
mfs_umount "$M"

# ---- a hub that stalls while mounting ------------------------------------
# The checkpoint header is read at mount: a stall there must fail the
# mount within --timeout with a clear message, leaving no mount behind.
echo "stall model.safetensors" >"$MFS_TMP/fault"
mkdir -p "$MFS_TMP/ms"
start=$(date +%s)
timeout 60 "$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/cstall" --timeout 2 \
    test/s "$MFS_TMP/ms" 2>"$MFS_TMP/err"
rc=$?
secs=$(( $(date +%s) - start ))
if grep -qs " $MFS_TMP/ms " /proc/mounts; then
    # Mounting without the checkpoint is acceptable if the cause is logged.
    grep -q "model.safetensors" "$MFS_TMP/ms/.modelfs/log" && [ $secs -le 20 ] &&
        ok "stalled hub at mount: mounted in ${secs}s, stall logged" ||
        fail "stalled hub at mount: mounted after ${secs}s, log '$(cat "$MFS_TMP/ms/.modelfs/log")'"
    fusermount3 -u -z "$MFS_TMP/ms"
else
    [ $rc != 0 ] && [ $rc != 124 ] && [ $secs -le 20 ] && [ -s "$MFS_TMP/err" ] &&
        ok "stalled hub at mount: failed in ${secs}s: $(head -1 "$MFS_TMP/err")" ||
        fail "stalled hub at mount: exit $rc after ${secs}s: '$(cat "$MFS_TMP/err")'"
fi
: >"$MFS_TMP/fault"

# A hub that accepts connections but never answers (stopped): the mount
# fails within --timeout, saying why, and leaves nothing mounted.
kill -STOP "$HUB_PID"
start=$(date +%s)
timeout 60 "$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/chung" --timeout 2 \
    test/s "$MFS_TMP/ms" 2>"$MFS_TMP/err"
rc=$?
secs=$(( $(date +%s) - start ))
kill -CONT "$HUB_PID"
grep -qs " $MFS_TMP/ms " /proc/mounts &&
    { fail "mounted on a hung hub"; fusermount3 -u -z "$MFS_TMP/ms"; }
[ $rc = 1 ] && [ $secs -le 10 ] && grep -q "test/s" "$MFS_TMP/err" &&
    ok "hung hub: mount fails in ${secs}s: $(head -1 "$MFS_TMP/err")" ||
    fail "hung hub: exit $rc after ${secs}s: '$(cat "$MFS_TMP/err")'"

# `modelfs umount` of a mount that is not modelfs's: refused, and the pid
# in a planted user.modelfs.pid xattr is not signalled (it used to get
# SIGTERM: any writable tmpfs root could name a victim).
if mkdir -p "$MFS_TMP/tmpfs" && mount -t tmpfs none "$MFS_TMP/tmpfs" 2>/dev/null; then
    sleep 60 &
    victim=$!
    if setfattr -n user.modelfs.pid -v "$victim" "$MFS_TMP/tmpfs" 2>/dev/null; then
        "$MFS_BIN" umount "$MFS_TMP/tmpfs" 2>"$MFS_TMP/err"
        rc=$?
        sleep 0.2
        kill -0 "$victim" 2>/dev/null && grep -qs " $MFS_TMP/tmpfs " /proc/mounts && [ $rc = 1 ] &&
            ok "umount of a tmpfs refused: $(cat "$MFS_TMP/err")" ||
            fail "umount of a tmpfs: exit $rc, victim alive: $(kill -0 "$victim" 2>/dev/null &&
                 echo yes || echo no), '$(cat "$MFS_TMP/err")'"
    else
        ok "# skip planted pid xattr: tmpfs has no user xattrs here"
    fi
    kill "$victim" 2>/dev/null
    wait "$victim" 2>/dev/null
    umount "$MFS_TMP/tmpfs"
else
    ok "# skip umount of a foreign mount: cannot mount a tmpfs"
fi
