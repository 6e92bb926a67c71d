// Finite-difference checks of the bottleneck adapters (adapters/bottleneck.h) through the
// adapter interface itself (add_block on a registry, init, the hook calls with their saved
// and scratch buffers): houlsby (series: h <- h + B(h)) and parallel (h <- h + s B(x), s = 4),
// each with GELU and ReLU. Loss L = sum(h_out * R), R fixed random; every element of the
// input (h for houlsby, x for parallel), down.weight, down.bias, up.weight, up.bias against
// central differences in double around an fp32 forward, h = 1e-3; tolerance max |fd - grad|
// <= 1e-2 * max |grad| (+1e-6) per tensor. Also: the init (houlsby truncated normal within
// 2 init_scale, biases 0; parallel W_up = 0, W_down within 1/sqrt(C)), and the record.
#include "testutil.h"
#include "adapters/bottleneck.h"
#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 5, C = 6, M = 3 };

typedef struct {
    lmp_adapter *a;
    float *h0, *x, *h, *R, *saved, *scratch;
} ctx;

static double loss(ctx *c) {
    memcpy(c->h, c->h0, sizeof(float) * N * C);
    const lmp_adapter_method *m = c->a->method;
    lmp_rng_ctx rc = {1, 0, 0, 1};
    if (m->sublayer_forward) m->sublayer_forward(c->a, c->h, c->saved, c->scratch, N, &rc);
    else m->beside_forward(c->a, c->h, c->x, c->saved, c->scratch, N, &rc);
    double s = 0;
    for (int i = 0; i < N * C; i++) s += (double)c->h[i] * c->R[i];
    return s;
}

static void fd_check(const char *what, ctx *c, float *v, const float *grad, size_t n) {
    double maxg = 0, maxe = 0;
    for (size_t i = 0; i < n; i++) {
        float w = v[i], h = 1e-3f;
        v[i] = w + h; double lp = loss(c);
        v[i] = w - h; double lm = loss(c);
        v[i] = w;
        double num = (lp - lm) / ((double)(w + h) - (double)(w - h));
        maxg = fmax(maxg, fabs(grad[i]));
        maxe = fmax(maxe, fabs(num - grad[i]));
    }
    T_CHECK(maxe <= 1e-2 * maxg + 1e-6, "%s: max|fd - grad| = %.3g, max|grad| = %.3g", what, maxe, maxg);
    T_CHECK(maxg > 1e-4, "%s: gradient is all zero", what);
}

static float *randv(size_t n, uint64_t stream) {
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = lmp_rng_normal(17, stream, i);
    return v;
}

// The init of a fresh instance: houlsby near identity, parallel exactly neutral.
static void check_init(const lmp_bottleneck *b, float init_scale) {
    double maxd = 0, maxu = 0, nz = 0;
    for (size_t i = 0; i < b->Wd->numel; i++) maxd = fmax(maxd, fabs(b->Wd->data[i]));
    for (size_t i = 0; i < b->Wu->numel; i++) maxu = fmax(maxu, fabs(b->Wu->data[i]));
    for (size_t i = 0; i < b->bd->numel; i++) nz += b->bd->data[i] != 0;
    for (size_t i = 0; i < b->bu->numel; i++) nz += b->bu->data[i] != 0;
    T_CHECK(nz == 0, "%s: biases not zero at init", b->base.method->name);
    if (b->series)
        T_CHECK(maxd > 0 && maxd <= 2 * init_scale && maxu > 0 && maxu <= 2 * init_scale,
                "houlsby init: max |W_down| %.3g, |W_up| %.3g, expected in (0, 2 * %.3g]", maxd, maxu, init_scale);
    else
        T_CHECK(maxu == 0 && maxd > 0 && maxd <= 1 / sqrt(C), "parallel init: max |W_up| %.3g (expected 0), "
                "|W_down| %.3g (expected in (0, 1/sqrt(C)])", maxu, maxd);
}

static void test(const char *method, int relu) {
    const lmp_adapter_method *meth = lmp_adapter_find(method);
    T_CHECK(meth != NULL, "method %s is not in the table", method);
    if (!meth) return;
    lmp_registry reg;
    lmp_registry_init(&reg, 8);
    lmp_adapter_rec rec = {.method = method, .layer = 0, .slice = -1, .in = C, .out = C};
    snprintf(rec.name, sizeof rec.name, "h.0.mlp.adapter");
    lmp_adapter_opts o = {.size = M, .relu = relu, .init_scale = 1e-3f, .bscale = 4.0f};
    lmp_adapter *a = meth->add_block(&reg, &rec, C, &o);
    lmp_registry_alloc(&reg);
    meth->init(a, &reg, 3, 0);
    lmp_bottleneck *b = (lmp_bottleneck *)a;
    check_init(b, o.init_scale);
    const lmp_adapter_rec *x = &reg.rec[a->rec];
    T_CHECK(x->n_tensor == 4 && x->r == M && x->scale == (b->series ? 1.0f : 4.0f) &&
            !strcmp(reg.p[x->tensor[0]].name, "h.0.mlp.adapter.down.weight") &&
            !strcmp(reg.p[x->tensor[3]].name, "h.0.mlp.adapter.up.bias"),
            "%s: record (%d tensors, r %d, scale %g, first %s)", method, x->n_tensor, x->r, x->scale,
            reg.p[x->tensor[0]].name);
    for (int k = 0; k < reg.n; k++)  // every path carries signal
        for (size_t i = 0; i < reg.p[k].numel; i++) reg.p[k].data[i] = 0.5f * lmp_rng_normal(5, (uint64_t)k, i);
    ctx c = {a, randv(N * C, 1), randv(N * C, 2), calloc(N * C, sizeof(float)), randv(N * C, 3),
             calloc(N * meth->saved_per_row(a), sizeof(float)), calloc(N * meth->scratch_per_row(a), sizeof(float))};
    loss(&c);
    lmp_registry_zero_grad(&reg);
    float *d = malloc(sizeof(float) * N * C);
    lmp_rng_ctx rc = {1, 0, 0, 1};
    if (b->series) {
        memcpy(d, c.R, sizeof(float) * N * C);
        meth->sublayer_backward(a, d, c.saved, c.scratch, N, &rc);
    } else {
        memset(d, 0, sizeof(float) * N * C);
        meth->beside_backward(a, d, c.R, c.x, c.saved, c.scratch, N, &rc);
    }
    char w[200];
    snprintf(w, sizeof w, "%s %s d%s", method, relu ? "relu" : "gelu", b->series ? "h" : "x");
    fd_check(w, &c, b->series ? c.h0 : c.x, d, N * C);
    for (int k = 0; k < 4; k++) {
        lmp_param *p = &reg.p[x->tensor[k]];
        snprintf(w, sizeof w, "%s %s %s", method, relu ? "relu" : "gelu", p->name);
        fd_check(w, &c, p->data, p->grad, p->numel);
    }
    float *owned[] = {c.h0, c.x, c.h, c.R, c.saved, c.scratch, d};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) free(owned[i]);
    meth->free(a);
    lmp_registry_free(&reg);
}

int main(void) {
    for (int relu = 0; relu < 2; relu++) {
        test("houlsby", relu);
        test("parallel", relu);
    }
    return t_finish();
}
