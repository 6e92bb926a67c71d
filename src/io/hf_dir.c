// hf_dir.c: Hugging Face model directories, read slice by slice and written whole.
#include "io/hf_dir.h"
#include "io/safetensors.h"
#include "io/slices.h"
#include "core/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct { const lmp_st_file *f; const lmp_st_tensor *t; } st_ctx;

static void st_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, void *dst, int64_t ldd,
                     int bf16) {
    st_ctx *x = ctx;
    if (bf16) {
        for (int64_t r = 0; r < nr; r++)
            lmp_st_read_block_bf16(x->f, x->t, r0 + r, 1, c0, nc, (uint16_t *)dst + r * ldd);
        return;
    }
    float *d = dst;
    if (ldd == nc) { lmp_st_read_block(x->f, x->t, r0, nr, c0, nc, d); return; }
    for (int64_t r = 0; r < nr; r++) lmp_st_read_block(x->f, x->t, r0 + r, 1, c0, nc, d + r * ldd);
}

// "(d0, d1, ...)" of a shape into out (size n).
static const char *shape_str(char *out, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    out[0] = 0;
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    return out;
}

// The shape of t against entry p's.
static void check_shape(const lmp_st_file *f, const lmp_st_tensor *t, const lmp_param *p) {
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
        char a[256], b[256];
        lmp_die("%s: tensor %s has shape (%s), the model config needs (%s)", f->path, t->name,
                shape_str(a, sizeof a, t->ndim, t->shape), shape_str(b, sizeof b, p->ndim, p->shape));
    }
}

// A sharded model: model.safetensors.index.json's weight_map names, for every tensor, the
// file holding it (model-0000i-of-0000n.safetensors). Each file is opened once, and each
// rank reads only its slices from them.
static void shards_open(lmp_hf_files *s, const char *dir, const char *index) {
    json_error_t je;
    json_t *o = json_load_file(index, 0, &je);
    if (!o) lmp_die("%s: %s (line %d, column %d)", index, je.text, je.line, je.column);
    json_t *map = json_incref(json_object_get(o, "weight_map"));
    s->map = map;
    json_decref(o);
    if (!json_is_object(map)) lmp_die("%s: no \"weight_map\" object", index);
    size_t cap = json_object_size(map) + 1;
    s->f = lmp_calloc(cap * sizeof *s->f);
    s->names = lmp_calloc(cap * sizeof *s->names);
    s->n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if (!json_is_string(v)) lmp_die("%s: weight_map[\"%s\"] is not a file name", index, key);
        const char *fn = json_string_value(v);
        int k = 0;
        while (k < s->n && strcmp(s->names[k], fn)) k++;
        if (k < s->n) continue;
        if (strchr(fn, '/')) lmp_die("%s: weight_map names %s outside the directory", index, fn);
        char path[4096];
        lmp_st_open(&s->f[s->n], lmp_path_join(path, sizeof path, dir, fn));
        s->names[s->n++] = fn;
    }
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

int lmp_hf_has_weights(const char *dir) {
    char path[4096];
    return exists(lmp_path_join(path, sizeof path, dir, "model.safetensors")) ||
           exists(lmp_path_join(path, sizeof path, dir, "model.safetensors.index.json"));
}

void lmp_hf_open(lmp_hf_files *h, const char *dir) {
    char path[4096];
    memset(h, 0, sizeof *h);
    lmp_path_join(path, sizeof path, dir, "model.safetensors");
    lmp_path_join(h->index, sizeof h->index, dir, "model.safetensors.index.json");
    if (!exists(path) && exists(h->index)) {
        shards_open(h, dir, h->index);
        return;
    }
    h->f = lmp_calloc(sizeof *h->f);
    lmp_st_open(&h->f[0], path);
    h->n = 1;
}

// Name n in h (sharded: through the weight_map); NULL when absent.
static const lmp_st_tensor *find_name(const lmp_hf_files *h, const char *n, const lmp_st_file **f) {
    if (!h->map) {
        *f = &h->f[0];
        return lmp_st_find(&h->f[0], n);
    }
    json_t *v = json_object_get((json_t *)h->map, n);
    if (!v) return NULL;
    int k = 0;
    while (strcmp(h->names[k], json_string_value(v))) k++;
    *f = &h->f[k];
    const lmp_st_tensor *t = lmp_st_find(&h->f[k], n);
    if (!t) lmp_die("%s: missing tensor %s (model.safetensors.index.json puts it there)", h->f[k].path, n);
    return t;
}

const lmp_st_tensor *lmp_hf_find(const lmp_hf_files *h, const char *name, const lmp_st_file **f) {
    char pre[LMP_NAME_MAX + 16];
    const lmp_st_tensor *t = find_name(h, name, f);
    if (!t) t = find_name(h, lmp_fmt(pre, sizeof pre, "transformer.%s", name), f);
    return t;
}

void lmp_hf_close(lmp_hf_files *h) {
    for (int k = 0; k < h->n; k++) lmp_st_close(&h->f[k]);
    free(h->f);
    free(h->names);
    json_decref((json_t *)h->map);
    memset(h, 0, sizeof *h);
}

void lmp_hf_load(const char *dir, lmp_registry *reg) {
    lmp_hf_files h;
    lmp_hf_open(&h, dir);
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        const lmp_st_file *f;
        const lmp_st_tensor *t = lmp_hf_find(&h, p->name, &f);
        if (!t && h.map) lmp_die("%s: weight_map has no tensor %s", h.index, p->name);
        if (!t) lmp_die("%s: missing tensor %s (or transformer.%s)", h.f[0].path, p->name, p->name);
        check_shape(f, t, p);
        st_ctx x = {f, t};
        lmp_for_each_block(p, st_block, &x);
    }
    lmp_hf_close(&h);
}

void lmp_hf_save_weights(const char *dir, const lmp_registry *reg) {
    lmp_mkdir_p(dir);
    lmp_st_out *t = lmp_malloc((size_t)reg->n * sizeof *t);
    int n = 0;
    for (int i = 0; i < reg->n; i++) {
        const lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        if (p->split_dim >= 0) lmp_die("saving %s as an HF model needs the whole tensor (tp = 1)", p->name);
        LMP_CHECK(!p->h, "internal: saving %s, a bf16 (frozen) weight, as an HF model", p->name);
        t[n++] = (lmp_st_out){p->name, p->ndim, {p->shape[0], p->ndim > 1 ? p->shape[1] : 0}, p->data};
    }
    char path[4096];
    lmp_st_write(lmp_path_join(path, sizeof path, dir, "model.safetensors"), t, n, "{\"format\": \"pt\"}");
    free(t);
}
