/*
 * tests/tokenizer/test_tokenizer.c - model/tokenizer.c against the reference.
 *
 * Part 1: the five tokenizer.json files of data/models over the 344 golden
 * records each (data/golden/tokenizers/NAME.jsonl, made by tokenizers 0.22.2):
 * ids, tokens, offsets in bytes and code points, decode with and without
 * special tokens.  One line per (tokenizer, check kind) with the number of
 * mismatching records and the first one.
 * Part 2: tables for components the five files do not use, built from
 * small inline tokenizer.json snippets; each row says where its expected
 * value comes from.
 * Part 3: bad input gives a clear error, streaming decode, threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "check.h"
#include "model/tokenizer.h"

#define read_file check_slurp

static struct mfs_tok *load_tok(const char *name)
{
    char path[512];
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_tok *tok = NULL;
    size_t len = 0;
    char *json;
    int rc;

    snprintf(path, sizeof(path), "%s/models/%s/tokenizer.json", check_data_dir(), name);
    json = read_file(path, &len);
    if (!json) {
        CHECK(0, "read %s", path);
        return NULL;
    }
    rc = mfs_tok_new(json, len, &tok, &err);
    free(json);
    CHECK(rc == 0 && tok, "load %s: %s", name, err.msg);
    return tok;
}

enum kind { K_IDS, K_TOKENS, K_OFF_UTF8, K_OFF_CP, K_DECODED, K_DECODED_SKIP, K_COUNT };

static const char *const kind_names[K_COUNT] = {
    "ids", "tokens", "offsets_utf8", "offsets", "decoded", "decoded_skip_special",
};

struct tally {
    int bad[K_COUNT];                       /* mismatching records */
    char first[K_COUNT][600];               /* first mismatch, for diagnosis */
};

static void note(struct tally *t, enum kind k, int line, bool add, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void note(struct tally *t, enum kind k, int line, bool add, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->bad[k]++ > 0)
        return;
    n = snprintf(t->first[k], sizeof(t->first[k]), "line %d add_special=%d: ", line, add);
    va_start(ap, fmt);
    vsnprintf(t->first[k] + n, sizeof(t->first[k]) - (size_t)n, fmt, ap);
    va_end(ap);
}

static bool span_eq(const cJSON *arr, size_t i, const struct mfs_tok_span *s)
{
    const cJSON *p = cJSON_GetArrayItem(arr, (int)i);

    return cJSON_GetArraySize(p) == 2 &&
           (size_t)cJSON_GetArrayItem(p, 0)->valuedouble == s->start &&
           (size_t)cJSON_GetArrayItem(p, 1)->valuedouble == s->end;
}

static void run_golden(const char *name)
{
    char path[512];
    struct tally t;
    struct mfs_tok *tok = load_tok(name);
    size_t len = 0;
    char *data;
    char *line;
    char *save = NULL;
    int records = 0;
    int k;

    memset(&t, 0, sizeof(t));
    if (!tok)
        return;
    snprintf(path, sizeof(path), "%s/golden/tokenizers/%s.jsonl", check_data_dir(), name);
    data = read_file(path, &len);
    CHECK(data != NULL, "read %s", path);
    for (line = data ? strtok_r(data, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        cJSON *r = cJSON_Parse(line);
        const cJSON *text = cJSON_GetObjectItem(r, "text");
        const cJSON *ids = cJSON_GetObjectItem(r, "ids");
        const cJSON *toks = cJSON_GetObjectItem(r, "tokens");
        const cJSON *ou = cJSON_GetObjectItem(r, "offsets_utf8");
        const cJSON *oc = cJSON_GetObjectItem(r, "offsets");
        const char *dec = cJSON_GetStringValue(cJSON_GetObjectItem(r, "decoded"));
        const char *decs = cJSON_GetStringValue(cJSON_GetObjectItem(r, "decoded_skip_special"));
        int ln = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(r, "line"));
        bool add = cJSON_IsTrue(cJSON_GetObjectItem(r, "add_special_tokens"));
        struct mfs_tok_enc enc = MFS_TOK_ENC_INIT;
        struct mfs_err err = MFS_ERR_INIT;
        size_t n = (size_t)cJSON_GetArraySize(ids);
        int32_t *gid = calloc(n + 1, sizeof(*gid));
        char *out = NULL;
        size_t i;
        int rc;

        if (!r || !cJSON_IsString(text) || !gid) {
            CHECK(0, "%s: bad golden record", name);
            cJSON_Delete(r);
            free(gid);
            break;
        }
        records++;
        for (i = 0; i < n; i++)
            gid[i] = (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
        rc = mfs_tok_encode(tok, text->valuestring, strlen(text->valuestring), add, &enc, &err);
        if (rc < 0) {
            for (k = 0; k <= K_OFF_CP; k++)
                note(&t, (enum kind)k, ln, add, "encode failed: %s", err.msg);
        } else {
            bool ok_ids = enc.n == n;
            bool ok_toks = enc.n == n;
            bool ok_ou = enc.n == n;
            bool ok_oc = enc.n == n;

            for (i = 0; i < n && i < enc.n; i++) {
                const char *gt = cJSON_GetStringValue(cJSON_GetArrayItem(toks, (int)i));

                ok_ids &= enc.ids[i] == gid[i];
                ok_toks &= gt && !strcmp(gt, enc.tokens[i]);
                ok_ou &= span_eq(ou, i, &enc.offsets[i]);
                ok_oc &= span_eq(oc, i, &enc.offsets_cp[i]);
            }
            if (!ok_ids) {
                char got[300] = "";
                size_t p = 0;

                for (i = 0; i < enc.n && p < sizeof(got) - 12; i++)
                    p += (size_t)snprintf(got + p, sizeof(got) - p, "%d ", enc.ids[i]);
                note(&t, K_IDS, ln, add, "got %zu ids [%s] want %zu", enc.n, got, n);
            }
            if (!ok_toks) {
                char got[300] = "";
                size_t p = 0;

                for (i = 0; i < enc.n && p < sizeof(got) - 40; i++)
                    p += (size_t)snprintf(got + p, sizeof(got) - p, "'%.30s' ", enc.tokens[i]);
                note(&t, K_TOKENS, ln, add, "got [%s]", got);
            }
            if (!ok_ou || !ok_oc) {
                char got[300] = "";
                size_t p = 0;

                for (i = 0; i < enc.n && p < sizeof(got) - 30; i++)
                    p += (size_t)snprintf(got + p, sizeof(got) - p, "[%zu,%zu|%zu,%zu]",
                                          enc.offsets[i].start, enc.offsets[i].end,
                                          enc.offsets_cp[i].start, enc.offsets_cp[i].end);
                if (!ok_ou)
                    note(&t, K_OFF_UTF8, ln, add, "got %s", got);
                if (!ok_oc)
                    note(&t, K_OFF_CP, ln, add, "got %s", got);
            }
        }
        mfs_tok_enc_release(&enc);
        rc = mfs_tok_decode(tok, gid, n, false, &out, NULL, &err);
        if (rc < 0 || !dec || strcmp(out, dec))
            note(&t, K_DECODED, ln, add, "got '%.200s' want '%.200s'", out ? out : err.msg,
                 dec ? dec : "?");
        free(out);
        out = NULL;
        rc = mfs_tok_decode(tok, gid, n, true, &out, NULL, &err);
        if (rc < 0 || !decs || strcmp(out, decs))
            note(&t, K_DECODED_SKIP, ln, add, "got '%.200s' want '%.200s'",
                 out ? out : err.msg, decs ? decs : "?");
        free(out);
        free(gid);
        cJSON_Delete(r);
    }
    free(data);
    CHECK(records == 344, "%s: 344 golden records (read %d)", name, records);
    for (k = 0; k < K_COUNT; k++)
        CHECK(t.bad[k] == 0, "%s %s: %d of %d records differ%s%s", name, kind_names[k],
              t.bad[k], records, t.bad[k] ? "; first: " : "", t.first[k]);
    mfs_tok_free(&tok);
}


/* ---- part 2: components the five files do not use ---- */

#define UNK_MODEL "{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0.0]]}"

/* Build a tokenizer from parts (NULL = null).  A Unigram model whose only
 * piece is <unk> turns each pre-tokenized split into one token holding
 * exactly the split's normalized text (unknown chars fuse), so the tokens
 * show what the normalizer and pre-tokenizer did. */
static struct mfs_tok *build(const char *model, const char *norm, const char *pre,
                             const char *post, const char *dec, const char *added,
                             struct mfs_err *err, int *rcp)
{
    char json[8192];
    struct mfs_tok *tok = NULL;

    snprintf(json, sizeof(json),
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":%s,"
             "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":%s,\"decoder\":%s,"
             "\"model\":%s}",
             added ? added : "[]", norm ? norm : "null", pre ? pre : "null",
             post ? post : "null", dec ? dec : "null", model ? model : UNK_MODEL);
    *rcp = mfs_tok_new(json, strlen(json), &tok, err);
    return tok;
}

/* "tok#id@start-end|..." with byte offsets. */
static void render(const struct mfs_tok_enc *e, char *out, size_t size)
{
    size_t p = 0;
    size_t i;

    out[0] = 0;
    for (i = 0; i < e->n && p < size; i++)
        p += (size_t)snprintf(out + p, size - p, "%s%s#%d@%zu-%zu", i ? "|" : "", e->tokens[i],
                              e->ids[i], e->offsets[i].start, e->offsets[i].end);
}

struct enc_row {
    const char *why;                        /* where the expectation comes from */
    const char *model;                      /* NULL = UNK_MODEL */
    const char *norm;
    const char *pre;
    const char *post;
    const char *added;
    const char *text;
    bool add_special;
    const char *want;                       /* render() of the encoding */
};

#define SPLIT_WS(b) "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+|[^\\\\w\\\\s]+\"}," \
                    "\"behavior\":\"" b "\",\"invert\":true}"
#define WSSPLIT "{\"type\":\"WhitespaceSplit\"}"
/* One added_tokens entry: content, single_word, lstrip, rstrip, normalized, special. */
#define ADDED(c, sw, l, r, n, sp) "{\"id\":0,\"content\":\"" c "\",\"single_word\":" sw \
    ",\"lstrip\":" l ",\"rstrip\":" r ",\"normalized\":" n ",\"special\":" sp "}"

static const struct enc_row enc_rows[] = {
    /* pre_tokenizers/split.rs test "basic", behaviours on "How are you doing?". */
    { "split.rs basic Removed", NULL, NULL, SPLIT_WS("Removed"), NULL, NULL,
      "How are you doing?", true,
      "How#0@0-3|are#0@4-7|you#0@8-11|doing#0@12-17|?#0@17-18" },
    { "split.rs basic Isolated", NULL, NULL, SPLIT_WS("Isolated"), NULL, NULL,
      "How are you doing?", true,
      "How#0@0-3| #0@3-4|are#0@4-7| #0@7-8|you#0@8-11| #0@11-12|doing#0@12-17|?#0@17-18" },
    { "split.rs basic MergedWithPrevious", NULL, NULL, SPLIT_WS("MergedWithPrevious"), NULL,
      NULL, "How are you doing?", true,
      "How #0@0-4|are #0@4-8|you #0@8-12|doing#0@12-17|?#0@17-18" },
    { "split.rs basic MergedWithNext", NULL, NULL, SPLIT_WS("MergedWithNext"), NULL, NULL,
      "How are you doing?", true,
      "How#0@0-3| are#0@3-7| you#0@7-11| doing#0@11-17|?#0@17-18" },
    { "split.rs basic Contiguous", NULL, NULL, SPLIT_WS("Contiguous"), NULL, NULL,
      "How are you doing?", true,
      "How#0@0-3| #0@3-4|are#0@4-7| #0@7-8|you#0@8-11| #0@11-12|doing?#0@12-18" },
    /* The Llama-3 / tiktoken pattern ((?i:...), \p{N}{1,3}, lookahead) as
     * a Split: worked by hand from the regex's alternation order. */
    { "llama3 regex", NULL, NULL,
      "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
      "[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}|"
      " ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"
      "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false}",
      NULL, NULL, "I'M 12345 ok", true,
      "I#0@0-1|'M#0@1-3| #0@3-4|123#0@4-7|45#0@7-9| ok#0@9-12" },
    /* split.rs regex_string: String " " splits like Regex \s+ here. */
    { "split.rs regex_string", NULL, NULL,
      "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Removed\","
      "\"invert\":false}", NULL, NULL, "Hey, man!", true, "Hey,#0@0-4|man!#0@5-9" },
    /* split.rs invert: inverted "Hello" + Removed == split on " ". */
    { "split.rs invert", NULL, NULL,
      "{\"type\":\"Split\",\"pattern\":{\"String\":\"Hello\"},\"behavior\":\"Removed\","
      "\"invert\":true}", NULL, NULL, "Hello Hello Hello", true,
      "Hello#0@0-5|Hello#0@6-11|Hello#0@12-17" },
    /* A regex special char in a String pattern is literal (regex::escape). */
    { "String pattern is literal", NULL, NULL,
      "{\"type\":\"Split\",\"pattern\":{\"String\":\".\"},\"behavior\":\"Isolated\","
      "\"invert\":false}", NULL, NULL, "a.b", true, "a#0@0-1|.#0@1-2|b#0@2-3" },
    /* Oniguruma nested class [a[bc]] is a union (bloom's Split regex style). */
    { "onig nested class", NULL, NULL,
      "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[x[,;]]+\"},\"behavior\":\"Removed\","
      "\"invert\":false}", NULL, NULL, "a,;b[c", true, "a#0@0-1|b[c#0@3-6" },
    /* whitespace.rs tests: \w+|[^\w\s]+. */
    { "whitespace.rs", NULL, NULL, "{\"type\":\"Whitespace\"}", NULL, NULL, "Hey man!", true,
      "Hey#0@0-3|man#0@4-7|!#0@7-8" },
    { "whitespace.rs runs", NULL, NULL, "{\"type\":\"Whitespace\"}", NULL, NULL,
      "  Hey  friend!!  ", true, "Hey#0@2-5|friend#0@7-13|!!#0@13-15" },
    { "whitespace.rs split", NULL, NULL, WSSPLIT, NULL, NULL, "Hey man!", true,
      "Hey#0@0-3|man!#0@4-8" },
    /* punctuation.rs test: Isolated by default. */
    { "punctuation.rs", NULL, NULL, "{\"type\":\"Punctuation\"}", NULL, NULL,
      "Hey friend!     How are you?!?", true,
      "Hey friend#0@0-10|!#0@10-11|     How are you#0@11-27|?#0@27-28|!#0@28-29|?#0@29-30" },
    /* delimiter.rs: split on the char, which is removed. */
    { "CharDelimiterSplit", NULL, NULL,
      "{\"type\":\"CharDelimiterSplit\",\"delimiter\":\"-\"}", NULL, NULL,
      "the-final--countdown", true, "the#0@0-3|final#0@4-9|countdown#0@11-20" },
    /* digits.rs tests. */
    { "digits.rs individual", NULL, NULL,
      "{\"type\":\"Digits\",\"individual_digits\":true}", NULL, NULL, "Hey 123 friend!", true,
      "Hey #0@0-4|1#0@4-5|2#0@5-6|3#0@6-7| friend!#0@7-15" },
    { "digits.rs contiguous", NULL, NULL,
      "{\"type\":\"Digits\",\"individual_digits\":false}", NULL, NULL, "Hey 123 friend!", true,
      "Hey #0@0-4|123#0@4-7| friend!#0@7-15" },
    /* metaspace.rs tests basic / multiple_spaces (original offsets). */
    { "metaspace.rs basic", NULL, NULL,
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\","
      "\"split\":true}", NULL, NULL, "Hey friend!", true,
      "\u2581Hey#0@0-3|\u2581friend!#0@3-11" },
    { "metaspace.rs multiple_spaces", NULL, NULL,
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\","
      "\"split\":true}", NULL, NULL, "Hey   friend!", true,
      "\u2581Hey#0@0-3|\u2581#0@3-4|\u2581#0@4-5|\u2581friend!#0@5-13" },
    /* metaspace.rs test non_legacy_meta_space: prepend_scheme "first" only
     * prepends to the split that starts the text. */
    { "metaspace.rs first", NULL, NULL,
      "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
      "{\"String\":\"<s>\"},\"behavior\":\"Isolated\",\"invert\":false},"
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\","
      "\"split\":false}]}", NULL, NULL, " Hey <s>how <s>are <s> you", true,
      "\u2581Hey\u2581#0@0-5|<s>#0@5-8|how\u2581#0@8-12|<s>#0@12-15|are\u2581#0@15-19|"
      "<s>#0@19-22|\u2581you#0@22-26" },
    { "metaspace prepend never, no split", NULL, NULL,
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"never\","
      "\"split\":false}", NULL, NULL, "Hey friend!", true, "Hey\u2581friend!#0@0-11" },
    /* Normalizers: NFKC folds the ligature and the circled digit (UAX #15). */
    { "NFKC", NULL, "{\"type\":\"NFKC\"}", WSSPLIT, NULL, NULL, "\uFB01ne \u2460", true,
      "fine#0@0-5|1#0@6-9" },
    { "NFD", NULL, "{\"type\":\"NFD\"}", NULL, NULL, NULL, "\u00e9", true,
      "e\u0301#0@0-2" },
    /* transform_range: a composed char replacing the next one (change -1)
     * keeps the alignment of the first, so U+0301 maps to no byte. */
    { "NFC", NULL, "{\"type\":\"NFC\"}", NULL, NULL, NULL, "e\u0301", true, "\u00e9#0@0-1" },
    { "NFKD", NULL, "{\"type\":\"NFKD\"}", NULL, NULL, NULL, "\u00b2", true, "2#0@0-2" },
    /* normalizer.rs test remove_chars_added_by_nfd: "élégant" -> "elegant". */
    { "NFD+StripAccents", NULL,
      "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"StripAccents\"}]}",
      WSSPLIT, NULL, NULL, "\u00e9l\u00e9gant ok", true, "elegant#0@0-9|ok#0@10-12" },
    /* Rust's char::to_lowercase: U+0130 lowercases to "i" + U+0307. */
    { "Lowercase", NULL, "{\"type\":\"Lowercase\"}", WSSPLIT, NULL, NULL, "HeLLo \u0130", true,
      "hello#0@0-5|i\u0307#0@6-8" },
    { "Strip", NULL, "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", NULL,
      NULL, NULL, "  hi  ", true, "hi#0@2-4" },
    { "Replace regex", NULL,
      "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\"_\"}", NULL, NULL,
      NULL, "a   b", true, "a_b#0@0-5" },
    /* bert.rs: chinese chars get spaces around them, BertPreTokenizer splits. */
    { "BertNormalizer chinese", NULL,
      "{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
      "\"strip_accents\":null,\"lowercase\":true}", "{\"type\":\"BertPreTokenizer\"}", NULL,
      NULL, "\u91ce\u53e3 No", true, "\u91ce#0@0-3|\u53e3#0@3-6|no#0@7-9" },
    /* WordPiece (wordpiece/mod.rs): greedy longest-match-first. */
    { "WordPiece greedy",
      "{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
      "\"max_input_chars_per_word\":100,\"vocab\":{\"[UNK]\":0,\"un\":1,\"##aff\":2,"
      "\"##able\":3,\"a\":4,\"##b\":5}}", NULL, WSSPLIT, NULL, NULL, "unaffable", true,
      "un#1@0-2|##aff#2@2-5|##able#3@5-9" },
    { "WordPiece unknown piece -> whole word [UNK]",
      "{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
      "\"max_input_chars_per_word\":100,\"vocab\":{\"[UNK]\":0,\"un\":1,\"##aff\":2,"
      "\"##able\":3,\"a\":4,\"##b\":5}}", NULL, WSSPLIT, NULL, NULL, "unab ab", true,
      "[UNK]#0@0-4|a#4@5-6|##b#5@6-7" },
    { "WordPiece max_input_chars_per_word",
      "{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
      "\"max_input_chars_per_word\":5,\"vocab\":{\"[UNK]\":0,\"un\":1,\"##aff\":2,"
      "\"##able\":3}}", NULL, WSSPLIT, NULL, NULL, "unaffable una", true,
      "[UNK]#0@0-9|[UNK]#0@10-13" },
    /* Unigram Viterbi (unigram/model.rs): ab+c (-3.5) beats a+b+c (-4) and abc (-10);
     * unknown chars score min-10 and consecutive ones fuse. */
    { "Unigram viterbi",
      "{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[[\"<unk>\",0],[\"a\",-1],[\"b\",-2],"
      "[\"ab\",-2.5],[\"abc\",-10],[\"c\",-1]]}", NULL, NULL, NULL, NULL, "abcddab", true,
      "ab#3@0-2|c#5@2-3|dd#0@3-5|ab#3@5-7" },
    { "Unigram byte_fallback",
      "{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":true,\"vocab\":[[\"<unk>\",0],"
      "[\"a\",-1],[\"<0x64>\",-5],[\"<0x65>\",-5]]}", NULL, NULL, NULL, NULL, "ade", true,
      "a#1@0-1|<0x64>#2@1-3|<0x65>#3@1-3" },
    /* BPE (bpe/model.rs merge_word): prefix on non-first chars, suffix on the last;
     * merge "a ##b" gives "a" + "b" = "ab". */
    { "BPE prefix+suffix",
      "{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"end_of_word_suffix\":\"</w>\","
      "\"vocab\":{\"a\":0,\"##b\":1,\"##c</w>\":2,\"ab\":3,\"abc</w>\":4},"
      "\"merges\":[\"a ##b\",\"ab ##c</w>\"]}", NULL, WSSPLIT, NULL, NULL, "abc ac", true,
      "abc</w>#4@0-3|a#0@4-5|##c</w>#2@5-6" },
    { "BPE fuse_unk",
      "{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
      "\"vocab\":{\"<unk>\":0,\"a\":1},\"merges\":[]}", NULL, NULL, NULL, NULL, "axxa", true,
      "a#1@0-1|<unk>#0@1-3|a#1@3-4" },
    { "BPE no fuse_unk",
      "{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":false,"
      "\"vocab\":{\"<unk>\":0,\"a\":1},\"merges\":[]}", NULL, NULL, NULL, NULL, "axxa", true,
      "a#1@0-1|<unk>#0@1-2|<unk>#0@2-3|a#1@3-4" },
    { "BPE ignore_merges",
      "{\"type\":\"BPE\",\"ignore_merges\":true,\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,"
      "\"abab\":3},\"merges\":[[\"a\",\"b\"]]}", NULL, WSSPLIT, NULL, NULL, "abab aba", true,
      "abab#3@0-4|ab#2@5-7|a#0@7-8" },
    { "BPE merges as pairs, by rank",
      "{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"abab\":3,\"ba\":4},"
      "\"merges\":[[\"a\",\"b\"],[\"b\",\"a\"]]}", NULL, NULL, NULL, NULL, "abab", true,
      "ab#2@0-2|ab#2@2-4" },
    /* added_vocabulary.rs test options_use_cases (ids shifted by one: our
     * model has <unk> at 0; unmatched pieces show as one unk token). */
    { "added options_use_cases", NULL, "{\"type\":\"Lowercase\"}", NULL, NULL,
      "[" ADDED("my", "false", "true", "true", "true", "false") ","
      ADDED("name", "false", "false", "false", "true", "false") ","
      ADDED("ony", "true", "false", "false", "true", "false") ","
      ADDED("[CLS]", "false", "false", "false", "false", "true") ","
      ADDED("[SEP]", "false", "false", "false", "false", "true") "]",
      "[CLS] My name is Anthony [SEP]", true,
      "[CLS]#4@0-5| my #1@5-9|name#2@9-13| is anthony #0@13-25|[SEP]#5@25-30" },
    /* added_vocabulary.rs test_single_word_is_correct. */
    { "added test_single_word_is_correct", NULL, "{\"type\":\"Lowercase\"}", NULL, NULL,
      "[" ADDED("<mask>", "true", "false", "false", "true", "false") "]",
      "<mask> My name <mask> A<mask> <mask>ony <mask>", true,
      "<mask>#1@0-6| my name #0@6-15|<mask>#1@15-21| a<mask> <mask>ony #0@21-40|"
      "<mask>#1@40-46" },
    /* added_vocabulary.rs test_lstrip_unicode_space: a space taken by the
     * previous token's rstrip is not taken again by lstrip. */
    { "added test_lstrip_unicode_space", NULL, "{\"type\":\"Lowercase\"}", NULL, NULL,
      "[" ADDED("<mask>", "true", "true", "true", "true", "false") "]",
      "Hi <mask> there\t<mask>\t<mask>\u2000", true,
      "hi#0@0-2| <mask> #1@2-10|there#0@10-15|\t<mask>\t#1@15-23|<mask>\u2000#1@23-32" },
    /* added_vocabulary.rs: lstrip takes the spaces on the left into the token. */
    { "added lstrip", NULL, NULL, WSSPLIT, NULL,
      "[{\"id\":1,\"content\":\"[M]\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,"
      "\"normalized\":false,\"special\":true}]", "a  [M] b", true,
      "a#0@0-1|  [M]#1@1-6|b#0@7-8" },
    /* single_word: "xab" has a word char before the match, so no match there. */
    { "added single_word", NULL, NULL, WSSPLIT, NULL,
      "[{\"id\":1,\"content\":\"ab\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,"
      "\"normalized\":false,\"special\":false}]", "ab xab ab.", true,
      "ab#1@0-2|xab#0@3-6|ab#1@7-9|.#0@9-10" },
    /* normalized=true matches the normalized text, false the raw text. */
    { "added normalized", NULL, "{\"type\":\"Lowercase\"}", WSSPLIT, NULL,
      "[{\"id\":1,\"content\":\"Hello\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
      "\"normalized\":true,\"special\":false}]", "HELLO world", true,
      "hello#1@0-5|world#0@6-11" },
    { "added not normalized", NULL, "{\"type\":\"Lowercase\"}", WSSPLIT, NULL,
      "[{\"id\":1,\"content\":\"Hello\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
      "\"normalized\":false,\"special\":false}]", "HELLO Hello", true,
      "hello#0@0-5|Hello#1@6-11" },
    /* byte_level.rs: add_prefix_space prepends a space aligned with the
     * first char; process_offsets keeps that one space on the first token. */
    { "ByteLevel add_prefix_space", NULL, NULL,
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,"
      "\"use_regex\":true}",
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true}", NULL,
      "Hello world", true, "\u0120Hello#0@0-5|\u0120world#0@6-11" },
    /* processors/sequence.rs: ByteLevel then TemplateProcessing (Llama-3 style). */
    { "Sequence post_processor", NULL, NULL,
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,"
      "\"use_regex\":true}",
      "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\","
      "\"add_prefix_space\":true,\"trim_offsets\":false},{\"type\":\"TemplateProcessing\","
      "\"single\":[{\"SpecialToken\":{\"id\":\"<|bos|>\",\"type_id\":0}},"
      "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":"
      "{\"<|bos|>\":{\"id\":\"<|bos|>\",\"ids\":[5],\"tokens\":[\"<|bos|>\"]}}}]}",
      NULL, "a b", true, "<|bos|>#5@0-0|a#0@0-1|\u0120b#0@1-3" },
    /* processors/bert.rs: [CLS] A [SEP], only with add_special_tokens. */
    { "BertProcessing", NULL, NULL, WSSPLIT,
      "{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",102],\"cls\":[\"[CLS]\",101]}", NULL,
      "hi you", true, "[CLS]#101@0-0|hi#0@0-2|you#0@3-6|[SEP]#102@0-0" },
    { "BertProcessing off", NULL, NULL, WSSPLIT,
      "{\"type\":\"BertProcessing\",\"sep\":[\"[SEP]\",102],\"cls\":[\"[CLS]\",101]}", NULL,
      "hi you", false, "hi#0@0-2|you#0@3-6" },
    /* processors/byte_level.rs process_offsets: leading/trailing Ġ trimmed. */
    { "ByteLevel trim_offsets", NULL, NULL,
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
      "\"use_regex\":true}",
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true}", NULL,
      "a  b", true, "a#0@0-1|\u0120#0@2-2|\u0120b#0@3-4" },
    { "RobertaProcessing", NULL, NULL,
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
      "\"use_regex\":true}",
      "{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<s>\",1],"
      "\"trim_offsets\":true,\"add_prefix_space\":false}", NULL, "a b", true,
      "<s>#1@0-0|a#0@0-1|\u0120b#0@2-3|</s>#2@0-0" },
};

static void run_enc_rows(void)
{
    size_t i;

    for (i = 0; i < sizeof(enc_rows) / sizeof(enc_rows[0]); i++) {
        const struct enc_row *r = &enc_rows[i];
        struct mfs_err err = MFS_ERR_INIT;
        struct mfs_tok_enc e = MFS_TOK_ENC_INIT;
        char got[1024] = "";
        int rc;
        struct mfs_tok *tok = build(r->model, r->norm, r->pre, r->post, NULL, r->added, &err,
                                    &rc);

        if (rc == 0)
            rc = mfs_tok_encode(tok, r->text, strlen(r->text), r->add_special, &e, &err);
        if (rc == 0)
            render(&e, got, sizeof(got));
        CHECK(rc == 0 && !strcmp(got, r->want), "encode: %s: got '%s' want '%s' %s", r->why,
              got, r->want, err.msg);
        mfs_tok_enc_release(&e);
        mfs_tok_free(&tok);
    }
}

struct dec_row {
    const char *why;
    const char *vocab;                      /* BPE vocab object */
    const char *dec;                        /* decoder JSON, NULL = none */
    int32_t ids[16];
    size_t n;
    const char *want;
};

static const struct dec_row dec_rows[] = {
    /* decoders/bpe.rs test: suffix -> " " except on the last token. */
    { "BPEDecoder", "{\"My</w>\":0,\"na\":1,\"me</w>\":2,\"is</w>\":3,\"Jo\":4,\"hn</w>\":5}",
      "{\"type\":\"BPEDecoder\",\"suffix\":\"</w>\"}", { 0, 1, 2, 3, 4, 5 }, 6,
      "My name is John" },
    /* decoders/ctc.rs test: dedup, drop pads, | is a space. */
    { "CTC", "{\"<pad>\":0,\"h\":1,\"e\":2,\"l\":3,\"o\":4,\"|\":5}",
      "{\"type\":\"CTC\",\"pad_token\":\"<pad>\",\"word_delimiter_token\":\"|\","
      "\"cleanup\":true}", { 0, 0, 1, 2, 2, 3, 3, 0, 3, 4, 4, 5, 1, 0 }, 14, "hello h" },
    /* decoders/wordpiece.rs test. */
    { "WordPiece decoder", "{\"##uelo\":0,\"Ara\":1,\"##\u00faj\":2,\"##o\":3,\"No\":4,"
      "\"##guera\":5}", "{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}",
      { 0, 1, 2, 3, 4, 5 }, 6, "##uelo Ara\u00fajo Noguera" },
    /* cleanup() runs on each token after the space is added, so " ." and
     * " 's" lose their space (but " do" + " not" stay apart). */
    { "WordPiece cleanup", "{\"I\":0,\".\":1,\"'s\":2,\"it\":3,\"do\":4,\"not\":5}",
      "{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}", { 3, 2, 0, 4, 5, 1 },
      6, "it's I do not." },
    /* decoders/byte_fallback.rs tests: an invalid run gives one U+FFFD per byte. */
    { "ByteFallback", "{\"<0xE5>\":0,\"<0x8f>\":1,\"<0xAB>\":2,\"a\":3}",
      "{\"type\":\"ByteFallback\"}", { 0, 1, 2, 3, 0, 1, 3 }, 7,
      "\u53eba\ufffd\ufffda" },
    /* metaspace.rs decoder test: the first token loses its replacement char. */
    { "Metaspace decoder", "{\"\u2581Hey\":0,\"\u2581friend!\":1}",
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\","
      "\"split\":true}", { 0, 1 }, 2, "Hey friend!" },
    { "Metaspace decoder never", "{\"\u2581Hey\":0,\"\u2581friend!\":1}",
      "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"never\","
      "\"split\":true}", { 0, 1 }, 2, " Hey friend!" },
    /* strip.rs: up to start/stop copies of content are cut on each token. */
    { "Strip decoder", "{\"Hey\":0,\" friend!\":1,\"HH\":2}",
      "{\"type\":\"Strip\",\"content\":\"H\",\"start\":1,\"stop\":1}", { 0, 1, 2 }, 3,
      "ey friend!" },
    /* GPT-2 alphabet back to bytes; a lone 0xC3 is invalid UTF-8 -> U+FFFD. */
    { "ByteLevel decoder", "{\"\u00c3\":0,\"\u00a9\":1,\"\u0120x\":2}",
      "{\"type\":\"ByteLevel\"}", { 2, 0, 1, 0 }, 4, " x\u00e9\ufffd" },
    /* decoders/mod.rs Replace: the normalizer's pattern on each token. */
    { "Replace decoder", "{\"a__b\":0,\"_c\":1}",
      "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"_+\"},\"content\":\" \"}",
      { 0, 1 }, 2, "a b c" },
    /* No decoder: tokens joined with spaces (TokenizerImpl::decode). */
    { "no decoder", "{\"a\":0,\"b\":1}", NULL, { 0, 1, 7 }, 3, "a b" },
};

static void run_dec_rows(void)
{
    size_t i;

    for (i = 0; i < sizeof(dec_rows) / sizeof(dec_rows[0]); i++) {
        const struct dec_row *r = &dec_rows[i];
        struct mfs_err err = MFS_ERR_INIT;
        char model[1024];
        char *out = NULL;
        int rc;
        struct mfs_tok *tok;

        snprintf(model, sizeof(model), "{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}",
                 r->vocab);
        tok = build(model, NULL, NULL, NULL, r->dec, NULL, &err, &rc);
        if (rc == 0)
            rc = mfs_tok_decode(tok, r->ids, r->n, false, &out, NULL, &err);
        CHECK(rc == 0 && !strcmp(out, r->want), "decode: %s: got '%s' want '%s' %s", r->why,
              out ? out : "(null)", r->want, err.msg);
        free(out);
        mfs_tok_free(&tok);
    }
}

/* ---- part 3: errors, streaming, threads ---- */

static void run_errors(void)
{
    static const struct {
        const char *json;
        const char *want;                   /* substring of the reason */
    } rows[] = {
        { "not json", "not a JSON object" },
        { "{\"model\":{\"type\":\"WordLevel\",\"vocab\":{}}}", "unsupported model 'WordLevel'" },
        { "{\"model\":" UNK_MODEL ",\"pre_tokenizer\":{\"type\":\"UnicodeScripts\"}}",
          "unsupported pre_tokenizer 'UnicodeScripts'" },
        { "{\"model\":" UNK_MODEL ",\"normalizer\":{\"type\":\"Precompiled\"}}",
          "unsupported normalizer 'Precompiled'" },
        { "{\"model\":" UNK_MODEL ",\"decoder\":{\"type\":\"Nope\"}}",
          "unsupported decoder 'Nope'" },
        { "{\"model\":" UNK_MODEL ",\"post_processor\":{\"type\":\"Nope\"}}",
          "unsupported post_processor 'Nope'" },
        { "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}",
          "dropout" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
          "not in the vocabulary" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", "bad id" },
        { "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a  a\"]}}",
          "bad merge" },
        { "{\"model\":" UNK_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
          "{\"Regex\":\"[a[^b]]\"},\"behavior\":\"Removed\",\"invert\":false}}",
          "negated nested class" },
        { "{\"model\":" UNK_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
          "{\"Regex\":\"(\"},\"behavior\":\"Removed\",\"invert\":false}}", "bad regex" },
        { "{\"model\":" UNK_MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":"
          "{\"String\":\"a\"},\"behavior\":\"Sideways\",\"invert\":false}}",
          "unsupported split behavior 'Sideways'" },
        { "{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",0]]}}",
          "out of range" },
        { "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", "not [piece, score]" },
        { "{\"normalizer\":null}", "no 'model'" },
    };
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_tok_enc e = MFS_TOK_ENC_INIT;
    struct mfs_tok *tok = NULL;
    size_t i;
    int rc;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        mfs_err_clear(&err);
        rc = mfs_tok_new(rows[i].json, strlen(rows[i].json), &tok, &err);
        CHECK(rc == -EINVAL && !tok && strstr(err.msg, rows[i].want),
              "bad tokenizer.json %zu -> -EINVAL '%s' (got %d '%s')", i, rows[i].want, rc,
              err.msg);
        mfs_tok_free(&tok);
    }
    tok = build(NULL, NULL, NULL, NULL, NULL, NULL, &err, &rc);
    CHECK(rc == 0, "unk tokenizer builds: %s", err.msg);
    rc = mfs_tok_encode(tok, "ab\xff", 3, true, &e, &err);
    CHECK(rc == -EINVAL && e.n == 0 && strstr(err.msg, "UTF-8"), "invalid UTF-8 -> -EINVAL");
    rc = mfs_tok_encode(tok, "\xed\xa0\x80", 3, true, &e, &err);
    CHECK(rc == -EINVAL, "UTF-8 surrogate -> -EINVAL");
    rc = mfs_tok_encode(tok, "", 0, true, &e, &err);
    CHECK(rc == 0 && e.n == 0, "empty text -> no tokens");
    mfs_tok_enc_release(&e);
    mfs_tok_free(&tok);
    mfs_tok_free(&tok);                     /* NULL is a no-op */
}

/* Streaming a decode yields the full decode, in pieces that are valid UTF-8. */
static void run_stream(const char *name, const char *text)
{
    struct mfs_tok *tok = load_tok(name);
    struct mfs_tok_enc e = MFS_TOK_ENC_INIT;
    struct mfs_err err = MFS_ERR_INIT;
    struct mfs_tok_stream st;
    char joined[4096] = "";
    size_t jl = 0;
    char *full = NULL;
    bool ok = true;
    size_t i;
    int rc;

    if (!tok)
        return;
    rc = mfs_tok_encode(tok, text, strlen(text), false, &e, &err);
    mfs_tok_stream_init(&st, true);
    for (i = 0; rc == 0 && i < e.n; i++) {
        char *piece = NULL;

        rc = mfs_tok_stream_step(tok, &st, e.ids[i], &piece, &err);
        if (piece) {
            size_t pl = strlen(piece);
            struct mfs_tok_enc chk = MFS_TOK_ENC_INIT;

            /* encode rejects invalid UTF-8, so it doubles as a validator */
            ok &= mfs_tok_encode(tok, piece, pl, false, &chk, NULL) == 0;
            mfs_tok_enc_release(&chk);
            if (jl + pl < sizeof(joined)) {
                memcpy(joined + jl, piece, pl + 1);
                jl += pl;
            }
            free(piece);
        }
    }
    if (rc == 0)
        rc = mfs_tok_decode(tok, e.ids, e.n, true, &full, NULL, &err);
    CHECK(rc == 0 && ok && full && !strcmp(full, joined),
          "%s stream decode: pieces '%s' == decode '%s' %s", name, joined, full ? full : "",
          err.msg);
    free(full);
    mfs_tok_stream_release(&st);
    mfs_tok_enc_release(&e);
    mfs_tok_free(&tok);
}

struct thr {
    const struct mfs_tok *tok;
    const char *text;
    const struct mfs_tok_enc *want;
    int bad;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    int k;

    for (k = 0; k < 20; k++) {
        struct mfs_tok_enc e = MFS_TOK_ENC_INIT;
        size_t i;

        if (mfs_tok_encode(t->tok, t->text, strlen(t->text), true, &e, NULL) < 0 ||
            e.n != t->want->n) {
            t->bad++;
        } else {
            for (i = 0; i < e.n; i++)
                t->bad += e.ids[i] != t->want->ids[i] ||
                          e.offsets[i].start != t->want->offsets[i].start;
        }
        mfs_tok_enc_release(&e);
    }
    return NULL;
}

static void run_threads(void)
{
    static const char text[] =
        "Once upon a time, in a land far away, a tokenizer was shared by four threads. "
        "\u00c9t\u00e9 \U0001F600 <|endoftext|> 12345";
    struct mfs_tok *tok = load_tok("tokenizer-phi3-mini");
    struct mfs_tok_enc want = MFS_TOK_ENC_INIT;
    struct thr t[4];
    pthread_t th[4];
    int bad = 0;
    int i;

    if (!tok)
        return;
    CHECK(mfs_tok_encode(tok, text, strlen(text), true, &want, NULL) == 0 && want.n > 10,
          "phi3 encodes the thread text");
    for (i = 0; i < 4; i++) {
        t[i] = (struct thr){ tok, text, &want, 0 };
        pthread_create(&th[i], NULL, thr_main, &t[i]);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += t[i].bad;
    }
    CHECK(bad == 0, "4 threads x 20 encodes on one tokenizer agree (%d differ)", bad);
    mfs_tok_enc_release(&want);
    mfs_tok_free(&tok);
}

static void run_lookups(void)
{
    struct mfs_tok *tok = load_tok("tokenizer-phi3-mini");

    if (!tok)
        return;
    CHECK(mfs_tok_token_to_id(tok, "<|endoftext|>") == 32000, "phi3 <|endoftext|> is 32000");
    CHECK(mfs_tok_token_to_id(tok, "\u2581the") >= 0, "phi3 has \u2581the");
    CHECK(mfs_tok_token_to_id(tok, "no such token at all") == -1, "unknown token -> -1");
    CHECK(mfs_tok_id_to_token(tok, 1) && !strcmp(mfs_tok_id_to_token(tok, 1), "<s>"),
          "phi3 id 1 is <s>");
    CHECK(mfs_tok_id_to_token(tok, 1 << 30) == NULL && mfs_tok_id_to_token(tok, -1) == NULL,
          "out-of-range ids -> NULL");
    CHECK(mfs_tok_vocab_size(tok) == 32011, "phi3 vocab size 32011 (got %zu)",
          mfs_tok_vocab_size(tok));
    CHECK(mfs_tok_is_special(tok, 32000) && !mfs_tok_is_special(tok, 2) &&
          !mfs_tok_is_special(tok, 100), "special flags (</s> is not special in phi3)");
    mfs_tok_free(&tok);
}

/* Random valid UTF-8 through every tokenizer: no failure, offsets inside
 * the text and ordered as spans, decode works.  Truncated tokenizer.json
 * files fail cleanly.  Deterministic (fixed seed). */
static uint32_t rnd(uint64_t *st)
{
    *st = *st * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*st >> 33);
}

static void run_robust(const char *name)
{
    static const uint32_t pool[] = {
        ' ', ' ', 'a', 'Z', '0', '.', '\'', '\n', '\t', 0xa0, 0xe9, 0x301, 0x130, 0x3000,
        0x4e2d, 0xac00, 0x1f600, 0x200d, 0xfe0f, 0x2581, 0x120, '<', '>', '|', 's', 0xfffd,
        0x85, 0x2028, 0xad, 0x10ffff,
    };
    char path[512];
    struct mfs_tok *tok = load_tok(name);
    uint64_t st = 42;
    size_t jlen = 0;
    char *json;
    int bad = 0;
    int k;

    if (!tok)
        return;
    for (k = 0; k < 200; k++) {
        char text[512];
        size_t len = 0;
        size_t n = rnd(&st) % 40;
        struct mfs_tok_enc e = MFS_TOK_ENC_INIT;
        char *out = NULL;
        size_t i;

        for (i = 0; i < n; i++) {
            uint32_t c = pool[rnd(&st) % (sizeof(pool) / sizeof(pool[0]))];

            if (c < 0x80) {
                text[len++] = (char)c;
            } else if (c < 0x800) {
                text[len++] = (char)(0xc0 | (c >> 6));
                text[len++] = (char)(0x80 | (c & 0x3f));
            } else if (c < 0x10000) {
                text[len++] = (char)(0xe0 | (c >> 12));
                text[len++] = (char)(0x80 | ((c >> 6) & 0x3f));
                text[len++] = (char)(0x80 | (c & 0x3f));
            } else {
                text[len++] = (char)(0xf0 | (c >> 18));
                text[len++] = (char)(0x80 | ((c >> 12) & 0x3f));
                text[len++] = (char)(0x80 | ((c >> 6) & 0x3f));
                text[len++] = (char)(0x80 | (c & 0x3f));
            }
        }
        if (mfs_tok_encode(tok, text, len, k & 1, &e, NULL) < 0) {
            bad++;
            continue;
        }
        for (i = 0; i < e.n; i++)
            bad += e.offsets[i].start > e.offsets[i].end || e.offsets[i].end > len ||
                   e.offsets_cp[i].start > e.offsets_cp[i].end;
        bad += mfs_tok_decode(tok, e.ids, e.n, k & 2, &out, NULL, NULL) < 0;
        free(out);
        mfs_tok_enc_release(&e);
    }
    CHECK(bad == 0, "%s: 200 random texts encode and decode sanely (%d bad)", name, bad);
    mfs_tok_free(&tok);

    snprintf(path, sizeof(path), "%s/models/%s/tokenizer.json", check_data_dir(), name);
    json = read_file(path, &jlen);
    bad = 0;
    for (k = 0; json && k < 20; k++) {
        struct mfs_err err = MFS_ERR_INIT;
        size_t cut = jlen * (size_t)k / 20;
        int rc = mfs_tok_new(json, cut, &tok, &err);

        bad += rc != -EINVAL || tok != NULL || !err.msg[0];
        mfs_tok_free(&tok);
    }
    CHECK(json && bad == 0, "%s: truncated tokenizer.json -> -EINVAL (%d bad)", name, bad);
    free(json);
}

int main(void)
{
    static const char *const names[] = {
        "bert-tiniest", "fake-gpt2", "stories260K-hf", "tiny-random-bloom",
        "tokenizer-phi3-mini",
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        run_golden(names[i]);
    run_enc_rows();
    run_dec_rows();
    run_errors();
    run_stream("stories260K-hf", "Hi \U0001F600 caf\u00e9 \u4e2d\u6587 done");
    run_stream("fake-gpt2", "Hi \U0001F600 caf\u00e9 \u4e2d\u6587 done");
    run_stream("bert-tiniest", "Hello, world! Don't stop.");
    run_threads();
    run_lookups();
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        run_robust(names[i]);
    return check_done();
}
