// registry.c: the parameter table and its single allocations.
#include "core/registry.h"
#include "core/bf16.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>

void lmp_registry_init(lmp_registry *r, int capacity) {
    memset(r, 0, sizeof *r);
    r->cap = capacity;
    r->cur_block = -1;
    r->p = lmp_calloc((size_t)capacity * sizeof *r->p);
}

void lmp_registry_free(lmp_registry *r) {
    free(r->p);
    free(r->frozen_mem);
    free(r->frozen16_mem);
    free(r->train_mem);
    free(r->grad_mem);
    free(r->m_mem);
    free(r->v_mem);
    free(r->rec);
    memset(r, 0, sizeof *r);
}

void lmp_part(int64_t n, int parts, int p, int64_t *off, int64_t *len) {
    *off = n * p / parts;
    *len = n * (p + 1) / parts - *off;
}

lmp_split lmp_split_even(int dim, int groups, const int64_t *size, int parts, int p) {
    lmp_split s = {dim, groups, {0}, {0}, {0}};
    for (int g = 0; g < groups; g++) {
        s.size[g] = size[g];
        lmp_part(size[g], parts, p, &s.off[g], &s.len[g]);
    }
    return s;
}

lmp_split lmp_split_none(void) { return (lmp_split){-1, 1, {0}, {0}, {0}}; }

// A split that covers every block whole (tp = 1) is no split: the entry is whole.
static int covers_all(const lmp_split *s) {
    for (int g = 0; g < s->groups; g++)
        if (s->off[g] != 0 || s->len[g] != s->size[g]) return 0;
    return 1;
}

lmp_param *lmp_registry_add_split(lmp_registry *r, const char *name, int ndim,
                                  const int64_t *shape, const lmp_split *split, lmp_role role,
                                  int trainable, lmp_grad_kind kind, int decay) {
    LMP_CHECK(!r->frozen_mem && !r->train_mem, "registry: %s added after allocation", name);
    LMP_CHECK(ndim >= 1 && ndim <= LMP_MAX_DIMS, "registry: %s has %d dims", name, ndim);
    LMP_CHECK(strlen(name) < LMP_NAME_MAX, "registry: name too long: %s", name);
    LMP_CHECK(!lmp_registry_find(r, name), "registry: duplicate tensor %s", name);
    LMP_CHECK(r->n < r->cap, "registry: more than %d entries (adding %s)", r->cap, name);
    lmp_param *p = &r->p[r->n];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    p->numel = 1;
    p->rec = -1;
    p->block = r->cur_block;
    p->groups = 1;
    p->split_dim = -1;
    for (int d = 0; d < ndim; d++) p->shape[d] = p->local_shape[d] = shape[d];
    if (split->dim >= 0) {
        // The block structure is kept even when this rank holds everything (tp = 1): adapters
        // on one q/k/v block find their columns through it.
        int sd = split->dim, G = split->groups;
        int64_t sum = 0, local = 0;
        LMP_CHECK(sd < ndim && G >= 1 && G <= LMP_MAX_GROUPS, "registry: bad split of %s", name);
        for (int g = 0; g < G; g++) {
            LMP_CHECK(split->off[g] >= 0 && split->len[g] >= 0 &&
                      split->off[g] + split->len[g] <= split->size[g], "registry: bad split of %s", name);
            p->gsize[g] = split->size[g];
            p->goff[g] = split->off[g];
            p->glen[g] = split->len[g];
            sum += split->size[g];
            local += split->len[g];
        }
        LMP_CHECK(sum == shape[sd], "registry: blocks of %s do not add up to its dim %d", name, sd);
        p->groups = G;
        if (!covers_all(split)) {
            p->split_dim = sd;
            p->local_shape[sd] = local;
        }
    }
    for (int d = 0; d < ndim; d++) p->numel *= (size_t)p->local_shape[d];
    p->role = role;
    p->trainable = trainable;
    p->grad_kind = kind;
    p->decay = decay;
    r->n++;
    return p;
}

lmp_param *lmp_registry_add(lmp_registry *r, const char *name, int ndim, const int64_t *shape,
                     int split_dim, int groups, int64_t offset, int64_t len,
                     lmp_role role, int trainable, lmp_grad_kind kind, int decay) {
    lmp_split s = lmp_split_none();
    if (split_dim >= 0) {
        s.dim = split_dim;
        s.groups = groups < 1 ? 1 : groups;
        LMP_CHECK(s.groups <= LMP_MAX_GROUPS && shape[split_dim] % s.groups == 0,
                  "registry: bad split of %s", name);
        for (int g = 0; g < s.groups; g++) {
            s.size[g] = shape[split_dim] / s.groups;
            s.off[g] = offset;
            s.len[g] = len;
        }
    }
    return lmp_registry_add_split(r, name, ndim, shape, &s, role, trainable, kind, decay);
}

lmp_adapter_rec *lmp_registry_add_rec(lmp_registry *r, const lmp_adapter_rec *rec) {
    if (r->n_rec == r->cap_rec) {
        // Records are few (one per adapted module); pointers to them are not kept across adds.
        r->cap_rec = r->cap_rec ? 2 * r->cap_rec : 16;
        lmp_adapter_rec *grown = lmp_calloc((size_t)r->cap_rec * sizeof *grown);
        if (r->n_rec) memcpy(grown, r->rec, (size_t)r->n_rec * sizeof *grown);
        free(r->rec);
        r->rec = grown;
    }
    lmp_adapter_rec *x = &r->rec[r->n_rec++];
    *x = *rec;
    x->n_tensor = 0;
    return x;
}

void lmp_registry_attach(lmp_registry *r, lmp_adapter_rec *rec, lmp_param *p) {
    LMP_CHECK(rec->n_tensor < LMP_REC_MAX_TENSORS, "registry: record %s has more than %d tensors", rec->name,
              LMP_REC_MAX_TENSORS);
    rec->tensor[rec->n_tensor++] = (int)(p - r->p);
    p->rec = (int)(rec - r->rec);
}

lmp_param *lmp_rec_tensor(const lmp_registry *r, const lmp_adapter_rec *rec, int k) {
    return &r->p[rec->tensor[k]];
}

// Carves grads, m and v of the trainable entries by (grad kind, block in backward order):
// blocks n_block - 1 down to 0, then the entries of no block, registration order within each.
// Trainable data stays in registration order.
static void carve_grads(lmp_registry *r, const size_t *nk) {
    r->kind_off[0] = 0;
    for (int k = 0; k < 3; k++) {
        if (k) r->kind_off[k] = r->kind_off[k - 1] + nk[k - 1];
        r->kind_len[k] = nk[k];
    }
    size_t g = 0;
    for (int k = 0; k < 3; k++)
        for (int b = r->n_block - 1; b >= -1; b--)
            for (int i = 0; i < r->n; i++) {
                lmp_param *p = &r->p[i];
                if (!p->trainable || (int)p->grad_kind != k || p->block != b) continue;
                p->grad = r->grad_mem + g;
                p->m = r->m_mem + g;
                p->v = r->v_mem + g;
                g += p->numel;
            }
}

int lmp_registry_blocks(const lmp_registry *r) {
    int n = 0;
    for (int i = 0; i < r->n; i++)
        if (r->p[i].block + 1 > n) n = r->p[i].block + 1;
    return n;
}

void lmp_registry_alloc(lmp_registry *r) {
    size_t nf = 0, nh = 0, nt = 0, nk[3] = {0, 0, 0};
    r->n_block = lmp_registry_blocks(r);
    for (int i = 0; i < r->n; i++) {
        if (r->p[i].trainable) { nt += r->p[i].numel; nk[r->p[i].grad_kind] += r->p[i].numel; }
        else if (r->p[i].bf16) nh += r->p[i].numel;
        else nf += r->p[i].numel;
    }
    r->n_frozen = nf;
    r->n_frozen16 = nh;
    r->frozen16_mem = lmp_calloc(nh * sizeof(uint16_t));
    r->n_train = nt;
    r->frozen_mem = lmp_calloc(nf * sizeof(float));
    r->train_mem = lmp_calloc(nt * sizeof(float));
    r->grad_mem = lmp_calloc(nt * sizeof(float));
    r->m_mem = lmp_calloc(nt * sizeof(float));
    r->v_mem = lmp_calloc(nt * sizeof(float));
    size_t of = 0, oh = 0, ot = 0;
    for (int i = 0; i < r->n; i++) {
        lmp_param *p = &r->p[i];
        if (!p->trainable && p->bf16) { p->h = r->frozen16_mem + oh; oh += p->numel; continue; }
        if (!p->trainable) { p->data = r->frozen_mem + of; of += p->numel; continue; }
        p->data = r->train_mem + ot;
        ot += p->numel;
    }
    carve_grads(r, nk);
}

lmp_param *lmp_registry_find(lmp_registry *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->p[i].name, name) == 0) return &r->p[i];
    return NULL;
}

void lmp_registry_zero_grad(lmp_registry *r) {
    if (r->n_train) memset(r->grad_mem, 0, r->n_train * sizeof(float));
}

int64_t lmp_param_global_numel(const lmp_param *p) {
    int64_t n = 1;
    for (int d = 0; d < p->ndim; d++) n *= p->shape[d];
    return n;
}

int64_t lmp_param_group_start(const lmp_param *p, int g) {
    int64_t s = 0;
    for (int k = 0; k < g; k++) s += p->gsize[k];
    return s;
}

int64_t lmp_param_split_pos(const lmp_param *p, int64_t w) {
    int64_t start = 0;
    for (int g = 0; g < p->groups; g++) {
        if (w < p->glen[g]) return start + p->goff[g] + w;
        w -= p->glen[g];
        start += p->gsize[g];
    }
    return -1;  // w outside the local extent
}

int64_t lmp_param_global_index(const lmp_param *p, size_t i) {
    if (p->split_dim < 0) return (int64_t)i;
    int64_t idx[LMP_MAX_DIMS] = {0}, rem = (int64_t)i;
    for (int d = p->ndim - 1; d >= 0; d--) { idx[d] = rem % p->local_shape[d]; rem /= p->local_shape[d]; }
    idx[p->split_dim] = lmp_param_split_pos(p, idx[p->split_dim]);
    int64_t gi = 0;
    for (int d = 0; d < p->ndim; d++) gi = gi * p->shape[d] + idx[d];
    return gi;
}

void lmp_param_get_f32(const lmp_param *p, float *dst) {
    if (p->h) lmp_bf16_to_f32_n(dst, p->h, p->numel);
    else memcpy(dst, p->data, p->numel * sizeof *dst);
}

size_t lmp_registry_frozen_bytes(const lmp_registry *r) {
    return r->n_frozen * sizeof(float) + r->n_frozen16 * sizeof(uint16_t);
}

void lmp_registry_counts(const lmp_registry *r, int64_t *trainable, int64_t *total) {
    int64_t t = 0, a = 0;
    for (int i = 0; i < r->n; i++) {
        int64_t n = lmp_param_global_numel(&r->p[i]);
        a += n;
        if (r->p[i].trainable) t += n;
    }
    if (trainable) *trainable = t;
    if (total) *total = a;
}

const char *lmp_hf_prefix(const char *name) {
    return strncmp(name, "model.", 6) && strncmp(name, "lm_head.", 8) ? "transformer." : "";
}
