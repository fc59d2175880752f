#!/bin/bash
# tests/mount/test_mount_models.sh - every model of $MFS_DATA/models,
# served by the local hub and mounted: every file byte-identical to its
# source (diff -r; the hub adds .gitattributes as the Hub does), every
# safetensors tensor equal to its byte slice of its
# shard (offsets read by tests/mount/mnt_tool.c, not by modelfs), and for
# legacy .bin checkpoints every tensor in tensors/ matching the sha256 of
# data/golden/pytorch-bin.json.
. tests/lib.sh
. tests/mount/lib_mount.sh

GOLDEN=$MFS_DATA/golden/pytorch-bin.json
hub_start || exit 1
for src in "$MFS_DATA"/models/*/; do
    name=$(basename "$src")
    repo=test/$name
    mnt=$MFS_TMP/m-$name
    if ! hub_import "$src" "$repo" >/dev/null 2>"$MFS_TMP/imp.err"; then
        fail "$name: hub import: $(head -2 "$MFS_TMP/imp.err")"
        continue
    fi
    if ! mfs_mount "$repo" "$mnt" 2>"$MFS_TMP/mount.err"; then
        fail "$name: mount: $(cat "$MFS_TMP/mount.err")"
        continue
    fi
    if diff -r -x tensors -x .modelfs -x .gitattributes "$src" "$mnt" >"$MFS_TMP/diff" 2>&1; then
        ok "$name: every file byte-identical (diff -r)"
    else
        fail "$name: diff -r: $(head -3 "$MFS_TMP/diff" | tr '\n' ' ')"
    fi
    total=0
    bad=0
    for st in "$src"/*.safetensors; do
        [ -f "$st" ] || continue
        set -- $(check_tensors "$st" "$mnt")
        total=$((total + $2))
        bad=$((bad + $4))
    done
    if [ $total -gt 0 ]; then
        [ $bad -eq 0 ] && ok "$name: $total tensors equal their shard slices" ||
            fail "$name: $bad of $total tensors differ"
        [ "$(ls "$mnt/tensors" | wc -l)" = $total ] && ok "$name: tensors/ lists $total" ||
            fail "$name: tensors/ lists $(ls "$mnt/tensors" | wc -l), want $total"
    fi
    if [ -f "$GOLDEN" ] && grep -q "\"models/$name/pytorch_model" "$GOLDEN"; then
        checked=0
        bad=0
        while read -r t sha; do
            [ -f "$mnt/tensors/$t" ] || continue
            checked=$((checked + 1))
            [ "$(sha256sum <"$mnt/tensors/$t" | cut -d' ' -f1)" = "$sha" ] || bad=$((bad + 1))
        done < <(jq -r --arg p "models/$name/" \
                    '.files[] | select(.file | startswith($p)) | .tensors[] |
                     "\(.name) \(.sha256)"' "$GOLDEN")
        [ $checked -gt 0 ] && [ $bad -eq 0 ] &&
            ok "$name: $checked .bin tensors match the golden sha256" ||
            fail "$name: .bin tensors: $checked checked, $bad differ"
    fi
    "$MFS_BIN" umount "$mnt" || fail "$name: umount"
done
