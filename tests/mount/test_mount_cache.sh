#!/bin/bash
# tests/mount/test_mount_cache.sh - the cache behind a mount: a revision is
# pinned to its commit at mount; two revisions sharing a blob fetch it
# once; an offline remount (--offline and HF_HUB_OFFLINE=1) serves from the
# cache and gives EIO for what was never fetched; the mount.fuse3 form and
# `mount -t fuse PATH/modelfs#REPO` (fstab) work.
. tests/lib.sh
. tests/mount/lib_mount.sh

SRC=$MFS_DATA/models/stories260K-hf
REPO=test/rev
C=$MFS_TMP/cache
hub_start || exit 1
hub_import "$SRC" "$REPO" >/dev/null || { fail "import"; exit 1; }

# Commit A, pinned by sha.
M1=$MFS_TMP/m1
mfs_mount "$REPO" "$M1" || { fail "mount main"; exit 1; }
A=$(jq -r .commit "$M1/.modelfs/info")
"$MFS_BIN" umount "$M1"

# Commit B on main: config.json changes, the shard stays the same blob.
cp -r "$SRC" "$MFS_TMP/v2"
sed -i 's/"rms_norm_eps"/"rms_norm_eps_changed"/' "$MFS_TMP/v2/config.json"
hub_import "$MFS_TMP/v2" "$REPO" >/dev/null || fail "second import"

MA=$MFS_TMP/ma
MB=$MFS_TMP/mb
mfs_mount "$REPO" "$MA" --revision "$A" || fail "mount --revision A"
mfs_mount "$REPO" "$MB" || fail "mount main (B)"
B=$(jq -r .commit "$MB/.modelfs/info")
[ "$A" != "$B" ] && [ "$(jq -r .commit "$MA/.modelfs/info")" = "$A" ] &&
    ok "--revision SHA pins A, main resolves to B" || fail "commits A=$A B=$B"
cmp -s "$SRC/config.json" "$MA/config.json" && cmp -s "$MFS_TMP/v2/config.json" "$MB/config.json" &&
    ok "each mount shows its own commit's config.json" || fail "config.json per revision"
cmp -s "$SRC/model.safetensors" "$MA/model.safetensors" || fail "A shard bytes"
fb0=$(json_num bytes_fetched <"$MB/.modelfs/status")
cmp -s "$SRC/model.safetensors" "$MB/model.safetensors" || fail "B shard bytes"
fb1=$(json_num bytes_fetched <"$MB/.modelfs/status")
[ $((fb1 - fb0)) -eq 0 ] &&
    ok "the shared blob was fetched once (mount B fetched $((fb1 - fb0)) bytes to read it)" ||
    fail "mount B fetched $((fb1 - fb0)) bytes of a blob A already cached"

# Pinned: a newer commit on main does not change a mounted B.
sed -i 's/"rms_norm_eps_changed"/"rms_norm_eps_again"/' "$MFS_TMP/v2/config.json"
hub_import "$MFS_TMP/v2" "$REPO" >/dev/null || fail "third import"
grep -q rms_norm_eps_changed "$MB/config.json" && ok "a mount stays at its commit" ||
    fail "mount B moved"
"$MFS_BIN" umount "$MA"
"$MFS_BIN" umount "$MB"

# Partially cached: only config.json read.
mfs_mount "$REPO" "$M1" --cache-dir "$MFS_TMP/partial" || fail "mount partial"
cat "$M1/config.json" >/dev/null
"$MFS_BIN" umount "$M1"

# Offline: the hub is gone; the cache serves.
mfs_mount "$REPO" "$M1" || fail "mount to fill the cache"
for f in "$SRC"/*; do cat "$M1/$(basename "$f")" >/dev/null; done
"$MFS_BIN" umount "$M1"
hub_stop
if mfs_mount "$REPO" "$M1" --offline 2>"$MFS_TMP/err"; then
    diff -r -x tensors -x .modelfs -x .gitattributes "$MFS_TMP/v2" "$M1" >/dev/null &&
        ok "--offline remount serves every file from the cache" || fail "offline bytes differ"
    set -- $(check_tensors "$SRC/model.safetensors" "$M1")
    [ "$2" = 47 ] && [ "$4" = 0 ] && ok "offline: tensors/ works" || fail "offline tensors: $*"
    jq -e '.offline == true' "$M1/.modelfs/status" >/dev/null && ok "status says offline" ||
        fail "status offline"
    "$MFS_BIN" umount "$M1"
else
    fail "--offline mount: $(cat "$MFS_TMP/err")"
fi
if HF_HUB_OFFLINE=yes mfs_mount "$REPO" "$M1" --revision "$A" 2>"$MFS_TMP/err"; then
    cmp -s "$SRC/config.json" "$M1/config.json" && ok "HF_HUB_OFFLINE=yes, by commit sha" ||
        fail "HF_HUB_OFFLINE bytes"
    "$MFS_BIN" umount "$M1"
else
    fail "HF_HUB_OFFLINE mount: $(cat "$MFS_TMP/err")"
fi
if mfs_mount "$REPO" "$M1" --offline --cache-dir "$MFS_TMP/partial" 2>"$MFS_TMP/err"; then
    cmp -s "$MFS_TMP/v2/config.json" "$M1/config.json" &&
        ok "offline, partly cached: a cached file reads" || fail "partial cached file"
    "$MNT_TOOL" readall "$M1/tokenizer.json" >/dev/null 2>"$MFS_TMP/err"
    [ "$(cat "$MFS_TMP/err")" = EIO ] && ok "offline, never fetched: EIO" ||
        fail "offline uncached read: $(cat "$MFS_TMP/err")"
    grep -q "tokenizer.json" "$M1/.modelfs/log" && ok "offline miss is logged" ||
        fail "offline miss not logged"
    "$MFS_BIN" umount "$M1"
else
    fail "offline partial mount: $(cat "$MFS_TMP/err")"
fi

# mount.fuse3 form and fstab's `mount -t fuse.modelfs`.
hub_start || exit 1
F=$MFS_TMP/fstab
mkdir -p "$F"
if "$MFS_BIN" "$REPO" "$F" -o "endpoint=$HUB_URL,cache_dir=$MFS_TMP/c2,revision=$A,noauto,_netdev" \
        2>"$MFS_TMP/err"; then
    cmp -s "$SRC/config.json" "$F/config.json" && ok "mount.fuse3 form with -o options" ||
        fail "mount.fuse3 form bytes"
    "$MFS_BIN" umount "$F"
else
    fail "mount.fuse3 form: $(cat "$MFS_TMP/err")"
fi
# mount(8) runs helpers with a fixed PATH, so name the program by its
# absolute path with the "fuse" type's PROGRAM#SOURCE spelling.
if command -v mount.fuse3 >/dev/null; then
    if mount -t fuse "$MFS_BIN#$REPO" "$F" \
            -o "endpoint=$HUB_URL,cache_dir=$MFS_TMP/c3,revision=$A" 2>"$MFS_TMP/err"; then
        cmp -s "$SRC/config.json" "$F/config.json" && ok "mount -t fuse 'modelfs#REPO' (fstab)" ||
            fail "mount -t bytes"
        umount "$F" && ok "umount(8) of it" || fail "umount(8)"
    else
        fail "mount -t fuse modelfs#REPO: $(cat "$MFS_TMP/err")"
    fi
fi

# --repo-type dataset: the same id as a model repo is another repo.
mkdir -p "$MFS_TMP/ds"
printf 'a,b\n1,2\n' >"$MFS_TMP/ds/data.csv"
hub_import "$MFS_TMP/ds" "$REPO" --repo-type dataset >/dev/null || fail "import dataset"
D=$MFS_TMP/dsmnt
if mfs_mount "$REPO" "$D" --repo-type dataset 2>"$MFS_TMP/err"; then
    cmp -s "$MFS_TMP/ds/data.csv" "$D/data.csv" && [ ! -e "$D/config.json" ] &&
        ok "--repo-type dataset mounts the dataset, not the model of the same id" ||
        fail "dataset contents"
    "$MFS_BIN" umount "$D"
else
    fail "dataset mount: $(cat "$MFS_TMP/err")"
fi
expect_fail_type() {
    if "$MFS_BIN" mount --repo-type space "$REPO" "$D" 2>"$MFS_TMP/err"; then
        fail "--repo-type space accepted"; fusermount3 -u -z "$D"
    else
        grep -q "bad repo type 'space'" "$MFS_TMP/err" &&
            ok "--repo-type space: clear usage error" ||
            fail "--repo-type space: $(cat "$MFS_TMP/err")"
    fi
}
expect_fail_type
