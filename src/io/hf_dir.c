// hf_dir.c: Hugging Face model directories, read slice by slice and written whole.
#include "io/hf_dir.h"
#include "io/safetensors.h"
#include "io/slices.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const lmp_st_file *f; const lmp_st_tensor *t; } st_ctx;

static void st_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst, int64_t ldd) {
    st_ctx *x = ctx;
    if (ldd == nc) { lmp_st_read_block(x->f, x->t, r0, nr, c0, nc, dst); return; }
    for (int64_t r = 0; r < nr; r++) lmp_st_read_block(x->f, x->t, r0 + r, 1, c0, nc, dst + r * ldd);
}

// "(d0, d1, ...)" of a shape into out (size n).
static const char *shape_str(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    out[0] = 0;
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    return out;
}

// The tensor of entry p in f, its shape checked against the registry's.
static const lmp_st_tensor *find_entry(const lmp_st_file *f, const lmp_param *p) {
    char pre[LMP_NAME_MAX + 16];
    lmp_fmt(pre, sizeof pre, "transformer.%s", p->name);
    const lmp_st_tensor *t = lmp_st_find(f, p->name);
    if (!t) t = lmp_st_find(f, pre);
    if (!t) lmp_die("%s: missing tensor %s (or %s)", f->path, p->name, pre);
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
        char a[256], b[256];
        lmp_die("%s: tensor %s has shape (%s), the model config needs (%s)", f->path, t->name,
                shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, p->ndim, p->shape));
    }
    return t;
}

void lmp_hf_load(const char *dir, lmp_registry *reg) {
    char path[4096];
    lmp_path_join(path, sizeof path, dir, "model.safetensors");
    lmp_st_file f;
    lmp_st_open(&f, path);
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        st_ctx x = {&f, find_entry(&f, p)};
        lmp_for_each_block(p, st_block, &x);
    }
    lmp_st_close(&f);
}

void lmp_hf_save_weights(const char *dir, const lmp_registry *reg) {
    lmp_mkdir_p(dir);
    lmp_st_out *t = lmp_malloc((size_t)reg->n * sizeof *t);
    int n = 0;
    for (int i = 0; i < reg->n; i++) {
        const lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        if (p->split_dim >= 0) lmp_die("saving %s as an HF model needs the whole tensor (tp = 1)", p->name);
        t[n++] = (lmp_st_out){p->name, p->ndim, {p->shape[0], p->ndim > 1 ? p->shape[1] : 0}, p->data};
    }
    char path[4096];
    lmp_st_write(lmp_path_join(path, sizeof path, dir, "model.safetensors"), t, n, "{\"format\": \"pt\"}");
    free(t);
}
