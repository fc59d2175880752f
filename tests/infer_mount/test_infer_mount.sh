#!/bin/bash
# tests/infer_mount/test_infer_mount.sh - the inference control files of a
# real FUSE mount (fs/ctl_infer.c) and `modelfs run`, against the local hub:
# .modelfs/load, unload, generate, tokenize, embed.  Expected values come
# from data/ (SOURCE.md reference runs, data/golden), never from modelfs.
. tests/lib.sh

G=$MFS_DATA/golden
TOOL=$MFS_TMP/ctl_tool
if ! cc -O1 -o "$TOOL" "${MFS_ROOT:-.}/tests/infer_mount/ctl_tool.c" 2>"$MFS_TMP/tool.err"; then
    fail "compile tests/infer_mount/ctl_tool.c: $(head -3 "$MFS_TMP/tool.err")"
    exit 1
fi
command -v jq >/dev/null || { fail "jq is needed"; exit 1; }

hub_start || exit 1
# An architecture modelfs does not implement: tiny-random-gpt2 relabelled.
mkdir -p "$MFS_TMP/src-odd"
cp "$MFS_DATA"/models/tiny-random-gpt2/* "$MFS_TMP/src-odd/"
sed -i 's/"model_type": *"gpt2"/"model_type": "falcon"/' "$MFS_TMP/src-odd/config.json"
hub_import "$MFS_TMP/src-odd" test/odd >/dev/null 2>&1 && mfs_mount test/odd "$MFS_TMP/odd" ||
    { fail "import and mount test/odd"; exit 1; }
ODD=$MFS_TMP/odd/.modelfs
for m in stories260K-hf tiny-random-gpt2 tiny-random-llama tiny-random-bert tiny-random-bloom; do
    hub_import "$MFS_DATA/models/$m" "test/$m" >/dev/null 2>"$MFS_TMP/imp.err" ||
        { fail "hub import $m: $(head -2 "$MFS_TMP/imp.err")"; exit 1; }
    mfs_mount "test/$m" "$MFS_TMP/$m" 2>"$MFS_TMP/mount.err" ||
        { fail "mount $m: $(cat "$MFS_TMP/mount.err")"; exit 1; }
done
S=$MFS_TMP/stories260K-hf/.modelfs
GPT=$MFS_TMP/tiny-random-gpt2/.modelfs
LLA=$MFS_TMP/tiny-random-llama/.modelfs
BERT=$MFS_TMP/tiny-random-bert/.modelfs

# snap FILE: the file's show() snapshot.  A fresh session, because a read
# in this one returns the reply to this session's last request (fs/control.h).
snap() { setsid -w cat "$1"; }

# jcheck DESC FILE JQ_EXPR: ok when the jq expression is true on FILE.
jcheck() {
    if [ "$(jq -e "$3" "$2" 2>/dev/null)" = true ]; then ok "$1"; else
        fail "$1: $(head -c 400 "$2" | tr '\n' ' ')"; fi
}

# ---- load report, and generate on an unloaded model ---------------------
snap "$S/load" >"$MFS_TMP/l0"
jcheck "load before any request reports nothing loaded" "$MFS_TMP/l0" '.loaded == false'

# "generate on an unloaded model loads it with defaults first"; the
# reference ids and text of data/models/stories260K-hf/SOURCE.md (greedy
# from BOS, BOS included there).
ref_ids=$(sed -n 's/.*Expected ids from BOS: \([0-9 ]*\)\..*/\1/p' \
          "$MFS_DATA/models/stories260K-hf/SOURCE.md" | tr ' ' ',')
"$TOOL" "$S/generate" '{"prompt": "", "max_new_tokens": 32}' >"$MFS_TMP/g0"
jcheck "greedy from BOS gives the SOURCE.md reference ids" "$MFS_TMP/g0" \
    "([.input_ids[], .new_ids[]] | map(tostring) | join(\",\")) == \"$ref_ids\""
jcheck "greedy from BOS gives the SOURCE.md reference text" "$MFS_TMP/g0" \
    '.text == "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One" and .stop_reason == "length"'
snap "$S/load" >"$MFS_TMP/l1"
jcheck "generate loaded the model with defaults (load report)" "$MFS_TMP/l1" \
    '.loaded == true and .device == "cpu" and .dtype == "F32" and .bytes == 1040128 and (.seconds | type) == "number"'

# The shell form: echo a request, cat the reply (same process session).
echo >"$S/generate" && cat "$S/generate" >"$MFS_TMP/g1"
[ "$(cat "$MFS_TMP/g1")" = "Once upon a time, there was a little girl named Lily. She loved to" ] &&
    ok "echo > generate; cat generate streams the text from BOS" ||
    fail "echo > generate; cat generate: '$(head -c 200 "$MFS_TMP/g1")'"

# `modelfs run` prints prompt + continuation: llama2.c's run.c output of
# data/models/stories260K/SOURCE.md ("-t 0.0 -n 200"), byte for byte.
awk '/^```$/{n++; next} n==1' "$MFS_DATA/models/stories260K/SOURCE.md" >"$MFS_TMP/want_run"
"$MFS_BIN" run "$MFS_TMP/stories260K-hf" "" --max-new-tokens 200 >"$MFS_TMP/run" 2>"$MFS_TMP/run.err"
if [ -s "$MFS_TMP/want_run" ] && cmp -s "$MFS_TMP/run" "$MFS_TMP/want_run"; then
    ok "modelfs run prints the llama2.c reference story"
else
    fail "modelfs run: $(diff "$MFS_TMP/run" "$MFS_TMP/want_run" | head -5 | tr '\n' ' ') $(cat "$MFS_TMP/run.err")"
fi
"$MFS_BIN" run "$MFS_TMP/stories260K-hf" "Once upon a time" --max-new-tokens 5 >"$MFS_TMP/run2"
[ "$(cat "$MFS_TMP/run2")" = "Once upon a time, there was a little" ] &&
    ok "modelfs run echoes the prompt, then the continuation" ||
    fail "modelfs run with a prompt: '$(cat "$MFS_TMP/run2")'"
"$MFS_BIN" run "$MFS_TMP/stories260K-hf" "Once upon a time" --max-new-tokens 5 --json >"$MFS_TMP/run3"
jcheck "modelfs run --json prints the JSON reply" "$MFS_TMP/run3" \
    '.input_ids == [1,403,407,261,378] and (.new_ids | length) == 5'
if "$MFS_BIN" run "$MFS_TMP/stories260K-hf" "x" --top-p 7 >/dev/null 2>"$MFS_TMP/run4"; then
    fail "modelfs run --top-p 7 should fail"
else
    grep -q "top_p" "$MFS_TMP/run4" && ok "modelfs run prints the reason of a rejected request" ||
        fail "modelfs run --top-p 7: '$(cat "$MFS_TMP/run4")'"
fi

# ---- golden greedy ids for golden prompts (prompt encoding included) ------
for m in stories260K-hf tiny-random-gpt2 tiny-random-llama tiny-random-bloom; do
    for p in 1 2; do
        jq -c ".prompts[$p] | {prompt: .text, max_new_tokens: 32}" "$G/models/$m.json" >"$MFS_TMP/req"
        "$TOOL" "$MFS_TMP/$m/.modelfs/generate" "@$MFS_TMP/req" >"$MFS_TMP/gg" 2>&1
        want=$(jq -c "[.prompts[$p].ids, .prompts[$p].greedy.new_ids]" "$G/models/$m.json")
        got=$(jq -c '[.input_ids, .new_ids]' "$MFS_TMP/gg" 2>/dev/null)
        [ -n "$got" ] && [ "$got" = "$want" ] &&
            ok "$m prompt $p: golden prompt ids and 32 greedy ids" ||
            fail "$m prompt $p: got $(head -c 300 "$MFS_TMP/gg") want $want"
    done
done

# ---- sampling, stop strings --------------------------------------------
req='{"prompt": "Once upon a time", "do_sample": true, "temperature": 1.0, "top_k": 40, "seed": 7, "max_new_tokens": 40}'
"$TOOL" "$S/generate" "$req" "$req" "${req/\"seed\": 7/\"seed\": 8}" >"$MFS_TMP/smp"
awk 'BEGIN{RS="\n--\n"} {print > (ENVIRON["MFS_TMP"] "/smp" NR)}' "$MFS_TMP/smp"
a=$(jq -c .new_ids "$MFS_TMP/smp1" 2>/dev/null)
b=$(jq -c .new_ids "$MFS_TMP/smp2" 2>/dev/null)
c=$(jq -c .new_ids "$MFS_TMP/smp3" 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "seeded sampling is reproducible across two requests" ||
    fail "seeded sampling: '$a' vs '$b'"
[ -n "$c" ] && [ "$a" != "$c" ] && ok "another seed samples another continuation" ||
    fail "seed 8 gave the same ids as seed 7: '$c'"
"$TOOL" "$S/generate" '{"prompt": "Once upon a time", "max_new_tokens": 100, "stop": ["Lily"]}' \
    >"$MFS_TMP/stop"
jcheck "a stop string ends generation after it" "$MFS_TMP/stop" \
    '.stop_reason == "stop_string" and .text == ", there was a little girl named Lily"'

# ---- tokenize --------------------------------------------------------------
for spec in "stories260K-hf stories260K-hf" "tiny-random-gpt2 fake-gpt2" \
            "tiny-random-bert bert-tiniest"; do
    set -- $spec
    bad=0
    n=0
    for line in 0 9 33 62 86 110 127 150 171; do
        for sp in true false; do
            jq -c "select(.line == $line and .add_special_tokens == $sp) | {text, add_special_tokens}" \
                "$G/tokenizers/$2.jsonl" >"$MFS_TMP/treq"
            want=$(jq -c "select(.line == $line and .add_special_tokens == $sp) | .ids" \
                   "$G/tokenizers/$2.jsonl")
            got=$("$TOOL" "$MFS_TMP/$1/.modelfs/tokenize" "@$MFS_TMP/treq" | jq -c .ids 2>/dev/null)
            n=$((n + 1))
            [ "$got" = "$want" ] || { bad=$((bad + 1)); echo "# $1 line $line $sp: $got != $want"; }
        done
    done
    [ $bad -eq 0 ] && ok "$1: tokenize equals the golden ids ($n texts)" ||
        fail "$1: tokenize: $bad of $n differ"
done
echo "Hello world" >"$S/tokenize" && cat "$S/tokenize" >"$MFS_TMP/tok"
jcheck "tokenize plain text: ids, tokens, pieces" "$MFS_TMP/tok" \
    '.ids == [1,346,306,414,263,304,341] and .tokens[1] == "▁He" and (.pieces | length) == 7'

# ---- embed -----------------------------------------------------------------
for p in 0 1 2; do
    jq -c ".prompts[$p] | {text: (.text // \"\")}" "$G/models/tiny-random-bert.json" >"$MFS_TMP/ereq"
    "$TOOL" "$BERT/embed" "@$MFS_TMP/ereq" >"$MFS_TMP/emb" 2>&1
    d=$(jq -n --slurpfile a "$MFS_TMP/emb" --slurpfile g "$G/models/tiny-random-bert.json" \
        "\$g[0].prompts[$p].pooler_output as \$w | \$a[0].embedding as \$e |
         if (\$e | length) != (\$w | length) then 1e9 else
         [range(0; \$w | length) | (\$e[.] - \$w[.]) | if . < 0 then -. else . end] | max end" \
        2>/dev/null)
    [ -n "$d" ] && awk -v d="$d" 'BEGIN { exit !(d <= 1e-4) }' &&
        ok "tiny-random-bert embed prompt $p equals the golden pooler_output (max diff $d)" ||
        fail "embed prompt $p: max diff '$d': $(head -c 200 "$MFS_TMP/emb")"
done

# ---- two sessions at once, and one handle's conversation -----------------
for i in 1 2 3 4; do
    "$TOOL" "$S/generate" "{\"prompt\": \"Once upon a time $i\", \"max_new_tokens\": 150, \"stream\": true}" \
        >"$MFS_TMP/seq$i"
done
pids=()
for i in 1 2 3 4; do
    setsid -w bash -c "echo '{\"prompt\": \"Once upon a time $i\", \"max_new_tokens\": 150, \"stream\": true}' \
        >'$S/generate' && cat '$S/generate' >'$MFS_TMP/par$i'" &
    pids+=($!)
done
wait "${pids[@]}"     # not a bare wait: the hub is a background job too
same=0
for i in 1 2 3 4; do
    cmp -s "$MFS_TMP/seq$i" "$MFS_TMP/par$i" && [ -s "$MFS_TMP/par$i" ] && same=$((same + 1))
done
[ $same -eq 4 ] && ok "four concurrent sessions (setsid) each read their own reply" ||
    fail "concurrent sessions: $same of 4 replies as expected"
"$TOOL" "$S/generate" '{"prompt": "Lily", "max_new_tokens": 3, "stream": true}' \
    '{"prompt": "Once upon a time", "max_new_tokens": 2, "stream": true}' >"$MFS_TMP/conv"
"$TOOL" "$S/generate" '{"prompt": "Lily", "max_new_tokens": 3, "stream": true}' >"$MFS_TMP/conv1"
[ "$(cat "$MFS_TMP/conv")" = "$(cat "$MFS_TMP/conv1"; printf '\n--\nOnce upon a time, there\n')" ] &&
    ok "one O_RDWR handle: two requests, two replies in order" ||
    fail "O_RDWR conversation: '$(cat "$MFS_TMP/conv" | tr '\n' '|')'"

# ---- bad requests: EINVAL, reason on the same handle and in the log ------
long=$MFS_TMP/long
for i in $(seq 1 600); do printf 'Once '; done >"$long"
printf 'abc\xff' >"$MFS_TMP/nonutf8"
while IFS='|' read -r desc req want; do
    "$TOOL" "$S/generate" "$req" >"$MFS_TMP/bad" 2>/dev/null
    rc=$?
    if [ $rc -eq 3 ] && grep -q "^error: .*$want" "$MFS_TMP/bad" &&
       grep -q "generate.*$want" "$S/log"; then
        ok "bad request ($desc): EINVAL, reason on the handle and in .modelfs/log"
    else
        fail "bad request ($desc): exit $rc, reply '$(head -c 200 "$MFS_TMP/bad")'"
    fi
done <<EOF
unknown key|{"prompt": "x", "colour": 1}|colour
negative number|{"prompt": "x", "max_new_tokens": -3}|max_new_tokens
wrong type|{"prompt": 5}|prompt
wrong type of stream|{"prompt": "x", "stream": "yes"}|stream
not JSON|{"prompt": "x"|JSON
id outside the vocabulary|{"input_ids": [1, 512]}|vocabulary
non-UTF-8 text|@$MFS_TMP/nonutf8|UTF-8
prompt longer than max_position_embeddings|@$long|max_position_embeddings
EOF
if echo '{"prompt": "x", "top_k": -1}' >"$S/generate" 2>/dev/null; then
    fail "echo of a bad request should fail"
else
    grep -q "^error: .*top_k" "$S/generate" && ok "shell form: the write fails, cat shows the reason" ||
        fail "shell form: cat shows '$(head -c 200 "$S/generate")'"
fi
"$TOOL" "$BERT/generate" "Hello" >"$MFS_TMP/bg" 2>/dev/null
[ $? -eq 3 ] && grep -q "encoder" "$MFS_TMP/bg" && ok "generate on an encoder model is EINVAL" ||
    fail "generate on bert: '$(cat "$MFS_TMP/bg")'"
"$TOOL" "$S/embed" "Hello" >"$MFS_TMP/se" 2>/dev/null
[ $? -eq 3 ] && grep -q "not an encoder" "$MFS_TMP/se" && ok "embed on a causal LM is EINVAL" ||
    fail "embed on stories: '$(cat "$MFS_TMP/se")'"
"$TOOL" "$ODD/generate" "Hello" >"$MFS_TMP/og" 2>/dev/null
[ $? -eq 3 ] && grep -q "unsupported architecture 'falcon'" "$MFS_TMP/og" &&
    ok "generate on an unsupported architecture is EINVAL" ||
    fail "generate on falcon: '$(cat "$MFS_TMP/og")'"
"$TOOL" "$S/tokenize" '{"text": "x", "add_special_tokens": 1}' >"$MFS_TMP/tb" 2>/dev/null
[ $? -eq 3 ] && grep -q "add_special_tokens" "$MFS_TMP/tb" && ok "tokenize rejects a bad key type" ||
    fail "tokenize bad request: '$(cat "$MFS_TMP/tb")'"

# ---- load options, unsupported architecture, unload ---------------------
"$TOOL" "$S/load" "device=cpu dtype=bf16 threads=2" >"$MFS_TMP/lb"
jcheck "load device=cpu dtype=bf16 threads=2: the report" "$MFS_TMP/lb" \
    '.loaded == true and .device == "cpu" and .dtype == "BF16" and .threads == 2 and .bytes >= 520064 and .bytes < 1040128 and (.seconds | type) == "number"'
"$TOOL" "$S/load" "dtype=int3" >"$MFS_TMP/lbad" 2>/dev/null
[ $? -eq 3 ] && grep -q "dtype" "$MFS_TMP/lbad" && ok "load with a bad dtype is EINVAL" ||
    fail "load dtype=int3: '$(cat "$MFS_TMP/lbad")'"
"$TOOL" "$ODD/load" "device=cpu" >"$MFS_TMP/bl" 2>/dev/null
[ $? -eq 3 ] && grep -q "unsupported architecture 'falcon'" "$MFS_TMP/bl" &&
    grep -q "unsupported architecture 'falcon'" "$ODD/log" &&
    ok "load of an unsupported architecture fails: unsupported architecture 'falcon'" ||
    fail "falcon load: '$(cat "$MFS_TMP/bl")'"
snap "$ODD/load" >"$MFS_TMP/bl2"
jcheck "its load report says why nothing is loaded" "$MFS_TMP/bl2" \
    '.loaded == false and (.error | test("falcon"))'
echo >"$S/unload"
snap "$S/load" >"$MFS_TMP/lu"
jcheck "unload: nothing loaded" "$MFS_TMP/lu" '.loaded == false'
"$TOOL" "$S/generate" '{"prompt": "", "max_new_tokens": 32}' >"$MFS_TMP/g2"
jcheck "generate after unload reloads and gives the same ids" "$MFS_TMP/g2" \
    "([.input_ids[], .new_ids[]] | map(tostring) | join(\",\")) == \"$ref_ids\""
snap "$S/load" >"$MFS_TMP/l2"
jcheck "after the reload the model is loaded again (defaults: F32)" "$MFS_TMP/l2" \
    '.loaded == true and .dtype == "F32"'
