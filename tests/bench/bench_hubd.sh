#!/bin/bash
# tests/bench/bench_hubd.sh - download throughput of `modelfs hub serve`
# against a plain static server (lighttpd) on the same 1 GiB LFS blob over
# loopback, both with curl to /dev/null, page cache warm.  Prints
#   hubd_download: ours X MB/s, baseline Y MB/s, ratio R (target 0.9)
# The synthetic file lives in $MFS_TMP and is never committed.
. "$MFS_ROOT/tests/lib.sh"

SIZE_MB=${BENCH_HUBD_MB:-1024}
SRC=$MFS_TMP/src
mkdir -p "$SRC"
# Random bytes so nothing compresses or dedups; urandom is fast enough.
head -c $((SIZE_MB << 20)) /dev/urandom >"$SRC/big.safetensors"
HUB_ROOT=$MFS_TMP/hub
hub_import "$SRC" bench/big >/dev/null || { echo "hubd_download: import failed"; exit 1; }
rm -f "$SRC/big.safetensors"
hub_start || exit 1

sha=$(curl -sI "$HUB_URL/bench/big/resolve/main/big.safetensors" | tr -d '\r' |
      sed -n 's/^X-Linked-Etag: "\(.*\)"/\1/Ip')
blob=$HUB_ROOT/objects/${sha:0:2}/${sha:2}
[ -f "$blob" ] || { echo "hubd_download: blob not found"; exit 1; }

# Baseline: lighttpd serving the very same blob file.
WWW=$MFS_TMP/www; mkdir -p "$WWW"
ln -s "$blob" "$WWW/big.safetensors"
port=$(( 20000 + RANDOM % 20000 ))
cat >"$MFS_TMP/lighttpd.conf" <<EOF
server.document-root = "$WWW"
server.bind = "127.0.0.1"
server.port = $port
server.follow-symlink = "enable"
server.errorlog = "$MFS_TMP/lighttpd.err"
mimetype.assign = ( "" => "application/octet-stream" )
EOF
LIGHTTPD=$(command -v lighttpd || echo /usr/sbin/lighttpd)
"$LIGHTTPD" -D -f "$MFS_TMP/lighttpd.conf" &
LPID=$!
trap 'kill $LPID 2>/dev/null; cleanup' EXIT
for i in $(seq 1 50); do
    curl -sf -o /dev/null -r 0-0 "http://127.0.0.1:$port/big.safetensors" && break
    sleep 0.1
done

cat "$blob" >/dev/null                      # warm the page cache for both
speed() {  # speed URL: one download, in MB/s (10^6 bytes/s)
    local s
    s=$(curl -sfL -o /dev/null -w "%{speed_download}" "$1")
    s=${s%.*}
    echo $(( ${s:-0} / 1000000 ))
}
# Interleaved pairs, so both servers see the same machine load; the ratio is
# the median of the per-pair ratios (the shared machine drifts between pairs).
pairs=""
for i in 1 2 3 4 5 6 7; do
    a=$(speed "$HUB_URL/bench/big/resolve/main/big.safetensors")
    b=$(speed "http://127.0.0.1:$port/big.safetensors")
    pairs="$pairs$a $b
"
done
printf '%s' "$pairs" | sort -n -k1,1 >"$MFS_TMP/a"; ours=$(awk 'NR == 4 { print $1 }' "$MFS_TMP/a")
printf '%s' "$pairs" | sort -n -k2,2 >"$MFS_TMP/b"; base=$(awk 'NR == 4 { print $2 }' "$MFS_TMP/b")
ratio=$(printf '%s' "$pairs" | awk '{ printf "%.4f\n", $2 ? $1 / $2 : 0 }' | sort -n |
        awk 'NR == 4 { printf "%.2f", $1 }')
echo "hubd_download ($SIZE_MB MiB, median of 7 interleaved pairs): ours $ours MB/s, baseline $base MB/s, ratio $ratio (target 0.9)"
