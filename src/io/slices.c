// slices.c: a registry entry's local slice as blocks of its global tensor.
#include "io/slices.h"

#include <stddef.h>

void lmp_for_each_block(const lmp_param *p, lmp_block_fn fn, void *ctx) {
    int64_t rows = p->ndim == 2 ? p->shape[0] : 1, cols = p->ndim == 2 ? p->shape[1] : p->shape[0];
    int sd = p->split_dim < 0 ? -1 : (p->ndim == 2 ? p->split_dim : 1);
    int64_t lcols = p->ndim == 2 ? p->local_shape[1] : p->local_shape[0];
    int bf = p->h != NULL;
    size_t es = bf ? sizeof(uint16_t) : sizeof(float);
    char *base = bf ? (char *)p->h : (char *)p->data;
    if (sd < 0) { fn(ctx, 0, rows, 0, cols, base, cols, bf); return; }
    int64_t w = 0;  // local position of block g along the split dim
    for (int g = 0; g < p->groups; g++) {
        int64_t a = lmp_param_group_start(p, g) + p->goff[g], n = p->glen[g];
        if (n == 0) continue;
        if (sd == 0) fn(ctx, a, n, 0, cols, base + (size_t)w * lcols * es, lcols, bf);
        else fn(ctx, 0, rows, a, n, base + (size_t)w * es, lcols, bf);
        w += n;
    }
}
