// tokenizer_json.c: Hugging Face tokenizer.json files of byte-level BPE models (Llama 3,
// Qwen, GPT-2's own), read into the tokenizer of data/bpe.c. What is read:
//  - model: type "BPE", vocab {text: id}, merges ("a b" strings, or [a, b] arrays as
//    tokenizers >= 0.20 writes them), ignore_merges (a piece found whole in the vocabulary is
//    that token); dropout, byte_fallback, a subword prefix or suffix, and other model types
//    (Unigram, WordPiece, WordLevel) are refused by name;
//  - added_tokens: matched in the raw text before anything else, longest first, special or
//    not (Hugging Face's behaviour); lstrip, rstrip and single_word are refused;
//  - normalizer: none or NFC (ICU), others refused;
//  - pre_tokenizer: Sequence [Split (Regex, Isolated, not inverted), ByteLevel (no prefix
//    space, no regex)], or ByteLevel alone with its regex (GPT-2's pattern);
//  - post_processor: a TemplateProcessing that begins with a special token makes it the BOS
//    of every document; tokenizer_config.json's add_bos_token, when given, decides instead.
// tokenizer_config.json (optional): eos_token ends every document (and example); without it
// "<|endoftext|>" does when it is an added token.
#include "data/bpe_build.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *type_of(json_t *o) {
    const char *t = json_string_value(json_object_get(o, "type"));
    return t ? t : "(no type)";
}

static int is_true(json_t *o, const char *key) { return json_is_true(json_object_get(o, key)); }

static int read_normalizer(json_t *n, const char *path) {
    if (!n || json_is_null(n)) return 0;
    if (!strcmp(type_of(n), "NFC")) return 1;
    lmp_die("%s: normalizer %s is not supported (expected none or NFC)", path, type_of(n));
}

static void read_split(lmp_bpe *b, json_t *s, const char *path) {
    const char *re = json_string_value(json_object_get(json_object_get(s, "pattern"), "Regex"));
    const char *beh = json_string_value(json_object_get(s, "behavior"));
    if (!re) lmp_die("%s: pre_tokenizer Split: expected a pattern {\"Regex\": ...}", path);
    if (!beh || strcmp(beh, "Isolated") || is_true(s, "invert"))
        lmp_die("%s: pre_tokenizer Split: behavior %s%s is not supported (expected Isolated, not inverted)",
                path, beh ? beh : "(none)", is_true(s, "invert") ? ", inverted" : "");
    lmp_bpe_set_pattern(b, re, path);
}

static void read_pre_tokenizer(lmp_bpe *b, json_t *p, const char *path) {
    const char *t = type_of(p);
    if (!strcmp(t, "ByteLevel") && !is_true(p, "add_prefix_space") &&
        (!json_object_get(p, "use_regex") || is_true(p, "use_regex"))) {
        lmp_bpe_set_pattern(b, GPT2_PATTERN, path);
        return;
    }
    json_t *seq = json_object_get(p, "pretokenizers");
    if (strcmp(t, "Sequence") || json_array_size(seq) != 2 || strcmp(type_of(json_array_get(seq, 0)), "Split") ||
        strcmp(type_of(json_array_get(seq, 1)), "ByteLevel"))
        lmp_die("%s: pre_tokenizer %s is not supported (expected ByteLevel, or a Sequence of Split and ByteLevel)",
                path, t);
    json_t *bl = json_array_get(seq, 1);
    if (is_true(bl, "add_prefix_space") || is_true(bl, "use_regex"))
        lmp_die("%s: pre_tokenizer ByteLevel after Split: add_prefix_space and use_regex must be false", path);
    read_split(b, json_array_get(seq, 0), path);
}

// The largest id of the added tokens + 1 (the vocabulary is sized to hold them).
static int added_ids(json_t *added, const char *path) {
    int n = 0;
    if (added && !json_is_array(added)) lmp_die("%s: added_tokens: expected an array", path);
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 24) || !c || !c[0])
            lmp_die("%s: added_tokens[%zu]: expected an id in [0, 2^24) and a non-empty content", path, i);
        if (is_true(a, "lstrip") || is_true(a, "rstrip") || is_true(a, "single_word"))
            lmp_die("%s: added token \"%s\": lstrip, rstrip and single_word are not supported", path, c);
        if (json_integer_value(id) >= n) n = (int)json_integer_value(id) + 1;
    }
    return n;
}

static void read_merges(lmp_bpe *b, json_t *merges, const char *path) {
    if (!json_is_array(merges) || !json_array_size(merges)) lmp_die("%s: model.merges: expected a non-empty array", path);
    lmp_bpe_init_merges(b, json_array_size(merges));
    size_t cap = 0;
    char *l = NULL, *ba = NULL, *bb = NULL;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *s = json_string_value(m), *x = json_string_value(json_array_get(m, 0)),
                   *y = json_string_value(json_array_get(m, 1));
        if (s) {  // "a b"
            const char *sp = strchr(s, ' ');
            if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' '))
                lmp_die("%s: merges[%zu]: expected two tokens separated by one space, got \"%s\"", path, i, s);
            x = s;
            y = sp + 1;
        } else if (!x || !y || json_array_size(m) != 2) {
            lmp_die("%s: merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", path, i);
        }
        size_t need = strlen(x) + strlen(y) + 2;
        if (need > cap) {
            cap = 2 * need;
            free(l), free(ba), free(bb);
            l = lmp_malloc(cap), ba = lmp_malloc(cap), bb = lmp_malloc(cap);
        }
        size_t lx = s ? (size_t)(y - 1 - x) : strlen(x);
        memcpy(l, x, lx);
        l[lx] = 0;
        const char *err = lmp_bpe_add_merge(b, l, y, (int)i, ba, bb);
        if (err) lmp_die("%s: merges[%zu] (\"%s\" \"%s\"): %s", path, i, l, y, err);
    }
    free(l), free(ba), free(bb);
}

static void read_model(lmp_bpe *b, json_t *model, int min_ids, const char *path) {
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) lmp_die("%s: model.vocab: expected an object {token: id}", path);
    json_t *d = json_object_get(model, "dropout"), *pre = json_object_get(model, "continuing_subword_prefix"),
           *suf = json_object_get(model, "end_of_word_suffix");
    if ((d && !json_is_null(d) && json_number_value(d) != 0) || is_true(model, "byte_fallback") ||
        (json_string_value(pre) && *json_string_value(pre)) || (json_string_value(suf) && *json_string_value(suf)))
        lmp_die("%s: model: dropout, byte_fallback, continuing_subword_prefix and end_of_word_suffix are not supported", path);
    lmp_bpe_vocab_json(b, vocab, min_ids, path);
    lmp_bpe_index_vocab(b, path);
    read_merges(b, json_object_get(model, "merges"), path);
}

// A token of tokenizer_config.json: a string, {"content": string}, or null/absent (NULL).
static const char *config_token(json_t *cfg, const char *key) {
    json_t *t = json_object_get(cfg, key);
    return json_is_object(t) ? json_string_value(json_object_get(t, "content")) : json_string_value(t);
}

static int token_id(const lmp_bpe *b, const char *text, const char *what, const char *path) {
    int id = lmp_bpe_token_id(b, text);
    if (id < 0) lmp_die("%s: %s \"%s\" is not a token of the tokenizer", path, what, text);
    return id;
}

// BOS and EOS from tokenizer_config.json (cfg may be NULL) and the post-processor.
static void read_bos_eos(lmp_bpe *b, json_t *post, json_t *cfg, const char *cpath, int ignore_merges, int nfc) {
    const char *eos = config_token(cfg, "eos_token"), *bos = config_token(cfg, "bos_token");
    int eot = eos ? token_id(b, eos, "eos_token", cpath) : lmp_bpe_token_id(b, "<|endoftext|>");
    int bos_id = -1;
    json_t *add = json_object_get(cfg, "add_bos_token");
    if (json_is_boolean(add)) {
        if (json_is_true(add) && !bos) lmp_die("%s: add_bos_token is true but there is no bos_token", cpath);
        if (json_is_true(add)) bos_id = token_id(b, bos, "bos_token", cpath);
    } else if (!strcmp(type_of(post), "TemplateProcessing")) {
        const char *first = json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(post, "single"), 0), "SpecialToken"), "id"));
        if (first) bos_id = token_id(b, first, "the post-processor's first special token", cpath);
    }
    lmp_bpe_set_options(b, ignore_merges, nfc, bos_id, eot);
}

lmp_bpe *lmp_tokenizer_load_files(const char *path, const char *config_path) {
    json_error_t e;
    size_t len;
    char *text = lmp_read_file(path, &len);  // read whole: json_load_file reads by getc
    json_t *root = json_loadb(text, len, 0, &e), *cfg = NULL;
    free(text);
    if (!root) lmp_die("%s:%d:%d: %s", path, e.line, e.column, e.text);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "model")))
        lmp_die("%s: expected a JSON object with a \"model\" (Hugging Face's tokenizer.json)", path);
    // JSON_DECODE_INT_AS_REAL: model_max_length can be 1e30 (written as an integer).
    if (config_path && !(cfg = json_load_file(config_path, JSON_DECODE_INT_AS_REAL, &e)))
        lmp_die("%s:%d:%d: %s", config_path, e.line, e.column, e.text);
    if (cfg && !json_is_object(cfg)) lmp_die("%s: expected a JSON object", config_path);
    json_t *model = json_object_get(root, "model"), *added = json_object_get(root, "added_tokens");
    const char *t = json_string_value(json_object_get(model, "type"));
    if (t ? strcmp(t, "BPE") != 0 : !json_object_get(model, "merges"))
        lmp_die("%s: model type %s is not supported (only byte-level BPE)", path, t ? t : "(none)");
    lmp_bpe *b = lmp_bpe_new();
    int nfc = read_normalizer(json_object_get(root, "normalizer"), path);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!json_is_object(pre)) lmp_die("%s: no pre_tokenizer: a byte-level BPE tokenizer has one (ByteLevel)", path);
    read_pre_tokenizer(b, pre, path);
    read_model(b, model, added_ids(added, path), path);
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        lmp_bpe_add_token(b, (int)json_integer_value(json_object_get(a, "id")), c, strlen(c));
    }
    read_bos_eos(b, json_object_get(root, "post_processor"), cfg, config_path ? config_path : path,
                 is_true(model, "ignore_merges"), nfc);
    json_decref(root);
    json_decref(cfg);
    return b;
}

lmp_bpe *lmp_tokenizer_load(const char *dir) {
    char t[4096], c[4096];
    struct stat st;
    lmp_path_join(t, sizeof t, dir, "tokenizer.json");
    lmp_path_join(c, sizeof c, dir, "tokenizer_config.json");
    if (stat(t, &st) != 0) return lmp_bpe_load(dir);
    return lmp_tokenizer_load_files(t, stat(c, &st) == 0 ? c : NULL);
}
