// comm.h: the tp x dp process grid and the few collectives training needs.
// World rank = dp_rank * tp + tp_rank: consecutive ranks form a tensor-parallel group, so
// with Slurm/Open MPI's default block placement a tp group stays on one node and only the
// small data-parallel gradient all-reduce crosses nodes.
#ifndef LORAMPI_COMM_H
#define LORAMPI_COMM_H
#include <mpi.h>
#include <stddef.h>
#include "core/registry.h"

typedef struct {
    MPI_Comm world, tp, dp;
    int rank, size;
    int tp_rank, tp_size, dp_rank, dp_size;
    double comm_seconds;   // time spent in collectives since the last reset (the bucketed
                           // gradient all-reduce: in its MPI calls only, launch, progress
                           // polls and the final wait, not the time it overlaps the backward)
    double grad_seconds;   // of which the gradient reduction's (lmp_reduce_grads, lmp_buckets_*)
    size_t comm_bytes;     // payload bytes all-reduced since the last reset
} lmp_comm;

// Splits `world` (MPI_COMM_WORLD, or a sub-communicator in tests) into tp x dp; every rank
// dies (lmp_die_all) when tp does not divide its size. The tp and dp communicators return
// errors to the caller (MPI_ERRORS_RETURN) for LMP_CHECK_MPI; `world` keeps its handler.
void lmp_comm_init(lmp_comm *c, MPI_Comm world, int tp);
void lmp_comm_free(lmp_comm *c);
// Gathers every rank's host name and pid to rank 0, which prints one line per host:
// "ranks 0-3 on node1 (tp groups 0-1)". Proof that every rank is up, and the placement.
void lmp_comm_report(lmp_comm *c);

// In-place sums over a communicator; no-ops on a communicator of one rank.
void lmp_allreduce_f(lmp_comm *c, float *buf, size_t n, MPI_Comm comm);
void lmp_allreduce_d(lmp_comm *c, double *buf, size_t n, MPI_Op op, MPI_Comm comm);

// Sequence parallelism ([parallel] sequence_parallel, Megatron): between the tensor-parallel
// sublayers the residual stream is split by rows over the tp group, rank q holding rows
// [q N/tp, (q+1) N/tp) of the N = B T rows. In place: buf (N, width) holds this rank's partial
// sums; afterwards its first N/tp rows hold this rank's rows of the sum (replaces the
// all-reduce of a row-parallel output or a column-parallel input gradient).
void lmp_reduce_scatter_rows(lmp_comm *c, float *buf, size_t N, size_t width);
// out (N, width) = every rank's rows in rank order; mine (N/tp, width) is this rank's, and
// may already sit at its place in out.
void lmp_allgather_rows(lmp_comm *c, float *out, const float *mine, size_t N, size_t width);

// Reduces every trainable gradient so that all ranks hold the gradient of the global-batch
// loss (the derivation is in comm.c).
void lmp_reduce_grads(lmp_comm *c, lmp_registry *r);

// The bucketed gradient reduction ([parallel] bucket_mb): the same sums as lmp_reduce_grads,
// started during the last micro-step's backward. As the backward finishes block l (blocks
// run L-1 -> 0) the gradients it completed (that block's adapters, norms, shards) are final;
// consecutive blocks are merged into a bucket until it holds >= bucket_mb MiB, and a bucket
// is all-reduced with MPI_Iallreduce (TP_SUM and TP_SAME over the world, TP_SAME scaled by
// 1/tp first; SHARD over dp) while the backward goes on. The rest (embeddings, final norm,
// head, a shared prefix encoder) is a last bucket, started after the backward.
typedef struct {
    int block;             // started once the backward of this block is done; -1: the rest
    size_t off[3], len[3]; // its span of each grad kind in grad_mem (registry.h's order)
} lmp_bucket;

typedef struct {
    lmp_bucket *b;         // in launch order: the last blocks' first, the rest last
    int n;                 // 0: no buckets (bucket_mb = 0, or one rank): lmp_reduce_grads
    MPI_Request *req;      // the requests of the buckets started this step (cap_req)
    int n_req, cap_req;
    int next;              // next bucket to start
} lmp_grad_buckets;

// Splits the registry's gradients into buckets of >= bucket_mb MiB (0: none). The split
// depends on the layout and the model only (each block's largest size over the ranks), so
// every rank starts the same collectives in the same order.
void lmp_buckets_plan(lmp_grad_buckets *bk, lmp_comm *c, const lmp_registry *r, double bucket_mb);
// The split alone (also `lorampi plan`'s): bytes[l] = block l's gradient bytes (l < L; the
// largest over the ranks), the rest at bytes[L]. Bucket j spans blocks from low[j - 1] - 1
// (L - 1 for j = 0) down to low[j]; the last bucket (low = -1) is the rest alone. low has
// room for L + 1 entries, and so has sum (NULL: not wanted), which gets each bucket's bytes;
// returns the number of buckets.
int lmp_bucket_split(const double *bytes, int L, double bucket_mb, int *low, double *sum);
void lmp_buckets_free(lmp_grad_buckets *bk);
// After the backward of block l: starts the bucket that block l completes, if any, and
// polls the started ones (Open MPI progresses nonblocking collectives only inside MPI calls).
void lmp_buckets_block_done(lmp_comm *c, lmp_registry *r, lmp_grad_buckets *bk, int l);
// After the backward: starts the buckets not started (the rest) and waits for all. The
// gradients are then those lmp_reduce_grads gives.
void lmp_buckets_finish(lmp_comm *c, lmp_registry *r, lmp_grad_buckets *bk);

// Global L2 norm of all trainable gradients (after lmp_reduce_grads), accumulated in
// double in a fixed order.
double lmp_grad_norm(lmp_comm *c, const lmp_registry *r);

// For errors that only some ranks may see (a file read, a checksum): when `err` is non-empty
// on any rank, every rank exits (lmp_die_all) with the message of the lowest such rank.
// A no-op (one small all-reduce) when every err is empty.
void lmp_die_if_any(lmp_comm *c, const char *err);

#endif
