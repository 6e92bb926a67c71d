// data.h: batches from token files (io/tokens.h). Sequence windows of T+1 tokens are cut at
// multiples of T and visited in a seeded random order, reshuffled each epoch. The window of
// global sequence index i is a pure function of (seed, i), so every layout sees the same
// global batch and a resumed run continues with the same batches. Documents and examples
// are packed back to back in the file (separated by <|endoftext|>), so a window may span
// several; attention is not blocked between them. Version-2 files carry a loss mask: only
// targets whose mask is 1 count (instruction tuning trains on responses only).
#ifndef LORAMPI_DATA_H
#define LORAMPI_DATA_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char path[1024];
    const uint16_t *tok16;  // mapped from the file (io/tokens.h): uint16 tokens,
    const uint32_t *tok32;  // or uint32 ones (versions 3 and 4); the other NULL
    size_t n;             // tokens in the file
    int T;
    int64_t n_windows;    // (n-1)/T
    uint64_t seed;
    int shuffle;
    int64_t *perm, perm_epoch;
    const uint8_t *mask;  // loss mask per token; NULL: every target counts
    void *map;
    size_t map_len;
} lmp_loader;

// Opens a token file for sequences of T tokens; dies naming the file when it holds fewer
// than T+1 tokens, a token is >= vocab_size, or its loss mask selects no token.
void lmp_loader_open(lmp_loader *d, const char *path, int T, int vocab_size, uint64_t seed,
                     int shuffle);
void lmp_loader_close(lmp_loader *d);
// Inputs and next-token targets (T each) of global sequence index `idx`, and the targets'
// loss weights (1 or 0 from the mask) in w (may be NULL).
void lmp_loader_get(lmp_loader *d, int64_t idx, int *inp, int *tgt, float *w);
// Number of targets of sequence idx that count in the loss.
int64_t lmp_loader_count(lmp_loader *d, int64_t idx);
// Global sequence index of row b of data-parallel replica dp_rank in global micro-batch
// `micro` of Bg sequences (B = Bg / dp replicas rows each): replicas hold consecutive,
// disjoint parts of every global batch.
static inline int64_t lmp_batch_seq(int64_t micro, int Bg, int dp_rank, int B, int b) {
    return micro * Bg + (int64_t)dp_rank * B + b;
}

#endif
