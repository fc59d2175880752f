#!/bin/bash
# tests/mount/test_mount_push.sh - pushes through real mounts to the local
# Hub, checked with the official @huggingface/hub JavaScript client
# (tests/mount/remote_repo.mjs): docs/design.md "Writes, resharding, push"
# and the push/config control files.
#
# One repo, alice/new, made by `modelfs mount --create` and changed step by
# step: cp -r of a model + `modelfs push` (prints the commit URL), a push
# through .modelfs/push (JSON reply), `sync MNT`, rename and delete, config
# errors, resharding at max_shard_size=100KB against data/golden/
# sharding.json, a conflicting commit by another client (EIO, reason in
# .modelfs/push and .modelfs/log, nothing lost, remount and push), a pull
# request, kill -9 of the daemon during a push (exactly one commit after the
# remount), and `modelfs umount` pushing.
MFS_ROOT=${MFS_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$MFS_ROOT/tests/lib.sh"
. "$MFS_ROOT/tests/mount/lib_mount.sh"

REPO=alice/new
SRC=$MFS_DATA/models/stories260K-hf
export JS_DIR=$MFS_ROOT/tests/js
export HF_TOKEN=hf_pushAliceToken0123456789
unset HF_HUB_OFFLINE
printf '%s alice\n' "$HF_TOKEN" >"$MFS_TMP/tokens"
export MFS_CACHE=$MFS_TMP/cache

js_client_ready "$JS_DIR" || exit 1

hub_start --token-file "$MFS_TMP/tokens" || exit 1
PORT=${HUB_URL##*:}
export HUB_URL

remote() { node "$MFS_ROOT/tests/mount/remote_repo.mjs" "$@"; }
# "PATH SIZE SHA256" of every file of a folder, sorted (SOURCE.md too: it
# is a file like any other; a mount's .modelfs/ and tensors/ are not).
local_files() {
    (cd "$1" && find . \( -path ./.modelfs -o -path ./tensors \) -prune -o -type f -print |
        sed "s|^\./||" | LC_ALL=C sort |
        while read -r f; do echo "$f $(stat -c %s "$f") $(sha256sum "$f" | cut -d' ' -f1)"; done)
}
# The remote's files without the .gitattributes the Hub keeps itself.
remote_files() { remote files "$@" | grep -v '^\.gitattributes ' | LC_ALL=C sort; }
has_remote() { grep -q "^$1 " "$MFS_TMP/remote.txt"; }
n_commits() { remote commits "$REPO"; }
# Restart the hub on the same port (the mount's endpoint stays valid).
hub_restart() {
    hub_stop
    hub_start --token-file "$MFS_TMP/tokens" --port "$PORT" "$@"
}

M=$MFS_TMP/mnt
# ---- A: --create, cp -r, modelfs push prints the commit URL ------------------------------------
if ! mfs_mount "$REPO" "$M" --create; then
    fail "mount --create $REPO"
    exit 1
fi
ok "mount --create $REPO"
cp -r "$SRC/." "$M/" && ok "cp -r a model into the mount" || fail "cp -r into the mount"
diff <(local_files "$SRC") <(local_files "$M" | grep -v "^\.gitattributes ") >/dev/null &&
    ok "the mount shows the copied files at once" || fail "the mount shows the copied files"
url=$("$MFS_BIN" push "$M" 2>"$MFS_TMP/push.err")
rc=$?
[[ $rc -eq 0 && "$url" =~ ^$HUB_URL/$REPO/commit/[0-9a-f]{40}$ ]] &&
    ok "modelfs push prints the commit URL ($url)" ||
    fail "modelfs push: rc $rc out '$url' err $(head -c 300 "$MFS_TMP/push.err")"
remote_files "$REPO" >"$MFS_TMP/remote.txt"
diff <(local_files "$SRC") "$MFS_TMP/remote.txt" >"$MFS_TMP/diff.txt" &&
    ok "the remote holds exactly the copied files, byte-identical (JS client)" ||
    fail "remote differs: $(head -c 400 "$MFS_TMP/diff.txt")"
c_after_a=$(n_commits)

# ---- B, C: .modelfs/push: nothing to send, then a message ------------------------------------
echo hi >"$M/.modelfs/push" && ok "echo > .modelfs/push with nothing staged" ||
    fail "echo > .modelfs/push with nothing staged"
reply=$(cat "$M/.modelfs/push")
[[ "$reply" == *'"status":"ok"'* && "$reply" == *'"committed":false'* ]] &&
    ok "cat .modelfs/push: no commit ($reply)" || fail "cat .modelfs/push: '$reply'"
[ "$(n_commits)" = "$c_after_a" ] && ok "no commit was made" || fail "a commit was made"
echo "some notes" >"$M/notes.txt"
echo "add notes" >"$M/.modelfs/push" && ok "push with a message" || fail "push with a message"
reply=$(cat "$M/.modelfs/push")
[[ "$reply" == *'"committed":true'* && "$reply" =~ \"commit\":\"[0-9a-f]{40}\" ]] &&
    ok "cat .modelfs/push: the commit ($reply)" || fail "cat .modelfs/push after a push: '$reply'"
curl -s "$HUB_URL/api/models/$REPO/commits/main" | grep -q '"title":"add notes"' &&
    ok "the commit has the message written" || fail "commit title is not 'add notes'"

# ---- D: sync MNT -------------------------------------------------------------------------------
echo synced >"$M/synced.txt"
sync "$M"
remote_files "$REPO" >"$MFS_TMP/remote.txt"
has_remote synced.txt && ok "sync MNT pushes" || fail "sync MNT did not push synced.txt"

# ---- E: rename and delete are pushed as deletions ---------------------------------------------
mkdir "$M/docs" && mv "$M/notes.txt" "$M/docs/notes.md" && rm "$M/generation_config.json" &&
    ok "rename and delete in the mount" || fail "rename and delete in the mount"
"$MFS_BIN" push "$M" >/dev/null 2>"$MFS_TMP/push.err" || fail "push: $(cat "$MFS_TMP/push.err")"
remote_files "$REPO" >"$MFS_TMP/remote.txt"
has_remote docs/notes.md && ! has_remote notes.txt && ! has_remote generation_config.json &&
    ok "rename and delete are on the remote" ||
    fail "remote after rename/delete: $(cut -d' ' -f1 "$MFS_TMP/remote.txt" | tr '\n' ' ')"

# ---- F: .modelfs/config, resharding at 100KB ---------------------------------------------------
cfg=$(cat "$M/.modelfs/config")
[[ "$cfg" == *'"max_shard_size":5000000000'* && "$cfg" == *'"create_pr":false'* ]] &&
    ok "cat .modelfs/config: defaults ($cfg)" || fail "cat .modelfs/config: '$cfg'"
for bad in "bogus=1" "max_shard_size=lots" "create_pr=maybe" "max_shard_size" \
    'commit_message="open'; do
    if echo "$bad" >"$M/.modelfs/config" 2>"$MFS_TMP/err"; then
        fail "config '$bad' was accepted"
    else
        grep -q "Invalid argument" "$MFS_TMP/err" && ok "config '$bad' -> EINVAL" ||
            fail "config '$bad': $(cat "$MFS_TMP/err")"
    fi
done
reason=$(cat "$M/.modelfs/config")
[[ "$reason" == error:* ]] && ok "the reason is readable: $reason" || fail "no reason: '$reason'"
echo 'commit_message="a title with spaces" commit_description="why: \"tests\""' \
    >"$M/.modelfs/config"
cfg=$(cat "$M/.modelfs/config")
[[ "$cfg" == *'"commit_message":"a title with spaces"'* &&
    "$cfg" == *'"commit_description":"why: \"tests\""'* ]] &&
    ok "quoted config values" || fail "quoted config values: '$cfg'"
echo 'commit_message="" commit_description=""' >"$M/.modelfs/config"
if echo max_shard_size=100KB >"$M/.modelfs/config" 2>"$MFS_TMP/err"; then
    ok "max_shard_size=100KB"
else
    fail "max_shard_size=100KB: $(cat "$MFS_TMP/err")"
fi
"$MFS_BIN" push "$M" >/dev/null 2>"$MFS_TMP/push.err" || fail "push: $(cat "$MFS_TMP/push.err")"
remote_files "$REPO" >"$MFS_TMP/remote.txt"
node -e '
const g = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const c = g.cases.find((c) => c.model === "stories260K-hf" && c.max_shard_size === "100KB");
for (const s of c.shards) console.log("shard " + s.file);
console.log("index " + c.index_json_sha256);
' "$MFS_DATA/golden/sharding.json" >"$MFS_TMP/golden.txt"
want_shards=$(sed -n 's/^shard //p' "$MFS_TMP/golden.txt" | LC_ALL=C sort)
got_shards=$(grep -o '^model[^ ]*\.safetensors ' "$MFS_TMP/remote.txt" | tr -d ' ' | LC_ALL=C sort)
[ -n "$want_shards" ] && [ "$want_shards" = "$got_shards" ] &&
    ok "remote shard names equal the golden 100KB case ($(echo $got_shards | wc -w) shards)" ||
    fail "shards: want '$(echo $want_shards)' got '$(echo $got_shards)'"
want_index=$(sed -n 's/^index //p' "$MFS_TMP/golden.txt")
got_index=$(sed -n 's/^model\.safetensors\.index\.json [0-9]* //p' "$MFS_TMP/remote.txt")
[ -n "$want_index" ] && [ "$want_index" = "$got_index" ] &&
    ok "remote index JSON equals the golden one (sha256)" ||
    fail "index JSON: want $want_index got '$got_index'"
! has_remote model.safetensors && ok "the single file is gone from the remote" ||
    fail "model.safetensors still on the remote"

# ---- G: another client commits first -> EIO, nothing lost, remount, push ----------------------
oid=$(remote commit "$REPO" other.txt "from another client" 2>"$MFS_TMP/err")
[[ "$oid" =~ ^[0-9a-f]{40}$ ]] && ok "another client commits (JS uploadFiles)" ||
    fail "another client commit: $(cat "$MFS_TMP/err")"
echo "mine" >"$M/conflict.txt"
if echo >"$M/.modelfs/push" 2>"$MFS_TMP/err"; then
    fail "a push over a moved branch succeeded"
else
    grep -q "Input/output error" "$MFS_TMP/err" && ok "a push over a moved branch fails with EIO" ||
        fail "push over a moved branch: $(cat "$MFS_TMP/err")"
fi
reply=$(cat "$M/.modelfs/push")
[[ "$reply" == error:*moved* ]] && ok "the reason is in .modelfs/push: $reply" ||
    fail ".modelfs/push after the conflict: '$reply'"
grep -q "moved" "$M/.modelfs/log" && ok "the reason is in .modelfs/log" ||
    fail ".modelfs/log: $(tail -2 "$M/.modelfs/log")"
[ "$(cat "$M/conflict.txt" 2>/dev/null)" = mine ] && ok "the staged file is still there" ||
    fail "the staged file is gone"
fusermount3 -u "$M" || fusermount3 -u -z "$M"
if mfs_mount "$REPO" "$M"; then
    [ "$(cat "$M/conflict.txt" 2>/dev/null)" = mine ] && [ -f "$M/other.txt" ] &&
        ok "remount: the new head with the staged file over it" ||
        fail "remount does not show other.txt and conflict.txt"
    "$MFS_BIN" push "$M" >/dev/null 2>"$MFS_TMP/push.err" && ok "push after the remount" ||
        fail "push after the remount: $(cat "$MFS_TMP/push.err")"
    remote_files "$REPO" >"$MFS_TMP/remote.txt"
    has_remote conflict.txt && has_remote other.txt && ok "both changes are on the remote" ||
        fail "remote lacks conflict.txt or other.txt"
else
    fail "remount after the conflict"
fi

# ---- H: a pull request through the CLI -------------------------------------------------------
echo "proposed" >"$M/pr.txt"
url=$("$MFS_BIN" push "$M" --create-pr -m "propose pr.txt" --description "for review" \
    2>"$MFS_TMP/push.err")
[[ "$url" =~ ^$HUB_URL/$REPO/discussions/([0-9]+)$ ]] && ok "push --create-pr prints the PR URL" ||
    fail "push --create-pr: '$url' $(cat "$MFS_TMP/push.err")"
pr=${BASH_REMATCH[1]:-0}
remote_files "$REPO" >"$MFS_TMP/remote.txt"
! has_remote pr.txt && ok "main does not have the PR's file" || fail "pr.txt landed on main"
remote files "$REPO" "refs/pr/$pr" 2>/dev/null | grep -q '^pr.txt ' &&
    ok "refs/pr/$pr has the file" || fail "refs/pr/$pr lacks pr.txt"
curl -s "$HUB_URL/api/models/$REPO/commits/refs%2Fpr%2F$pr" |
    grep -q '"title":"propose pr.txt","message":"for review"' &&
    ok "the PR commit has the -m title and the --description" || fail "PR commit title/message"
[[ "$(cat "$M/.modelfs/config")" == *'"create_pr":false'* ]] &&
    ok "--create-pr was for that push only" || fail "create_pr stayed on"
"$MFS_BIN" umount "$M" && ok "umount with nothing staged" || fail "umount after the PR"

# ---- I: kill -9 of the daemon during a push: exactly one commit -------------------------------
head -c 3000000 /dev/urandom >"$MFS_TMP/big.bin"
c0=$(n_commits)
if mfs_mount "$REPO" "$M"; then
    cp "$MFS_TMP/big.bin" "$M/big.bin" && echo "x" >"$M/small.txt"
    pid=$(mount_pid "$M")
    hub_restart --delay-ms 700 || exit 1
    (echo >"$M/.modelfs/push") 2>/dev/null &
    writer=$!
    sleep 2
    kill -9 "$pid" 2>/dev/null
    wait "$writer" 2>/dev/null
    fusermount3 -u -z "$M" 2>/dev/null
    hub_restart || exit 1
    if mfs_mount "$REPO" "$M"; then
        cmp -s "$MFS_TMP/big.bin" "$M/big.bin" && ok "after kill -9 and remount the file is back" ||
            fail "big.bin lost after kill -9"
        "$MFS_BIN" push "$M" >/dev/null 2>"$MFS_TMP/push.err" && ok "push after kill -9" ||
            fail "push after kill -9: $(cat "$MFS_TMP/push.err")"
        [ "$(n_commits)" = $((c0 + 1)) ] && ok "exactly one commit with those changes" ||
            fail "commits: $c0 before, $(n_commits) after"
        remote_files "$REPO" >"$MFS_TMP/remote.txt"
        grep -q "^big.bin 3000000 $(sha256sum "$MFS_TMP/big.bin" | cut -d' ' -f1)$" \
            "$MFS_TMP/remote.txt" && has_remote small.txt &&
            ok "the remote has the pushed bytes" || fail "remote big.bin/small.txt wrong"
        out=$("$MFS_BIN" push "$M" 2>&1)
        [[ "$out" == nothing\ to\ push* ]] && ok "the stage is empty after ($out)" ||
            fail "second push: '$out'"
        [ "$(n_commits)" = $((c0 + 1)) ] && ok "still one commit" || fail "a second commit"
    else
        fail "remount after kill -9"
    fi
else
    fail "mount for the kill -9 case"
fi

# ---- J: modelfs umount pushes ----------------------------------------------------------------
echo "at umount" >"$M/umount.txt"
"$MFS_BIN" umount "$M" 2>"$MFS_TMP/err" && ok "modelfs umount" ||
    fail "modelfs umount: $(cat "$MFS_TMP/err")"
remote_files "$REPO" >"$MFS_TMP/remote.txt"
has_remote umount.txt && ok "umount pushed the staged file" || fail "umount did not push"
