#!/bin/bash
# tools/demo.sh - `make demo`: the README's demo against a local hub.
# Starts `modelfs hub serve` on a free port with a temporary root, imports
# data/models/stories260K-hf as karpathy/stories260K, mounts it, reads
# config.json, lists tensors/, shows .modelfs/info, generates text when
# .modelfs/generate exists, and cleans up (umount, stop the hub) on exit.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$PWD/$BUILD/modelfs
TMP=$(mktemp -d /tmp/modelfs-demo.XXXXXX)
MNT=$TMP/mnt
HUB_PID=""

cleanup() {
    if grep -qs " $MNT " /proc/mounts; then
        "$BIN" umount "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"
    fi
    [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

[ -x "$BIN" ] || { echo "demo: build first (make)"; exit 1; }
"$BIN" hub serve --root "$TMP/hub" --host 127.0.0.1 --port 0 >"$TMP/hub.out" 2>"$TMP/hub.err" &
HUB_PID=$!
for _ in $(seq 1 100); do
    URL=$(sed -n 's/^modelfs hub: serving \(http[^ ]*\).*/\1/p' "$TMP/hub.out" | head -1)
    [ -n "$URL" ] && break
    sleep 0.1
done
[ -n "${URL:-}" ] || { echo "demo: the hub did not start:"; cat "$TMP/hub.err"; exit 1; }
echo "local hub at $URL"

say modelfs hub import data/models/stories260K-hf karpathy/stories260K
"$BIN" hub import data/models/stories260K-hf karpathy/stories260K --root "$TMP/hub" || exit 1

mkdir -p "$MNT"
say "HF_ENDPOINT=$URL modelfs mount karpathy/stories260K $MNT"
HF_ENDPOINT=$URL "$BIN" mount --cache-dir "$TMP/cache" karpathy/stories260K "$MNT" || exit 1

say ls -la "$MNT"
ls -la "$MNT"
say cat "$MNT/config.json"
cat "$MNT/config.json"
say "ls $MNT/tensors/ | head"
ls "$MNT/tensors/" | head
say getfattr -d "$MNT/tensors/model.layers.0.self_attn.q_proj.weight"
getfattr -d "$MNT/tensors/model.layers.0.self_attn.q_proj.weight" 2>/dev/null ||
    echo "(getfattr is in Debian's attr package)"
say cat "$MNT/.modelfs/info"
cat "$MNT/.modelfs/info"
if [ -e "$MNT/.modelfs/generate" ]; then
    say "echo 'Once upon a time' > $MNT/.modelfs/generate; cat $MNT/.modelfs/generate"
    echo "Once upon a time" >"$MNT/.modelfs/generate" && cat "$MNT/.modelfs/generate"
    say modelfs run "$MNT" "Once upon a time" --max-new-tokens 80
    "$BIN" run "$MNT" "Once upon a time" --max-new-tokens 80
else
    echo
    echo "(.modelfs/generate is not there yet: text generation is not built in this tree)"
fi
say cat "$MNT/.modelfs/status"
cat "$MNT/.modelfs/status"
say modelfs umount "$MNT"
"$BIN" umount "$MNT"
