#!/bin/bash
# tests/mount/test_mount_info.sh - .modelfs/info of mounted models against
# data/golden/model-ops.json (transformers' num_parameters,
# get_memory_footprint, floating_point_ops, can_generate), computed from
# config.json and the checkpoint headers without loading weights.
# design.md, Control files: "info ... JSON: repo_id, revision, commit,
# architectures, model_type, dtype, num_parameters (total, and without
# embeddings), memory footprint in bytes per dtype (F32/BF16/F16/8-bit/4-bit),
# floating-point ops per token (transformers' 6·N rule), can_generate, tied
# weights, shards, bytes cached".
. tests/lib.sh
. tests/mount/lib_mount.sh

GOLDEN=$MFS_DATA/golden/model-ops.json
hub_start || exit 1

# model  checkpoint dtype (tied: golden lists tied aliases)
for row in "stories260K-hf F32" "stories260K-hf-bf16 BF16" "tiny-random-llama F32" \
           "tiny-random-gpt2 F32" "bert-tiniest F32" "tiny-random-bert F32"; do
    set -- $row
    name=$1 dtype=$2
    tied=$(jq --arg m "$name" '.models[$m].state_dict_aliases_not_in_parameters | length > 0' \
           "$GOLDEN")
    mnt=$MFS_TMP/m-$name
    if ! hub_import "$MFS_DATA/models/$name" "test/$name" >/dev/null 2>"$MFS_TMP/imp.err" ||
       ! mfs_mount "test/$name" "$mnt" 2>"$MFS_TMP/mount.err"; then
        fail "$name: import/mount: $(cat "$MFS_TMP/imp.err" "$MFS_TMP/mount.err" | head -2)"
        continue
    fi
    info=$MFS_TMP/info-$name.json
    if ! cat "$mnt/.modelfs/info" >"$info" || ! jq -e . "$info" >/dev/null; then
        fail "$name: info is not JSON"
        mfs_umount "$mnt"
        continue
    fi
    # The golden numbers, and ours, as one line each, compared as text so
    # that a mismatch shows both.
    want=$(jq -r --arg m "$name" '.models[$m] | [.num_parameters,
        .num_parameters_exclude_embeddings,
        .memory_footprint.float32.get_memory_footprint,
        .memory_footprint.bfloat16.get_memory_footprint,
        (.floating_point_ops[] | select(.input_ids_shape == [1,1]) | .value),
        (.floating_point_ops[] | select(.input_ids_shape == [1,1]) | .exclude_embeddings_false),
        .can_generate] | map(tostring) | join(" ")' "$GOLDEN")
    got=$(jq -r '[.num_parameters, .num_parameters_exclude_embeddings,
        .memory_footprint.F32, .memory_footprint.BF16, .flops_per_token,
        .flops_per_token_with_embeddings, .can_generate] | map(tostring) | join(" ")' "$info")
    [ -n "$want" ] && [ "$got" = "$want" ] &&
        ok "$name: parameters, footprints, flops, can_generate = golden ($got)" ||
        fail "$name: got '$got', golden '$want'"
    want=$(jq -r --arg m "$name" '.models[$m].class' "$GOLDEN")
    got=$(jq -r '.architectures[0]' "$info")
    [ "$got" = "$want" ] &&
        ok "$name: architectures[0] = $got" || fail "$name: architectures[0] '$got', want '$want'"
    jq -e --arg d "$dtype" --argjson t "$tied" --arg r "test/$name" \
        '.dtype == $d and .tied_weights == $t and .repo_id == $r and .revision == "main" and
         (.commit | test("^[0-9a-f]{40}$")) and (.model_type | type) == "string" and
         (.shards | length) >= 1 and (.memory_footprint."8-bit" > 0) and
         (.memory_footprint."4-bit" < .memory_footprint."8-bit") and
         (.memory_footprint.F16 > 0) and (.bytes_cached | type) == "number"' "$info" >/dev/null &&
        ok "$name: dtype $dtype, tied $tied, repo, commit, shards, 8/4-bit, bytes_cached" ||
        fail "$name: info fields: $(jq -c '{dtype, tied_weights, repo_id, model_type, shards,
            memory_footprint, bytes_cached}' "$info")"
    mfs_umount "$mnt"
done

# A repo with no config.json and no checkpoint: valid info, model fields null.
mkdir -p "$MFS_TMP/bare"
echo "just a readme" >"$MFS_TMP/bare/README.md"
hub_import "$MFS_TMP/bare" test/bare >/dev/null 2>&1
if mfs_mount test/bare "$MFS_TMP/m-bare" 2>"$MFS_TMP/mount.err"; then
    jq -e '.repo_id == "test/bare" and .architectures == null and .model_type == null and
           .dtype == null and .num_parameters == null and .memory_footprint.F32 == null and
           .flops_per_token == null and .can_generate == null and .tied_weights == null and
           .shards == []' "$MFS_TMP/m-bare/.modelfs/info" >/dev/null &&
        ok "bare repo: info valid, model fields null" ||
        fail "bare repo: $(head -c 400 "$MFS_TMP/m-bare/.modelfs/info")"
    mfs_umount "$MFS_TMP/m-bare"
else
    fail "bare repo: mount: $(cat "$MFS_TMP/mount.err")"
fi

# A config.json that is not JSON beside a real checkpoint: info still
# valid, counts null, the cause in the log.
mkdir -p "$MFS_TMP/badcfg"
cp "$MFS_DATA/models/stories260K-hf/model.safetensors" "$MFS_TMP/badcfg/"
printf '{"model_type": "llama", "hidden_size": ' >"$MFS_TMP/badcfg/config.json"
hub_import "$MFS_TMP/badcfg" test/badcfg >/dev/null 2>&1
if mfs_mount test/badcfg "$MFS_TMP/m-badcfg" 2>"$MFS_TMP/mount.err"; then
    jq -e '.num_parameters == null and .dtype == "F32" and (.shards | length) == 1' \
        "$MFS_TMP/m-badcfg/.modelfs/info" >/dev/null &&
        ok "broken config.json: info valid, counts null, dtype from the checkpoint" ||
        fail "broken config.json: $(head -c 400 "$MFS_TMP/m-badcfg/.modelfs/info")"
    # info is read-only: a write is refused
    if (echo x >"$MFS_TMP/m-badcfg/.modelfs/info") 2>"$MFS_TMP/w.err"; then
        fail "echo > .modelfs/info succeeded"
    else
        grep -qi "permission denied\|read-only" "$MFS_TMP/w.err" &&
            ok "echo > .modelfs/info refused ($(tr -d '\n' <"$MFS_TMP/w.err" | sed 's/.*: //'))" ||
            fail "echo > .modelfs/info: $(cat "$MFS_TMP/w.err")"
    fi
    mfs_umount "$MFS_TMP/m-badcfg"
else
    fail "broken config.json: mount: $(cat "$MFS_TMP/mount.err")"
fi
