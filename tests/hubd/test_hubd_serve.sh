#!/bin/bash
# tests/hubd/test_hubd_serve.sh - `modelfs hub serve` + `hub import`, read side:
# every model in $MFS_DATA/models is imported and every file is fetched back
# through resolve (whole and odd ranges, HEAD headers, LFS redirects), then
# auth, the fault switch, the stats route, bad input and downloads racing a
# commit.  Protocol: docs/hub-api.md sections 3, 4, 5.
. "$MFS_ROOT/tests/lib.sh"

TOK=hf_testtoken_alice
printf '# test tokens\n%s alice\nhf_second_token\n' "$TOK" >"$MFS_TMP/tokens"
HUB_ROOT=$MFS_TMP/hub
FAULT=$MFS_TMP/fault
AUTH=(-H "Authorization: Bearer $TOK")

git_blob_id() {   # git blob sha1 of a file (hub-api.md section 8)
    { printf 'blob %d\0' "$(stat -c %s "$1")"; cat "$1"; } | sha1sum | cut -c1-40
}
hdr() {           # hdr NAME FILE: value of a response header (case-insensitive)
    grep -i "^$1:" "$2" | head -1 | cut -d' ' -f2- | tr -d '\r'
}
status() {        # status FILE: HTTP status of a dumped response
    head -1 "$1" | cut -d' ' -f2
}

# --- import every model -------------------------------------------------------------
declare -A COMMIT
n_imported=0
for d in "$MFS_DATA"/models/*/; do
    name=$(basename "$d")
    oid=$(hub_import "$d" "test/$name" 2>"$MFS_TMP/import.err")
    if [[ "$oid" =~ ^[0-9a-f]{40}$ ]]; then
        COMMIT[$name]=$oid
        n_imported=$((n_imported + 1))
    else
        fail "import $name: $(cat "$MFS_TMP/import.err")"
    fi
done
[ "$n_imported" -ge 10 ] && ok "imported $n_imported models" || fail "imported only $n_imported"
hub_import "$MFS_DATA/models/tiny-random-gpt2" test/private-gpt2 --private >/dev/null &&
    hub_import "$MFS_DATA/models/tiny-random-llama" test/gated-llama --gated >/dev/null
check "import private and gated repos" test $? -eq 0
hub_start --token-file "$MFS_TMP/tokens" --fault-file "$FAULT" || exit 1
ok "server started at $HUB_URL"

# --- every file, whole and in ranges --------------------------------------------------
bad_files=0; bad_ranges=0; bad_heads=0; n_files=0; n_lfs=0
for d in "$MFS_DATA"/models/*/; do
    name=$(basename "$d")
    commit=${COMMIT[$name]:-}
    [ -n "$commit" ] || continue
    while IFS= read -r -d '' f; do
        rel=${f#"$d"}
        size=$(stat -c %s "$f")
        url="$HUB_URL/test/$name/resolve/main/$rel"
        n_files=$((n_files + 1))
        curl -sfL -o "$MFS_TMP/got" "$url" && cmp -s "$MFS_TMP/got" "$f" || {
            bad_files=$((bad_files + 1)); echo "# whole mismatch: $name/$rel"; }
        # Odd ranges: a middle slice across a 4 KiB boundary, the last 7 bytes, one byte.
        for r in "$((size / 3))-$((size / 3 + 5000))" "-7" "0-0" "$((size - 1))-"; do
            [ "$size" -gt 0 ] || continue
            case $r in
                -*) n=${r#-}; [ "$n" -gt "$size" ] && n=$size
                    want_off=$((size - n)); want_len=$n ;;
                *-) a=${r%-}; want_off=$a; want_len=$((size - a)) ;;
                *)  a=${r%-*}; b=${r#*-}; [ "$b" -ge "$size" ] && b=$((size - 1))
                    want_off=$a; want_len=$((b - a + 1)) ;;
            esac
            code=$(curl -sL -r "$r" -o "$MFS_TMP/got" -w '%{http_code}' "$url")
            if [ "$code" != 206 ] || ! cmp -s "$MFS_TMP/got" \
                <(tail -c +$((want_off + 1)) "$f" | head -c "$want_len"); then
                bad_ranges=$((bad_ranges + 1)); echo "# range $r mismatch ($code): $name/$rel"
            fi
        done
        curl -sI "$url" >"$MFS_TMP/head"
        st=$(status "$MFS_TMP/head")
        if [ "$(hdr X-Repo-Commit "$MFS_TMP/head")" != "$commit" ]; then
            bad_heads=$((bad_heads + 1)); echo "# X-Repo-Commit wrong: $name/$rel"
        elif [ "$st" = 302 ]; then
            n_lfs=$((n_lfs + 1))
            sha=$(sha256sum "$f" | cut -c1-64)
            loc=$(hdr Location "$MFS_TMP/head")
            [ "$(hdr X-Linked-Size "$MFS_TMP/head")" = "$size" ] &&
                [ "$(hdr X-Linked-Etag "$MFS_TMP/head")" = "\"$sha\"" ] &&
                [[ "$loc" == http://* ]] || {
                bad_heads=$((bad_heads + 1)); echo "# LFS 302 headers wrong: $name/$rel"; }
        elif [ "$st" = 200 ]; then
            [ "$(hdr ETag "$MFS_TMP/head")" = "\"$(git_blob_id "$f")\"" ] &&
                [ "$(hdr Content-Length "$MFS_TMP/head")" = "$size" ] &&
                [ "$(hdr Accept-Ranges "$MFS_TMP/head")" = bytes ] || {
                bad_heads=$((bad_heads + 1)); echo "# 200 headers wrong: $name/$rel"; }
        else
            bad_heads=$((bad_heads + 1)); echo "# HEAD status $st: $name/$rel"
        fi
    done < <(find "$d" -type f -print0)
done
[ "$bad_files" -eq 0 ] && ok "all $n_files files byte-identical via resolve" ||
    fail "$bad_files of $n_files files differ"
[ "$bad_ranges" -eq 0 ] && ok "ranges (middle, suffix, 0-0, open) on every file" ||
    fail "$bad_ranges ranges wrong"
[ "$bad_heads" -eq 0 ] && ok "HEAD headers on every file ($n_lfs LFS redirects)" ||
    fail "$bad_heads HEAD answers wrong"
[ "$n_lfs" -ge 10 ] && ok "safetensors/bin files are LFS" || fail "only $n_lfs LFS files"

# --- specific download behaviours -------------------------------------------------------
G=$HUB_URL/test/tiny-random-gpt2
GD=$MFS_DATA/models/tiny-random-gpt2
curl -s -o /dev/null -D "$MFS_TMP/h" -r 99999999- "$G/resolve/main/config.json"
[ "$(status "$MFS_TMP/h")" = 416 ] &&
    [ "$(hdr Content-Range "$MFS_TMP/h")" = "bytes */$(stat -c %s "$GD/config.json")" ]
check "416 with Content-Range bytes */TOTAL" test $? -eq 0
loc=$(curl -sI "$G/resolve/main/model.safetensors" | tr -d '\r' | sed -n 's/^Location: //Ip')
curl -s -r 10-19 -D "$MFS_TMP/h" -o "$MFS_TMP/got" "$loc"
[ "$(status "$MFS_TMP/h")" = 206 ] && cmp -s "$MFS_TMP/got" <(tail -c +11 "$GD/model.safetensors" | head -c 10)
check "LFS redirect target honours Range" test $? -eq 0
code=$(curl -s -o /dev/null -w '%{http_code}' "${loc%%sig=*}sig=0000")
check "LFS URL with a bad signature is refused (403)" test "$code" = 403
curl -s "$G/raw/main/model.safetensors" >"$MFS_TMP/ptr"
sha=$(sha256sum "$GD/model.safetensors" | cut -c1-64)
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %s\n' "$sha" \
    "$(stat -c %s "$GD/model.safetensors")" | cmp -s - "$MFS_TMP/ptr"
check "raw gives the LFS pointer text" test $? -eq 0
c=${COMMIT[tiny-random-gpt2]}
for rev in main HEAD "$c" "${c:0:7}"; do
    curl -sf "$G/resolve/$rev/config.json" | cmp -s - "$GD/config.json"
    check "resolve at revision '$rev'" test $? -eq 0
done
curl -s -D "$MFS_TMP/h" -o /dev/null "$G/resolve/main/nope.json"
[ "$(status "$MFS_TMP/h")" = 404 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = EntryNotFound ] &&
    [ "$(hdr X-Repo-Commit "$MFS_TMP/h")" = "$c" ]
check "missing file: 404 EntryNotFound with X-Repo-Commit" test $? -eq 0
curl -s -D "$MFS_TMP/h" -o /dev/null "$G/resolve/nobranch/config.json"
[ "$(status "$MFS_TMP/h")" = 404 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = RevisionNotFound ]
check "unknown revision: 404 RevisionNotFound" test $? -eq 0
curl -sf "$HUB_URL/api/models/test/tiny-random-gpt2/revision/main" >"$MFS_TMP/info"
grep -q "\"sha\":\"$c\"" "$MFS_TMP/info" && grep -q '"rfilename":"model.safetensors"' "$MFS_TMP/info" &&
    grep -q "\"sha256\":\"$sha\"" "$MFS_TMP/info" && grep -q '"safetensors":{"parameters"' "$MFS_TMP/info"
check "revision info: sha, siblings with lfs.sha256, safetensors counts" test $? -eq 0
# Recursive tree, paginated by 2, must list every file exactly once.
url="$HUB_URL/api/models/test/tiny-random-gpt2/tree/main?recursive=true&limit=2"
: >"$MFS_TMP/paths"; pages=0
while [ -n "$url" ] && [ "$pages" -lt 50 ]; do
    curl -s -D "$MFS_TMP/h" "$url" | grep -o '"path":"[^"]*"' >>"$MFS_TMP/paths"
    url=$(tr -d '\r' <"$MFS_TMP/h" | sed -n 's/^Link: <\(http[^>]*\)>; rel="next"$/\1/Ip')
    pages=$((pages + 1))
done
want=$( (cd "$GD" && find . -type f | sed 's|^\./||'; echo .gitattributes) | sort -u | wc -l)
got=$(sort -u "$MFS_TMP/paths" | wc -l)
[ "$got" = "$want" ] && [ "$(wc -l <"$MFS_TMP/paths")" = "$want" ] && [ "$pages" -gt 2 ]
check "tree pagination with absolute Link rel=next ($pages pages, $got entries)" test $? -eq 0

hub_import "$MFS_DATA/models/stories260K" test/ds --repo-type dataset >/dev/null
curl -sfL "$HUB_URL/datasets/test/ds/resolve/main/tok512.bin" |
    cmp -s - "$MFS_DATA/models/stories260K/tok512.bin" &&
    curl -sf "$HUB_URL/api/datasets/test/ds/tree/main" | grep -q '"path":"tok512.bin"' &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$HUB_URL/test/ds/resolve/main/tok512.bin")" = 401 ]
check "dataset repos: /datasets/ resolve and /api/datasets/ tree, not a model" test $? -eq 0

# --- auth -----------------------------------------------------------------------------
P=$HUB_URL/api/models/test/private-gpt2
curl -s -D "$MFS_TMP/h" -o /dev/null "$P"
[ "$(status "$MFS_TMP/h")" = 401 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = RepoNotFound ]
check "private repo without token: 401 RepoNotFound" test $? -eq 0
curl -s -D "$MFS_TMP/h" -o /dev/null "$HUB_URL/test/private-gpt2/resolve/main/config.json"
[ "$(status "$MFS_TMP/h")" = 401 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = RepoNotFound ]
check "private repo resolve without token: 401 RepoNotFound" test $? -eq 0
code=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$P")
check "private repo with token: 200" test "$code" = 200
curl -s "${AUTH[@]}" -L "$HUB_URL/test/private-gpt2/resolve/main/model.safetensors" |
    cmp -s - "$GD/model.safetensors"
check "private LFS download with token" test $? -eq 0
curl -s -D "$MFS_TMP/h" -o /dev/null -H "Authorization: Bearer hf_wrong" "$P"
[ "$(status "$MFS_TMP/h")" = 401 ] &&
    [ "$(hdr X-Error-Message "$MFS_TMP/h")" = "Invalid credentials in Authorization header" ]
check "unknown token: 401 Invalid credentials" test $? -eq 0
curl -s -D "$MFS_TMP/h" -o /dev/null "${AUTH[@]}" "$HUB_URL/api/models/test/nonexistent"
[ "$(status "$MFS_TMP/h")" = 404 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = RepoNotFound ]
check "missing repo with token: 404 RepoNotFound" test $? -eq 0
curl -s -D "$MFS_TMP/h" -o /dev/null "$HUB_URL/test/gated-llama/resolve/main/config.json"
[ "$(status "$MFS_TMP/h")" = 403 ] && [ "$(hdr X-Error-Code "$MFS_TMP/h")" = GatedRepo ]
check "gated repo without token: 403 GatedRepo" test $? -eq 0
curl -sf "${AUTH[@]}" "$HUB_URL/test/gated-llama/resolve/main/config.json" |
    cmp -s - "$MFS_DATA/models/tiny-random-llama/config.json"
check "gated repo with token: content" test $? -eq 0
curl -sf "$HUB_URL/api/models/test/gated-llama" | grep -q '"gated":"auto"'
check "gated repo info says gated" test $? -eq 0
curl -sf "${AUTH[@]}" "$HUB_URL/api/whoami-v2" | grep -q '"name":"alice"'
check "whoami-v2 names the token's user" test $? -eq 0

# --- fault switch and stats -----------------------------------------------------------
S=$HUB_URL/api/_modelfs/stats
stat_of() { curl -s "$S" | grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
c0=$(stat_of content_requests); b0=$(stat_of content_bytes)
curl -sfL -o /dev/null "$G/resolve/main/model.safetensors"
c1=$(stat_of content_requests); b1=$(stat_of content_bytes)
[ $((c1 - c0)) = 1 ] && [ $((b1 - b0)) = "$(stat -c %s "$GD/model.safetensors")" ]
check "stats count one content request and its bytes" test $? -eq 0
echo "500 main/config.json" >"$FAULT"
code=$(curl -s -o /dev/null -w "%{http_code}" "$G/resolve/main/config.json")
code2=$(curl -s -o /dev/null -w "%{http_code}" "$G/resolve/main/special_tokens_map.json")
check "fault 500 hits only the named path" test "$code/$code2" = 500/200
echo "truncate model.safetensors" >"$FAULT"
curl -sL -o "$MFS_TMP/got" "$G/resolve/main/model.safetensors"; rc=$?
size=$(stat -c %s "$MFS_TMP/got")
[ "$rc" -ne 0 ] && [ "$size" -lt "$(stat -c %s "$GD/model.safetensors")" ]
check "fault truncate: short body, connection closed (curl rc $rc, $size bytes)" test $? -eq 0
echo "corrupt" >"$FAULT"
curl -sfL -o "$MFS_TMP/got" "$G/resolve/main/model.safetensors"
[ "$(stat -c %s "$MFS_TMP/got")" = "$(stat -c %s "$GD/model.safetensors")" ] &&
    ! cmp -s "$MFS_TMP/got" "$GD/model.safetensors"
check "fault corrupt: same size, different bytes" test $? -eq 0
echo "stall model.safetensors" >"$FAULT"
loc=$(curl -sI "$G/resolve/main/model.safetensors" | tr -d "\r" | sed -n "s/^Location: //Ip")
rm -f "$MFS_TMP/got"
curl -s -m 2 -D "$MFS_TMP/h" -o "$MFS_TMP/got" "$loc"; rc=$?
[ "$rc" = 28 ] && [ "$(status "$MFS_TMP/h")" = 200 ] && [ ! -s "$MFS_TMP/got" ]
check "fault stall: headers, then no body byte within 2 s (curl rc $rc)" test $? -eq 0
rm -f "$FAULT"
curl -sfL "$G/resolve/main/model.safetensors" | cmp -s - "$GD/model.safetensors"
check "no fault file: normal service again" test $? -eq 0

# --- bad input --------------------------------------------------------------------------
alive() { curl -sf -o /dev/null "$G/resolve/main/config.json"; }
bad() {   # bad DESC WANT_STATUS curl-args...: a 4xx with X-Error-Message, server alive
    local desc=$1 want=$2; shift 2
    curl -s -o "$MFS_TMP/body" -D "$MFS_TMP/h" "$@"
    local st; st=$(status "$MFS_TMP/h")
    if [[ "$st" == $want ]] && [ -n "$(hdr X-Error-Message "$MFS_TMP/h")" ] && alive; then
        ok "bad input: $desc ($st)"
    else
        fail "bad input: $desc (status $st)"
    fi
}
bad "'..' in path" "4??" --path-as-is "$G/resolve/main/../../../etc/passwd"
bad "encoded '..' in path" "4??" "$G/resolve/main/%2E%2E/%2E%2E/hub.db"
bad "NUL in path" "4??" "$G/resolve/main/config.json%00.txt"
bad "bad escape in path" "4??" "$G/resolve/main/config%zz"
bad "bad repo id" "4??" "$HUB_URL/api/models/te..st/x"
bad "malformed JSON paths-info" 400 -X POST -H 'Content-Type: application/json' \
    --data '{"paths": [' "$HUB_URL/api/models/test/tiny-random-gpt2/paths-info/main"
bad "paths not an array" 400 -X POST -H 'Content-Type: application/json' \
    --data '{"paths": 3}' "$HUB_URL/api/models/test/tiny-random-gpt2/paths-info/main"
head -c $((17 << 20)) /dev/zero >"$MFS_TMP/big"
bad "oversize JSON body" 413 -X POST -H 'Content-Type: application/json' \
    --data-binary @"$MFS_TMP/big" "$HUB_URL/api/models/test/tiny-random-gpt2/paths-info/main"
bad "malformed NDJSON commit" 400 "${AUTH[@]}" -X POST -H 'Content-Type: application/x-ndjson' \
    --data-binary $'{"key":"header","value":{"summary":"x"}}\n{oops' \
    "$HUB_URL/api/models/test/tiny-random-gpt2/commit/main"
bad "commit with '..' path" 400 "${AUTH[@]}" -X POST \
    --data-binary $'{"key":"header","value":{"summary":"x"}}\n{"key":"file","value":{"path":"../x","content":"aGk=","encoding":"base64"}}' \
    "$HUB_URL/api/models/test/tiny-random-gpt2/commit/main"
bad "lfsFile never uploaded" 400 "${AUTH[@]}" -X POST \
    --data-binary $'{"key":"header","value":{"summary":"x"}}\n{"key":"lfsFile","value":{"path":"a.bin","algo":"sha256","oid":"'"$(printf '%064d' 0)"'","size":3}}' \
    "$HUB_URL/api/models/test/tiny-random-gpt2/commit/main"
code=$(curl -s -o /dev/null -w '%{http_code}' "$G/resolve/main/config.json" -H 'Range: bytes=5-2')
check "inverted range is ignored (200)" test "$code" = 200
[ "$(curl -s "$HUB_URL/api/models/test/tiny-random-gpt2/revision/main" | grep -o '"sha":"[0-9a-f]*"')" = "\"sha\":\"$c\"" ]
check "nothing was committed by the bad requests" test $? -eq 0

# --- downloads racing commits ----------------------------------------------------------
R=$MFS_TMP/race; mkdir -p "$R"; cp "$GD"/* "$R"/
: >"$MFS_TMP/race.bad"
pids=()
for i in 1 2 3; do
    ( for j in $(seq 1 15); do
          curl -sfL "$G/resolve/main/model.safetensors" | cmp -s - "$GD/model.safetensors" ||
              echo "model $i/$j" >>"$MFS_TMP/race.bad"
          curl -sf "$G/resolve/main/config.json" | cmp -s - "$GD/config.json" ||
              echo "config $i/$j" >>"$MFS_TMP/race.bad"
      done ) &
    pids+=($!)
done
for k in 1 2 3 4 5; do
    echo "round $k" >"$R/round.txt"
    hub_import "$R" test/tiny-random-gpt2 --message "round $k" >/dev/null ||
        echo "import $k" >>"$MFS_TMP/race.bad"
done
wait "${pids[@]}"
[ ! -s "$MFS_TMP/race.bad" ]
check "45 downloads during 5 commits all correct ($(wc -l <"$MFS_TMP/race.bad") bad)" test $? -eq 0
curl -sf "$G/resolve/main/round.txt" | grep -q "round 5"
check "last commit visible to the running server" test $? -eq 0
curl -sf "$G/resolve/$c/config.json" | cmp -s - "$GD/config.json" &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$G/resolve/$c/round.txt")" = 404 ]
check "old commit still readable and unchanged" test $? -eq 0

# --- a killed import leaves the previous commit intact ---------------------------------
before=$(curl -s "$HUB_URL/api/models/test/tiny-random-gpt2/revision/main" | grep -o '"sha":"[0-9a-f]*"')
K=$MFS_TMP/kill; mkdir -p "$K"; cp "$GD/config.json" "$K/"
truncate -s 400M "$K/huge.bin"
"$MFS_BIN" hub import "$K" test/tiny-random-gpt2 --root "$HUB_ROOT" >/dev/null 2>&1 &
ipid=$!
sleep 0.3
kill -9 "$ipid" 2>/dev/null; wait "$ipid" 2>/dev/null
after=$(curl -s "$HUB_URL/api/models/test/tiny-random-gpt2/revision/main" | grep -o '"sha":"[0-9a-f]*"')
if [ "$before" = "$after" ]; then
    curl -sfL "$G/resolve/main/model.safetensors" | cmp -s - "$GD/model.safetensors"
    check "kill -9 during import: main unchanged and still served" test $? -eq 0
else
    # The import won the race; then it must be complete.
    [ "$(curl -sI "$G/resolve/main/huge.bin" | tr -d '\r' | sed -n 's/^X-Linked-Size: //Ip')" = \
        $((400 << 20)) ]
    check "kill -9 during import: the commit landed whole" test $? -eq 0
fi

# --- clean stop -------------------------------------------------------------------------
kill -TERM "$HUB_PID"
for i in $(seq 1 50); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$HUB_PID" 2>/dev/null && wait "$HUB_PID"
check "SIGTERM stops the server cleanly (exit 0)" test $? -eq 0
HUB_PID=""
! grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$MFS_TMP/hub.err"
check "server stderr has no sanitizer report" test $? -eq 0
