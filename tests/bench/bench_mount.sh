#!/bin/bash
# tests/bench/bench_mount.sh - `make bench`: the mount against the local
# hub (--delay-ms 10 per request, like a nearby server) with a synthetic
# safetensors shard of >= 1 GiB (`modelfs synth --raw-size`, generated in
# MFS_TMP, never committed).  Prints "name: ours X, baseline Y, ratio R
# (target T)" lines:
#   cold cat of the shard through the mount vs curl of the same file from
#     the same server (ratio >= 1.0) and its rate (>= 500 MB/s);
#   warm read (cache filled, page cache dropped) vs cat of a local copy
#     (>= 0.5), and page-cache re-read vs local re-read (>= 0.8);
#   bytes fetched from the hub to read one tensor of S bytes on a fresh
#     cache (<= 1.1*S + 1 MiB, from the hub's /api/_modelfs/stats);
#   the daemon's peak RSS (VmHWM) after reading the shard;
#   the CPU seconds per GiB that the cold reads took (the daemon by thread
#     group, the hub, curl): on a small shared machine these move much
#     less than the wall-clock rates, and they say what bounds the rate.
set -u
MFS_TMP=${MFS_TMP:-$(mktemp -d /tmp/mfs-bench.XXXXXX)}
. tests/lib.sh
. tests/mount/lib_mount.sh

SIZE=${BENCH_MOUNT_BYTES:-1100000000}
REPO=bench/big
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
line() {   # name ours baseline unit higher_is_better target
    awk -v n="$1" -v o="$2" -v b="$3" -v u="$4" -v t="$5" 'BEGIN {
        r = (b > 0 && o > 0) ? o / b : 0
        printf "%s: ours %.1f %s, baseline %.1f %s, ratio %.2f (target %s)%s\n",
               n, o, u, b, u, r, t, (r >= t ? "" : "  BELOW TARGET") }'
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime
# per_gib TICKS: CPU seconds per GiB of the shard
per_gib() {
    awk -v t="$1" -v hz="$(getconf CLK_TCK)" -v b="$BYTES" \
        'BEGIN { printf "%.2f", t / hz / (b / 2^30) }'
}
# thread_ticks PID: "comm ticks" per thread group of PID (fetch workers are
# mfs-fetch, the checkpointer mfs-ckpt, FUSE threads keep the process name)
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "$(cat "$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"
    done | awk '{ s[$1] += $2 } END { for (k in s) print k, s[k] }'
}

"$MFS_BIN" synth --raw-size "$SIZE" --out "$MFS_TMP/big" >/dev/null ||
    { echo "synth failed"; exit 1; }
SHARD=$MFS_TMP/big/model.safetensors
BYTES=$(stat -c %s "$SHARD")
hub_start --delay-ms 10 || exit 1
hub_import "$MFS_TMP/big" "$REPO" >/dev/null || { echo "import failed"; exit 1; }

# Cold: curl from the server, then the mount with an empty cache.
drop_caches
h0=$(cpu_ticks "$HUB_PID")
t0=$(now)
timer=()   # curl's own CPU time, when GNU time is there
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%U %S" -o "$MFS_TMP/curl.time")
got=$("${timer[@]}" curl -sfL -o /dev/null -w "%{size_download}" \
      "$HUB_URL/$REPO/resolve/main/model.safetensors")
t1=$(now)
h1=$(cpu_ticks "$HUB_PID")
[ "$got" = "$BYTES" ] || echo "curl got $got bytes of $BYTES"
t_curl=$(secs "$t0" "$t1")
MNT=$MFS_TMP/mnt
mfs_mount "$REPO" "$MNT" --cache-dir "$MFS_TMP/cache1" || { echo "mount failed"; exit 1; }
pid=$(mount_pid "$MNT")
drop_caches
thread_ticks "$pid" >"$MFS_TMP/threads0"
h2=$(cpu_ticks "$HUB_PID")
t0=$(now); cat "$MNT/model.safetensors" >/dev/null; t1=$(now)
t_cold=$(secs "$t0" "$t1")
h3=$(cpu_ticks "$HUB_PID")
thread_ticks "$pid" >"$MFS_TMP/threads1"
mbs_cold=$(awk -v b="$BYTES" -v t="$t_cold" 'BEGIN { print b / t / 1e6 }')
mbs_curl=$(awk -v b="$BYTES" -v t="$t_curl" 'BEGIN { print b / t / 1e6 }')
line "cold cat vs curl (MB/s)" "$mbs_cold" "$mbs_curl" MB/s 1.0
awk -v m="$mbs_cold" 'BEGIN { printf "cold cat rate: %.0f MB/s (target 500)%s\n", m,
                              (m >= 500 ? "" : "  BELOW TARGET") }'
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
echo "daemon peak RSS after reading the shard: $((hwm / 1024)) MiB (VmHWM)"
groups=$(awk 'NR == FNR { a[$1] = $2; next }
              { printf "%s%s %.0f", sep, $1, $2 - a[$1]; sep = "," }' \
    "$MFS_TMP/threads0" "$MFS_TMP/threads1" |
    awk -v hz="$(getconf CLK_TCK)" -v b="$BYTES" -v RS=, '{
        n = $1 == "mfs-fetch" ? "fetch workers" : $1 == "mfs-ckpt" ? "checkpointer" : "FUSE threads"
        printf "%s%s %.2f", (NR > 1 ? ", " : ""), n, $2 / hz / (b / 2^30) }')
d_ticks=$(awk 'NR == FNR { a[$1] = $2; next } { s += $2 - a[$1] } END { print s }' \
    "$MFS_TMP/threads0" "$MFS_TMP/threads1")
c_secs=$(awk '{ print $1 + $2 }' "$MFS_TMP/curl.time" 2>/dev/null)
c_gib=$(awk -v s="${c_secs:-0}" -v b="$BYTES" 'BEGIN { printf "%.2f", s / (b / 2^30) }')
echo "cold cat CPU s/GiB: daemon $(per_gib "$d_ticks") ($groups)," \
     "hub $(per_gib $((h3 - h2))); curl: curl $c_gib, hub $(per_gib $((h1 - h0)))"

# Warm: the cache holds it, the page cache does not.
drop_caches
t0=$(now); cat "$MNT/model.safetensors" >/dev/null; t1=$(now)
t_warm=$(secs "$t0" "$t1")
drop_caches
t0=$(now); cat "$SHARD" >/dev/null; t1=$(now)
t_local=$(secs "$t0" "$t1")
line "warm read vs local file (MB/s)" "$(awk -v b="$BYTES" -v t="$t_warm" 'BEGIN{print b/t/1e6}')" \
    "$(awk -v b="$BYTES" -v t="$t_local" 'BEGIN{print b/t/1e6}')" MB/s 0.5

# Page cache: both already read once; best of 3 each (single runs of a
# half-second read are noisy).
best() {
    local f=$1 b=999 i t0 t1
    for i in 1 2 3; do
        t0=$(now); cat "$f" >/dev/null; t1=$(now)
        b=$(awk -v b="$b" -v t="$(secs "$t0" "$t1")" 'BEGIN { print (t < b ? t : b) }')
    done
    echo "$b"
}
cat "$MNT/model.safetensors" >/dev/null; cat "$SHARD" >/dev/null
t_pc=$(best "$MNT/model.safetensors")
t_lpc=$(best "$SHARD")
line "page-cache re-read vs local (MB/s)" \
    "$(awk -v b="$BYTES" -v t="$t_pc" 'BEGIN{print b/t/1e6}')" \
    "$(awk -v b="$BYTES" -v t="$t_lpc" 'BEGIN{print b/t/1e6}')" MB/s 0.8
"$MFS_BIN" umount "$MNT"

# One tensor on a fresh cache: bytes the hub sent for it.
mfs_mount "$REPO" "$MNT" --cache-dir "$MFS_TMP/cache2" || { echo "mount failed"; exit 1; }
read -r name b e dtype < <("$MNT_TOOL" slices "$SHARD" | sed -n 6p)
S=$((e - b))
c0=$(hub_stats | json_num content_bytes)
cat "$MNT/tensors/$name" >/dev/null
sleep 1   # let prefetch in flight land, so it is counted
c1=$(hub_stats | json_num content_bytes)
got=$((c1 - c0))
limit=$(awk -v s="$S" 'BEGIN { printf "%d", 1.1 * s + 1048576 }')
awk -v g="$got" -v s="$S" -v l="$limit" 'BEGIN {
    printf "bytes fetched for one tensor: ours %d, tensor %d, ratio %.3f (target <= %d bytes)%s\n",
           g, s, g / s, l, (g <= l ? "" : "  ABOVE TARGET") }'
"$MFS_BIN" umount "$MNT"
