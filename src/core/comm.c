// comm.c: process grid and collectives.
#include "core/comm.h"
#include "core/prof.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lmp_comm_init(lmp_comm *c, MPI_Comm world, int tp) {
    c->world = world;
    LMP_CHECK_MPI(MPI_Comm_rank(c->world, &c->rank));
    LMP_CHECK_MPI(MPI_Comm_size(c->world, &c->size));
    if (tp < 1 || c->size % tp != 0)
        lmp_die_all("[parallel] tp = %d does not divide the number of ranks (%d): tp x dp "
                    "must equal the world size", tp, c->size);
    c->tp_size = tp;
    c->dp_size = c->size / tp;
    c->tp_rank = c->rank % tp;
    c->dp_rank = c->rank / tp;
    LMP_CHECK_MPI(MPI_Comm_split(c->world, c->dp_rank, c->tp_rank, &c->tp));
    LMP_CHECK_MPI(MPI_Comm_split(c->world, c->tp_rank, c->dp_rank, &c->dp));
    // Errors come back as codes for LMP_CHECK_MPI to report (call and MPI's message) instead
    // of aborting inside MPI, whatever handler `world` has.
    LMP_CHECK_MPI(MPI_Comm_set_errhandler(c->tp, MPI_ERRORS_RETURN));
    LMP_CHECK_MPI(MPI_Comm_set_errhandler(c->dp, MPI_ERRORS_RETURN));
    c->comm_seconds = 0;
    c->comm_bytes = 0;
    lmp_prof_init(c->rank);
}

void lmp_comm_report(lmp_comm *c) {
    char host[64] = {0};
    gethostname(host, sizeof host - 1);
    char *all = c->rank == 0 ? lmp_malloc((size_t)c->size * sizeof host) : NULL;
    LMP_CHECK_MPI(MPI_Gather(host, sizeof host, MPI_CHAR, all, sizeof host, MPI_CHAR, 0, c->world));
    if (c->rank != 0) return;
    // Consecutive ranks on the same host are printed as one range.
    for (int i = 0; i < c->size;) {
        int j = i;
        while (j + 1 < c->size && !strcmp(all + (size_t)(j + 1) * sizeof host, all + (size_t)i * sizeof host)) j++;
        lmp_log("ranks %d-%d of %d up on %s (tp %d x dp %d)\n", i, j, c->size,
                all + (size_t)i * sizeof host, c->tp_size, c->dp_size);
        i = j + 1;
    }
    free(all);
}

void lmp_comm_free(lmp_comm *c) {
    LMP_CHECK_MPI(MPI_Comm_free(&c->tp));
    LMP_CHECK_MPI(MPI_Comm_free(&c->dp));
}

static int comm_size(MPI_Comm comm) {
    int s;
    LMP_CHECK_MPI(MPI_Comm_size(comm, &s));
    return s;
}

void lmp_allreduce_f(lmp_comm *c, float *buf, size_t n, MPI_Comm comm) {
    if (n == 0 || comm_size(comm) == 1) return;
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_COMM);
    double t0 = lmp_now();
    // MPI counts are int: reduce in pieces for buffers past 2^31 elements.
    for (size_t off = 0; off < n; off += (size_t)1 << 30) {
        size_t k = n - off < ((size_t)1 << 30) ? n - off : ((size_t)1 << 30);
        LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, comm));
    }
    c->comm_seconds += lmp_now() - t0;
    c->comm_bytes += n * sizeof(float);
    if (lmp_prof_on) lmp_prof_pop();
}

void lmp_allreduce_d(lmp_comm *c, double *buf, size_t n, MPI_Op op, MPI_Comm comm) {
    if (n == 0 || comm_size(comm) == 1) return;
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_COMM);
    double t0 = lmp_now();
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, op, comm));
    c->comm_seconds += lmp_now() - t0;
    if (lmp_prof_on) lmp_prof_pop();
    c->comm_bytes += n * sizeof(double);
}

// Gradient reduction. The loss is a sum over the global batch of per-token terms already
// scaled by 1/(tokens in the global batch), so each dp replica's gradient is a partial sum
// and the dp reduction is a plain SUM (not a mean).
// Across the tp group a gradient is one of three kinds (registry.h):
//  - TP_SUM: replicated LoRA factors. For a column-parallel layer rank p sees only its
//    output columns: dB gets only its rows of B (zero elsewhere) and dA = du_p^T xd with
//    du_p = s dy_p B_p, a partial sum over p. For a row-parallel layer rank p holds input
//    features p: dA gets only its columns, and dB = s dy^T u_p with u_p = xd_p A_p^T, the
//    partial product whose tp-sum is u. Either way the full gradient is the SUM over tp.
//  - TP_SAME: replicated tensors (LayerNorms, row-parallel biases, wpe) whose gradient is
//    computed from tp-identical activations: already whole on each tp rank.
//  - SHARD: a rank's own slice of a sharded weight (full fine-tuning): whole for its slice.
// So TP_SUM needs one all-reduce over the world (tp x dp). TP_SAME is scaled by 1/tp and
// reduced in the same world all-reduce (tp equal copies sum back to one; exact when tp is a
// power of two); SHARD gets one all-reduce over dp only. TP_SUM and TP_SAME are adjacent in
// grad_mem, so the adapter gradients take exactly one collective per step.
void lmp_reduce_grads(lmp_comm *c, lmp_registry *r) {
    float *same = r->grad_mem + r->kind_off[LMP_GRAD_TP_SAME];
    size_t nsame = r->kind_len[LMP_GRAD_TP_SAME];
    if (c->tp_size > 1) {
        float inv = 1.0f / (float)c->tp_size;
        for (size_t i = 0; i < nsame; i++) same[i] *= inv;
    }
    lmp_allreduce_f(c, r->grad_mem, r->kind_len[LMP_GRAD_TP_SUM] + nsame, c->world);
    lmp_allreduce_f(c, r->grad_mem + r->kind_off[LMP_GRAD_SHARD], r->kind_len[LMP_GRAD_SHARD],
                    c->dp);
}

double lmp_grad_norm(lmp_comm *c, const lmp_registry *r) {
    // Replicated gradients are whole on every rank; shards need the tp sum of their squares.
    double rep = 0.0, shard = 0.0;
    size_t nrep = r->kind_len[LMP_GRAD_TP_SUM] + r->kind_len[LMP_GRAD_TP_SAME];
    for (size_t i = 0; i < nrep; i++) rep += (double)r->grad_mem[i] * r->grad_mem[i];
    const float *g = r->grad_mem + r->kind_off[LMP_GRAD_SHARD];
    for (size_t i = 0; i < r->kind_len[LMP_GRAD_SHARD]; i++) shard += (double)g[i] * g[i];
    lmp_allreduce_d(c, &shard, 1, MPI_SUM, c->tp);
    return sqrt(rep + shard);
}

void lmp_die_if_any(lmp_comm *c, const char *err) {
    int first = err[0] ? c->rank : c->size;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, c->world));
    if (first == c->size) return;
    char msg[2048] = "";
    if (c->rank == first) snprintf(msg, sizeof msg, "%s", err);
    LMP_CHECK_MPI(MPI_Bcast(msg, sizeof msg, MPI_CHAR, first, c->world));
    lmp_die_all("%s", msg);
}
