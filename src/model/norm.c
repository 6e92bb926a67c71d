// norm.c: normalisation layers (norm.h); the kernels are in kernels.c.
#include "model/norm.h"
#include "core/prof.h"
#include "core/util.h"
#include "model/kernels.h"
#include "model/run.h"

void lmp_norm_register(lmp_norm *n, const lmp_arch *a, lmp_registry *reg, const char *prefix,
                       int train, lmp_grad_kind kind) {
    char name[LMP_NAME_MAX];
    n->kind = a->norm;
    n->eps = a->norm_eps;
    n->C = a->n_embd;
    n->w = lmp_add_base(reg, train, lmp_fmt(name, sizeof name, "%s.weight", prefix), 1, n->C, 0,
                        NULL, kind, 0);
    n->b = a->norm_bias ? lmp_add_base(reg, train, lmp_fmt(name, sizeof name, "%s.bias", prefix),
                                       1, n->C, 0, NULL, kind, 0)
                        : NULL;
}

void lmp_norm_acts(lmp_norm *n, lmp_acts *t, size_t N) {
    lmp_acts_add(t, &n->out, N * n->C);
    lmp_acts_add(t, &n->mean, N);
    lmp_acts_add(t, &n->rstd, N);
}

static void norm_forward(lmp_norm *n, float *out, const float *x, int N) {
    if (n->kind == LMP_NORM_RMSNORM) {
        lmp_rmsnorm_forward(out, n->rstd, x, n->w->data, N, 1, n->C, n->C, n->eps);
        return;
    }
    lmp_layernorm_forward(out, n->mean, n->rstd, x, n->w->data, n->b->data, N, n->C, n->eps);
}

static void norm_backward(lmp_norm *n, float *dx, const float *dout, const float *x, int N) {
    if (n->kind == LMP_NORM_RMSNORM) {
        lmp_rmsnorm_backward(dx, n->w->grad, dout, x, n->w->data, n->rstd, N, 1, n->C, n->C);
        return;
    }
    lmp_layernorm_backward(dx, n->w->grad, n->b->grad, dout, x, n->w->data, n->mean, n->rstd, N,
                           n->C);
}

void lmp_norm_forward(lmp_norm *n, const float *x, int N) {
    lmp_norm_forward_to(n, n->out, x, N);
}

void lmp_norm_forward_to(lmp_norm *n, float *out, const float *x, int N) {
    LMP_PROF(LMP_PROF_NORM, norm_forward(n, out, x, N));
}

void lmp_norm_backward(lmp_norm *n, float *dx, const float *dout, const float *x, int N) {
    LMP_PROF(LMP_PROF_NORM, norm_backward(n, dx, dout, x, N));
}
