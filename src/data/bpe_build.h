// bpe_build.h: building a byte-level BPE tokenizer piece by piece (data/bpe.c), for the
// readers of its files: GPT-2's vocab.json + merges.txt (bpe.c) and Hugging Face's
// tokenizer.json (tokenizer_json.c). Token texts are in GPT-2's byte alphabet (each byte
// shown as one printable character); added tokens are raw UTF-8.
#ifndef LORAMPI_BPE_BUILD_H
#define LORAMPI_BPE_BUILD_H
#include "data/bpe.h"
#include <jansson.h>

lmp_bpe *lmp_bpe_new(void);
void lmp_bpe_init_vocab(lmp_bpe *b, int n_ids);
// The vocabulary {text: id} of a JSON object (ids < 2^24): sizes the tables for the largest
// id (at least min_ids; min_ids < 0 also makes "<|endoftext|>" the end-of-text token, as in
// GPT-2's files). Dies naming path on an id out of range, twice given, or a bad character.
void lmp_bpe_vocab_json(lmp_bpe *b, json_t *vocab, int min_ids, const char *path);
// One token from its text in the byte alphabet (-1: a character outside it) or its bytes.
int lmp_bpe_set_token_text(lmp_bpe *b, int id, const char *text);
void lmp_bpe_set_token_bytes(lmp_bpe *b, int id, const char *bytes, size_t n);
int lmp_bpe_has_id(const lmp_bpe *b, int id);
// After the vocabulary: the bytes -> id table; dies naming path when a byte has no token.
void lmp_bpe_index_vocab(lmp_bpe *b, const char *path);
// Room for n merges, then each by rank; ba and bb: buffers as long as both texts together.
// Returns NULL or what is wrong with the merge.
void lmp_bpe_init_merges(lmp_bpe *b, size_t n);
const char *lmp_bpe_add_merge(lmp_bpe *b, const char *left, const char *right, int rank,
                              char *ba, char *bb);
// The pre-tokenizer pattern (Hugging Face/JavaScript syntax: \s and \S mean JavaScript's
// whitespace); dies naming path when it does not compile.
void lmp_bpe_set_pattern(lmp_bpe *b, const char *pattern, const char *path);
// An added token (n > 0 bytes of raw text): matched in the text before the pattern, longest
// first; it never comes out of merges. Call after lmp_bpe_index_vocab... or before: either.
void lmp_bpe_add_token(lmp_bpe *b, int id, const char *content, size_t n);
// ignore_merges: a piece found whole in the vocabulary is that token; nfc: NFC-normalize the
// text between added tokens; bos: the id to begin documents with (-1: none); eot: the id to
// end them with (-1: none).
void lmp_bpe_set_options(lmp_bpe *b, int ignore_merges, int nfc, int bos, int eot);

// NFC of UTF-8 s[0, n) (ICU): a malloc'd string (length in *out_n), or NULL when s is ASCII
// (its own NFC). Dies on an ICU error.
char *lmp_nfc(const char *s, size_t n, size_t *out_n);

#endif
