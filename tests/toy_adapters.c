// toy_adapters.c: see toy_adapters.h.
#include "toy_adapters.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmp_adapter base;
    lmp_param *p, *q;   // series: s, t; parallel: w, c
    int C;
} toy;

static lmp_adapter *toy_add(lmp_registry *reg, const lmp_adapter_rec *rec, int C,
                            const lmp_adapter_opts *o, const lmp_adapter_method *m,
                            const char *pn, const char *qn) {
    toy *a = lmp_calloc(sizeof *a);
    lmp_adapter_rec *x = lmp_registry_add_rec(reg, rec);
    a->base.method = m;
    a->base.rec = (int)(x - reg->rec);
    a->C = C;
    char name[LMP_NAME_MAX + 8];
    int64_t shape[1] = {C};
    a->p = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.%s", rec->name, pn), 1, shape, -1, 1,
                            0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SAME, 0);
    lmp_registry_attach(reg, x, a->p);
    a->q = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.%s", rec->name, qn), 1, shape, -1, 1,
                            0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SAME, 0);
    lmp_registry_attach(reg, x, a->q);
    return &a->base;
}
static lmp_adapter *series_add(lmp_registry *reg, const lmp_adapter_rec *rec, int C, const lmp_adapter_opts *o) {
    return toy_add(reg, rec, C, o, &toy_series_method, "s", "t");
}
static lmp_adapter *parallel_add(lmp_registry *reg, const lmp_adapter_rec *rec, int C, const lmp_adapter_opts *o) {
    return toy_add(reg, rec, C, o, &toy_parallel_method, "w", "c");
}
static void toy_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    toy *t = (toy *)a;
    memset(t->p->data, 0, t->p->numel * sizeof(float));
    memset(t->q->data, 0, t->q->numel * sizeof(float));
}
static size_t series_saved(const lmp_adapter *a) { return (size_t)((const toy *)a)->C; }
static size_t none(const lmp_adapter *a) { return 0; }
static void toy_free(lmp_adapter *a) { free(a); }

static void series_fwd(lmp_adapter *a, float *h, float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    toy *t = (toy *)a;
    memcpy(saved, h, (size_t)N * t->C * sizeof(float));
    for (int n = 0; n < N; n++)
        for (int j = 0; j < t->C; j++) h[n * t->C + j] = h[n * t->C + j] * (1 + t->p->data[j]) + t->q->data[j];
}
static void series_bwd(lmp_adapter *a, float *dh, const float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    toy *t = (toy *)a;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < t->C; j++) {
            float g = dh[n * t->C + j];
            t->p->grad[j] += g * saved[n * t->C + j];
            t->q->grad[j] += g;
            dh[n * t->C + j] = g * (1 + t->p->data[j]);
        }
}
static void parallel_fwd(lmp_adapter *a, float *h, const float *x, float *saved, float *scratch, int N,
                         const lmp_rng_ctx *rc) {
    toy *t = (toy *)a;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < t->C; j++) h[n * t->C + j] += tanhf(x[n * t->C + j]) * t->p->data[j] + t->q->data[j];
}
static void parallel_bwd(lmp_adapter *a, float *dx, const float *dh, const float *x, const float *saved,
                         float *scratch, int N, const lmp_rng_ctx *rc) {
    toy *t = (toy *)a;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < t->C; j++) {
            float g = dh[n * t->C + j], th = tanhf(x[n * t->C + j]);
            t->p->grad[j] += g * th;
            t->q->grad[j] += g;
            dx[n * t->C + j] += g * t->p->data[j] * (1 - th * th);
        }
}

const lmp_adapter_method toy_series_method = {
    .name = "toy_series", .hooks = LMP_HOOK_SUBLAYER, .add_block = series_add, .init = toy_init,
    .saved_per_row = series_saved, .scratch_per_row = none, .sublayer_forward = series_fwd,
    .sublayer_backward = series_bwd, .free = toy_free,
};
const lmp_adapter_method toy_parallel_method = {
    .name = "toy_parallel", .hooks = LMP_HOOK_BESIDE, .add_block = parallel_add, .init = toy_init,
    .saved_per_row = none, .scratch_per_row = none, .beside_forward = parallel_fwd,
    .beside_backward = parallel_bwd, .free = toy_free,
};

void toy_adapters_register(void) {
    if (lmp_adapter_find("toy_series")) return;
    lmp_adapter_add_method(&toy_series_method);
    lmp_adapter_add_method(&toy_parallel_method);
}
