#!/bin/sh
# Install the Debian packages modelfs needs to build, test and run, if any
# is missing.  Runs as root (CI, fresh machines) or through sudo.
set -e
pkgs="build-essential pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev curl libcjson-dev
libsqlite3-dev sqlite3 libopenblas-dev libpcre2-dev libmicrohttpd-dev libutf8proc-dev libssl-dev
attr nodejs npm lighttpd jq"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs/npm may come from outside Debian's packages; a working node is enough.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | tr ' ' '\n' | grep -v -x -e nodejs -e npm | tr '\n' ' ')
fi
missing=$(echo $missing)
[ -z "$missing" ] && exit 0
echo "modelfs: installing Debian packages: $missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
