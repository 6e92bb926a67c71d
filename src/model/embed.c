// embed.c: vocab-parallel embedding and tied LM head (embed.h).
#include "model/embed.h"
#include "core/prof.h"
#include "core/util.h"
#include "core/wgemm.h"
#include "model/kernels.h"
#include "model/tp_linear.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lmp_embed_register(lmp_embed *e, const lmp_arch *a, lmp_registry *reg, const lmp_comm *c,
                        int train) {
    int64_t V = a->vocab_size, off, len;
    lmp_part(V, c->tp_size, c->tp_rank, &off, &len);
    e->C = a->n_embd;
    e->v0 = (int)off;
    e->V_l = (int)len;
    lmp_split s = lmp_split_even(0, 1, &V, c->tp_size, c->tp_rank);
    e->wte = lmp_add_base(reg, train, a->wte, 2, V, e->C, &s, LMP_GRAD_SHARD, 1);
    // An untied head (lm_head.weight, (V, C)) is split like the embedding: vocab-parallel.
    e->head = a->tied_head ? e->wte : lmp_add_base(reg, train, a->head, 2, V, e->C, &s, LMP_GRAD_SHARD, 1);
    // [model] dtype = bf16: frozen token embedding and head in bf16 too (the lookup widens
    // its rows; the head's GEMMs go through wgemm.h). Positions (wpe) are small: fp32.
    e->wte->bf16 = e->head->bf16 = !train && reg->frozen_bf16;
    e->wpe = a->pos == LMP_POS_LEARNED
                 ? lmp_add_base(reg, train, a->wpe, 2, a->n_ctx, e->C, NULL, LMP_GRAD_TP_SAME, 1)
                 : NULL;
}

// Rows of logits formed at once, never (N, V): at least 4M floats, and up to 256 rows within
// 16M floats (64 MB). Each chunk's two products re-pack the whole head weight (V_l x C), so
// few rows waste time on packing: GPT-2's head (V = 50257) ran its products at 70-83 GFLOP/s
// with the 83 rows of 4M floats and at 97-103 with 256 rows (1 thread, CPU time; README,
// Benchmarks).
static int logit_chunk(int V_l, int N) {
    int small = (int)(((size_t)1 << 22) / (size_t)V_l), big = (int)(((size_t)1 << 24) / (size_t)V_l);
    int chunk = big < 256 ? big : 256;
    if (chunk < small) chunk = small;
    if (chunk < 1) chunk = 1;
    return chunk > N ? N : chunk;
}

void lmp_embed_acts(lmp_embed *e, lmp_acts *t, int B, int T) {
    size_t N = (size_t)B * T;
    e->chunk = logit_chunk(e->V_l, (int)N);
    lmp_acts_add(t, &e->encoded, N * e->C);
    lmp_acts_add(t, &e->logits, (size_t)e->chunk * e->V_l);
}

// lmp_embedding_forward for a bf16 table: out (N, C) = wte_l[token - v0] widened (0 for a
// token of another rank's shard) + wpe row.
static void embedding_forward_bf16(float *out, const int *tokens, const uint16_t *wte, const float *wpe,
                                   int B, int T, int C, int v0, int Vl) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < B * T; n++) {
        float *o = out + (size_t)n * C;
        int v = tokens[n] - v0, in = v >= 0 && v < Vl;
        const float *p = wpe ? wpe + (size_t)(n % T) * C : NULL;
        for (int i = 0; i < C; i++)
            o[i] = (in ? lmp_bf16_to_f32(wte[(size_t)v * C + i]) : 0.0f) + (p ? p[i] : 0.0f);
    }
}

void lmp_embed_forward(lmp_embed *e, const int *tokens, lmp_run *r) {
    lmp_comm *c = r->comm;
    const float *wpe = c->tp_rank == 0 && e->wpe ? e->wpe->data + (size_t)r->pos0 * e->C : NULL;
    if (e->wte->h)
        LMP_PROF(LMP_PROF_EMBED, embedding_forward_bf16(e->encoded, tokens, e->wte->h, wpe, r->B, r->T, e->C,
                                                        e->v0, e->V_l));
    else
        LMP_PROF(LMP_PROF_EMBED, lmp_embedding_forward(e->encoded, tokens, e->wte->data, wpe, r->B,
                                                       r->T, e->C, e->v0, e->V_l));
    // Sequence parallelism: reduce-scattered, this rank's rows first (the blocks' input).
    lmp_tp_reduce(r, e->encoded, r->B * r->T, e->C);
}

void lmp_embed_backward(lmp_embed *e, const float *dout, const int *tokens, lmp_run *r) {
    float *dwpe = e->wpe && e->wpe->grad ? e->wpe->grad + (size_t)r->pos0 * e->C : NULL;
    LMP_PROF(LMP_PROF_EMBED, lmp_embedding_backward(e->wte->grad, dwpe, dout, tokens, r->B, r->T, e->C,
                                                    e->v0, e->V_l));
}

// Loss of one chunk of nc rows from row n0: statistics, global max and log-sum-exp.
static double chunk_loss(lmp_embed *e, const float *x, int n0, int nc, const int *targets,
                         const float *scale, lmp_run *r) {
    lmp_comm *c = r->comm;
    int C = e->C, Vl = e->V_l;
    double *mx = e->xstat, *se = mx + nc, *tg = se + nc, *gmx = tg + nc, loss = 0.0;
    // logits (nc, Vl) = x (nc, C) . wte_l^T (the head stored (out, in) = (Vl, C))
    LMP_PROF(LMP_PROF_HEAD, lmp_wgemm(e->head, 1, 0, e->logits, Vl, x + (size_t)n0 * C, C, nc, 0.0f));
    LMP_PROF(LMP_PROF_XENT, lmp_xent_stats(mx, se, tg, e->logits, Vl, targets + n0, nc, Vl, e->v0));
    memcpy(gmx, mx, nc * sizeof(double));
    lmp_allreduce_d(c, gmx, nc, MPI_MAX, c->tp);
    for (int i = 0; i < nc; i++) se[i] *= exp(mx[i] - gmx[i]);
    lmp_allreduce_d(c, se, 2 * (size_t)nc, MPI_SUM, c->tp);  // sumexp and target logit
    for (int i = 0; i < nc; i++) {
        se[i] = log(se[i]);
        loss += (double)scale[n0 + i] * (se[i] + gmx[i] - tg[i]);
    }
    return loss;
}

double lmp_head_loss(lmp_embed *e, const float *x, float *dx, const int *targets,
                     const float *scale, int backward, lmp_run *r) {
    int N = r->B * r->T, C = e->C, Vl = e->V_l;
    double loss = 0.0;
    if (backward) memset(dx, 0, (size_t)N * C * sizeof(float));
    for (int n0 = 0; n0 < N; n0 += e->chunk) {
        int nc = N - n0 < e->chunk ? N - n0 : e->chunk;
        loss += chunk_loss(e, x, n0, nc, targets, scale, r);
        if (!backward) continue;
        // The chunk's logits become their gradients right away, so no (N,V) tensor exists.
        double *gmx = e->xstat + 3 * nc, *lse = e->xstat + nc;
        LMP_PROF(LMP_PROF_XENT, lmp_xent_grad(e->logits, Vl, targets + n0, gmx, lse, scale + n0, nc, Vl, e->v0));
        if (lmp_prof_on) lmp_prof_push(LMP_PROF_HEAD);
        // dx (nc, C) += dlogits (nc, Vl) . wte_l (Vl, C): partial over vocab shards
        lmp_wgemm(e->head, 1, 1, dx + (size_t)n0 * C, C, e->logits, Vl, nc, 1.0f);
        if (e->head->grad)  // dwte_l (Vl, C) += dlogits^T (Vl, nc) . x (nc, C)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Vl, C, nc, 1.0f, e->logits, Vl,
                        x + (size_t)n0 * C, C, 1.0f, e->head->grad, C);
        if (lmp_prof_on) lmp_prof_pop();
    }
    if (backward) lmp_tp_reduce(r, dx, N, C);  // sequence parallelism: this rank's rows first
    return loss;
}

void lmp_head_logits(lmp_embed *e, const float *x, float *logits, int V, lmp_run *r) {
    int N = r->B * r->T, C = e->C, tp = r->comm->tp_size;
    // Each rank computes its vocab columns; gather them row by row into (N, V).
    float *loc = lmp_malloc((size_t)N * e->V_l * sizeof(float));
    lmp_wgemm(e->head, 1, 0, loc, e->V_l, x, C, N, 0.0f);
    if (tp == 1) {
        memcpy(logits, loc, (size_t)N * V * sizeof(float));
        free(loc);
        return;
    }
    int *counts = lmp_malloc(tp * sizeof(int)), *displs = lmp_malloc(tp * sizeof(int));
    for (int q = 0; q < tp; q++) {
        int64_t off, len;
        lmp_part(V, tp, q, &off, &len);
        displs[q] = (int)off;
        counts[q] = (int)len;
    }
    for (int n = 0; n < N; n++)
        LMP_CHECK_MPI(MPI_Allgatherv(loc + (size_t)n * e->V_l, e->V_l, MPI_FLOAT,
                                     logits + (size_t)n * V, counts, displs, MPI_FLOAT,
                                     r->comm->tp));
    free(counts);
    free(displs);
    free(loc);
}
