// registry.c: the parameter table and its single allocations.
#include "core/registry.h"
#include "core/util.h"
#include <stdlib.h>
#include <string.h>

void lmp_registry_init(lmp_registry *r, int capacity) {
    memset(r, 0, sizeof *r);
    r->cap = capacity;
    r->p = lmp_calloc((size_t)capacity * sizeof *r->p);
}

void lmp_registry_free(lmp_registry *r) {
    free(r->p);
    free(r->frozen_mem);
    free(r->train_mem);
    free(r->grad_mem);
    free(r->m_mem);
    free(r->v_mem);
    memset(r, 0, sizeof *r);
}

lmp_param *lmp_registry_add(lmp_registry *r, const char *name, int ndim, const int64_t *shape,
                     int split_dim, int groups, int64_t offset, int64_t len,
                     lmp_role role, int trainable, lmp_grad_kind kind, int decay) {
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
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->local_shape[d] = shape[d];
    }
    // A split that covers the whole dim (tp = 1) is no split: the entry is whole.
    if (split_dim >= 0 && offset == 0 && len * (groups < 1 ? 1 : groups) == shape[split_dim])
        split_dim = -1;
    p->split_dim = split_dim;
    p->groups = groups < 1 ? 1 : groups;
    if (split_dim >= 0) {
        LMP_CHECK(split_dim < ndim && shape[split_dim] % p->groups == 0 &&
                  offset >= 0 && len > 0 && offset + len <= shape[split_dim] / p->groups,
                  "registry: bad split of %s", name);
        p->offset = offset;
        p->len = len;
        p->local_shape[split_dim] = len * p->groups;
    }
    for (int d = 0; d < ndim; d++) p->numel *= (size_t)p->local_shape[d];
    p->role = role;
    p->trainable = trainable;
    p->grad_kind = kind;
    p->decay = decay;
    r->n++;
    return p;
}

void lmp_registry_alloc(lmp_registry *r) {
    size_t nf = 0, nt = 0, nk[3] = {0, 0, 0};
    for (int i = 0; i < r->n; i++) {
        if (r->p[i].trainable) { nt += r->p[i].numel; nk[r->p[i].grad_kind] += r->p[i].numel; }
        else nf += r->p[i].numel;
    }
    r->n_frozen = nf;
    r->n_train = nt;
    r->frozen_mem = lmp_calloc(nf * sizeof(float));
    r->train_mem = lmp_calloc(nt * sizeof(float));
    r->grad_mem = lmp_calloc(nt * sizeof(float));
    r->m_mem = lmp_calloc(nt * sizeof(float));
    r->v_mem = lmp_calloc(nt * sizeof(float));
    r->kind_off[0] = 0;
    for (int k = 0; k < 3; k++) {
        if (k) r->kind_off[k] = r->kind_off[k - 1] + nk[k - 1];
        r->kind_len[k] = nk[k];
    }
    // Trainable data follows registration order; grads/m/v are grouped by grad kind so each
    // kind's gradients are one contiguous span for its collective.
    size_t of = 0, ot = 0, ok[3] = {r->kind_off[0], r->kind_off[1], r->kind_off[2]};
    for (int i = 0; i < r->n; i++) {
        lmp_param *p = &r->p[i];
        if (!p->trainable) { p->data = r->frozen_mem + of; of += p->numel; continue; }
        p->data = r->train_mem + ot;
        ot += p->numel;
        size_t g = ok[p->grad_kind];
        ok[p->grad_kind] += p->numel;
        p->grad = r->grad_mem + g;
        p->m = r->m_mem + g;
        p->v = r->v_mem + g;
    }
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

int64_t lmp_param_global_index(const lmp_param *p, size_t i) {
    if (p->split_dim < 0) return (int64_t)i;
    int64_t idx[LMP_MAX_DIMS], rem = (int64_t)i;
    for (int d = p->ndim - 1; d >= 0; d--) { idx[d] = rem % p->local_shape[d]; rem /= p->local_shape[d]; }
    int sd = p->split_dim;
    int64_t G = p->shape[sd] / p->groups;
    int64_t g = idx[sd] / p->len, w = idx[sd] % p->len;
    idx[sd] = g * G + p->offset + w;
    int64_t gi = 0;
    for (int d = 0; d < p->ndim; d++) gi = gi * p->shape[d] + idx[d];
    return gi;
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
