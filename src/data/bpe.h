// bpe.h: GPT-2's byte-level BPE tokenizer, encode and decode, reading Hugging Face's
// vocab.json + merges.txt or OpenAI's encoder.json + vocab.bpe (the same data).
// Encoding: the text is checked as UTF-8 (an invalid sequence becomes U+FFFD, the
// "maximal subpart" rule of Unicode and WHATWG, as Python's errors="replace" and Node's
// TextDecoder do), split by GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (through PCRE2, \s being JavaScript's whitespace set, as in the reference encoder), and
// each piece's UTF-8 bytes are merged by rank order of the merges. Pieces are cached.
#ifndef LORAMPI_BPE_H
#define LORAMPI_BPE_H
#include <stddef.h>
#include <stdint.h>

typedef struct lmp_bpe lmp_bpe;

// A growable array of token ids.
typedef struct {
    int *v;
    size_t n, cap;
} lmp_ids;

void lmp_ids_push(lmp_ids *a, int id);
void lmp_ids_free(lmp_ids *a);

// Loads a vocabulary from a directory holding vocab.json + merges.txt or encoder.json +
// vocab.bpe, or else tokenizer.json (lmp_tokenizer_load). Dies naming the file (and
// line/column for JSON) on any error.
lmp_bpe *lmp_bpe_load(const char *dir);
// The same from explicit files.
lmp_bpe *lmp_bpe_load_files(const char *vocab_json, const char *merges_txt);
void lmp_bpe_free(lmp_bpe *b);

// Turns the piece cache on (default) or off (benchmarks compare the two).
void lmp_bpe_set_cache(lmp_bpe *b, int on);

// Loads a Hugging Face tokenizer.json (+ tokenizer_config.json beside it, when there) from
// directory dir, or GPT-2's files (lmp_bpe_load) when dir has no tokenizer.json. See
// data/tokenizer_json.c for what is read and what is refused.
lmp_bpe *lmp_tokenizer_load(const char *dir);
lmp_bpe *lmp_tokenizer_load_files(const char *tokenizer_json, const char *config_json);

// Number of ids (the largest id + 1); the id that ends each document ("<|endoftext|>" for
// GPT-2's files, EOS of tokenizer_config.json for tokenizer.json; -1 when absent); the id
// that begins each document (BOS when the tokenizer adds one; -1 when not).
int lmp_bpe_vocab_size(const lmp_bpe *b);
int lmp_bpe_eot(const lmp_bpe *b);
int lmp_bpe_bos(const lmp_bpe *b);
// Bytes of token id when decoded (0 for an id outside the vocabulary).
int lmp_bpe_token_len(const lmp_bpe *b, int id);
// The id of an added token by its text (or of a vocabulary token by its bytes); -1 if none.
int lmp_bpe_token_id(const lmp_bpe *b, const char *text);

// Appends the ids of text[0, len) to out. Returns the number of invalid UTF-8 sequences
// replaced by U+FFFD; *first_bad (may be NULL) gets the byte offset of the first one.
// "<|endoftext|>" inside text is ordinary text with GPT-2's files, as in GPT-2's encoder;
// a tokenizer.json's added tokens (special or not) are matched in the text, as Hugging Face
// does. Add lmp_bpe_bos / lmp_bpe_eot explicitly around documents.
size_t lmp_bpe_encode(lmp_bpe *b, const char *text, size_t len, lmp_ids *out, size_t *first_bad);

// The bytes of ids[0, n) (malloc'd, NUL-terminated, length in *len). Dies on an id outside
// the vocabulary.
char *lmp_bpe_decode(const lmp_bpe *b, const int *ids, size_t n, size_t *len);

// Replaces invalid UTF-8 in s[0, len) by U+FFFD (EF BF BD) per the maximal-subpart rule;
// returns a malloc'd copy (length in *out_len), the count of replacements in *n_bad and the
// offset of the first in *first_bad.
char *lmp_utf8_sanitize(const char *s, size_t len, size_t *out_len, size_t *n_bad,
                        size_t *first_bad);

#endif
