// batches.h: global batches from a token file through the model, the way training and
// evaluation both use them: each dp replica takes its rows of global micro-batch k, and the
// loss is the mean over the targets that count (loss mask) in the whole global batch, so the
// number is the same under any tp x dp layout.
#ifndef LORAMPI_BATCHES_H
#define LORAMPI_BATCHES_H
#include <stdint.h>
#include "core/comm.h"
#include "data/data.h"
#include "model/model.h"

typedef struct {
    int B, T, Bg;           // this replica's rows, sequence length, global rows per micro-step
    int *tok, *tgt;         // (B,T)
    float *scale;           // (B,T) loss weight of each target
} lmp_batches;

// Buffers for this dp replica's rows of global batches of Bg rows of T tokens; dies on every
// rank when the dp replicas cannot split Bg ([train] batch_size). lmp_batches_free releases them.
void lmp_batches_init(lmp_batches *bb, int Bg, int T, const lmp_comm *c);
void lmp_batches_free(lmp_batches *bb);
// Fills this replica's rows of global micro-batch `micro` and runs forward (+backward);
// `weight` = 1 / the counted targets of the optimizer step's global batch (lmp_batches_weight).
// Returns this replica's part of the loss.
double lmp_batches_micro(lmp_model *m, lmp_comm *c, lmp_loader *d, lmp_batches *bb, int64_t micro,
                         float weight, uint64_t seed, int backward);
// 1 / (targets that count in global micro-batches [m0, m0 + n)), 0 when none does. Every
// rank computes it over the whole global batch, so no communication is needed.
float lmp_batches_weight(lmp_loader *d, int64_t m0, int n, int Bg);
// Targets that count in global micro-batches [0, n).
int64_t lmp_batches_targets(lmp_loader *d, int n, int Bg);
// The global batches of d an evaluation runs: `want`, or as many as d holds when fewer; dies
// on every rank when d holds not even one ("<what> holds N sequences ...").
int lmp_batches_available(const lmp_loader *d, int want, int Bg, const char *what);
// Mean loss over the counted targets of the first `batches` global batches of d (warns when
// the mask selects none), the same on every rank. Collective.
double lmp_batches_eval(lmp_model *m, lmp_comm *c, lmp_loader *d, lmp_batches *bb, int batches);

#endif
