// comm.c: process grid and collectives.
#include "core/comm.h"
#include "core/prof.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <limits.h>
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
    c->grad_seconds = 0;
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

#define LMP_MPI_CHUNK ((size_t)1 << 30)  // MPI counts are int: larger spans go in pieces

static int comm_size(MPI_Comm comm) {
    int s;
    LMP_CHECK_MPI(MPI_Comm_size(comm, &s));
    return s;
}

// Every collective below is timed into the communication phase and counted in c.
static double collective_enter(void) {
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_COMM);
    return lmp_now();
}

static void collective_leave(lmp_comm *c, double t0, size_t bytes) {
    c->comm_seconds += lmp_now() - t0;
    c->comm_bytes += bytes;
    if (lmp_prof_on) lmp_prof_pop();
}

void lmp_allreduce_f(lmp_comm *c, float *buf, size_t n, MPI_Comm comm) {
    if (n == 0 || comm_size(comm) == 1) return;
    double t0 = collective_enter();
    for (size_t off = 0; off < n; off += LMP_MPI_CHUNK) {
        size_t k = n - off < LMP_MPI_CHUNK ? n - off : LMP_MPI_CHUNK;
        LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, comm));
    }
    collective_leave(c, t0, n * sizeof(float));
}

// Sequence parallelism's two collectives over the tp group (comm.h). Rows are whole floats
// of `width`; each rank's block is N/tp rows, contiguous, in rank order.
static int rows_count(size_t N, size_t width, int tp) {
    LMP_CHECK(N % (size_t)tp == 0, "internal: %zu rows do not split over tp = %d", N, tp);
    size_t n = N / (size_t)tp * width;
    LMP_CHECK(n <= (size_t)INT_MAX, "sequence parallelism: %zu floats per rank exceed one MPI call", n);
    return (int)n;
}

void lmp_reduce_scatter_rows(lmp_comm *c, float *buf, size_t N, size_t width) {
    if (c->tp_size == 1 || N == 0) return;
    int n = rows_count(N, width, c->tp_size);
    double t0 = collective_enter();
    LMP_CHECK_MPI(MPI_Reduce_scatter_block(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, c->tp));
    collective_leave(c, t0, N * width * sizeof(float));
}

void lmp_allgather_rows(lmp_comm *c, float *out, const float *mine, size_t N, size_t width) {
    int n = rows_count(N, width, c->tp_size);
    if (c->tp_size == 1 || N == 0) {
        if (out != mine && n) memcpy(out, mine, (size_t)n * sizeof(float));
        return;
    }
    double t0 = collective_enter();
    float *own = out + (size_t)c->tp_rank * n;
    if (own != mine) memcpy(own, mine, (size_t)n * sizeof(float));
    LMP_CHECK_MPI(MPI_Allgather(MPI_IN_PLACE, n, MPI_FLOAT, out, n, MPI_FLOAT, c->tp));
    collective_leave(c, t0, N * width * sizeof(float));
}

void lmp_allreduce_d(lmp_comm *c, double *buf, size_t n, MPI_Op op, MPI_Comm comm) {
    if (n == 0 || comm_size(comm) == 1) return;
    double t0 = collective_enter();
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, op, comm));
    collective_leave(c, t0, n * sizeof(double));
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
//    computed from tp-identical activations: already whole on each tp rank. Under sequence
//    parallelism the norms and the bottleneck adapters see only this rank's rows: TP_SUM.
//  - SHARD: a rank's own slice of a sharded weight (full fine-tuning): whole for its slice.
// So TP_SUM needs one all-reduce over the world (tp x dp). TP_SAME is scaled by 1/tp and
// reduced in the same world all-reduce (tp equal copies sum back to one; exact when tp is a
// power of two); SHARD gets one all-reduce over dp only. TP_SUM and TP_SAME are adjacent in
// grad_mem, so the adapter gradients take exactly one collective per step.
// TP_SAME gradients same (n) before their world all-reduce: times 1/tp (see above).
static void scale_tp_same(const lmp_comm *c, float *same, size_t n) {
    if (c->tp_size == 1) return;
    float inv = 1.0f / (float)c->tp_size;
    for (size_t i = 0; i < n; i++) same[i] *= inv;
}

void lmp_reduce_grads(lmp_comm *c, lmp_registry *r) {
    double t0 = lmp_now();
    size_t nsame = r->kind_len[LMP_GRAD_TP_SAME];
    scale_tp_same(c, r->grad_mem + r->kind_off[LMP_GRAD_TP_SAME], nsame);
    lmp_allreduce_f(c, r->grad_mem, r->kind_len[LMP_GRAD_TP_SUM] + nsame, c->world);
    lmp_allreduce_f(c, r->grad_mem + r->kind_off[LMP_GRAD_SHARD], r->kind_len[LMP_GRAD_SHARD],
                    c->dp);
    c->grad_seconds += lmp_now() - t0;
}

// ---------------------------------------------------------------------------------------
// Bucketed gradient reduction (comm.h)

// This rank's trainable floats per (kind, block): cnt[k * (L + 1) + b], the rest at b = L.
static size_t *block_counts(const lmp_registry *r) {
    int L = r->n_block;
    size_t *cnt = lmp_calloc(3 * (size_t)(L + 1) * sizeof(size_t));
    for (int i = 0; i < r->n; i++) {
        const lmp_param *p = &r->p[i];
        if (p->trainable) cnt[p->grad_kind * (L + 1) + (p->block < 0 ? L : p->block)] += p->numel;
    }
    return cnt;
}

// The spans must be those the registry carved (by kind, then block in backward order): each
// trainable entry lies inside the span of its block's bucket. A registry change that broke
// the order would reduce the wrong gradients; it stops here instead.
static void check_spans(const lmp_grad_buckets *bk, const lmp_registry *r) {
    for (int i = 0; i < r->n; i++) {
        const lmp_param *p = &r->p[i];
        if (!p->trainable || !p->numel) continue;
        size_t g = (size_t)(p->grad - r->grad_mem), k = p->grad_kind;
        int in = 0;
        for (int j = 0; j < bk->n && !in; j++) {
            const lmp_bucket *b = &bk->b[j];
            int blocks_ok = b->block < 0 ? p->block < 0 : p->block >= b->block &&
                            (j == 0 || p->block < bk->b[j - 1].block);
            in = blocks_ok && g >= b->off[k] && g + p->numel <= b->off[k] + b->len[k];
        }
        LMP_CHECK(in, "gradient buckets: %s (block %d) is not in its bucket's span", p->name, p->block);
    }
}

static MPI_Comm kind_comm(lmp_comm *c, int k) { return k == LMP_GRAD_SHARD ? c->dp : c->world; }

// Requests bucket b needs on this rank: one per MPI_CHUNK of each span over > 1 rank.
static int bucket_requests(lmp_comm *c, const lmp_bucket *b) {
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (comm_size(kind_comm(c, k)) > 1) n += (int)((b->len[k] + LMP_MPI_CHUNK - 1) / LMP_MPI_CHUNK);
    return n;
}

int lmp_bucket_split(const double *bytes, int L, double bucket_mb, int *low, double *sum) {
    int n = 0;
    for (int l = L - 1; l >= 0; n++) {  // blocks l, l-1, ... until the bucket reaches the cap
        double acc = bytes[l--];
        while (l >= 0 && acc < bucket_mb * 1048576.0) acc += bytes[l--];
        low[n] = l + 1;
        if (sum) sum[n] = acc;
    }
    if (sum) sum[n] = bytes[L];
    low[n++] = -1;  // the rest alone
    return n;
}

void lmp_buckets_plan(lmp_grad_buckets *bk, lmp_comm *c, const lmp_registry *r, double bucket_mb) {
    memset(bk, 0, sizeof *bk);
    if (bucket_mb <= 0 || c->size == 1) return;
    int L = r->n_block;
    size_t *cnt = block_counts(r);
    // Bucket bounds from sizes equal on every rank (a shard's size may differ over tp).
    double *bytes = lmp_calloc((size_t)(L + 1) * sizeof(double));
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 3; k++) bytes[l] += 4.0 * (double)cnt[k * (L + 1) + l];
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, bytes, L + 1, MPI_DOUBLE, MPI_MAX, c->world));
    int *low = lmp_malloc((size_t)(L + 1) * sizeof(int));
    bk->n = lmp_bucket_split(bytes, L, bucket_mb, low, NULL);
    bk->b = lmp_calloc((size_t)bk->n * sizeof(lmp_bucket));
    size_t pos[3] = {r->kind_off[0], r->kind_off[1], r->kind_off[2]};
    for (int j = 0, hi = L - 1; j < bk->n; hi = low[j++] - 1) {
        lmp_bucket *b = &bk->b[j];
        b->block = low[j];
        for (int l = hi; l >= low[j]; l--)  // the rest (low -1, hi -1) is counted at index L
            for (int k = 0; k < 3; k++) b->len[k] += cnt[k * (L + 1) + (l < 0 ? L : l)];
        for (int k = 0; k < 3; k++) {
            b->off[k] = pos[k];
            pos[k] += b->len[k];
        }
        bk->cap_req += bucket_requests(c, b);
    }
    for (int k = 0; k < 3; k++)
        LMP_CHECK(pos[k] == r->kind_off[k] + r->kind_len[k], "gradient buckets: kind %d spans %zu of %zu",
                  k, pos[k] - r->kind_off[k], r->kind_len[k]);
    check_spans(bk, r);
    bk->req = lmp_malloc(((size_t)bk->cap_req + 1) * sizeof(MPI_Request));
    free(low);
    free(bytes);
    free(cnt);
}

void lmp_buckets_free(lmp_grad_buckets *bk) {
    free(bk->b);
    free(bk->req);
    memset(bk, 0, sizeof *bk);
}

// Starts bucket j: TP_SAME scaled by 1/tp as lmp_reduce_grads does, then its collectives.
static void bucket_start(lmp_comm *c, lmp_registry *r, lmp_grad_buckets *bk, int j) {
    const lmp_bucket *b = &bk->b[j];
    scale_tp_same(c, r->grad_mem + b->off[LMP_GRAD_TP_SAME], b->len[LMP_GRAD_TP_SAME]);
    for (int k = 0; k < 3; k++) {
        MPI_Comm comm = kind_comm(c, k);
        if (!b->len[k] || comm_size(comm) == 1) continue;
        for (size_t off = 0; off < b->len[k]; off += LMP_MPI_CHUNK) {
            size_t n = b->len[k] - off < LMP_MPI_CHUNK ? b->len[k] - off : LMP_MPI_CHUNK;
            LMP_CHECK(bk->n_req < bk->cap_req, "gradient buckets: more requests than planned (%d)", bk->cap_req);
            LMP_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, r->grad_mem + b->off[k] + off, (int)n, MPI_FLOAT,
                                         MPI_SUM, comm, &bk->req[bk->n_req++]));
        }
        c->comm_bytes += b->len[k] * sizeof(float);
    }
}

void lmp_buckets_block_done(lmp_comm *c, lmp_registry *r, lmp_grad_buckets *bk, int l) {
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_COMM);
    double t0 = lmp_now();
    if (bk->next < bk->n && bk->b[bk->next].block == l) bucket_start(c, r, bk, bk->next++);
    int done;
    if (bk->n_req) LMP_CHECK_MPI(MPI_Testall(bk->n_req, bk->req, &done, MPI_STATUSES_IGNORE));
    c->comm_seconds += lmp_now() - t0;
    c->grad_seconds += lmp_now() - t0;
    if (lmp_prof_on) lmp_prof_pop();
}

void lmp_buckets_finish(lmp_comm *c, lmp_registry *r, lmp_grad_buckets *bk) {
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_COMM);
    double t0 = lmp_now();
    while (bk->next < bk->n) bucket_start(c, r, bk, bk->next++);
    if (bk->n_req) LMP_CHECK_MPI(MPI_Waitall(bk->n_req, bk->req, MPI_STATUSES_IGNORE));
    bk->n_req = 0;
    bk->next = 0;
    c->comm_seconds += lmp_now() - t0;
    c->grad_seconds += lmp_now() - t0;
    if (lmp_prof_on) lmp_prof_pop();
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
