// batches.c: global batches through the model (batches.h).
#include "run/batches.h"
#include "core/util.h"

#include <stdlib.h>

void lmp_batches_init(lmp_batches *bb, int Bg, int T, const lmp_comm *c) {
    if (Bg % c->dp_size)
        lmp_die_all("[train] batch_size = %d (the global batch) is not divisible by the %d "
                    "data-parallel replicas", Bg, c->dp_size);
    int B = Bg / c->dp_size;
    *bb = (lmp_batches){B, T, Bg, NULL, NULL, NULL};
    bb->tok = lmp_malloc((size_t)B * T * sizeof(int));
    bb->tgt = lmp_malloc((size_t)B * T * sizeof(int));
    bb->scale = lmp_malloc((size_t)B * T * sizeof(float));
}

void lmp_batches_free(lmp_batches *bb) {
    free(bb->tok);
    free(bb->tgt);
    free(bb->scale);
    bb->tok = bb->tgt = NULL;
    bb->scale = NULL;
}

double lmp_batches_micro(lmp_model *m, lmp_comm *c, lmp_loader *d, lmp_batches *bb, int64_t micro,
                         float weight, uint64_t seed, int backward) {
    for (int b = 0; b < bb->B; b++) {
        int64_t idx = lmp_batch_seq(micro, bb->Bg, c->dp_rank, bb->B, b);
        size_t o = (size_t)b * bb->T;
        lmp_loader_get(d, idx, bb->tok + o, bb->tgt + o, bb->scale + o);
    }
    for (int i = 0; i < bb->B * bb->T; i++) bb->scale[i] *= weight;
    lmp_rng_ctx rc = {seed, (uint64_t)micro,
                      lmp_batch_seq(micro, bb->Bg, c->dp_rank, bb->B, 0) * bb->T, backward};
    return lmp_model_step(m, bb->tok, bb->tgt, bb->scale, &rc, backward);
}

int64_t lmp_batches_targets(lmp_loader *d, int n, int Bg) {
    int64_t count = 0;
    for (int64_t i = 0; i < (int64_t)n * Bg; i++) count += lmp_loader_count(d, i);
    return count;
}

float lmp_batches_weight(lmp_loader *d, int64_t m0, int n, int Bg) {
    int64_t count = 0;
    for (int64_t i = m0 * Bg; i < (m0 + n) * Bg; i++) count += lmp_loader_count(d, i);
    return count ? 1.0f / (float)count : 0.0f;
}

int lmp_batches_available(const lmp_loader *d, int want, int Bg, const char *what) {
    int n = want * (int64_t)Bg > d->n_windows ? (int)(d->n_windows / Bg) : want;
    if (n < 1)
        lmp_die_all("%s holds %lld sequences of %d tokens, fewer than one global batch of %d", what,
                    (long long)d->n_windows, d->T, Bg);
    return n;
}

double lmp_batches_eval(lmp_model *m, lmp_comm *c, lmp_loader *d, lmp_batches *bb, int batches) {
    float w = lmp_batches_weight(d, 0, batches, bb->Bg);
    if (w == 0.0f)
        lmp_warn("validation: the loss mask selects no target in its %d batches: val loss 0 means "
                 "nothing", batches);
    double loss = 0.0;
    for (int k = 0; k < batches; k++) loss += lmp_batches_micro(m, c, d, bb, k, w, 0, 0);
    lmp_allreduce_d(c, &loss, 1, MPI_SUM, c->dp);
    return loss;
}
