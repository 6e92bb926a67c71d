// ckpt_checksum.c: the layout-independent checksum of the base weights (see ckpt_hdf5.h).
#include "io/ckpt_hdf5.h"
#include "core/rng.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

// Wrapping sum of hash(name, global index, bits) over p's local elements. The global index
// comes from per-row and per-column maps (the split dim's map jumps between q|k|v blocks).
static uint64_t sum_elements(const lmp_param *p) {
    int nd = p->ndim;
    int64_t rows = nd == 2 ? p->local_shape[0] : 1, cols = p->local_shape[nd - 1];
    int64_t gcols = p->shape[nd - 1];
    int64_t *rmap = lmp_malloc((size_t)rows * sizeof *rmap), *cmap = lmp_malloc((size_t)cols * sizeof *cmap);
    for (int64_t i = 0; i < rows; i++) rmap[i] = i;
    for (int64_t j = 0; j < cols; j++) cmap[j] = j;
    if (p->split_dim >= 0) {
        int64_t *map = p->split_dim == nd - 1 ? cmap : rmap, n = p->split_dim == nd - 1 ? cols : rows;
        for (int64_t w = 0; w < n; w++) map[w] = lmp_param_split_pos(p, w);
    }
    uint64_t h = lmp_hash_str(p->name), s = 0;
    // A bf16 entry's bits widened are the fp32 bits of the same value: the checksum is that
    // of the values, whichever dtype holds them (a checkpoint resumes under either).
    const float *x = p->data;
    const uint16_t *xh = p->h;
    // A sum modulo 2^64 is exact and order-free, so the OpenMP reduction is deterministic.
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            uint32_t bits;
            if (xh) bits = (uint32_t)xh[i * cols + j] << 16;
            else memcpy(&bits, &x[i * cols + j], sizeof bits);
            uint64_t gi = (uint64_t)(rmap[i] * gcols + cmap[j]);
            s += lmp_mix64(h ^ (gi * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)bits << 17));
        }
    free(rmap);
    free(cmap);
    return s;
}

uint64_t lmp_base_checksum(const lmp_registry *r, lmp_comm *c) {
    uint64_t sum = 0;
    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        // Count every global element once: replicas along dp and tp do not contribute.
        if (p->role != LMP_ROLE_BASE || c->dp_rank != 0 || (p->split_dim < 0 && c->tp_rank != 0))
            continue;
        sum += sum_elements(p);
    }
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_UINT64_T, MPI_SUM, c->world));
    return sum;
}
