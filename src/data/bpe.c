// bpe.c: GPT-2 byte-level BPE (see bpe.h). Tokens are handled as ids from the start: the
// 256 single-byte tokens seed each piece, and a merge is a lookup of the id pair (a, b) in
// a hash table giving (rank, id of a+b), so no strings are built while encoding.
#include "data/bpe.h"
#include "data/bpe_build.h"
#include "core/rng.h"
#include "core/util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// JavaScript's \s (the reference encoder's regex), spelled out: PCRE2's \s differs at U+FEFF
// and U+180E.
#define WS "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"
static const char *PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    uint32_t key_off, key_len, ids_off, ids_len;
} cache_entry;

struct lmp_bpe {
    int n_ids, eot;
    char **tok;                 // bytes of each id (NULL: unused id)
    int *tok_len;
    int byte_id[256];           // id of each single byte
    // bytes -> id (open addressing; slot holds id + 1, 0 = empty)
    int *str_slot;
    size_t str_cap;
    // (a, b) -> rank, merged id
    uint64_t *pair_key;         // (a + 1) << 32 | (b + 1), 0 = empty
    int *pair_rank, *pair_id;
    size_t pair_cap;
    // piece cache: bytes -> ids
    int *cache_slot;            // entry index + 1
    size_t cache_cap, n_cache;
    cache_entry *ent;
    size_t ent_cap;
    char *keys;
    size_t keys_n, keys_cap;
    lmp_ids cache_ids;
    pcre2_code *re;
    pcre2_match_data *md;
    int no_cache;
    int byte_of_cp[512];        // GPT-2's byte alphabet, code point -> byte (-1: none)
    // tokenizer.json (data/tokenizer_json.c): added tokens matched in the text before the
    // pattern (ids by content length, longest first), a whole piece found in the vocabulary
    // taken as is (ignore_merges), NFC normalization, BOS.
    int *added, n_added;
    uint8_t added_first[256];   // bytes that begin some added token
    uint8_t *unindexed;         // ids left out of the bytes -> id table (added tokens)
    int ignore_merges, nfc, bos;
};

void lmp_ids_push(lmp_ids *a, int id) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 1024;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        LMP_CHECK(a->v, "out of memory (%zu token ids)", a->cap);
    }
    a->v[a->n++] = id;
}

void lmp_ids_free(lmp_ids *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

// ---------------------------------------------------------------------------------------
// UTF-8

// Length of the valid UTF-8 sequence at s[i] (1-4), or 0 when it is invalid; *sub gets the
// length of the maximal subpart to replace by one U+FFFD.
static int utf8_seq(const unsigned char *s, size_t n, size_t i, int *sub) {
    unsigned c = s[i];
    *sub = 1;
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    for (int k = 1; k < len; k++) {
        if (i + k >= n) return 0;
        unsigned d = s[i + k];
        if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) return 0;
        *sub = k + 1;
    }
    return len;
}

char *lmp_utf8_sanitize(const char *s, size_t len, size_t *out_len, size_t *n_bad,
                        size_t *first_bad) {
    const unsigned char *u = (const unsigned char *)s;
    char *out = lmp_malloc(3 * len + 1);
    size_t o = 0, bad = 0;
    *first_bad = 0;
    for (size_t i = 0; i < len;) {
        int sub, k = utf8_seq(u, len, i, &sub);
        if (k) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            if (!bad++) *first_bad = i;
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += (size_t)sub;
        }
    }
    out[o] = 0;
    *out_len = o;
    *n_bad = bad;
    return out;
}

// ---------------------------------------------------------------------------------------
// Tables

static int str_find(const lmp_bpe *b, const char *s, size_t n) {
    for (size_t h = lmp_hash_bytes(s, n) & (b->str_cap - 1);; h = (h + 1) & (b->str_cap - 1)) {
        int v = b->str_slot[h];
        if (!v) return -1;
        if ((size_t)b->tok_len[v - 1] == n && !memcmp(b->tok[v - 1], s, n)) return v - 1;
    }
}

static void str_insert(lmp_bpe *b, int id) {
    size_t h = lmp_hash_bytes(b->tok[id], (size_t)b->tok_len[id]) & (b->str_cap - 1);
    while (b->str_slot[h]) h = (h + 1) & (b->str_cap - 1);
    b->str_slot[h] = id + 1;
}

static size_t pair_slot(const lmp_bpe *b, int a, int c) {
    uint64_t key = ((uint64_t)(a + 1) << 32) | (uint64_t)(c + 1);
    size_t h = lmp_mix64(key) & (b->pair_cap - 1);
    while (b->pair_key[h] && b->pair_key[h] != key) h = (h + 1) & (b->pair_cap - 1);
    return h;
}

// The byte alphabet: GPT-2 shows each byte as a printable character; bytes that are
// printable in Latin-1 stand for themselves, the others get U+0100.. in byte order.
static void byte_alphabet(int *cp_of_byte) {
    int n = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        cp_of_byte[c] = printable ? c : 256 + n++;
    }
}

// Token text (UTF-8 over the byte alphabet) -> its bytes; -1 if a character is outside it.
static int token_bytes(const char *s, const int *byte_of_cp, char *out) {
    const unsigned char *u = (const unsigned char *)s;
    int n = 0;
    for (size_t i = 0; u[i];) {
        unsigned cp;
        if (u[i] < 0x80) cp = u[i++];
        else if ((u[i] & 0xE0) == 0xC0 && u[i + 1]) { cp = ((u[i] & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu); i += 2; }
        else return -1;
        if (cp >= 512 || byte_of_cp[cp] < 0) return -1;
        out[n++] = (char)byte_of_cp[cp];
    }
    return n;
}

lmp_bpe *lmp_bpe_new(void) {
    lmp_bpe *b = lmp_calloc(sizeof *b);
    int cp_of_byte[256];
    byte_alphabet(cp_of_byte);
    for (int i = 0; i < 512; i++) b->byte_of_cp[i] = -1;
    for (int c = 0; c < 256; c++) b->byte_of_cp[cp_of_byte[c]] = c;
    b->eot = b->bos = -1;
    b->cache_cap = 1 << 16;
    b->cache_slot = lmp_calloc(b->cache_cap * sizeof *b->cache_slot);
    return b;
}

void lmp_bpe_init_vocab(lmp_bpe *b, int n_ids) {
    b->n_ids = n_ids;
    b->tok = lmp_calloc((size_t)n_ids * sizeof *b->tok);
    b->tok_len = lmp_calloc((size_t)n_ids * sizeof *b->tok_len);
    b->unindexed = lmp_calloc((size_t)n_ids);
}

int lmp_bpe_set_token_text(lmp_bpe *b, int id, const char *text) {
    // A token's bytes are at most its text's (one byte per code point): no fixed buffer.
    size_t kl = strlen(text);
    if (kl > INT_MAX / 2) return -1;
    char *bytes = lmp_malloc(kl + 1);
    int n = token_bytes(text, b->byte_of_cp, bytes);
    if (n >= 0) lmp_bpe_set_token_bytes(b, id, bytes, (size_t)n);
    free(bytes);
    return n < 0 ? -1 : 0;
}

void lmp_bpe_set_token_bytes(lmp_bpe *b, int id, const char *bytes, size_t n) {
    free(b->tok[id]);
    b->tok[id] = lmp_malloc(n + 1);
    memcpy(b->tok[id], bytes, n);
    b->tok[id][n] = 0;
    b->tok_len[id] = (int)n;
}

int lmp_bpe_has_id(const lmp_bpe *b, int id) { return id >= 0 && id < b->n_ids && b->tok[id]; }

void lmp_bpe_index_vocab(lmp_bpe *b, const char *path) {
    b->str_cap = pow2_at_least(2 * (size_t)b->n_ids);
    b->str_slot = lmp_calloc(b->str_cap * sizeof *b->str_slot);
    for (int id = 0; id < b->n_ids; id++)
        if (b->tok[id] && id != b->eot && !b->unindexed[id]) str_insert(b, id);
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        b->byte_id[c] = str_find(b, &ch, 1);
        if (b->byte_id[c] < 0) lmp_die("%s: no token for byte 0x%02X (every byte needs one)", path, c);
    }
}

static void load_vocab(lmp_bpe *b, const char *path) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) lmp_die("%s:%d:%d: %s", path, e.line, e.column, e.text);
    if (!json_is_object(root)) lmp_die("%s: expected a JSON object {token: id}", path);
    lmp_bpe_vocab_json(b, root, -1, path);
    json_decref(root);
    lmp_bpe_index_vocab(b, path);
}

void lmp_bpe_vocab_json(lmp_bpe *b, json_t *vocab, int min_ids, const char *path) {
    const char *key;
    json_t *v;
    int max_id = min_ids - 1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 24))
            lmp_die("%s: token \"%s\" maps to a non-integer or out-of-range id", path, key);
        if (json_integer_value(v) > max_id) max_id = (int)json_integer_value(v);
    }
    if (max_id < 255) lmp_die("%s: %d ids; a byte-level BPE vocabulary has at least 256", path, max_id + 1);
    lmp_bpe_init_vocab(b, max_id + 1);
    json_object_foreach(vocab, key, v) {
        int id = (int)json_integer_value(v);
        if (b->tok[id]) lmp_die("%s: id %d is given to two tokens", path, id);
        if (lmp_bpe_set_token_text(b, id, key) < 0)
            lmp_die("%s: token \"%s\" (id %d) has a character outside GPT-2's byte alphabet", path, key, id);
        if (!strcmp(key, "<|endoftext|>") && min_ids < 0) b->eot = id;
    }
}

void lmp_bpe_init_merges(lmp_bpe *b, size_t n) {
    b->pair_cap = pow2_at_least(2 * n + 1);
    b->pair_key = lmp_calloc(b->pair_cap * sizeof *b->pair_key);
    b->pair_rank = lmp_calloc(b->pair_cap * sizeof *b->pair_rank);
    b->pair_id = lmp_calloc(b->pair_cap * sizeof *b->pair_id);
}

// The merge of tokens `left` and `right` (text in the byte alphabet) at rank `rank`; ba and
// bb: buffers as long as both texts. Returns NULL or what is wrong.
const char *lmp_bpe_add_merge(lmp_bpe *b, const char *left, const char *right, int rank,
                              char *ba, char *bb) {
    int na = token_bytes(left, b->byte_of_cp, ba), nb = token_bytes(right, b->byte_of_cp, bb);
    if (na < 0 || nb < 0) return "a character outside GPT-2's byte alphabet";
    int ia = str_find(b, ba, (size_t)na), ib = str_find(b, bb, (size_t)nb);
    memcpy(ba + na, bb, (size_t)nb);
    int im = str_find(b, ba, (size_t)(na + nb));
    if (ia < 0 || ib < 0 || im < 0)
        return ia < 0 ? "the first token is not in the vocabulary"
               : ib < 0 ? "the second token is not in the vocabulary" : "the merged token is not in the vocabulary";
    size_t h = pair_slot(b, ia, ib);
    // A repeated pair takes its later rank, as a Python dict built from the list does.
    b->pair_key[h] = ((uint64_t)(ia + 1) << 32) | (uint64_t)(ib + 1);
    b->pair_rank[h] = rank;
    b->pair_id[h] = im;
    return NULL;
}

static void load_merges(lmp_bpe *b, const char *path) {
    size_t len;
    char *text = lmp_read_file(path, &len);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    lmp_bpe_init_merges(b, lines);
    int rank = 0, lineno = 0;
    // Both tokens' bytes, then the merged token's, fit in a line's length (one byte per code
    // point at most): a buffer as long as the longest line, no fixed limit.
    size_t longest = 0;
    for (size_t i = 0, start = 0; i <= len; i++)
        if (i == len || text[i] == '\n') { if (i - start > longest) longest = i - start; start = i + 1; }
    if (longest > INT_MAX / 2) lmp_die("%s: a line of %zu bytes", path, longest);
    char *ba = lmp_malloc(longest + 1), *bb = lmp_malloc(longest + 1);
    for (char *save, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (lineno == 1 && !strncmp(line, "#version", 8)) continue;
        if (!l) continue;
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))
            lmp_die("%s:%d: expected two tokens separated by one space, got \"%s\"", path, lineno, line);
        *sp = 0;
        const char *err = lmp_bpe_add_merge(b, line, sp + 1, rank++, ba, bb);
        if (err) lmp_die("%s:%d: merge \"%s %s\": %s", path, lineno, line, sp + 1, err);
    }
    free(ba);
    free(bb);
    free(text);
    if (!rank) lmp_die("%s: no merges", path);
}

// JavaScript's \s and \S (the reference encoders' regexes) for PCRE2: \s inside a class is
// the set's ranges, outside it the class of them; \S outside a class its complement.
void lmp_bpe_set_pattern(lmp_bpe *b, const char *pattern, const char *path) {
    size_t n = strlen(pattern), o = 0;
    char *p = lmp_malloc(n * (sizeof WS + 4) + 1);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] == '\\' && i + 1 < n) {
            char c = pattern[++i];
            const char *rep = c == 's' ? (in_class ? WS : "[" WS "]") : c == 'S' && !in_class ? "[^" WS "]" : NULL;
            if (c == 'S' && in_class) lmp_die("%s: the pattern has \\S inside a character class (not supported)", path);
            if (rep) { memcpy(p + o, rep, strlen(rep)); o += strlen(rep); }
            else { p[o++] = '\\'; p[o++] = c; }
            continue;
        }
        if (pattern[i] == '[' && !in_class) in_class = 1;
        else if (pattern[i] == ']' && in_class && pattern[i - 1] != '[' && !(pattern[i - 1] == '^' && pattern[i - 2] == '['))
            in_class = 0;
        p[o++] = pattern[i];
    }
    p[o] = 0;
    int err;
    PCRE2_SIZE off;
    if (b->re) pcre2_code_free(b->re);
    b->re = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!b->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        lmp_die("%s: the pre-tokenizer pattern does not compile: %s at offset %zu of \"%s\"", path, (char *)msg, (size_t)off, p);
    }
    free(p);
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
    if (b->md) pcre2_match_data_free(b->md);
    b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
    LMP_CHECK(b->md, "out of memory");
}

lmp_bpe *lmp_bpe_load_files(const char *vocab_json, const char *merges_txt) {
    lmp_bpe *b = lmp_bpe_new();
    load_vocab(b, vocab_json);
    load_merges(b, merges_txt);
    lmp_bpe_set_pattern(b, PATTERN, "GPT-2");
    return b;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

lmp_bpe *lmp_bpe_load(const char *dir) {
    char v[4096], m[4096];
    lmp_path_join(v, sizeof v, dir, "vocab.json");
    lmp_path_join(m, sizeof m, dir, "merges.txt");
    if (exists(v) && exists(m)) return lmp_bpe_load_files(v, m);
    lmp_path_join(v, sizeof v, dir, "encoder.json");
    lmp_path_join(m, sizeof m, dir, "vocab.bpe");
    if (exists(v) && exists(m)) return lmp_bpe_load_files(v, m);
    lmp_path_join(v, sizeof v, dir, "tokenizer.json");
    if (exists(v)) return lmp_tokenizer_load(dir);
    lmp_die("%s: no GPT-2 vocabulary there (expected vocab.json + merges.txt, or encoder.json + vocab.bpe) "
            "and no tokenizer.json", dir);
}

void lmp_bpe_free(lmp_bpe *b) {
    if (!b) return;
    for (int i = 0; i < b->n_ids; i++) free(b->tok[i]);
    free(b->tok);
    free(b->tok_len);
    free(b->str_slot);
    free(b->pair_key);
    free(b->pair_rank);
    free(b->pair_id);
    free(b->cache_slot);
    free(b->ent);
    free(b->keys);
    free(b->added);
    free(b->unindexed);
    lmp_ids_free(&b->cache_ids);
    pcre2_match_data_free(b->md);
    pcre2_code_free(b->re);
    free(b);
}

void lmp_bpe_set_cache(lmp_bpe *b, int on) { b->no_cache = !on; }
int lmp_bpe_vocab_size(const lmp_bpe *b) { return b->n_ids; }
int lmp_bpe_eot(const lmp_bpe *b) { return b->eot; }
int lmp_bpe_bos(const lmp_bpe *b) { return b->bos; }
int lmp_bpe_token_len(const lmp_bpe *b, int id) { return id >= 0 && id < b->n_ids ? b->tok_len[id] : 0; }

int lmp_bpe_token_id(const lmp_bpe *b, const char *text) {
    size_t n = strlen(text);
    for (int k = 0; k < b->n_added; k++)
        if ((size_t)b->tok_len[b->added[k]] == n && !memcmp(b->tok[b->added[k]], text, n)) return b->added[k];
    return b->str_slot ? str_find(b, text, n) : -1;
}

// Added tokens: matched in the text before anything else, the longest first.
void lmp_bpe_add_token(lmp_bpe *b, int id, const char *content, size_t n) {
    lmp_bpe_set_token_bytes(b, id, content, n);
    b->unindexed[id] = 1;
    b->added = realloc(b->added, (size_t)(b->n_added + 1) * sizeof *b->added);
    LMP_CHECK(b->added, "out of memory");
    int k = b->n_added++;  // insertion by length, longest first; ties by id
    for (; k > 0 && b->tok_len[b->added[k - 1]] < (int)n; k--) b->added[k] = b->added[k - 1];
    b->added[k] = id;
    b->added_first[(unsigned char)content[0]] = 1;
}

void lmp_bpe_set_options(lmp_bpe *b, int ignore_merges, int nfc, int bos, int eot) {
    b->ignore_merges = ignore_merges;
    b->nfc = nfc;
    b->bos = bos;
    b->eot = eot;
}

// ---------------------------------------------------------------------------------------
// Encoding

// BPE of one piece: w starts as the ids of its bytes; the adjacent pair of lowest rank is
// merged at every non-overlapping occurrence, left to right, until no pair has a rank.
static int bpe_piece(const lmp_bpe *b, const unsigned char *s, int n, int *w) {
    for (int i = 0; i < n; i++) w[i] = b->byte_id[s[i]];
    int len = n;
    while (len > 1) {
        int best = INT_MAX, fa = -1, fb = -1, fm = -1;
        for (int i = 0; i + 1 < len; i++) {
            size_t h = pair_slot(b, w[i], w[i + 1]);
            if (b->pair_key[h] && b->pair_rank[h] < best) {
                best = b->pair_rank[h];
                fa = w[i];
                fb = w[i + 1];
                fm = b->pair_id[h];
            }
        }
        if (fm < 0) break;
        int o = 0;
        for (int i = 0; i < len;) {
            if (i + 1 < len && w[i] == fa && w[i + 1] == fb) { w[o++] = fm; i += 2; }
            else w[o++] = w[i++];
        }
        len = o;
    }
    return len;
}

static void cache_grow(lmp_bpe *b) {
    size_t cap = b->cache_cap * 2;
    int *slot = lmp_calloc(cap * sizeof *slot);
    for (size_t e = 0; e < b->n_cache; e++) {
        size_t h = lmp_hash_bytes(b->keys + b->ent[e].key_off, b->ent[e].key_len) & (cap - 1);
        while (slot[h]) h = (h + 1) & (cap - 1);
        slot[h] = (int)e + 1;
    }
    free(b->cache_slot);
    b->cache_slot = slot;
    b->cache_cap = cap;
}

// Appends the ids of one piece, from the cache or computed and cached.
static void encode_piece(lmp_bpe *b, const char *s, size_t n, lmp_ids *out) {
    if (b->ignore_merges) {  // a whole piece in the vocabulary is taken as is
        int id = str_find(b, s, n);
        if (id >= 0) {
            lmp_ids_push(out, id);
            return;
        }
    }
    size_t h = lmp_hash_bytes(s, n) & (b->cache_cap - 1);
    for (int e; !b->no_cache && (e = b->cache_slot[h]); h = (h + 1) & (b->cache_cap - 1)) {
        cache_entry *c = &b->ent[e - 1];
        if (c->key_len == n && !memcmp(b->keys + c->key_off, s, n)) {
            for (uint32_t k = 0; k < c->ids_len; k++) lmp_ids_push(out, b->cache_ids.v[c->ids_off + k]);
            return;
        }
    }
    int small[256], *w = n <= 256 ? small : lmp_malloc(n * sizeof *w);
    int m = bpe_piece(b, (const unsigned char *)s, (int)n, w);
    for (int k = 0; k < m; k++) lmp_ids_push(out, w[k]);
    // Cache pieces of up to 64 bytes (long whitespace runs would only fill it), at most 1M.
    if (!b->no_cache && n <= 64 && b->n_cache < (1u << 20)) {
        if (2 * (b->n_cache + 1) > b->cache_cap) {
            cache_grow(b);
            h = lmp_hash_bytes(s, n) & (b->cache_cap - 1);
            while (b->cache_slot[h]) h = (h + 1) & (b->cache_cap - 1);
        }
        if (b->n_cache == b->ent_cap) {
            b->ent_cap = b->ent_cap ? 2 * b->ent_cap : 4096;
            b->ent = realloc(b->ent, b->ent_cap * sizeof *b->ent);
            LMP_CHECK(b->ent, "out of memory");
        }
        if (b->keys_n + n > b->keys_cap) {
            b->keys_cap = 2 * (b->keys_n + n) + 65536;
            b->keys = realloc(b->keys, b->keys_cap);
            LMP_CHECK(b->keys, "out of memory");
        }
        memcpy(b->keys + b->keys_n, s, n);
        b->ent[b->n_cache] = (cache_entry){(uint32_t)b->keys_n, (uint32_t)n,
                                           (uint32_t)b->cache_ids.n, (uint32_t)m};
        b->keys_n += n;
        for (int k = 0; k < m; k++) lmp_ids_push(&b->cache_ids, w[k]);
        b->cache_slot[h] = (int)++b->n_cache;
    }
    if (w != small) free(w);
}

// One section of text (no added token in it): normalized when the tokenizer says so, split by
// the pattern into pieces, the text between matches being pieces too (Split's "Isolated"),
// and each piece encoded.
static void encode_section(lmp_bpe *b, const char *s, size_t n, lmp_ids *out) {
    char *norm = NULL;
    if (b->nfc) {
        size_t m;
        norm = lmp_nfc(s, n, &m);
        if (norm) {
            s = norm;
            n = m;
        }
    }
    size_t prev = 0, pos = 0;
    while (pos < n) {
        int rc = pcre2_match(b->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, b->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) lmp_die("internal: PCRE2 match error %d at byte %zu", rc, pos);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
        if (ov[1] == ov[0]) {  // an empty match: no piece, search on from the next character
            pos = ov[0] + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ov[0] > prev) encode_piece(b, s + prev, ov[0] - prev, out);
        encode_piece(b, s + ov[0], ov[1] - ov[0], out);
        prev = pos = ov[1];
    }
    if (prev < n) encode_piece(b, s + prev, n - prev, out);
    free(norm);
}

// The added token (longest first) that s[0, n) begins with, or -1.
static int added_at(const lmp_bpe *b, const char *s, size_t n) {
    if (!b->added_first[(unsigned char)s[0]]) return -1;
    for (int k = 0; k < b->n_added; k++) {
        int id = b->added[k];
        size_t l = (size_t)b->tok_len[id];
        if (l <= n && !memcmp(s, b->tok[id], l)) return id;
    }
    return -1;
}

size_t lmp_bpe_encode(lmp_bpe *b, const char *text, size_t len, lmp_ids *out, size_t *first_bad) {
    size_t n, bad, fb;
    char *s = lmp_utf8_sanitize(text, len, &n, &bad, &fb);
    if (first_bad) *first_bad = fb;
    size_t start = 0;
    for (size_t i = 0; b->n_added && i < n; i++) {
        int id = added_at(b, s + i, n - i);
        if (id < 0) continue;
        if (i > start) encode_section(b, s + start, i - start, out);
        lmp_ids_push(out, id);
        i += (size_t)b->tok_len[id] - 1;
        start = i + 1;
    }
    if (start < n) encode_section(b, s + start, n - start, out);
    free(s);
    return bad;
}

char *lmp_bpe_decode(const lmp_bpe *b, const int *ids, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= b->n_ids || !b->tok[ids[i]])
            lmp_die("decode: id %d at position %zu is not in the vocabulary", ids[i], i);
        total += (size_t)b->tok_len[ids[i]];
    }
    char *out = lmp_malloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + o, b->tok[ids[i]], (size_t)b->tok_len[ids[i]]);
        o += (size_t)b->tok_len[ids[i]];
    }
    out[o] = 0;
    *len = o;
    return out;
}
