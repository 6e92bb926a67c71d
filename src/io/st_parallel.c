// st_parallel.c: safetensors layout for the parallel writer (st_parallel.h).
#include "io/st_parallel.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void lmp_st_layout(lmp_pfile *f, const lmp_st_out *t, int n, const char *metadata_json) {
    char *js = lmp_st_header(t, n, f->dtype, metadata_json);
    // The header is padded with spaces to 8 bytes, as lmp_st_write and the safetensors
    // library do, so the data stays aligned.
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    f->head_len = 8 + padded;
    f->head = lmp_malloc(f->head_len);
    uint64_t hl = padded;
    memcpy(f->head, &hl, 8);
    memcpy(f->head + 8, js, jl);
    memset(f->head + 8 + jl, ' ', padded - jl);
    free(js);
    f->t = lmp_calloc((size_t)(n + 1) * sizeof *f->t);
    f->n = n;
    uint64_t off = f->head_len, es = (uint64_t)lmp_pfile_esize(f->dtype);
    for (int i = 0; i < n; i++) {
        int64_t rows = t[i].ndim == 2 ? t[i].shape[0] : 1;
        int64_t cols = t[i].ndim == 2 ? t[i].shape[1] : t[i].ndim == 1 ? t[i].shape[0] : 1;
        f->t[i] = (lmp_pfile_tensor){rows, cols, off, 0};
        off += es * (uint64_t)rows * (uint64_t)cols;
    }
    f->size = off;
}
