#!/bin/bash
# tests/mount/test_mount_write.sh - writes through real FUSE mounts of the
# local Hub, before any push (pushes are tests/mount/test_mount_push.sh):
# docs/design.md "Writes, resharding, push": "Writing, creating, renaming or
# deleting files under the mount stages the change durably (it survives a
# crash or kill -9 of the daemon) and shows it in the mount at once."
#
#   A  cp -r of a model into a mount of an empty created repo: every file
#      reads back identical; echo > new; truncate; mkdir/rmdir
#   B  rename and delete of repo files, kept across a remount
#   C  tensors/NAME: a whole write replaces exactly that tensor
#   D  kill -9 of the daemon during a cp: closed files survive, the cache
#      passes PRAGMA integrity_check, the open one is at its last commit
#   E  a cache on a small tmpfs: ENOSPC, nothing staged before is lost
#   F  --read-only: EROFS
MFS_ROOT=${MFS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$MFS_ROOT/tests/lib.sh"
. "$MFS_ROOT/tests/mount/lib_mount.sh"

SRC=$MFS_DATA/models/stories260K-hf
export HF_TOKEN=hf_writeAliceToken0123456789
unset HF_HUB_OFFLINE
printf '%s alice\n' "$HF_TOKEN" >"$MFS_TMP/tokens"
export MFS_CACHE=$MFS_TMP/cache
SMALL=$MFS_TMP/small

cleanup_write() {
    cleanup
    grep -qs " $SMALL " /proc/mounts && umount -l "$SMALL" 2>/dev/null
}
trap cleanup_write EXIT

hub_start --token-file "$MFS_TMP/tokens" || exit 1
hub_import "$SRC" alice/base >/dev/null 2>&1 || { fail "hub import"; exit 1; }

# Every file of folder $1 is in $2 with the same bytes.
same_files() {
    local f
    for f in $(cd "$1" && find . -type f | sed 's|^\./||'); do
        cmp -s "$1/$f" "$2/$f" || { echo "# differs: $f" >&2; return 1; }
    done
}

# ---- A: cp -r into an empty created repo, small edits ---------------------------------------
M=$MFS_TMP/a
if ! mfs_mount alice/fresh "$M" --create 2>"$MFS_TMP/err"; then
    fail "mount --create alice/fresh: $(cat "$MFS_TMP/err")"
    exit 1
fi
ok "mount --create alice/fresh (writable by default)"
cp -r "$SRC/." "$M/" && ok "cp -r a model into the mount" || fail "cp -r into the mount"
same_files "$SRC" "$M" && ok "every copied file reads back identical before any push" ||
    fail "copied files differ"
ls "$M/tensors" | grep -qx 'model.norm.weight' &&
    ok "tensors/ shows the copied checkpoint's tensors" || fail "tensors/ after cp"
grep -q '"pending"' "$M/.modelfs/status" && grep -q '"path":[[:space:]]*"model.safetensors"' \
    "$M/.modelfs/status" && ok ".modelfs/status lists the pending files" ||
    fail ".modelfs/status pending: $(head -c 300 "$M/.modelfs/status")"
echo "hello" >"$M/new.txt" && [ "$(cat "$M/new.txt")" = hello ] &&
    ok "echo > new file, cat reads it" || fail "echo > new file"
[ "$(stat -c %a "$M/new.txt")" = 644 ] && ok "a new file shows mode 644" ||
    fail "mode of a new file: $(stat -c %a "$M/new.txt")"
truncate -s 3 "$M/new.txt" && [ "$(cat "$M/new.txt")" = hel ] &&
    ok "truncate -s 3" || fail "truncate: '$(cat "$M/new.txt")'"
truncate -s 10 "$M/new.txt" && [ "$(stat -c %s "$M/new.txt")" = 10 ] &&
    cmp -s <(printf 'hel\0\0\0\0\0\0\0') "$M/new.txt" &&
    ok "truncate -s 10 grows with zeros" || fail "truncate up"
echo "more" >>"$M/new.txt" && [ "$(stat -c %s "$M/new.txt")" = 15 ] &&
    ok "append (>>)" || fail "append: size $(stat -c %s "$M/new.txt")"
mkdir -p "$M/sub/deeper" && echo x >"$M/sub/deeper/f" && [ -d "$M/sub/deeper" ] &&
    ok "mkdir -p and a file inside" || fail "mkdir -p"
rmdir "$M/sub" 2>/dev/null && fail "rmdir of a non-empty folder succeeded" ||
    ok "rmdir of a non-empty folder fails"
rm "$M/sub/deeper/f" && rmdir "$M/sub/deeper" "$M/sub" && [ ! -e "$M/sub" ] &&
    ok "rm + rmdir" || fail "rm + rmdir"
echo "y" >"$M/.modelfs/mine" 2>/dev/null && fail "created a file in .modelfs/" ||
    ok "creating a file in .modelfs/ fails"
"$MFS_BIN" umount "$M"
mfs_mount alice/fresh "$M" 2>"$MFS_TMP/err" || fail "remount: $(cat "$MFS_TMP/err")"
same_files "$SRC" "$M" && [ "$(stat -c %s "$M/new.txt")" = 15 ] &&
    ok "after a remount the staged files are there, unpushed" || fail "remount lost files"
"$MFS_BIN" umount "$M"

# ---- B: rename and delete of repo files ----------------------------------------------------
B=$MFS_TMP/b
if ! mfs_mount alice/base "$B" 2>"$MFS_TMP/err"; then
    fail "mount alice/base: $(cat "$MFS_TMP/err")"
    exit 1
fi
ino=$(stat -c %i "$B/tokenizer.json")
mv "$B/tokenizer.json" "$B/tok.json" && [ ! -e "$B/tokenizer.json" ] &&
    cmp -s "$SRC/tokenizer.json" "$B/tok.json" &&
    ok "mv of a repo file: same bytes, old name gone" ||
    fail "mv of a repo file"
[ "$(stat -c %i "$B/tok.json")" = "$ino" ] && ok "the renamed file keeps its inode" ||
    fail "inode changed on rename"
rm "$B/generation_config.json" && [ ! -e "$B/generation_config.json" ] &&
    ! ls "$B" | grep -qx generation_config.json && ok "rm of a repo file" || fail "rm"
mkdir "$B/dir" && mv "$B/SOURCE.md" "$B/dir/" && mv "$B/dir" "$B/dir2" &&
    cmp -s "$SRC/SOURCE.md" "$B/dir2/SOURCE.md" &&
    ok "a repo file moved into a folder, the folder renamed" ||
    fail "folder rename"
"$MFS_BIN" umount "$B"
mfs_mount alice/base "$B" 2>"$MFS_TMP/err" || fail "remount alice/base"
[ ! -e "$B/tokenizer.json" ] && [ ! -e "$B/generation_config.json" ] && [ ! -e "$B/SOURCE.md" ] &&
    cmp -s "$SRC/tokenizer.json" "$B/tok.json" && cmp -s "$SRC/SOURCE.md" "$B/dir2/SOURCE.md" &&
    ok "renames and deletions are still there after a remount" || fail "remount after renames"

# ---- C: tensors/NAME ----------------------------------------------------------------------
T=model.layers.0.self_attn.q_proj.weight
[ -e "$B/tensors/$T" ] || T=$(ls "$B/tensors" | head -1)
size=$(stat -c %s "$B/tensors/$T")
head -c "$size" /dev/urandom >"$MFS_TMP/new.bin"
cp "$MFS_TMP/new.bin" "$B/tensors/$T" && cmp -s "$MFS_TMP/new.bin" "$B/tensors/$T" &&
    ok "cp of $size bytes into tensors/$T replaces the tensor" || fail "tensor write"
read -r _ b e _ < <("$MNT_TOOL" slices "$SRC/model.safetensors" | grep "^$T ")
cp "$SRC/model.safetensors" "$MFS_TMP/want.st"
dd if="$MFS_TMP/new.bin" of="$MFS_TMP/want.st" bs=1 seek="$b" conv=notrunc status=none
cmp -s "$MFS_TMP/want.st" "$B/model.safetensors" &&
    ok "model.safetensors differs exactly in that tensor's bytes" ||
    fail "shard bytes after tensor write"
res=$(check_tensors "$SRC/model.safetensors" "$B" 2>/dev/null)
[ "$res" = "checked $("$MNT_TOOL" slices "$SRC/model.safetensors" | wc -l) bad 1" ] &&
    ok "every other tensor is unchanged ($res)" || fail "other tensors: $res"
head -c 3 /dev/zero >"$B/tensors/$T" 2>/dev/null && fail "a short tensor write succeeded" ||
    ok "a short write into tensors/NAME fails (EINVAL at close)"
cmp -s "$MFS_TMP/new.bin" "$B/tensors/$T" && ok "the failed write changed nothing" ||
    fail "tensor changed by a failed write"
grep -q "tensor is written whole" "$B/.modelfs/log" && ok ".modelfs/log says why" ||
    fail "no log line for the refused tensor write"
touch "$B/tensors/new" 2>/dev/null && fail "created a file in tensors/" ||
    ok "creating a file in tensors/ fails"
"$MFS_BIN" umount "$B"

# ---- D: kill -9 during a cp -----------------------------------------------------------------
K=$MFS_TMP/k
mfs_mount alice/fresh "$K" --cache-dir "$MFS_TMP/kcache" 2>"$MFS_TMP/err" ||
    { fail "mount for kill -9: $(cat "$MFS_TMP/err")"; exit 1; }
for i in 1 2 3; do head -c $((i * 300000)) /dev/urandom >"$MFS_TMP/f$i"; done
cp "$MFS_TMP/f1" "$MFS_TMP/f2" "$MFS_TMP/f3" "$K/" && ok "three files copied and closed" ||
    fail "cp before kill"
head -c 3000000 /dev/urandom >"$MFS_TMP/big"
pid=$(mount_pid "$K")
# One writer that keeps big open: every close(2) of any copy of the fd
# commits (durable at close), so dd alone holds it, fed 2 MB of 3 through a
# FIFO that stays open.
mkfifo "$MFS_TMP/fifo"
(head -c 2000000 "$MFS_TMP/big"; exec sleep 30) >"$MFS_TMP/fifo" &
feeder=$!
dd if="$MFS_TMP/fifo" of="$K/big" bs=64k status=none 2>/dev/null &
writer=$!
for i in $(seq 1 50); do
    [ "$(stat -c %s "$K/big" 2>/dev/null)" = 2000000 ] && break
    sleep 0.1
done
kill -9 "$pid" && ok "kill -9 of the daemon while big is half written (open)" || fail "kill -9"
wait_gone "$pid" 5
kill "$writer" "$feeder" 2>/dev/null
wait "$writer" "$feeder" 2>/dev/null
fusermount3 -u -z "$K" 2>/dev/null
sqlite3 "$MFS_TMP/kcache/modelfs.db" 'PRAGMA integrity_check' >"$MFS_TMP/integrity" 2>&1
[ "$(cat "$MFS_TMP/integrity")" = ok ] && ok "PRAGMA integrity_check: ok" ||
    fail "integrity_check: $(head -c 200 "$MFS_TMP/integrity")"
mfs_mount alice/fresh "$K" --cache-dir "$MFS_TMP/kcache" 2>"$MFS_TMP/err" ||
    fail "remount after kill -9: $(cat "$MFS_TMP/err")"
cmp -s "$MFS_TMP/f1" "$K/f1" && cmp -s "$MFS_TMP/f2" "$K/f2" && cmp -s "$MFS_TMP/f3" "$K/f3" &&
    ok "the closed files are there, byte-identical" || fail "closed files lost after kill -9"
if [ ! -e "$K/big" ] || [ "$(stat -c %s "$K/big")" = 0 ]; then
    ok "the half-written file is absent or at its last commit (empty)"
else
    fail "half-written file has $(stat -c %s "$K/big") bytes"
fi
"$MFS_BIN" umount "$K"

# ---- E: ENOSPC on a small cache ----------------------------------------------------------------
mkdir -p "$SMALL"
if mount -t tmpfs -o size=6m tmpfs "$SMALL" 2>/dev/null; then
    S=$MFS_TMP/s
    mfs_mount alice/fresh "$S" --cache-dir "$SMALL/cache" 2>"$MFS_TMP/err" ||
        fail "mount on a small cache: $(cat "$MFS_TMP/err")"
    head -c 1000000 /dev/urandom >"$MFS_TMP/small1"
    cp "$MFS_TMP/small1" "$S/small1" && ok "a 1 MB file fits" || fail "cp of 1 MB"
    head -c 20000000 /dev/urandom >"$MFS_TMP/huge"
    cp "$MFS_TMP/huge" "$S/huge" 2>"$MFS_TMP/err" &&
        fail "cp of 20 MB into a 6 MB cache succeeded" ||
        { grep -q "No space left" "$MFS_TMP/err" && ok "cp of 20 MB fails with ENOSPC" ||
              fail "cp of 20 MB: $(cat "$MFS_TMP/err")"; }
    cmp -s "$MFS_TMP/small1" "$S/small1" && ok "the file staged before still reads back" ||
        fail "small1 lost after ENOSPC"
    grep -q "huge" "$S/.modelfs/log" && ok ".modelfs/log names the failed file" ||
        fail "no log line for ENOSPC"
    rm -f "$S/huge"
    "$MFS_BIN" umount "$S"
    umount -l "$SMALL"
else
    ok "# SKIP ENOSPC: cannot mount a tmpfs here"
fi

# ---- F: --read-only ---------------------------------------------------------------------
R=$MFS_TMP/r
mfs_mount alice/base "$R" --read-only --cache-dir "$MFS_TMP/rcache" 2>"$MFS_TMP/err" ||
    fail "mount --read-only: $(cat "$MFS_TMP/err")"
echo x 2>"$MFS_TMP/err" >"$R/new"; grep -q "Read-only file system" "$MFS_TMP/err" &&
    ok "--read-only: creating a file is EROFS" || fail "--read-only create: $(cat "$MFS_TMP/err")"
rm "$R/config.json" 2>"$MFS_TMP/err"; grep -q "Read-only file system" "$MFS_TMP/err" &&
    ok "--read-only: rm is EROFS" || fail "--read-only rm: $(cat "$MFS_TMP/err")"
grep -q '"read_only":[[:space:]]*true' "$R/.modelfs/info" && ok ".modelfs/info says read_only" ||
    fail "info read_only"
"$MFS_BIN" umount "$R" && ok "umount of a read-only mount" || fail "umount read-only"

# ---- G: one writable mount per repo, revision and cache --------------------------------------
# "mfs_stage_open deletes data objects no committed entry refers to": a second
# live writer of the same stage would destroy the first one's uncommitted writes.
G1=$MFS_TMP/g1
G2=$MFS_TMP/g2
mfs_mount alice/base "$G1" --cache-dir "$MFS_TMP/gcache" 2>"$MFS_TMP/err" ||
    fail "mount g1: $(cat "$MFS_TMP/err")"
echo staged >"$G1/g1.txt"
if mfs_mount alice/base "$G2" --cache-dir "$MFS_TMP/gcache" 2>"$MFS_TMP/err"; then
    fail "a second writable mount of alice/base@main with the same cache succeeded"
else
    msg=$(cat "$MFS_TMP/err")
    holder=$(sed -n 's/.*held by another mount (pid \([0-9]*\)).*/\1/p' "$MFS_TMP/err")
    grep -q "the staged changes of alice/base@main are held by another mount (pid" \
        "$MFS_TMP/err" && ok "a second writable mount fails: $msg" ||
        fail "second writable mount: '$msg'"
    [ -n "$holder" ] && tr '\0' ' ' <"/proc/$holder/cmdline" 2>/dev/null | grep -q "$G1" &&
        ok "the message names the first mount's daemon (pid $holder)" ||
        fail "pid '$holder' is not the daemon of $G1"
    grep -q -- "--read-only" "$MFS_TMP/err" && ok "the message suggests --read-only" ||
        fail "no --read-only hint: '$msg'"
fi
mfs_mount alice/base "$G2" --cache-dir "$MFS_TMP/gcache" --read-only 2>"$MFS_TMP/err" &&
    cmp -s "$SRC/config.json" "$G2/config.json" &&
    ok "a --read-only mount of the same repo and cache works meanwhile" ||
    fail "--read-only beside a writable mount: $(cat "$MFS_TMP/err")"
[ "$(cat "$G1/g1.txt" 2>/dev/null)" = staged ] && ok "the first mount's staged file is intact" ||
    fail "g1.txt lost"
"$MFS_BIN" umount "$G2" 2>/dev/null
"$MFS_BIN" umount "$G1" 2>/dev/null
mfs_mount alice/base "$G2" --cache-dir "$MFS_TMP/gcache" 2>"$MFS_TMP/err" &&
    [ "$(cat "$G2/g1.txt" 2>/dev/null)" = staged ] &&
    ok "once the first is unmounted, a writable mount gets the stage (g1.txt kept)" ||
    fail "writable mount after umount: $(cat "$MFS_TMP/err")"
"$MFS_BIN" umount "$G2" 2>/dev/null
