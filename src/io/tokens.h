// tokens.h: llm.c token files. A 256 int32 header (magic 20240520, version, token count),
// then uint16 tokens. Version 1 is llm.c's format. Version 2 (lorampi) adds one uint8 loss
// mask per token after the tokens: mask[i] = 1 when token i is a training target (the
// prediction of token i counts in the loss); version 1 files mean every token counts.
#ifndef LORAMPI_TOKENS_H
#define LORAMPI_TOKENS_H
#include <stddef.h>
#include <stdint.h>

#define LMP_TOKENS_MAGIC 20240520

// Reads a token file of either version; *mask gets a malloc'd mask (NULL for version 1;
// mask may be NULL to ignore it). Dies naming the file on error.
uint16_t *lmp_tokens_read(const char *path, size_t *count, uint8_t **mask);
// The same, mapped read-only instead of read: ranks on one node share the pages, and each
// touches only the windows it uses. Release with munmap(*map, *map_len).
const uint16_t *lmp_tokens_map(const char *path, size_t *count, const uint8_t **mask, void **map,
                               size_t *map_len);
// Writes version 1 (mask NULL) or version 2 (with mask).
void lmp_tokens_write(const char *path, const uint16_t *tok, const uint8_t *mask, size_t count);

#endif
