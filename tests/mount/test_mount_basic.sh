#!/bin/bash
# tests/mount/test_mount_basic.sh - a real FUSE mount of the stories260K
# repo served by the local hub: listing, exact sizes before any read,
# byte-identical cat and cp -r, tensors/ slices and xattrs, odd range reads,
# 8 concurrent cold readers, an mmap reader, read-only errors, .modelfs/
# files, umount.
. tests/lib.sh
. tests/mount/lib_mount.sh

SRC=$MFS_DATA/models/stories260K-hf
REPO=karpathy/stories260K
MNT=$MFS_TMP/mnt

hub_start || exit 1
hub_import "$SRC" "$REPO" >/dev/null || { fail "hub import $REPO"; exit 1; }
if mfs_mount "$REPO" "$MNT" --read-only 2>"$MFS_TMP/mount.err"; then
    ok "mount returns once the mount is usable"
else
    fail "mount: $(cat "$MFS_TMP/mount.err")"
    exit 1
fi
grep -qs " $MNT fuse.modelfs " /proc/mounts && ok "mounted as fuse.modelfs" ||
    fail "not in /proc/mounts as fuse.modelfs"

# design.md: "sizes exact in stat() before any byte is fetched"
fetched0=$(json_num bytes_fetched < "$MNT/.modelfs/status")
bad=0
for f in "$SRC"/*; do
    n=$(basename "$f")
    [ "$(stat -c %s "$MNT/$n" 2>/dev/null)" = "$(stat -c %s "$f")" ] || { bad=1; echo "# size $n"; }
done
fetched1=$(json_num bytes_fetched < "$MNT/.modelfs/status")
[ $bad -eq 0 ] && ok "every file's stat size is exact" || fail "stat sizes differ"
[ -n "$fetched0" ] && [ "$fetched0" = "$fetched1" ] &&
    ok "stat fetched no bytes ($fetched0 before and after)" ||
    fail "stat fetched bytes ($fetched0 -> $fetched1)"

want=$(cd "$SRC" && ls | sort | tr '\n' ' ')
got=$(cd "$MNT" && ls | grep -v '^tensors$' | sort | tr '\n' ' ')
[ "$want" = "$got" ] && ok "ls shows the repo's files" || fail "ls: '$got' vs '$want'"
ls -a "$MNT" | grep -qx .modelfs && ok "ls -a shows .modelfs" || fail ".modelfs missing"
mt=$(stat -c %Y "$MNT/config.json")
[ "$mt" -gt 1000000000 ] && [ "$(stat -c %Y "$MNT/model.safetensors")" = "$mt" ] &&
    ok "mtime is the commit's time on every file" || fail "mtime $mt"
[ "$(stat -c %a "$MNT/config.json")" = 444 ] && [ "$(stat -c %a "$MNT/tensors")" = 555 ] &&
    [ "$(stat -c %h "$MNT")" -ge 4 ] && ok "modes 444/555 and nlink sane" || fail "modes"

# 8 concurrent cold readers of the same shard, and of distinct files.
pids=()
for i in 1 2 3 4 5 6 7 8; do
    cmp -s "$SRC/model.safetensors" "$MNT/model.safetensors" &
    pids+=($!)
done
bad=0
for p in "${pids[@]}"; do wait "$p" || bad=$((bad + 1)); done
[ $bad -eq 0 ] && ok "8 concurrent cold readers of model.safetensors get the same bytes" ||
    fail "$bad of 8 concurrent readers differ"

bad=0
for f in "$SRC"/*; do cmp -s "$f" "$MNT/$(basename "$f")" || bad=$((bad + 1)); done
[ $bad -eq 0 ] && ok "cat of every file is byte-identical" || fail "$bad files differ"

rm -rf "$MFS_TMP/copy"; mkdir -p "$MFS_TMP/copy"
cp -r "$MNT"/* "$MFS_TMP/copy/" && diff -r -x tensors "$SRC" "$MFS_TMP/copy" >/dev/null &&
    [ ! -e "$MFS_TMP/copy/.modelfs" ] && ok "cp -r MNT/* is identical and skips .modelfs" ||
    fail "cp -r differs"

# tensors/: every tensor its slice of the shard (offsets read independently).
r=$(check_tensors "$SRC/model.safetensors" "$MNT")
[ "$r" = "checked 47 bad 0" ] && ok "47 tensor files equal their slices" || fail "tensors: $r"
[ "$(ls "$MNT/tensors" | wc -l)" = 47 ] && ok "tensors/ lists 47 files" || fail "tensors count"
[ "$(stat -c %s "$MNT/tensors/model.embed_tokens.weight")" = $((512 * 64 * 4)) ] &&
    ok "tensor size is exact" || fail "tensor size"
T=$MNT/tensors/model.layers.0.mlp.gate_proj.weight
[ "$("$MNT_TOOL" xattr "$T" user.dtype)" = F32 ] && ok "user.dtype F32" || fail "user.dtype"
[ "$("$MNT_TOOL" xattr "$T" user.shape)" = "[172, 64]" ] && ok "user.shape [172, 64]" ||
    fail "user.shape: $("$MNT_TOOL" xattr "$T" user.shape)"
[ "$("$MNT_TOOL" xattr "$T" user.file)" = model.safetensors ] && ok "user.file" ||
    fail "user.file"
[ "$("$MNT_TOOL" xattr "$T" user.none)" = ENODATA ] && ok "missing xattr: ENODATA" ||
    fail "missing xattr"
getfattr -d "$T" 2>/dev/null | grep -q 'user.shape="\[172, 64\]"' &&
    ok "getfattr -d shows the xattrs" || fail "getfattr -d"

# Range reads at odd offsets and sizes, with pread and dd.
bad=0
for r in "0 1" "1 7" "4863 3" "4095 4098" "131071 262147" "262143 2" "1044990 10" \
         "1044992 5" "500000 1"; do
    set -- $r
    "$MNT_TOOL" pread "$MNT/model.safetensors" "$1" "$2" >"$MFS_TMP/got"
    tail -c +$(($1 + 1)) "$SRC/model.safetensors" | head -c "$2" >"$MFS_TMP/want"
    cmp -s "$MFS_TMP/got" "$MFS_TMP/want" || { bad=$((bad + 1)); echo "# pread $r"; }
done
[ $bad -eq 0 ] && ok "pread at 9 odd offsets/sizes" || fail "$bad odd preads differ"
dd if="$MNT/model.safetensors" of="$MFS_TMP/got" bs=999 skip=333 count=77 2>/dev/null
dd if="$SRC/model.safetensors" of="$MFS_TMP/want" bs=999 skip=333 count=77 2>/dev/null
cmp -s "$MFS_TMP/got" "$MFS_TMP/want" && ok "dd bs=999 skip=333 count=77" || fail "dd range"
"$MNT_TOOL" mmapcmp "$MNT/model.safetensors" "$SRC/model.safetensors" &&
    ok "an mmap reader of the shard sees the same bytes" || fail "mmap reader"

# Read-only for now: writes fail with EROFS, never silently.
touch "$MNT/new" 2>"$MFS_TMP/e"; grep -q "Read-only" "$MFS_TMP/e" && ok "create: EROFS" ||
    fail "create: $(cat "$MFS_TMP/e")"
(echo x >"$MNT/config.json") 2>"$MFS_TMP/e"; grep -q "Read-only\|Permission" "$MFS_TMP/e" &&
    cmp -s "$SRC/config.json" "$MNT/config.json" && ok "overwrite refused, bytes unchanged" ||
    fail "overwrite: $(cat "$MFS_TMP/e")"
rm -f "$MNT/config.json" 2>/dev/null; [ -e "$MNT/config.json" ] && ok "rm refused" ||
    fail "rm succeeded"
mkdir "$MNT/d" 2>/dev/null; [ ! -e "$MNT/d" ] && ok "mkdir refused" || fail "mkdir succeeded"
cat "$MNT/nope" 2>/dev/null && fail "missing file readable" || ok "missing file: ENOENT"

# .modelfs/
jq -e --arg r "$REPO" '.repo_id == $r and (.commit | test("^[0-9a-f]{40}$")) and
    .tensors == 47 and .num_parameters == 260032 and .revision == "main"' \
    "$MNT/.modelfs/info" >/dev/null &&
    ok ".modelfs/info: repo, commit, 47 tensors, 260032 params" ||
    fail ".modelfs/info: $(head -c 300 "$MNT/.modelfs/info")"
[ "$("$MNT_TOOL" xattr "$MNT" user.modelfs.commit)" = "$(jq -r .commit "$MNT/.modelfs/info")" ] &&
    ok "root xattr user.modelfs.commit is the pinned commit" || fail "user.modelfs.commit"
jq -e '.bytes_fetched > 0 and (.transfers | type == "array") and .cache.misses >= 0' \
    "$MNT/.modelfs/status" >/dev/null && ok ".modelfs/status is JSON with counters" ||
    fail ".modelfs/status: $(head -c 300 "$MNT/.modelfs/status")"
cat "$MNT/.modelfs/log" >/dev/null && ok ".modelfs/log reads" || fail ".modelfs/log"
(echo x >"$MNT/.modelfs/info") 2>/dev/null && fail "write to info accepted" ||
    ok "info takes no requests"

# umount: returns, the mount and the daemon are gone.
pid=$(mount_pid "$MNT")
"$MFS_BIN" umount "$MNT" && ok "modelfs umount" || fail "modelfs umount"
grep -qs " $MNT " /proc/mounts && fail "still mounted" || ok "unmounted"
wait_gone "$pid" 5 && ok "daemon exited" || fail "daemon $pid still running"
if "$MFS_BIN" umount "$MNT" 2>"$MFS_TMP/e"; then
    fail "second umount succeeded"
elif grep -q "not mounted" "$MFS_TMP/e"; then
    ok "umount of a non-mount: clear error"
else
    fail "second umount: $(cat "$MFS_TMP/e")"
fi
