#!/bin/bash
# tests/bench/bench_load.sh - `make bench`: loading a model from the cache
# vs reading the same cached shard with cat (issue: load time vs `cat` of
# the same cached shards, target >= 0.8).
#
# A synthetic GPT-2-124M-shaped F32 checkpoint (`modelfs synth`, generated
# in MFS_TMP, never committed) is imported into a local hub and mounted;
# one cat fills the SQLite cache.  Then, each time with the page cache
# dropped so both read the cache file from disk: `cat MNT/model.safetensors`
# (through FUSE), and `echo threads=2 > MNT/.modelfs/load` (the loader reads
# the same bytes from the cache, not through FUSE, and builds the weights).
set -u
MFS_TMP=${MFS_TMP:-$(mktemp -d /tmp/mfs-bench.XXXXXX)}
. tests/lib.sh

now() { date +%s.%N; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }

mkdir -p "$MFS_TMP/src"
cat >"$MFS_TMP/gpt2.json" <<'JSON'
{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","n_embd":768,"n_layer":12,
 "n_head":12,"vocab_size":50257,"n_positions":1024,"activation_function":"gelu_new",
 "layer_norm_epsilon":1e-5,"initializer_range":0.02,"torch_dtype":"float32"}
JSON
"$MFS_BIN" synth --config "$MFS_TMP/gpt2.json" --out "$MFS_TMP/src" --dtype F32 >/dev/null ||
    { echo "synth failed"; exit 1; }
cp "$MFS_DATA/models/tiny-random-gpt2/tokenizer.json" "$MFS_TMP/src/"
hub_start || exit 1
hub_import "$MFS_TMP/src" bench/gpt2-124m >/dev/null || { echo "import failed"; exit 1; }
MNT=$MFS_TMP/mnt
mfs_mount bench/gpt2-124m "$MNT" || { echo "mount failed"; exit 1; }
bytes=$(stat -c %s "$MNT/model.safetensors")
cat "$MNT/model.safetensors" >/dev/null         # fill the cache

# Interleaved pairs, so both see the same machine; the ratio is the median
# of the per-pair ratios (a shared machine's disk drifts between pairs).
pairs=""
for _ in 1 2 3 4 5 6 7; do
    drop_caches
    t0=$(now); cat "$MNT/model.safetensors" >/dev/null; t1=$(now)
    echo unload >"$MNT/.modelfs/unload"
    drop_caches
    t2=$(now); echo "threads=2" >"$MNT/.modelfs/load" || { echo "load failed"; exit 1; }; t3=$(now)
    pairs="$pairs$(awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { print b - a, d - c }')
"
done
printf '%s' "$pairs" | awk -v b="$bytes" '
    { c[NR] = $1; l[NR] = $2; r[NR] = $1 / $2 }
    function median(x, n,   i, j, t) {
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && x[j - 1] > x[j]; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
        return x[int((n + 1) / 2)]
    }
    END {
        n = NR; mc = median(c, n); ml = median(l, n); mr = median(r, n)
        printf "load from cache vs cat of the cached shard (%.0f MB, median of %d interleaved pairs): " \
               "load %.2f s, cat %.2f s, ratio %.2f (target >= 0.8)%s\n", b / 1e6, n, ml, mc, mr,
               (mr >= 0.8 ? "" : "  BELOW TARGET") }'
mfs_umount "$MNT"
