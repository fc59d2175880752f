# tests/mount/lib_mount.sh - helpers of the FUSE mount tests, on top of
# tests/lib.sh (source that first).
#   MNT_TOOL                 path of tests/mount/mnt_tool.c, compiled here
#   hub_stats                the local hub's counters (GET /api/_modelfs/stats)
#   json_num KEY             first number for "KEY": in stdin (no jq needed)
#   check_tensors SRC MNT    every tensor of safetensors file SRC equals its
#                            byte slice, as tensors/NAME under MNT; prints
#                            "checked N bad M"
#   wait_gone PID SECS       wait until PID exits; false if it did not

MNT_TOOL=$MFS_TMP/mnt_tool
if ! cc -O1 -o "$MNT_TOOL" "${MFS_ROOT:-.}/tests/mount/mnt_tool.c" \
        $(pkg-config --cflags --libs libcjson) 2>"$MFS_TMP/mnt_tool.err"; then
    fail "compile tests/mount/mnt_tool.c: $(head -3 "$MFS_TMP/mnt_tool.err")"
    exit 1
fi

hub_stats() {
    curl -s "$HUB_URL/api/_modelfs/stats"
}

json_num() {
    grep -o "\"$1\"[[:space:]]*:[[:space:]]*[0-9]*" | head -1 | grep -o '[0-9]*$'
}

check_tensors() {
    local src=$1 mnt=$2 name b e dtype checked=0 bad=0
    while read -r name b e dtype; do
        if ! cmp -s <(tail -c +$((b + 1)) "$src" | head -c $((e - b))) "$mnt/tensors/$name"; then
            bad=$((bad + 1))
            echo "# tensor $name differs" >&2
        fi
        checked=$((checked + 1))
    done < <("$MNT_TOOL" slices "$src")
    echo "checked $checked bad $bad"
}

wait_gone() {
    local pid=$1 secs=$2 i
    for i in $(seq 1 $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 0
        # exited but not yet reaped by whoever adopted it
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
        sleep 0.1
    done
    return 1
}

# The daemon of a mount (its root's user.modelfs.pid xattr).
mount_pid() {
    "$MNT_TOOL" xattr "$1" user.modelfs.pid
}
