// mlp.c: a block's MLP (mlp.h).
#include "model/mlp.h"
#include "core/util.h"
#include "model/kernels.h"

#include <string.h>

void lmp_mlp_register(lmp_mlp *m, const lmp_arch *a, lmp_registry *reg, int l, const lmp_comm *c,
                      int train) {
    m->kind = a->mlp;
    m->H_l = a->mlp_hidden / c->tp_size;
    char name[LMP_NAME_MAX];
    lmp_linear_register(&m->in, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_IN], l),
                        a->n_embd, a->mlp_hidden, 1, NULL, 0, a->mlp_bias, train, c);
    lmp_linear_register(&m->out, reg, lmp_fmt(name, sizeof name, a->site[LMP_SITE_MLP_OUT], l),
                        a->mlp_hidden, a->n_embd, 1, NULL, 1, a->mlp_bias, train, c);
}

void lmp_mlp_acts(lmp_mlp *m, lmp_acts *t, size_t N) {
    lmp_acts_add(t, &m->h, N * m->H_l);
    lmp_acts_add(t, &m->h_act, N * m->H_l);
}

void lmp_mlp_forward(lmp_mlp *m, float *out, const float *x, lmp_run *r) {
    int N = r->B * r->T;
    lmp_linear_forward(&m->in, m->h, x, N, r->comm, r->rc, r->ad_scratch);
    lmp_gelu_forward(m->h_act, m->h, (size_t)N * m->H_l);
    lmp_linear_forward(&m->out, out, m->h_act, N, r->comm, r->rc, r->ad_scratch);
}

void lmp_mlp_backward(lmp_mlp *m, float *dx, const float *dout, const float *x, lmp_run *r) {
    int N = r->B * r->T;
    lmp_linear_backward(&m->out, r->dh_act, dout, m->h_act, N, r->comm, r->rc, r->ad_scratch);
    memset(r->dh, 0, (size_t)N * m->H_l * sizeof(float));
    lmp_gelu_backward(r->dh, m->h, r->dh_act, (size_t)N * m->H_l);
    lmp_linear_backward(&m->in, dx, r->dh, x, N, r->comm, r->rc, r->ad_scratch);
}
