// chat.c: chat templates written out (see chat.h).
#include "data/chat.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

int lmp_chat_format_parse(const char *s) {
    if (!strcmp(s, "auto")) return LMP_CHAT_AUTO;
    if (!strcmp(s, "llama3")) return LMP_CHAT_LLAMA3;
    if (!strcmp(s, "chatml")) return LMP_CHAT_CHATML;
    return -1;
}

lmp_chat_format lmp_chat_format_of(const lmp_bpe *b, lmp_chat_format want, const char *what) {
    if (want != LMP_CHAT_AUTO) return want;
    if (b && lmp_bpe_token_id(b, "<|start_header_id|>") >= 0) return LMP_CHAT_LLAMA3;
    if (b && lmp_bpe_token_id(b, "<|im_start|>") >= 0) return LMP_CHAT_CHATML;
    lmp_die("%s: chat data (\"messages\") needs a tokenizer with a chat format: Llama 3's "
            "<|start_header_id|> or ChatML's <|im_start|> (or name one: chat_format llama3|chatml)", what);
}

static void put(lmp_chat_text *t, const char *s, size_t n, int target) {
    if (!n) return;
    if (t->len + n + 1 > t->cap) {
        t->cap = 2 * (t->len + n + 1) + 256;
        t->text = realloc(t->text, t->cap);
        LMP_CHECK(t->text, "out of memory");
    }
    memcpy(t->text + t->len, s, n);
    t->len += n;
    t->text[t->len] = 0;
    if (t->n && t->target[t->n - 1] == (uint8_t)target) {  // extends the last segment
        t->end[t->n - 1] = t->len;
        return;
    }
    if (t->n == t->seg_cap) {
        t->seg_cap = t->seg_cap ? 2 * t->seg_cap : 16;
        t->end = realloc(t->end, t->seg_cap * sizeof *t->end);
        t->target = realloc(t->target, t->seg_cap);
        LMP_CHECK(t->end && t->target, "out of memory");
    }
    t->end[t->n] = t->len;
    t->target[t->n++] = (uint8_t)target;
}

static void puts0(lmp_chat_text *t, const char *s, int target) { put(t, s, strlen(s), target); }

// Length of the Python whitespace (str.isspace, what Jinja's trim strips) at s, or 0.
static size_t space_at(const unsigned char *s, size_t n) {
    if (!n) return 0;
    if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x1F)) return 1;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n < 3) return 0;
    unsigned cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    if ((s[0] & 0xF0) != 0xE0) return 0;
    return (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
            cp == 0x202F || cp == 0x205F || cp == 0x3000) ? 3 : 0;
}

// Jinja's trim: s[*a, *b) without leading and trailing whitespace.
static void trim(const char *s, size_t *a, size_t *b) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t k; *a < *b && (k = space_at(u + *a, *b - *a));) *a += k;
    while (*a < *b) {  // the last character: step back over continuation bytes
        size_t c = *b - 1;
        while (c > *a && (u[c] & 0xC0) == 0x80) c--;
        if (space_at(u + c, *b - c) != *b - c) break;
        *b = c;
    }
}

static const char *field(json_t *m, const char *key) { return json_string_value(json_object_get(m, key)); }

// Checks the messages: a non-empty array of objects with string role and content.
static const char *check(json_t *messages, size_t *bad) {
    if (!json_is_array(messages) || !json_array_size(messages)) return "\"messages\" is not a non-empty array";
    for (size_t i = 0; i < json_array_size(messages); i++) {
        *bad = i;
        json_t *m = json_array_get(messages, i);
        if (!field(m, "role") || !field(m, "role")[0]) return "a message has no \"role\" string";
        if (!field(m, "content")) return "a message has no \"content\" string";
    }
    return NULL;
}

static void render_llama3(json_t *messages, lmp_chat_text *t) {
    puts0(t, "<|begin_of_text|>", 0);
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *m = json_array_get(messages, i);
        const char *c = field(m, "content");
        int target = !strcmp(field(m, "role"), "assistant");
        puts0(t, "<|start_header_id|>", 0);
        puts0(t, field(m, "role"), 0);
        puts0(t, "<|end_header_id|>\n\n", 0);
        size_t a = 0, b = strlen(c);
        trim(c, &a, &b);
        put(t, c + a, b - a, target);
        puts0(t, "<|eot_id|>", target);
    }
    puts0(t, "<|start_header_id|>assistant<|end_header_id|>\n\n", 0);
}

// Qwen3's assistant content split as its template does: with a </think>, the content is
// what follows the last one (leading newlines dropped) and the reasoning [*r, *re) what
// precedes the first one, after the last <think> before it, newlines stripped.
static const char *split_reasoning(const char *c, const char **r, const char **re) {
    const char *close = NULL, *content = c;
    for (const char *p = c; (p = strstr(p, "</think>")); p += 8) close = p;
    *r = *re = c;
    if (!close) return c;
    content = close + 8;
    while (*content == '\n') content++;
    *re = strstr(c, "</think>");
    for (const char *p = c; (p = strstr(p, "<think>")) && p < *re; p += 7) *r = p + 7;
    while (*r < *re && **r == '\n') (*r)++;
    while (*re > *r && (*re)[-1] == '\n') (*re)--;
    return content;
}

// An assistant turn of ChatML; qwen3: the tokenizer has <think> (reasoning is split off the
// content); block: the turn comes after the last user turn and is the last or has reasoning
// (Qwen3's template then writes the think block, and drops the content's leading newlines).
static void chatml_assistant(lmp_chat_text *t, const char *c, int qwen3, int after_query, int last) {
    const char *r = c, *re = c, *content = qwen3 ? split_reasoning(c, &r, &re) : c;
    puts0(t, "<|im_start|>assistant\n", 0);
    if (qwen3 && after_query && (last || re > r)) {  // a target when it holds reasoning
        puts0(t, "<think>\n", re > r);
        put(t, r, (size_t)(re - r), 1);
        puts0(t, "\n</think>\n\n", re > r);
        while (*content == '\n') content++;
    }
    puts0(t, content, 1);
    puts0(t, "<|im_end|>", 1);
    puts0(t, "\n", 0);
}

static int tool_response(const char *c) {
    size_t n = strlen(c);
    return !strncmp(c, "<tool_response>", 15) && n >= 16 && !strcmp(c + n - 16, "</tool_response>");
}

static const char *render_chatml(json_t *messages, int think, lmp_chat_text *t, size_t *bad) {
    size_t n = json_array_size(messages), last_query = n - 1;
    for (size_t i = n; i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        if (!strcmp(field(m, "role"), "user") && !tool_response(field(m, "content"))) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(messages, i);
        const char *role = field(m, "role"), *c = field(m, "content");
        *bad = i;
        if (!strcmp(role, "user") || !strcmp(role, "system")) {
            puts0(t, "<|im_start|>", 0);
            puts0(t, role, 0);
            puts0(t, "\n", 0);
            puts0(t, c, 0);
            puts0(t, "<|im_end|>\n", 0);
        } else if (!strcmp(role, "assistant")) {
            chatml_assistant(t, c, think, i > last_query, i == n - 1);
        } else {
            return "role is not system, user or assistant (tools are not supported)";
        }
    }
    return NULL;
}

const char *lmp_chat_render(lmp_chat_format f, int think, json_t *messages, lmp_chat_text *out,
                            size_t *bad_index) {
    out->len = out->n = 0;
    *bad_index = 0;
    const char *err = check(messages, bad_index);
    if (err) return err;
    if (f == LMP_CHAT_LLAMA3) {
        render_llama3(messages, out);
        return NULL;
    }
    return render_chatml(messages, think, out, bad_index);
}

static void grow_mask(const lmp_ids *ids, uint8_t **mask, size_t *mask_cap) {
    if (ids->n > *mask_cap) {
        *mask_cap = ids->cap;
        *mask = realloc(*mask, *mask_cap);
        LMP_CHECK(*mask, "out of memory");
    }
}

// The whole text is encoded at once (its ids are the template's); a token is a target when
// it starts inside a target segment. When the tokens do not cover the text byte for byte
// (normalization or invalid UTF-8 changed it), the segments are encoded one by one instead.
size_t lmp_chat_encode(lmp_bpe *b, const lmp_chat_text *t, lmp_ids *ids, uint8_t **mask, size_t *mask_cap) {
    size_t from = ids->n, off = 0;
    size_t bad = lmp_bpe_encode(b, t->text, t->len, ids, NULL);
    for (size_t k = from; k < ids->n; k++) off += (size_t)lmp_bpe_token_len(b, ids->v[k]);
    grow_mask(ids, mask, mask_cap);
    if (off == t->len) {
        off = 0;
        for (size_t k = from, seg = 0; k < ids->n; k++) {
            while (seg + 1 < t->n && off >= t->end[seg]) seg++;
            (*mask)[k] = t->target[seg];
            off += (size_t)lmp_bpe_token_len(b, ids->v[k]);
        }
        return bad;
    }
    ids->n = from;
    bad = 0;
    for (size_t k = 0, start = 0; k < t->n; start = t->end[k++]) {
        size_t first = ids->n;
        bad += lmp_bpe_encode(b, t->text + start, t->end[k] - start, ids, NULL);
        grow_mask(ids, mask, mask_cap);
        memset(*mask + first, t->target[k], ids->n - first);
    }
    return bad;
}

void lmp_chat_text_free(lmp_chat_text *t) {
    free(t->text);
    free(t->end);
    free(t->target);
    memset(t, 0, sizeof *t);
}
