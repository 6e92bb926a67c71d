// run.h: what one forward/backward of the model hands its components: the process grid, the
// randomness, the batch shape and the scratch buffers the blocks share (carved once in the
// model's activation table).
#ifndef LORAMPI_RUN_H
#define LORAMPI_RUN_H
#include "adapters/adapter.h"
#include "core/comm.h"
#include "core/registry.h"

typedef struct {
    lmp_comm *comm;
    const lmp_rng_ctx *rc;
    int B, T, C;
    // Sequence parallelism in force for this batch (comm.h; [parallel] sequence_parallel with
    // tp > 1): the residual stream, the norms and the block-level adapters hold rows
    // [tp_rank N/tp, (tp_rank+1) N/tp) of the N = B T rows; attention and MLP see all N rows
    // (their input all-gathered into xg, their output reduce-scattered).
    int sp;
    float *xg, *dg;               // sp: (N,C) a norm's output gathered; a gradient gathered
    int pos0;                     // position of row 0 (generation with a cache), else 0
    float *ad_scratch;            // adapters' shared scratch (N x the largest scratch_per_row)
    float *tmp;                   // (N,C) a sublayer's output before the residual add
    // Backward scratch, shared by the blocks.
    float *dres, *dln;            // (N,C) gradient of the residual stream, of a norm's output
    float *dqkv, *dattn;          // (N,qkv_l) (N,NH_l hd)
    float *dqkv_raw;              // (N,qkv_l) before the q/k norm (Qwen3), else empty
    float *att_scratch;           // the attention kernels' tiles: lmp_sdpa_scratch_floats
                                  // (n_prefix, T), two (64, n_prefix+T) per OpenMP thread
    int att_threads;              // ... for this many threads (more would overrun it)
    float *dh, *dh_act;           // (N,H_l) MLP hidden, before and after the activation
                                  // (gated: dh is (N, 2 H_l), gate | up)
} lmp_run;

// Rows of the residual stream this rank holds: N, or N/tp under sequence parallelism.
static inline int lmp_run_rows(const lmp_run *r) {
    return r->sp ? r->B * r->T / r->comm->tp_size : r->B * r->T;
}

// A base (pretrained) tensor: trainable with gradient kind `kind` under full fine-tuning
// (train = 1), else frozen. split NULL: whole on every rank.
lmp_param *lmp_add_base(lmp_registry *reg, int train, const char *name, int ndim, int64_t d0,
                        int64_t d1, const lmp_split *split, lmp_grad_kind kind, int decay);

#endif
