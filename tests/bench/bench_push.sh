#!/bin/bash
# tests/bench/bench_push.sh - `make bench`: pushing through a mount to the
# local hub.  Prints "name: ours X, baseline Y, ratio R (target T)" lines:
#   push throughput: `modelfs push` of one staged file of BENCH_PUSH_BYTES
#     (default 512 MiB, random bytes) vs `curl -T` of a file of the same size
#     to the upload URL the same server's LFS batch API hands out (basic
#     transfer, signed URL), median of BENCH_PUSH_RUNS (3); ratio ours/curl
#     in MB/s (target >= 0.8).  Ours includes the preupload and LFS batch
#     calls, the multipart parts and their completion, the commit, clearing
#     the stage and reading the new tree; curl only sends bytes whose hash it
#     was given.  The sha256 the batch call needs was computed while `cp`
#     wrote the file into the mount (cache/stage.h, "Hashes"), so the cp
#     times are printed too (not in the ratio).
#   bytes uploaded when pushing the unchanged model again: 0 (from the
#     push's JSON and the hub's counters).
# Each run uses different bytes (the first 8 bytes changed), so no run finds
# its object already stored.
set -u
MFS_TMP=${MFS_TMP:-$(mktemp -d /tmp/mfs-bench.XXXXXX)}
MFS_ROOT=${MFS_ROOT:-$PWD}
. "$MFS_ROOT/tests/lib.sh"
# The files are GBs: drop them even when run by hand (tests/bench/run.sh drops MFS_TMP).
trap 'cleanup; rm -rf "$MFS_TMP/base.bin" "$MFS_TMP/cache" "$MFS_TMP/hub"' EXIT

SIZE=${BENCH_PUSH_BYTES:-536870912}
RUNS=${BENCH_PUSH_RUNS:-3}
REPO=alice/pushbench
export HF_TOKEN=hf_benchPushToken0123456789
printf '%s alice\n' "$HF_TOKEN" >"$MFS_TMP/tokens"
export MFS_CACHE=$MFS_TMP/cache

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { LC_ALL=C sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
line() {   # name ours baseline unit target
    awk -v n="$1" -v o="$2" -v b="$3" -v u="$4" -v t="$5" 'BEGIN {
        r = (b > 0 && o > 0) ? o / b : 0
        printf "%s: ours %.1f %s, baseline %.1f %s, ratio %.2f (target %s)%s\n",
               n, o, u, b, u, r, t, (r >= t ? "" : "  BELOW TARGET") }'
}
# A copy of the base file whose first 8 bytes are run-specific.
variant() {   # OUT TAG
    cp "$MFS_TMP/base.bin" "$1"
    printf '%08d' "$2" | dd of="$1" bs=8 count=1 conv=notrunc status=none
}

head -c "$SIZE" /dev/urandom >"$MFS_TMP/base.bin" || { echo "cannot make the test file"; exit 1; }
hub_start --token-file "$MFS_TMP/tokens" || exit 1
M=$MFS_TMP/mnt
mfs_mount "$REPO" "$M" --create || { echo "mount --create failed"; exit 1; }

# Baseline: curl -T to the upload href of an LFS batch answer.
curl_times=()
for i in $(seq 1 "$RUNS"); do
    f=$MFS_TMP/curl.bin
    variant "$f" "$((100 + i))"
    oid=$(sha256sum "$f" | cut -d' ' -f1)
    href=$(curl -s -X POST -H "Authorization: Bearer $HF_TOKEN" \
        -H "Accept: application/vnd.git-lfs+json" -H "Content-Type: application/vnd.git-lfs+json" \
        -d "{\"operation\":\"upload\",\"transfers\":[\"basic\"],\"hash_algo\":\"sha256\",\
\"objects\":[{\"oid\":\"$oid\",\"size\":$SIZE}]}" \
        "$HUB_URL/$REPO.git/info/lfs/objects/batch" |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
            const o=JSON.parse(s).objects[0];console.log(o.actions.upload.href)})')
    [ -n "$href" ] || { echo "no upload href from the LFS batch API"; exit 1; }
    sync
    t0=$(now)
    curl -sf -T "$f" "$href" >/dev/null || { echo "curl -T failed"; exit 1; }
    t1=$(now)
    curl_times+=("$(secs "$t0" "$t1")")
    rm -f "$f"
done

# Ours: stage the file through the mount (not timed), then modelfs push.
push_times=()
cp_times=()
for i in $(seq 1 "$RUNS"); do
    f=$MFS_TMP/push.bin
    variant "$f" "$((200 + i))"
    sync
    t0=$(now)
    cp "$f" "$M/big.bin" || { echo "cp into the mount failed"; exit 1; }
    t1=$(now)
    cp_times+=("$(secs "$t0" "$t1")")
    rm -f "$f"
    sync
    t0=$(now)
    "$MFS_BIN" push "$M" -m "bench run $i" >/dev/null 2>"$MFS_TMP/push.err" ||
        { echo "modelfs push failed: $(cat "$MFS_TMP/push.err")"; exit 1; }
    t1=$(now)
    push_times+=("$(secs "$t0" "$t1")")
done

mb=$(awk -v s="$SIZE" 'BEGIN { print s / 1e6 }')
tc=$(printf '%s\n' "${curl_times[@]}" | median)
tp=$(printf '%s\n' "${push_times[@]}" | median)
echo "# curl -T seconds: ${curl_times[*]}; modelfs push seconds: ${push_times[*]}"
echo "# cp into the mount (not in the ratio; it hashes as it writes) seconds: ${cp_times[*]}"
line "push $((SIZE >> 20)) MiB through the mount vs curl -T (MB/s, median of $RUNS)" \
    "$(awk -v m="$mb" -v t="$tp" 'BEGIN { print m / t }')" \
    "$(awk -v m="$mb" -v t="$tc" 'BEGIN { print m / t }')" "MB/s" 0.8

# Pushing the unchanged model again: the same bytes written once more.
cp "$M/big.bin" "$MFS_TMP/again.bin" && cp "$MFS_TMP/again.bin" "$M/big.bin"
rm -f "$MFS_TMP/again.bin"
before=$(curl -s "$HUB_URL/api/_modelfs/stats")
echo >"$M/.modelfs/push" || { echo "push of the unchanged file failed"; exit 1; }
reply=$(cat "$M/.modelfs/push")
after=$(curl -s "$HUB_URL/api/_modelfs/stats")
sent=$(echo "$reply" | grep -o '"bytes_uploaded":[0-9]*' | grep -o '[0-9]*$')
echo "# hub stats before: $before"
echo "# hub stats after:  $after"
echo "bytes uploaded when pushing an unchanged model again: ${sent:-?} (target 0)" \
    "$([ "${sent:-1}" = 0 ] || echo "  ABOVE TARGET")"
"$MFS_BIN" umount "$M" >/dev/null 2>&1 || fusermount3 -u -z "$M"
