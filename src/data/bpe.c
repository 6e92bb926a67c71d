// bpe.c: GPT-2 byte-level BPE (see bpe.h). Tokens are handled as ids from the start: the
// 256 single-byte tokens seed each piece, and a merge is a lookup of the id pair (a, b) in
// a hash table giving (rank, id of a+b), so no strings are built while encoding.
#include "data/bpe.h"
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
static const char *PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS
                             "]+(?![^" WS "])|[" WS "]+";

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

static void load_vocab(lmp_bpe *b, const char *path, const int *byte_of_cp) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root) lmp_die("%s:%d:%d: %s", path, e.line, e.column, e.text);
    if (!json_is_object(root)) lmp_die("%s: expected a JSON object {token: id}", path);
    const char *key;
    json_t *v;
    int max_id = -1;
    json_object_foreach(root, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 24))
            lmp_die("%s: token \"%s\" maps to a non-integer or out-of-range id", path, key);
        if (json_integer_value(v) > max_id) max_id = (int)json_integer_value(v);
    }
    if (max_id < 255) lmp_die("%s: %d ids; a byte-level BPE vocabulary has at least 256", path, max_id + 1);
    b->n_ids = max_id + 1;
    b->tok = lmp_calloc((size_t)b->n_ids * sizeof *b->tok);
    b->tok_len = lmp_calloc((size_t)b->n_ids * sizeof *b->tok_len);
    b->eot = -1;
    json_object_foreach(root, key, v) {
        int id = (int)json_integer_value(v);
        // A token's bytes are at most its text's (one byte per code point): no fixed buffer.
        size_t kl = strlen(key);
        if (kl > INT_MAX / 2) lmp_die("%s: token of id %d is %zu bytes long", path, id, kl);
        if (b->tok[id]) lmp_die("%s: id %d is given to two tokens", path, id);
        b->tok[id] = lmp_malloc(kl + 1);
        int n = token_bytes(key, byte_of_cp, b->tok[id]);
        if (n < 0)
            lmp_die("%s: token \"%s\" (id %d) has a character outside GPT-2's byte alphabet", path, key, id);
        b->tok_len[id] = n;
        if (!strcmp(key, "<|endoftext|>")) b->eot = id;
    }
    json_decref(root);
    b->str_cap = pow2_at_least(2 * (size_t)b->n_ids);
    b->str_slot = lmp_calloc(b->str_cap * sizeof *b->str_slot);
    for (int id = 0; id < b->n_ids; id++)
        if (b->tok[id] && id != b->eot) str_insert(b, id);
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        b->byte_id[c] = str_find(b, &ch, 1);
        if (b->byte_id[c] < 0) lmp_die("%s: no token for byte 0x%02X (every byte needs one)", path, c);
    }
}

static void load_merges(lmp_bpe *b, const char *path, const int *byte_of_cp) {
    size_t len;
    char *text = lmp_read_file(path, &len);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    b->pair_cap = pow2_at_least(2 * lines);
    b->pair_key = lmp_calloc(b->pair_cap * sizeof *b->pair_key);
    b->pair_rank = lmp_calloc(b->pair_cap * sizeof *b->pair_rank);
    b->pair_id = lmp_calloc(b->pair_cap * sizeof *b->pair_id);
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
        int na = token_bytes(line, byte_of_cp, ba), nb = token_bytes(sp + 1, byte_of_cp, bb);
        if (na < 0 || nb < 0)
            lmp_die("%s:%d: a character outside GPT-2's byte alphabet", path, lineno);
        int ia = str_find(b, ba, (size_t)na), ib = str_find(b, bb, (size_t)nb);
        memcpy(ba + na, bb, (size_t)nb);
        int im = str_find(b, ba, (size_t)(na + nb));
        if (ia < 0 || ib < 0 || im < 0)
            lmp_die("%s:%d: merge \"%s %s\": %s is not in the vocabulary", path, lineno, line, sp + 1,
                    ia < 0 ? "the first token" : ib < 0 ? "the second token" : "the merged token");
        size_t h = pair_slot(b, ia, ib);
        // A repeated pair takes its later rank, as a Python dict built from the list does.
        b->pair_key[h] = ((uint64_t)(ia + 1) << 32) | (uint64_t)(ib + 1);
        b->pair_rank[h] = rank++;
        b->pair_id[h] = im;
    }
    free(ba);
    free(bb);
    free(text);
    if (!rank) lmp_die("%s: no merges", path);
}

lmp_bpe *lmp_bpe_load_files(const char *vocab_json, const char *merges_txt) {
    lmp_bpe *b = lmp_calloc(sizeof *b);
    int cp_of_byte[256], byte_of_cp[512];
    byte_alphabet(cp_of_byte);
    for (int i = 0; i < 512; i++) byte_of_cp[i] = -1;
    for (int c = 0; c < 256; c++) byte_of_cp[cp_of_byte[c]] = c;
    load_vocab(b, vocab_json, byte_of_cp);
    load_merges(b, merges_txt, byte_of_cp);
    int err;
    PCRE2_SIZE off;
    b->re = pcre2_compile((PCRE2_SPTR)PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!b->re) lmp_die("internal: the GPT-2 pattern does not compile (PCRE2 error %d at %zu)", err, (size_t)off);
    pcre2_jit_compile(b->re, PCRE2_JIT_COMPLETE);  // optional: falls back to the interpreter
    b->md = pcre2_match_data_create_from_pattern(b->re, NULL);
    LMP_CHECK(b->md, "out of memory");
    b->cache_cap = 1 << 16;
    b->cache_slot = lmp_calloc(b->cache_cap * sizeof *b->cache_slot);
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
    lmp_die("%s: no GPT-2 vocabulary there (expected vocab.json + merges.txt, or encoder.json + vocab.bpe)", dir);
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
    lmp_ids_free(&b->cache_ids);
    pcre2_match_data_free(b->md);
    pcre2_code_free(b->re);
    free(b);
}

void lmp_bpe_set_cache(lmp_bpe *b, int on) { b->no_cache = !on; }
int lmp_bpe_vocab_size(const lmp_bpe *b) { return b->n_ids; }
int lmp_bpe_eot(const lmp_bpe *b) { return b->eot; }

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

size_t lmp_bpe_encode(lmp_bpe *b, const char *text, size_t len, lmp_ids *out, size_t *first_bad) {
    size_t n, bad, fb;
    char *s = lmp_utf8_sanitize(text, len, &n, &bad, &fb);
    if (first_bad) *first_bad = fb;
    for (size_t off = 0; off < n;) {
        int rc = pcre2_match(b->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, b->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) lmp_die("internal: PCRE2 match error %d at byte %zu", rc, off);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(b->md);
        encode_piece(b, s + ov[0], ov[1] - ov[0], out);
        off = ov[1];
    }
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
