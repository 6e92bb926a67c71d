// dataset.c: token streams from text and instruction files (see dataset.h).
#include "data/dataset.h"
#include "data/chat.h"
#include "io/tokens.h"
#include "core/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// alpaca-lora's templates/alpaca.json (Stanford Alpaca's texts, "\n" after "### Response:").
const char *const LMP_ALPACA_PROMPT_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
const char *const LMP_ALPACA_PROMPT_NO_INPUT =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

static void push(lmp_token_stream *s, int id, uint8_t m) {
    lmp_ids_push(&s->tok, id);
    if (s->tok.n > s->mask_cap) {
        s->mask_cap = s->tok.cap;
        s->mask = realloc(s->mask, s->mask_cap);
        LMP_CHECK(s->mask, "out of memory");
    }
    s->mask[s->tok.n - 1] = m;
    if (!m) s->masked = 1;
}

static void begin_doc(lmp_token_stream *s) {
    if (s->n_docs == s->doc_cap) {
        s->doc_cap = s->doc_cap ? 2 * s->doc_cap : 1024;
        s->doc = realloc(s->doc, s->doc_cap * sizeof *s->doc);
        LMP_CHECK(s->doc, "out of memory");
    }
    s->doc[s->n_docs++] = s->tok.n;
}

static void encode_into(lmp_bpe *b, const char *path, const char *text, size_t len, lmp_ids *out,
                        lmp_token_stream *s) {
    size_t first;
    size_t bad = lmp_bpe_encode(b, text, len, out, &first);
    if (bad) {
        if (!s->n_bad_utf8)
            lmp_warn("%s: invalid UTF-8 replaced by U+FFFD (first near byte %zu of a document)", path, first);
        s->n_bad_utf8 += bad;
    }
}

// One document of text: its tokens and <|endoftext|>, every token counts.
static void add_doc(lmp_token_stream *s, lmp_bpe *b, const char *path, const char *text, size_t len) {
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
    if (i == len) return;  // empty or blank: no document
    begin_doc(s);
    if (!b) {
        for (size_t k = 0; k < len; k++) push(s, (unsigned char)text[k], 1);
        return;
    }
    lmp_ids ids = {0};
    if (lmp_bpe_bos(b) >= 0) lmp_ids_push(&ids, lmp_bpe_bos(b));
    encode_into(b, path, text, len, &ids, s);
    for (size_t k = 0; k < ids.n; k++) push(s, ids.v[k], 1);
    if (lmp_bpe_eot(b) >= 0) push(s, lmp_bpe_eot(b), 1);
    lmp_ids_free(&ids);
}

static void add_text(lmp_token_stream *s, lmp_bpe *b, const char *path, char *text, size_t len,
                     const char *delim) {
    if (!delim) {
        add_doc(s, b, path, text, len);
        return;
    }
    size_t dl = strlen(delim), start = 0;
    for (size_t i = 0; i <= len;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t le = e > i && text[e - 1] == '\r' ? e - 1 : e;  // the line is [i, le)
        if (le - i == dl && !memcmp(text + i, delim, dl)) {
            add_doc(s, b, path, text + start, i - start);
            start = e < len ? e + 1 : len;
        }
        i = e + 1;
    }
    if (start < len) add_doc(s, b, path, text + start, len - start);
}

// ---------------------------------------------------------------------------------------
// Instruction data

static char *fill(const char *tpl, const char *instruction, const char *input) {
    size_t li = strlen(instruction), ln = strlen(input), cap = strlen(tpl) + 1, n = 0;
    for (const char *p = tpl; (p = strchr(p, '{')); p++) cap += li + ln;  // an upper bound
    char *out = lmp_malloc(cap);
    for (const char *p = tpl; *p;) {
        if (!strncmp(p, "{instruction}", 13)) {
            memcpy(out + n, instruction, li);
            n += li;
            p += 13;
        } else if (!strncmp(p, "{input}", 7)) {
            memcpy(out + n, input, ln);
            n += ln;
            p += 7;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return out;
}

static void load_template(lmp_token_stream *s, const char *path) {
    if (s->prompt_input) return;
    if (!path) {
        s->prompt_input = strdup(LMP_ALPACA_PROMPT_INPUT);
        s->prompt_no_input = strdup(LMP_ALPACA_PROMPT_NO_INPUT);
        return;
    }
    json_error_t e;
    json_t *t = json_load_file(path, 0, &e);
    if (!t) lmp_die("template %s:%d:%d: %s", path, e.line, e.column, e.text);
    const char *pi = json_string_value(json_object_get(t, "prompt_input"));
    const char *pn = json_string_value(json_object_get(t, "prompt_no_input"));
    if (!pi || !pn)
        lmp_die("template %s: expected a JSON object with the strings \"prompt_input\" and "
                "\"prompt_no_input\" (alpaca-lora's template format)", path);
    if (!strstr(pi, "{instruction}") || !strstr(pi, "{input}"))
        lmp_die("template %s: \"prompt_input\" must contain {instruction} and {input}", path);
    if (!strstr(pn, "{instruction}"))
        lmp_die("template %s: \"prompt_no_input\" must contain {instruction}", path);
    s->prompt_input = strdup(pi);
    s->prompt_no_input = strdup(pn);
    json_decref(t);
}

// One example of n tokens (ids, mask) into the stream: cut to max_tokens (or dropped) when
// longer; dropped too when what is kept has no target left.
static void emit(lmp_token_stream *s, const int *ids, const uint8_t *mask, size_t n, const lmp_dataset_opts *o) {
    size_t keep = n;
    if (o->max_tokens > 0 && n > (size_t)o->max_tokens) {
        keep = (size_t)o->max_tokens;
        int any = 0;
        for (size_t k = 0; k < keep; k++) any |= mask[k];
        if (o->drop_long || !any) keep = 0;  // nothing to learn left
        if (keep) s->n_truncated++;
        else s->n_dropped++;
    }
    if (keep) begin_doc(s);
    for (size_t k = 0; k < keep; k++) push(s, ids[k], mask[k]);
}

// A conversation ({"messages": [...]}) in the tokenizer's chat format (data/chat.h); every
// token counts with train_on_inputs, else the assistant turns only.
static void add_chat(lmp_token_stream *s, lmp_bpe *b, const char *path, const char *where,
                     json_t *rec, const lmp_dataset_opts *o) {
    lmp_chat_format f = lmp_chat_format_of(b, (lmp_chat_format)o->chat_format, path);
    lmp_chat_text t = {0};
    size_t bad;
    const char *err = lmp_chat_render(f, lmp_bpe_token_id(b, "<think>") >= 0, json_object_get(rec, "messages"), &t, &bad);
    if (err) lmp_die("%s: %s: messages[%zu]: %s", path, where, bad, err);
    lmp_ids ids = {0};
    uint8_t *mask = NULL;
    size_t cap = 0;
    size_t nbad = lmp_chat_encode(b, &t, &ids, &mask, &cap);
    if (nbad && !s->n_bad_utf8) lmp_warn("%s: %s: invalid UTF-8 replaced by U+FFFD", path, where);
    s->n_bad_utf8 += nbad;
    if (o->train_on_inputs) memset(mask, 1, ids.n);
    emit(s, ids.v, mask, ids.n, o);
    lmp_ids_free(&ids);
    free(mask);
    lmp_chat_text_free(&t);
}

// One example: [BOS] prompt (mask 0 unless train_on_inputs), response + eot (mask 1).
static void add_example(lmp_token_stream *s, lmp_bpe *b, const char *path, const char *where,
                        json_t *rec, const lmp_dataset_opts *o) {
    if (!json_is_object(rec)) lmp_die("%s: %s is not a JSON object", path, where);
    if (json_object_get(rec, "messages")) {
        add_chat(s, b, path, where, rec, o);
        return;
    }
    const char *field[3] = {"instruction", "input", "output"}, *val[3];
    for (int k = 0; k < 3; k++) {
        json_t *v = json_object_get(rec, field[k]);
        if (k == 1 && (!v || json_is_null(v))) { val[k] = ""; continue; }
        if (!v) lmp_die("%s: %s has no \"%s\" (expected the fields instruction, input, output; or messages)", path, where, field[k]);
        if (!json_is_string(v)) lmp_die("%s: %s: \"%s\" is not a string", path, where, field[k]);
        val[k] = json_string_value(v);
    }
    char *prompt = fill(val[1][0] ? s->prompt_input : s->prompt_no_input, val[0], val[1]);
    lmp_ids p = {0}, r = {0};
    if (lmp_bpe_bos(b) >= 0) lmp_ids_push(&p, lmp_bpe_bos(b));
    encode_into(b, path, prompt, strlen(prompt), &p, s);
    encode_into(b, path, val[2], strlen(val[2]), &r, s);
    if (lmp_bpe_eot(b) >= 0) lmp_ids_push(&r, lmp_bpe_eot(b));
    for (size_t k = 0; k < r.n; k++) lmp_ids_push(&p, r.v[k]);
    uint8_t *mask = lmp_malloc(p.n + 1);
    for (size_t k = 0; k < p.n; k++) mask[k] = k >= p.n - r.n || o->train_on_inputs;
    emit(s, p.v, mask, p.n, o);
    free(mask);
    free(prompt);
    lmp_ids_free(&p);
    lmp_ids_free(&r);
}

static void add_instructions(lmp_token_stream *s, lmp_bpe *b, const char *path, const char *text,
                             size_t len, const lmp_dataset_opts *o) {
    if (!b) lmp_die("%s: instruction data needs the BPE tokenizer (--vocab DIR), not --bytes", path);
    load_template(s, o->template_path);
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t' || text[i] == '\r')) i++;
    json_error_t e;
    char where[64];
    if (i < len && text[i] == '[') {  // one JSON array
        json_t *all = json_loadb(text, len, 0, &e);
        if (!all) lmp_die("%s:%d:%d: %s", path, e.line, e.column, e.text);
        if (!json_is_array(all)) lmp_die("%s: expected a JSON array of records", path);
        for (size_t k = 0; k < json_array_size(all); k++) {
            lmp_fmt(where, sizeof where, "record %zu", k + 1);
            add_example(s, b, path, where, json_array_get(all, k), o);
        }
        json_decref(all);
        return;
    }
    int line = 0;  // JSON Lines
    for (size_t a = 0; a < len;) {
        size_t z = a;
        while (z < len && text[z] != '\n') z++;
        line++;
        size_t q = a;
        while (q < z && (text[q] == ' ' || text[q] == '\t' || text[q] == '\r')) q++;
        if (q < z) {
            json_t *rec = json_loadb(text + a, z - a, 0, &e);
            if (!rec) lmp_die("%s:%d:%d: %s", path, line, e.column, e.text);
            lmp_fmt(where, sizeof where, "the record on line %d", line);
            add_example(s, b, path, where, rec, o);
            json_decref(rec);
        }
        a = z + 1;
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

void lmp_stream_add_file(lmp_token_stream *s, lmp_bpe *b, const char *path,
                         const lmp_dataset_opts *o) {
    size_t len;
    char *text = lmp_read_file(path, &len);
    s->bytes_in += len;
    s->vocab_size = b ? lmp_bpe_vocab_size(b) : 256;
    lmp_data_format f = o->format;
    if (f == LMP_FMT_AUTO) f = (ends_with(path, ".json") || ends_with(path, ".jsonl")) ? LMP_FMT_ALPACA : LMP_FMT_TEXT;
    if (f == LMP_FMT_ALPACA) add_instructions(s, b, path, text, len, o);
    else add_text(s, b, path, text, len, o->delimiter);
    free(text);
}

// ---------------------------------------------------------------------------------------
// Writing

static void write_part(const lmp_token_stream *s, const char *prefix, const char *part,
                       size_t from, size_t to, size_t docs) {
    char path[4096];
    lmp_fmt(path, sizeof path, "%s_%s.bin", prefix, part);
    size_t on = 0;
    for (size_t i = from; i < to; i++) on += s->mask[i];
    int vocab = s->vocab_size > 0 ? s->vocab_size : 65536;
    lmp_tokens_write_ids(path, s->tok.v + from, s->masked ? s->mask + from : NULL, to - from, vocab);
    printf("wrote %s: %zu tokens, %zu documents, %zu tokens in the loss%s%s\n", path, to - from, docs, on,
           s->masked ? (vocab > 65536 ? " (version 4, uint32 tokens, with loss mask)" : " (version 2, with loss mask)")
                     : "", !s->masked && vocab > 65536 ? " (version 3, uint32 tokens)" : "");
}

void lmp_stream_write(const lmp_token_stream *s, const char *prefix, double val_fraction) {
    size_t n = s->tok.n, on = 0;
    for (size_t i = 0; i < n; i++) on += s->mask[i];
    if (!n) lmp_die("no documents or examples in the input: nothing to write");
    if (!on) lmp_die("no token counts in the loss (every example is prompt only?): nothing to train on; "
                     "use --train-on-inputs or check the data");
    size_t cut = n;
    if (val_fraction > 0) {
        size_t target = (size_t)((1.0 - val_fraction) * (double)n);
        cut = target;  // inside the last document when no document starts after target
        for (size_t d = 0; d < s->n_docs; d++)
            if (s->doc[d] >= target && s->doc[d] > 0) { cut = s->doc[d]; break; }
    }
    size_t train_docs = 0;
    while (train_docs < s->n_docs && s->doc[train_docs] < cut) train_docs++;
    size_t split_doc = cut < n && (train_docs == s->n_docs || s->doc[train_docs] != cut);
    write_part(s, prefix, "train", 0, cut, train_docs);
    if (cut < n) write_part(s, prefix, "val", cut, n, s->n_docs - train_docs + split_doc);
}

void lmp_stream_free(lmp_token_stream *s) {
    lmp_ids_free(&s->tok);
    free(s->mask);
    free(s->doc);
    free(s->prompt_input);
    free(s->prompt_no_input);
    memset(s, 0, sizeof *s);
}
