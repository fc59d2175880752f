#!/bin/bash
# tests/hubd/test_hubd_upload.sh - `modelfs hub serve`, write side, driven with
# curl exactly as the official clients do (docs/hub-api.md sections 6 and 7):
# create repo, preupload, LFS batch + basic PUT + verify, multipart, NDJSON
# commits (with and without trailing newline), 412 on a stale parent,
# create_pr, deletes, branches and tags, paths-info, commits, validate-yaml,
# ownership between two users, repo deletion.
. "$MFS_ROOT/tests/lib.sh"

A=hf_alice_token_1
B=hf_bob_token_2
printf '%s alice\n%s bob\n' "$A" "$B" >"$MFS_TMP/tokens"
hub_start --token-file "$MFS_TMP/tokens" || exit 1
AA=(-H "Authorization: Bearer $A")
BB=(-H "Authorization: Bearer $B")
API=$HUB_URL/api/models/alice/up
W=$MFS_TMP/work; mkdir -p "$W"

hdr() { grep -i "^$1:" "$2" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
status() { head -1 "$1" | cut -d' ' -f2; }
jget() {   # jget KEY FILE: first string value of "KEY" in a JSON file
    grep -o "\"$1\":\"[^\"]*\"" "$2" | head -1 | cut -d'"' -f4
}
post() {   # post URL BODY [curl args]: response body in $W/out, headers in $W/h
    local url=$1 body=$2; shift 2
    curl -s -o "$W/out" -D "$W/h" -X POST --data-binary "$body" "$@" "$url"
}

# --- repo creation ----------------------------------------------------------------------
post "$HUB_URL/api/repos/create" '{"name":"up","organization":"alice","type":"model"}' "${AA[@]}" \
    -H 'Content-Type: application/json'
[ "$(status "$W/h")" = 200 ] && [ "$(jget url "$W/out")" = "$HUB_URL/alice/up" ]
check "create repo: 200 with url on the client's host" test $? -eq 0
post "$HUB_URL/api/repos/create" '{"name":"up","organization":"alice"}' "${AA[@]}"
check "create an existing repo: 409" test "$(status "$W/h")" = 409
post "$HUB_URL/api/repos/create" '{"name":"x","organization":"alice"}' "${BB[@]}"
check "bob cannot create a repo in alice's namespace: 403" test "$(status "$W/h")" = 403
post "$HUB_URL/api/repos/create" '{"name":"noauth","organization":"alice"}'
check "create without a token: 401" test "$(status "$W/h")" = 401
head0=$(curl -s "${AA[@]}" "$API/revision/main" | grep -o '"sha":"[0-9a-f]*"' | cut -d'"' -f4)
curl -s "${AA[@]}" "$HUB_URL/alice/up/resolve/main/.gitattributes" | grep -q '\*.safetensors filter=lfs'
check "new repo has an initial commit with .gitattributes" test $? -eq 0

# --- preupload ---------------------------------------------------------------------------
printf '{"a": 1}\n' >"$W/config.json"
{ printf "\0\1binary"; head -c 299992 /dev/urandom; } >"$W/weights.custom"
s1=$(head -c 512 "$W/config.json" | base64 -w0)
s2=$(head -c 512 "$W/weights.custom" | base64 -w0)
post "$API/preupload/main" "{\"files\":[{\"path\":\"config.json\",\"sample\":\"$s1\",\"size\":9},
    {\"path\":\"weights.custom\",\"sample\":\"$s2\",\"size\":300000},
    {\"path\":\"m.safetensors\",\"sample\":\"\",\"size\":20}]}" "${AA[@]}" \
    -H 'Content-Type: application/json'
tr -d ' \n' <"$W/out" | grep -q '"path":"config.json","uploadMode":"regular","shouldIgnore":false' &&
    tr -d ' \n' <"$W/out" | grep -q '"path":"weights.custom","uploadMode":"lfs","shouldIgnore":false' &&
    tr -d ' \n' <"$W/out" | grep -q '"path":"m.safetensors","uploadMode":"lfs"'
check "preupload: text regular, binary sample and *.safetensors lfs, shouldIgnore present" \
    test $? -eq 0

# --- LFS batch + basic PUT + verify --------------------------------------------------------
sha=$(sha256sum "$W/weights.custom" | cut -c1-64)
batch() {  # batch OID SIZE [hash_algo]
    post "$HUB_URL/alice/up.git/info/lfs/objects/batch" \
        "{\"operation\":\"upload\",\"transfers\":[\"basic\",\"multipart\"],\"objects\":[{\"oid\":\"$1\",\"size\":$2}],\"hash_algo\":\"${3:-sha256}\",\"ref\":{\"name\":\"main\"}}" \
        "${AA[@]}" -H 'Accept: application/vnd.git-lfs+json' -H 'Content-Type: application/vnd.git-lfs+json'
}
batch "$sha" 300000 sha_256
up=$(tr -d '\n' <"$W/out" | grep -o '"upload":{"href":"[^"]*"' | cut -d'"' -f6)
ver=$(tr -d '\n' <"$W/out" | grep -o '"verify":{"href":"[^"]*"' | cut -d'"' -f6)
[ "$(status "$W/h")" = 200 ] && [[ "$up" == "$HUB_URL"/* ]] && [ -n "$ver" ] &&
    ! grep -q xet "$W/out"
check "LFS batch (hash_algo sha_256): absolute upload and verify hrefs, no xet" test $? -eq 0
head -c 300000 /dev/urandom >"$W/liar"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$W/liar" "$up")
check "PUT of bytes that do not match the oid: 400" test "$code" = 400
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "{\"oid\":\"$sha\",\"size\":300000}" "${AA[@]}" "$ver")
check "verify before upload: 404" test "$code" = 404
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$W/weights.custom" "$up")
check "basic PUT with no auth header (self-authorising href): 200" test "$code" = 200
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "{\"oid\":\"$sha\",\"size\":300000}" "${AA[@]}" "$ver")
check "verify after upload: 200" test "$code" = 200
batch "$sha" 300000
! grep -q '"actions"' "$W/out"
check "LFS batch for a stored object: no actions" test $? -eq 0
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$W/liar" "${up%%sig=*}sig=00")
check "PUT to an href with a forged signature: 403" test "$code" = 403

# --- commit ---------------------------------------------------------------------------------
b64=$(base64 -w0 "$W/config.json")
hdrline='{"key":"header","value":{"summary":"add files","description":""}}'
body="$hdrline
{\"key\":\"file\",\"value\":{\"path\":\"config.json\",\"content\":\"$b64\",\"encoding\":\"base64\"}}
{\"key\":\"lfsFile\",\"value\":{\"path\":\"sub/weights.custom\",\"algo\":\"sha256\",\"oid\":\"$sha\",\"size\":300000}}"
post "$API/commit/main" "$body" "${AA[@]}" -H 'Content-Type: application/x-ndjson'
c1=$(jget commitOid "$W/out")
[ "$(status "$W/h")" = 200 ] && [[ "$c1" =~ ^[0-9a-f]{40}$ ]] &&
    [ "$(jget commitUrl "$W/out")" = "$HUB_URL/alice/up/commit/$c1" ]
check "NDJSON commit without trailing newline: commitOid, commitUrl on our host" test $? -eq 0
curl -sfL "${AA[@]}" "$HUB_URL/alice/up/resolve/main/sub/weights.custom" | cmp -s - "$W/weights.custom" &&
    curl -sf "${AA[@]}" "$HUB_URL/alice/up/resolve/$c1/config.json" | cmp -s - "$W/config.json"
check "committed regular and LFS files read back" test $? -eq 0
curl -sf "${AA[@]}" "$HUB_URL/alice/up/resolve/main/.gitattributes" |
    grep -qx 'sub/weights.custom filter=lfs diff=lfs merge=lfs -text'
check ".gitattributes gained a line for the new LFS path" test $? -eq 0
post "$API/preupload/main" "{\"files\":[{\"path\":\"config.json\",\"sample\":\"$s1\",\"size\":9},{\"path\":\"sub/weights.custom\",\"sample\":\"$s2\",\"size\":300000}]}" \
    "${AA[@]}" -H 'Content-Type: application/json'
{ printf 'blob 9\0'; cat "$W/config.json"; } | sha1sum | cut -c1-40 >"$W/oid1"
tr -d ' \n' <"$W/out" | grep -q "\"oid\":\"$(cat "$W/oid1")\"" &&
    tr -d ' \n' <"$W/out" | grep -q "\"oid\":\"$sha\""
check "preupload oid: git sha1 for regular, sha256 for LFS" test $? -eq 0

# parentCommit: stale -> 412, current -> 200 (trailing newline this time).
body2="{\"key\":\"header\",\"value\":{\"summary\":\"stale\",\"parentCommit\":\"$head0\"}}
{\"key\":\"file\",\"value\":{\"path\":\"stale.txt\",\"content\":\"eA==\",\"encoding\":\"base64\"}}
"
post "$API/commit/main" "$body2" "${AA[@]}"
check "commit on a stale parentCommit: 412" test "$(status "$W/h")" = 412
body3="{\"key\":\"header\",\"value\":{\"summary\":\"fresh\",\"parentCommit\":\"$c1\"}}
{\"key\":\"file\",\"value\":{\"path\":\"dir/a.txt\",\"content\":\"YQ==\",\"encoding\":\"base64\"}}
{\"key\":\"file\",\"value\":{\"path\":\"dir/b.txt\",\"content\":\"Yg==\",\"encoding\":\"base64\"}}
{\"key\":\"file\",\"value\":{\"path\":\"empty.txt\",\"content\":\"\",\"encoding\":\"base64\"}}
"
post "$API/commit/main" "$body3" "${AA[@]}"
c2=$(jget commitOid "$W/out")
check "commit on the current parentCommit with trailing newline: 200" test -n "$c2"
curl -s -D "$W/h" -o "$W/got" -r 0-0 "${AA[@]}" "$HUB_URL/alice/up/resolve/main/empty.txt"
[ "$(status "$W/h")" = 200 ] && [ "$(hdr Content-Range "$W/h")" = "bytes */0" ] && [ ! -s "$W/got" ]
check "empty file with Range 0-0: 200, Content-Range bytes */0" test $? -eq 0

# create_pr
body4='{"key":"header","value":{"summary":"pr"}}
{"key":"file","value":{"path":"pr.txt","content":"cHI=","encoding":"base64"}}'
post "$API/commit/main?create_pr=1" "$body4" "${AA[@]}"
pr=$(jget pullRequestUrl "$W/out")
[[ "$pr" == "$HUB_URL/alice/up/discussions/1" ]] &&
    [ "$(curl -s "${AA[@]}" "$HUB_URL/alice/up/resolve/refs%2Fpr%2F1/pr.txt")" = pr ] &&
    [ "$(curl -s "${AA[@]}" "$HUB_URL/alice/up/resolve/refs/pr/1/pr.txt")" = pr ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' "${AA[@]}" "$HUB_URL/alice/up/resolve/main/pr.txt")" = 404 ]
check "create_pr=1: pullRequestUrl .../discussions/1, refs/pr/1 encoded and raw, main untouched" \
    test $? -eq 0
post "$API/commit/refs%2Fpr%2F1" '{"key":"header","value":{"summary":"pr2"}}
{"key":"file","value":{"path":"pr2.txt","content":"cHI=","encoding":"base64"}}' "${AA[@]}"
check "commit to refs%2Fpr%2F1" test "$(status "$W/h")" = 200

# deletes
post "$API/commit/main" '{"key":"header","value":{"summary":"rm"}}
{"key":"deletedFolder","value":{"path":"dir/"}}
{"key":"deletedFile","value":{"path":"config.json"}}' "${AA[@]}"
curl -s "${AA[@]}" "$API/tree/main?recursive=true" >"$W/tree"
[ "$(status "$W/h")" = 200 ] && ! grep -q '"dir/a.txt"\|"config.json"' "$W/tree" &&
    grep -q '"sub/weights.custom"' "$W/tree"
check "deletedFolder with trailing '/' and deletedFile" test $? -eq 0
post "$API/commit/main" '{"key":"header","value":{"summary":"rm"}}
{"key":"deletedFile","value":{"path":"nope.txt"}}' "${AA[@]}"
[ "$(status "$W/h")" = 404 ] && [ "$(hdr X-Error-Code "$W/h")" = EntryNotFound ]
check "deleting a missing file: 404 EntryNotFound" test $? -eq 0
post "$API/commit/main" '{"key":"header","value":{"summary":"nul"}}
{"key":"file","value":{"path":"a\u0000b.txt","content":"eA==","encoding":"base64"}}' "${AA[@]}"
check "NUL in a commit path: 400" test "$(status "$W/h")" = 400

# --- multipart ------------------------------------------------------------------------------
head -c $((17 << 20)) /dev/urandom >"$W/big.bin"
bsha=$(sha256sum "$W/big.bin" | cut -c1-64)
batch "$bsha" $((17 << 20))
tr -d '\n ' <"$W/out" >"$W/b"
chunk=$(grep -o '"chunk_size":"[0-9]*"' "$W/b" | cut -d'"' -f4)
done_url=$(grep -o '"upload":{"href":"[^"]*"' "$W/b" | cut -d'"' -f6)
parts=$(grep -o '"0000[0-9]":"[^"]*"' "$W/b")
nparts=$(echo "$parts" | wc -l)
[ -n "$chunk" ] && [ "$nparts" = $(( ((17 << 20) + chunk - 1) / chunk )) ]
check "multipart: chunk_size and ceil(size/chunk) part URLs" test $? -eq 0
split -b "$chunk" -d -a 3 "$W/big.bin" "$W/part."
json='{"oid":"'$bsha'","parts":['
k=0
while read -r line; do
    url=$(echo "$line" | cut -d'"' -f4)
    etag=$(curl -s -D - -o /dev/null -X PUT --data-binary @"$W/part.$(printf %03d $k)" "$url" |
        tr -d '\r' | sed -n 's/^ETag: //Ip' | tr -d '"')
    k=$((k + 1))
    [ $k -gt 1 ] && json+=','
    json+='{"partNumber":'$k',"etag":"'$etag'"}'
done <<<"$parts"
json+=']}'
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/vnd.git-lfs+json' \
    --data "$json" "$done_url")
check "multipart completion: 200" test "$code" = 200
post "$API/commit/main" '{"key":"header","value":{"summary":"big"}}
{"key":"lfsFile","value":{"path":"big.bin","algo":"sha256","oid":"'$bsha'"}}' "${AA[@]}"
curl -sfL "${AA[@]}" "$HUB_URL/alice/up/resolve/main/big.bin" | cmp -s - "$W/big.bin"
check "multipart object committed (lfsFile without size) and read back" test $? -eq 0

# --- multipart: parts written in place, hashed as they come in order -----------------------
# Retries, parts out of order, lies and gaps must never store wrong bytes.
mp_object() {   # mp_object NAME: fresh 17 MiB object, its oid in mp_oid, URLs in files
    head -c $((17 << 20)) /dev/urandom >"$W/$1"
    mp_oid=$(sha256sum "$W/$1" | cut -c1-64)
    batch "$mp_oid" $((17 << 20))
    tr -d '\n ' <"$W/out" >"$W/b"
    grep -o '"upload":{"href":"[^"]*"' "$W/b" | cut -d'"' -f6 >"$W/$1.done"
    grep -o '"0000[0-9]":"[^"]*"' "$W/b" | cut -d'"' -f4 >"$W/$1.urls"
    split -b "$chunk" -d -a 3 "$W/$1" "$W/$1.p."
}
mp_put() {   # mp_put NAME K FILE: PUT FILE as part K of NAME; prints the HTTP status
    curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$3" \
        "$(sed -n "${2}p" "$W/$1.urls")"
}
mp_complete() {   # mp_complete NAME PARTS...: prints the HTTP status
    local name=$1 json k sep=
    shift
    json='{"oid":"'$mp_oid'","parts":['
    for k in "$@"; do json+=$sep'{"partNumber":'$k',"etag":"e'$k'"}'; sep=,; done
    json+=']}'
    curl -s -o "$W/out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/vnd.git-lfs+json' --data "$json" "$(cat "$W/$name.done")"
}
mp_stored() {   # mp_stored NAME: the store serves NAME's bytes under its oid
    local href
    post "$HUB_URL/alice/up.git/info/lfs/objects/batch" \
        "{\"operation\":\"download\",\"objects\":[{\"oid\":\"$mp_oid\",\"size\":$((17 << 20))}]}" \
        "${AA[@]}" -H 'Content-Type: application/vnd.git-lfs+json'
    href=$(tr -d '\n ' <"$W/out" | grep -o '"download":{"href":"[^"]*"' | cut -d'"' -f6)
    [ -n "$href" ] && curl -sf "$href" | cmp -s - "$W/$1"
}
mp_object m1
r1=$(mp_put m1 1 "$W/m1.p.001")$(mp_put m1 1 "$W/m1.p.000")$(mp_put m1 2 "$W/m1.p.001")
r1+=$(mp_put m1 3 "$W/m1.p.002")
[ "$r1" = 200200200200 ] && [ "$(mp_complete m1 1 2 3)" = 200 ] && mp_stored m1
check "multipart: part 1 first sent with wrong bytes, again, then in order: stored right" \
    test $? -eq 0
mp_object m2
r2=$(mp_put m2 3 "$W/m2.p.002")$(mp_put m2 1 "$W/m2.p.000")$(mp_put m2 2 "$W/m2.p.001")
[ "$r2" = 200200200 ] && [ "$(mp_complete m2 3 1 2 2)" = 200 ] && mp_stored m2
check "multipart: parts out of order (3, 1, 2), listed unsorted: stored right" test $? -eq 0
mp_object m3
mp_put m3 1 "$W/m3.p.000" >/dev/null; mp_put m3 2 "$W/m3.p.000" >/dev/null
mp_put m3 3 "$W/m3.p.002" >/dev/null
[ "$(mp_complete m3 1 2 3)" = 400 ] && grep -q 'hash to' "$W/out" && ! mp_stored m3
check "multipart: a part with wrong bytes: completion 400, nothing stored" test $? -eq 0
mp_object m4
mp_put m4 1 "$W/m4.p.000" >/dev/null; mp_put m4 3 "$W/m4.p.002" >/dev/null
c1=$(mp_complete m4 1 2 3); grep -q 'not uploaded' "$W/out"; g1=$?
c2=$(mp_complete m4 1 3); grep -q 'numbered 1 to N' "$W/out"; g2=$?
[ "$c1" = 400 ] && [ $g1 = 0 ] && [ "$c2" = 400 ] && [ $g2 = 0 ] && ! mp_stored m4
check "multipart: a part never sent, or a gap in the list: 400" test $? -eq 0
mp_put m4 2 "$W/m4.p.001" >/dev/null
[ "$(mp_complete m4 1 2 3)" = 200 ] && mp_stored m4
check "multipart: the missing part sent later: the completion then succeeds" test $? -eq 0
mp_object m5
cat "$W/m5.p.000" "$W/m5.p.002" >"$W/m5.big"
c1=$(mp_put m5 1 "$W/m5.big")
mp_put m5 1 "$W/m5.p.002" >/dev/null; mp_put m5 2 "$W/m5.p.001" >/dev/null
mp_put m5 3 "$W/m5.p.002" >/dev/null
c2=$(mp_complete m5 1 2 3); grep -q 'not chunk_size' "$W/out"; g2=$?
[ "$c1" = 400 ] && [ "$c2" = 400 ] && [ $g2 = 0 ] && ! mp_stored m5
check "multipart: a part larger than chunk_size, or a short one before the last: 400" \
    test $? -eq 0

# --- metadata of the result ------------------------------------------------------------------
post "$API/paths-info/main" '{"paths":["sub/weights.custom","sub","missing"],"expand":true}' \
    "${AA[@]}" -H 'Content-Type: application/json'
tr -d '\n ' <"$W/out" | grep -q "\"lfs\":{\"oid\":\"$sha\",\"size\":300000,\"pointerSize\":1[0-9][0-9]}" &&
    grep -q '"type":"directory"' "$W/out" && ! grep -q missing "$W/out" && grep -q lastCommit "$W/out"
check "paths-info (JSON body): file with lfs, folder, missing omitted, expand" test $? -eq 0
post "$API/paths-info/main" 'paths=sub%2Fweights.custom&paths=empty.txt&expand=false' "${AA[@]}" \
    -H 'Content-Type: application/x-www-form-urlencoded'
[ "$(grep -o '"path":' "$W/out" | wc -l)" = 2 ]
check "paths-info (form body, PY style)" test $? -eq 0
curl -s "${AA[@]}" "$API/commits/main" >"$W/commits"
[ "$(grep -o '"title":"big"' "$W/commits" | wc -l)" = 1 ] && grep -q '"title":"initial commit"' "$W/commits" &&
    grep -q '"user":"alice"' "$W/commits"
check "commits listing, newest first, with authors" test $? -eq 0

# --- branches and tags ----------------------------------------------------------------------
post "$API/branch/feature%2Fx" '{}' "${AA[@]}" -H 'Content-Type: application/json'
check "create branch feature/x" test "$(status "$W/h")" = 200
post "$API/branch/feature%2Fx" '{}' "${AA[@]}" -H 'Content-Type: application/json'
check "create it again: 409" test "$(status "$W/h")" = 409
post "$API/commit/feature%2Fx" '{"key":"header","value":{"summary":"on branch"}}
{"key":"file","value":{"path":"branch.txt","content":"YnI=","encoding":"base64"}}' "${AA[@]}"
[ "$(curl -s "${AA[@]}" "$HUB_URL/alice/up/resolve/feature%2Fx/branch.txt")" = br ] &&
    [ "$(curl -s "${AA[@]}" "$HUB_URL/alice/up/resolve/feature/x/branch.txt")" = br ] &&
    curl -s "${AA[@]}" "$API/tree/feature/x" | grep -q branch.txt
check "commit to feature%2Fx; resolve and tree with encoded and raw revision" test $? -eq 0
post "$API/tag/main" '{"tag":"v1.0","message":"first"}' "${AA[@]}" -H 'Content-Type: application/json'
[ "$(status "$W/h")" = 200 ] &&
    curl -sfL "${AA[@]}" "$HUB_URL/alice/up/resolve/v1.0/big.bin" | cmp -s - "$W/big.bin"
check "tag v1.0 created and resolvable" test $? -eq 0
post "$API/tag/main" '{"tag":"v1.0"}' "${AA[@]}" -H 'Content-Type: application/json'
check "tag again: 409" test "$(status "$W/h")" = 409
curl -s "${AA[@]}" "$API/refs?include_prs=1" | tr -d ' \n' >"$W/refs"
grep -q '"name":"feature/x","ref":"refs/heads/feature/x"' "$W/refs" &&
    grep -q '"name":"v1.0","ref":"refs/tags/v1.0"' "$W/refs" && grep -q '"ref":"refs/pr/1"' "$W/refs" &&
    grep -q '"converts":\[\]' "$W/refs"
check "refs: branches, tags, converts, pullRequests" test $? -eq 0
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AA[@]}" "$API/branch/main")
check "delete main: refused" test "$code" = 403
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AA[@]}" "$API/branch/feature%2Fx")
code2=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AA[@]}" "$API/tag/v1.0")
code3=$(curl -s -o /dev/null -w '%{http_code}' "${AA[@]}" "$HUB_URL/alice/up/resolve/v1.0/big.bin")
check "delete branch and tag ($code/$code2), tag gone ($code3)" test "$code/$code2/$code3" = 200/200/404

# --- validate-yaml --------------------------------------------------------------------------
post "$HUB_URL/api/validate-yaml" '{"content":"---\nlicense: mit\n---\n# hi\n","repoType":"model"}' \
    "${AA[@]}" -H 'Content-Type: application/json'
[ "$(status "$W/h")" = 200 ] && grep -q '"errors":\[\]' "$W/out"
check "validate-yaml: good front matter 200" test $? -eq 0
post "$HUB_URL/api/validate-yaml" '{"content":"---\nlicense: mit\n# never closed\n"}' "${AA[@]}" \
    -H 'Content-Type: application/json'
[ "$(status "$W/h")" = 400 ] && grep -q '"errors":\[{"message"' "$W/out"
check "validate-yaml: unclosed front matter 400 with errors[] JSON" test $? -eq 0

# --- ownership ------------------------------------------------------------------------------
post "$API/commit/main" '{"key":"header","value":{"summary":"bob"}}
{"key":"file","value":{"path":"bob.txt","content":"Yg==","encoding":"base64"}}' "${BB[@]}"
check "bob cannot commit to alice's repo: 403" test "$(status "$W/h")" = 403
post "$HUB_URL/api/repos/create" '{"name":"secret","organization":"alice","private":true}' "${AA[@]}"
curl -s -D "$W/h" -o /dev/null "${BB[@]}" "$HUB_URL/api/models/alice/secret"
[ "$(status "$W/h")" = 404 ] && [ "$(hdr X-Error-Code "$W/h")" = RepoNotFound ]
check "bob cannot see alice's private repo: 404 RepoNotFound" test $? -eq 0
code=$(curl -s -o /dev/null -w '%{http_code}' "${AA[@]}" "$HUB_URL/api/models/alice/secret")
check "alice sees her private repo" test "$code" = 200
curl -s -o /dev/null -D "$W/h" -X DELETE "${BB[@]}" --data '{"name":"up","organization":"alice"}' \
    "$HUB_URL/api/repos/delete"
check "bob cannot delete alice's repo" test "$(status "$W/h")" = 403

# --- deletion -------------------------------------------------------------------------------
curl -s -o /dev/null -D "$W/h" -X DELETE "${AA[@]}" --data '{"name":"up","organization":"alice"}' \
    "$HUB_URL/api/repos/delete"
check "delete repo: 200" test "$(status "$W/h")" = 200
curl -s -o /dev/null -D "$W/h" -X DELETE "${AA[@]}" --data '{"name":"up","organization":"alice"}' \
    "$HUB_URL/api/repos/delete"
[ "$(status "$W/h")" = 404 ] && [ "$(hdr X-Error-Code "$W/h")" = RepoNotFound ]
check "delete it again: 404 RepoNotFound" test $? -eq 0
curl -s -D "$W/h" -o /dev/null "${AA[@]}" "$API"
check "deleted repo info: 404" test "$(status "$W/h")" = 404

# --- clean stop ---------------------------------------------------------------------------
kill -TERM "$HUB_PID"
wait "$HUB_PID"
check "SIGTERM stops the server cleanly (exit 0)" test $? -eq 0
HUB_PID=""
! grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$MFS_TMP/hub.err"
check "server stderr has no sanitizer report" test $? -eq 0
