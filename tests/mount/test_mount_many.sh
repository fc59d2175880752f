#!/bin/bash
# tests/mount/test_mount_many.sh - a checkpoint with many tensors (real
# models have hundreds: GPT-2-124M 148, Llama-7B 291).  Regression: the
# view's path table was sized for the file list only, so a few hundred
# tensors filled it and the mount spun forever while building tensors/.
. tests/lib.sh

cat >"$MFS_TMP/cfg.json" <<'JSON'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8,
 "intermediate_size":16,"num_hidden_layers":40,"num_attention_heads":2,"num_key_value_heads":1,
 "vocab_size":32,"max_position_embeddings":16,"rms_norm_eps":1e-5,"tie_word_embeddings":false}
JSON
mkdir -p "$MFS_TMP/src"
"$MFS_BIN" synth --config "$MFS_TMP/cfg.json" --out "$MFS_TMP/src" --seed 7 >/dev/null
check "synth wrote a 40-layer checkpoint" test -s "$MFS_TMP/src/model.safetensors"
hub_start || exit 1
hub_import "$MFS_TMP/src" test/many >/dev/null
MNT=$MFS_TMP/mnt
mkdir -p "$MNT"
if timeout 60 "$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "$MFS_TMP/cache" test/many "$MNT"
then
    MOUNTS+=("$MNT")
    ok "mount of a 363-tensor checkpoint returns"
else
    fail "mount of a 363-tensor checkpoint returns"
    exit 1
fi
n=$(ls "$MNT/tensors" | wc -l)
# 40 layers x 9 tensors + embed_tokens + norm + lm_head
[ "$n" -eq 363 ] && ok "tensors/ lists all 363 tensors" || fail "tensors/ lists $n of 363 tensors"
check "a tensor of the last layer reads" \
    test "$(stat -c %s "$MNT/tensors/model.layers.39.mlp.down_proj.weight")" -eq 512
cmp -s <(cat "$MNT/model.safetensors") "$MFS_TMP/src/model.safetensors" &&
    ok "the shard reads byte-identical" || fail "the shard reads byte-identical"
mfs_umount "$MNT"
