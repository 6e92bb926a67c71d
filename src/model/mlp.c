// mlp.c: a block's MLP (mlp.h).
#include "model/mlp.h"
#include "core/prof.h"
#include "core/util.h"
#include "model/kernels.h"

#include <string.h>

// Llama family: gate_proj, up_proj (H, C) into gate | up columns of h, down_proj (C, H).
static void register_gated(lmp_mlp *m, const lmp_arch *a, lmp_registry *reg, int l,
                           const lmp_comm *c, int train) {
    char name[LMP_NAME_MAX];
    m->h_w = 2 * m->H_l;
    lmp_linear_register_oi(&m->gate, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_GATE], l),
                           a->n_embd, a->mlp_hidden, 0, a->mlp_bias, m->h_w, train, c);
    lmp_linear_register_oi(&m->in, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_IN], l),
                           a->n_embd, a->mlp_hidden, 0, a->mlp_bias, m->h_w, train, c);
    lmp_linear_register_oi(&m->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_OUT], l),
                           a->mlp_hidden, a->n_embd, 1, a->mlp_bias, 0, train, c);
}

void lmp_mlp_register(lmp_mlp *m, const lmp_arch *a, lmp_registry *reg, int l, const lmp_comm *c,
                      int train) {
    m->kind = a->mlp;
    m->H_l = a->mlp_hidden / c->tp_size;
    m->h_w = m->H_l;
    if (a->mlp == LMP_MLP_GATED_SILU) {
        register_gated(m, a, reg, l, c, train);
        return;
    }
    char name[LMP_NAME_MAX];
    lmp_linear_register(&m->in, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_IN], l),
                        a->n_embd, a->mlp_hidden, 1, NULL, 0, a->mlp_bias, train, c);
    lmp_linear_register(&m->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_OUT], l),
                        a->mlp_hidden, a->n_embd, 1, NULL, 1, a->mlp_bias, train, c);
}

void lmp_mlp_acts(lmp_mlp *m, lmp_acts *t, size_t N) {
    lmp_acts_add(t, &m->h, N * m->h_w);
    lmp_acts_add(t, &m->h_act, N * m->H_l);
}

void lmp_mlp_forward(lmp_mlp *m, float *out, const float *x, lmp_run *r) {
    int N = r->B * r->T;
    if (m->kind == LMP_MLP_GATED_SILU) {
        lmp_linear_forward(&m->gate, m->h, x, N, r);
        lmp_linear_forward(&m->in, m->h + m->H_l, x, N, r);
        LMP_PROF(LMP_PROF_ELEM, lmp_swiglu_forward(m->h_act, m->h, N, m->H_l));
    } else {
        lmp_linear_forward(&m->in, m->h, x, N, r);
        LMP_PROF(LMP_PROF_ELEM, lmp_gelu_forward(m->h_act, m->h, (size_t)N * m->H_l));
    }
    lmp_linear_forward(&m->out, out, m->h_act, N, r);
}

void lmp_mlp_backward(lmp_mlp *m, float *dx, const float *dout, const float *x, lmp_run *r) {
    int N = r->B * r->T;
    lmp_linear_backward(&m->out, r->dh_act, dout, m->h_act, N, r);
    memset(r->dh, 0, (size_t)N * m->h_w * sizeof(float));
    if (m->kind != LMP_MLP_GATED_SILU) {
        LMP_PROF(LMP_PROF_ELEM, lmp_gelu_backward(r->dh, m->h, r->dh_act, (size_t)N * m->H_l));
        lmp_linear_backward(&m->in, dx, r->dh, x, N, r);
        return;
    }
    LMP_PROF(LMP_PROF_ELEM, lmp_swiglu_backward(r->dh, m->h, r->dh_act, N, m->H_l));
    // gate and up share the input: their gradients sum into dx, reduced over tp once.
    memset(dx, 0, (size_t)N * m->in.in_l * sizeof(float));
    lmp_linear_backward_part(&m->gate, dx, r->dh, x, N, r);
    lmp_linear_backward_part(&m->in, dx, r->dh + m->H_l, x, N, r);
    lmp_tp_reduce(r, dx, N, m->in.in_l);
}
