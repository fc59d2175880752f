# tests/lib.sh - the shell side of the test protocol (see tests/run.sh).
# Source it from tests/<area>/test_*.sh.  Provides:
#   ok COND_DESC / fail DESC     print one result line
#   check DESC CMD...            run CMD, ok if it exits 0
#   hub_start [serve options]    start `modelfs hub serve` on 127.0.0.1, port 0,
#                                root $MFS_TMP/hub; sets HUB_URL, HUB_PID, HUB_ROOT
#   hub_import SRC REPO [opts]   `modelfs hub import` into HUB_ROOT
#   js_client_ready DIR          node and the @huggingface/hub version DIR's
#                                package.json pins (npm install in DIR if
#                                missing or another); a "not ok" line and 1 if not
#   cleanup runs at exit: kills the hub, unmounts what the test mounted.
set -u
MFS_TMP=${MFS_TMP:-$(mktemp -d /tmp/mfs-test.XXXXXX)}
MFS_BIN=${MFS_BIN:-build/modelfs}
MFS_DATA=${MFS_DATA:-data}
HUB_PID=""
MOUNTS=()

ok()   { echo "ok - $*"; }
fail() { echo "not ok - $*"; }
check() {
    local desc=$1; shift
    if "$@" >/dev/null 2>&1; then ok "$desc"; else fail "$desc"; fi
}

js_client_ready() {
    local dir=$1
    if ! command -v node >/dev/null 2>&1; then
        fail "node is installed (tools/deps.sh installs nodejs)"
        return 1
    fi
    local pkg=$dir/node_modules/@huggingface/hub/package.json want have
    want=$(sed -n 's/.*"@huggingface\/hub": *"\([^"]*\)".*/\1/p' "$dir/package.json")
    have=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$pkg" 2>/dev/null | head -1)
    if [ "$want" != "$have" ]; then
        if ! (cd "$dir" && npm install --no-audit --no-fund >"$MFS_TMP/npm.log" 2>&1); then
            fail "npm install @huggingface/hub: $(tail -3 "$MFS_TMP/npm.log" | tr '\n' ' ')"
            return 1
        fi
    fi
}

# hub_start [options]: the server prints "modelfs hub: serving http://HOST:PORT"
# on its first stdout line once it is listening.
hub_start() {
    HUB_ROOT=${HUB_ROOT:-$MFS_TMP/hub}
    mkdir -p "$HUB_ROOT"
    local out=$MFS_TMP/hub.out
    "$MFS_BIN" hub serve --root "$HUB_ROOT" --host 127.0.0.1 --port 0 "$@" >"$out" 2>"$MFS_TMP/hub.err" &
    HUB_PID=$!
    local i
    for i in $(seq 1 100); do
        HUB_URL=$(sed -n 's/^modelfs hub: serving \(http[^ ]*\).*/\1/p' "$out" | head -1)
        [ -n "$HUB_URL" ] && return 0
        kill -0 "$HUB_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "hub did not start:"; cat "$MFS_TMP/hub.err"
    return 1
}

hub_stop() {
    [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
    HUB_PID=""
}

hub_import() {
    local src=$1 repo=$2; shift 2
    "$MFS_BIN" hub import "$src" "$repo" --root "$HUB_ROOT" "$@"
}

# mfs_mount REPO MOUNTPOINT [options]: mount against HUB_URL with a per-test cache.
mfs_mount() {
    local repo=$1 mnt=$2; shift 2
    mkdir -p "$mnt"
    "$MFS_BIN" mount --endpoint "$HUB_URL" --cache-dir "${MFS_CACHE:-$MFS_TMP/cache}" "$@" "$repo" "$mnt" &&
        MOUNTS+=("$mnt")
}

mfs_umount() {
    "$MFS_BIN" umount "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null
}

cleanup() {
    local m
    for m in "${MOUNTS[@]}"; do
        grep -qs " $m " /proc/mounts && fusermount3 -u -z "$m" 2>/dev/null
    done
    hub_stop
}
trap cleanup EXIT
