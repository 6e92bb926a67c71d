// plan.h: what a layout costs before it runs: memory per rank and bytes per collective.
#ifndef LORAMPI_PLAN_H
#define LORAMPI_PLAN_H
#include <stddef.h>
#include "core/config.h"

typedef struct {
    int tp, dp, B;                 // layout and this replica's rows
    double frozen, trainable, optim, acts, runtime, total;  // bytes per rank (worst rank)
    double frozen_bf16;            // the part of `frozen` held as bf16 ([model] dtype = bf16)
    double acts_by[3];             // acts under [train] recompute = none, attn, block
    double att_tiles;              // of acts: the attention kernels' per-thread tiles
    int threads;                   // the OpenMP threads they are sized for (this process's)
    double tp_fwd, tp_bwd;         // all-reduce payload per step within a tp group
    int sp;                        // [parallel] sequence_parallel in force (tp > 1)
    double sp_gather;              // its backward's extra all-gathers per step (bytes)
    double grad_world, grad_dp;    // gradient all-reduce payloads per step
    double ckpt;                   // checkpoint file: trainable tensors + AdamW m, v (float32)
    // [parallel] bucket_mb's split (as training makes it; n_bucket 0: one rank or bucket_mb 0):
    // bucket j spans blocks bucket_low[j - 1] - 1 (the last block for j = 0) down to
    // bucket_low[j]; -1 is the rest (embeddings, final norm, head) alone.
    int n_block, n_bucket, bucket_low[LMP_MAX_LAYERS + 1];
    double bucket_bytes[LMP_MAX_LAYERS + 1];
} lmp_plan_t;

// Memory of the rank with the largest shard and collective payloads for `ranks` ranks
// laid out as cfg->parallel.tp x (ranks / tp). Dies naming the problem when the layout is
// impossible (the same checks as training).
void lmp_plan_compute(const lmp_config *cfg, int ranks, lmp_plan_t *p);
// Prints the plan as a table (rank 0).
void lmp_plan_print(const lmp_config *cfg, const lmp_plan_t *p);

// Measured fixed cost of a lorampi process (MPI, OpenBLAS buffers, code), in bytes.
#define LMP_RUNTIME_BYTES (16.0 * 1024 * 1024)

#endif
