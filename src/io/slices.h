// slices.h: which blocks of a global tensor make up this rank's slice of a registry entry.
// The model loaders (HF safetensors, llm.c) read each entry through this one iteration, so
// the registry's split rule (groups, offsets, lengths) is walked in one place.
#ifndef LORAMPI_SLICES_H
#define LORAMPI_SLICES_H
#include <stdint.h>
#include "core/registry.h"

// Reads the block rows [r0, r0+nr) x columns [c0, c0+nc) of the global (rows, cols) matrix
// into dst, whose rows are ldd elements apart: floats, or (bf16 = 1, a bf16 entry) bf16
// values, which a reader fills from the file's bf16 without widening, or rounds to nearest
// even from wider values.
typedef void (*lmp_block_fn)(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, void *dst,
                             int64_t ldd, int bf16);

// Calls fn for the blocks of p's global tensor (2-D view; a 1-D tensor is one row) that make
// up this rank's local slice, with dst inside p->data (p->h for a bf16 entry): the whole tensor when p is not split,
// else one block per non-empty group along the split dimension.
void lmp_for_each_block(const lmp_param *p, lmp_block_fn fn, void *ctx);

#endif
