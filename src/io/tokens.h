// tokens.h: llm.c token files. A 256 int32 header (magic 20240520, version, token count),
// then the tokens. Version 1 is llm.c's format: uint16 tokens. Version 2 (lorampi) adds one
// uint8 loss mask per token after the tokens: mask[i] = 1 when token i is a training target
// (the prediction of token i counts in the loss); version 1 files mean every token counts.
// Versions 3 and 4 (lorampi) are 1 and 2 with uint32 tokens, for vocabularies of more than
// 65536 ids (Llama 3: 128256, Qwen3: 151669); the writer picks them by vocabulary size.
#ifndef LORAMPI_TOKENS_H
#define LORAMPI_TOKENS_H
#include <stddef.h>
#include <stdint.h>

#define LMP_TOKENS_MAGIC 20240520

// Reads a token file of any version, tokens widened to uint32; *mask gets a malloc'd mask
// (NULL for versions 1 and 3; mask may be NULL to ignore it). Dies naming the file on error.
uint32_t *lmp_tokens_read(const char *path, size_t *count, uint8_t **mask);
// The same, mapped read-only instead of read: ranks on one node share the pages, and each
// touches only the windows it uses. The tokens are uint16 (*width 2) or uint32 (*width 4).
// Release with munmap(*map, *map_len).
const void *lmp_tokens_map(const char *path, size_t *count, int *width, const uint8_t **mask,
                           void **map, size_t *map_len);
// Writes version 1 (mask NULL) or version 2 (with mask).
void lmp_tokens_write(const char *path, const uint16_t *tok, const uint8_t *mask, size_t count);
// Writes ids of a vocabulary of vocab_size ids: versions 1/2 when vocab_size <= 65536, else
// 3/4 (uint32). Dies when an id is negative or not below vocab_size.
void lmp_tokens_write_ids(const char *path, const int *ids, const uint8_t *mask, size_t count,
                          int vocab_size);

#endif
