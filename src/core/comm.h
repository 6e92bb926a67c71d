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
    double comm_seconds;   // time spent in collectives since the last reset
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

// Reduces every trainable gradient so that all ranks hold the gradient of the global-batch
// loss (the derivation is in comm.c).
void lmp_reduce_grads(lmp_comm *c, lmp_registry *r);

// Global L2 norm of all trainable gradients (after lmp_reduce_grads), accumulated in
// double in a fixed order.
double lmp_grad_norm(lmp_comm *c, const lmp_registry *r);

// For errors that only some ranks may see (a file read, a checksum): when `err` is non-empty
// on any rank, every rank exits (lmp_die_all) with the message of the lowest such rank.
// A no-op (one small all-reduce) when every err is empty.
void lmp_die_if_any(lmp_comm *c, const char *err);

#endif
