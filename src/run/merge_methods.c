// merge_methods.c: IA³ and DoRA merged into the base weights (merge_methods.h).
#include "run/merge_methods.h"
#include "adapters/dora.h"
#include "core/util.h"
#include "io/peft.h"

#include <stdlib.h>
#include <string.h>

float **lmp_merge_norms(lmp_model *m) {
    float **n = lmp_calloc((size_t)(m->reg.n_rec + 1) * sizeof *n);
    for (int i = 0; i < m->n_ad; i++) {
        lmp_adapter *a = m->ad[i];
        if (strcmp(a->method->name, "dora")) continue;
        n[a->rec] = lmp_malloc((size_t)m->reg.rec[a->rec].out * sizeof(float));
        lmp_dora_norms(a, n[a->rec]);
    }
    return n;
}

void lmp_merge_norms_free(const lmp_model *m, float **norms) {
    for (int i = 0; norms && i < m->reg.n_rec; i++) free(norms[i]);
    free(norms);
}

// Global (input, output - out_offset) of local element (i, j) of weight p.
static void where(const lmp_param *p, const lmp_adapter_rec *rec, int64_t i, int64_t j, int conv1d,
                  int64_t *in, int64_t *out) {
    int64_t gi = p->split_dim == 0 ? lmp_param_split_pos(p, i) : i;
    int64_t gj = p->split_dim == 1 ? lmp_param_split_pos(p, j) : j;
    *in = conv1d ? gi : gj;
    *out = (conv1d ? gj : gi) - rec->out_offset;
}

static void dora_weight(const lmp_registry *r, const lmp_adapter_rec *rec, const lmp_param *p, float *buf,
                        const float *norm, int conv1d) {
    const float *A = lmp_rec_tensor(r, rec, 0)->data, *B = lmp_rec_tensor(r, rec, 1)->data;
    const float *m = lmp_rec_tensor(r, rec, 2)->data;
    LMP_CHECK(norm, "merge: no norms of DoRA module %s", rec->name);
    int64_t rows = p->local_shape[0], cols = p->local_shape[1];
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t in, o;
            where(p, rec, i, j, conv1d, &in, &o);
            if (o < 0 || o >= rec->out) continue;
            float d = 0.0f;
            for (int64_t k = 0; k < rec->r; k++) d += B[o * rec->r + k] * A[k * rec->in + in];
            float *w = buf + i * cols + j;
            *w = (*w + d * rec->scale) * (m[o] / norm[o]);
        }
}

static void ia3_param(const lmp_adapter_rec *rec, const lmp_param *p, const float *l, float *buf,
                      int conv1d, int bias) {
    if (bias) {  // (W0 x + b) ⊙ l: the bias too (output scaling only)
        for (size_t j = 0; j < p->numel; j++) {
            int64_t o = (p->split_dim == 0 ? lmp_param_split_pos(p, (int64_t)j) : (int64_t)j) - rec->out_offset;
            if (o >= 0 && o < rec->out) buf[j] *= l[o];
        }
        return;
    }
    int64_t rows = p->local_shape[0], cols = p->local_shape[1];
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t in, o;
            where(p, rec, i, j, conv1d, &in, &o);
            if (rec->r) buf[i * cols + j] *= l[in];  // feed-forward: input i
            else if (o >= 0 && o < rec->out) buf[i * cols + j] *= l[o];
        }
}

int lmp_merge_method(const lmp_registry *r, const lmp_adapter_rec *rec, const lmp_param *p, float *buf,
                     const float *norm) {
    int dora = !strcmp(rec->method, "dora"), ia3 = !strcmp(rec->method, "ia3");
    if (!dora && !ia3) return 0;
    char bias_name[LMP_NAME_MAX + 8];
    int weight = !strcmp(rec->base, p->name) && p->ndim == 2;
    int bias = ia3 && !rec->r && !strcmp(lmp_fmt(bias_name, sizeof bias_name, "%s.bias", rec->module), p->name);
    if (!weight && !bias) return 1;
    int conv1d = lmp_peft_naming_of_module(rec->module)->fan_in_fan_out;
    if (dora) dora_weight(r, rec, p, buf, norm, conv1d);
    else ia3_param(rec, p, lmp_rec_tensor(r, rec, 0)->data, buf, conv1d, bias);
    return 1;
}
