// data.h: batches from llm.c token shards. Sequence windows of T+1 tokens are cut at
// multiples of T and visited in a seeded random order, reshuffled each epoch. The window of
// global sequence index i is a pure function of (seed, i), so every layout sees the same
// global batch and a resumed run continues with the same batches.
#ifndef LORAMPI_DATA_H
#define LORAMPI_DATA_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char path[1024];
    uint16_t *tok;
    size_t n;             // tokens in the file
    int T;
    int64_t n_windows;    // (n-1)/T
    uint64_t seed;
    int shuffle;
    int64_t *perm, perm_epoch;
} lmp_loader;

// Opens a token file for sequences of T tokens; dies naming the file when it holds fewer
// than T+1 tokens, or a token is >= vocab_size.
void lmp_loader_open(lmp_loader *d, const char *path, int T, int vocab_size, uint64_t seed,
                     int shuffle);
void lmp_loader_close(lmp_loader *d);
// Inputs and next-token targets (T each) of global sequence index `idx`.
void lmp_loader_get(lmp_loader *d, int64_t idx, int *inp, int *tgt);

#endif
