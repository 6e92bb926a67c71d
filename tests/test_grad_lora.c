// Finite-difference checks of LoRA on a linear layer's columns (whole output, a q/k/v-style
// column slice of a wider fused output, two segments, a row-parallel shard of A's columns;
// with and without dropout): dx, dA, dB. Each case runs on 1 and on 3 OpenMP threads (the
// products split rows, and B's rows / A's columns, among threads: N = 7 and the segment
// sizes do not divide evenly), and the 3-thread results must equal the 1-thread ones within
// 1e-6 relative (not bitwise: OpenBLAS's kernels round a block's edge rows differently).
// Loss L = sum(y * R) with fixed random R; central differences in double around an fp32
// forward, h = 1e-3; tolerance max |fd - grad| <= 1e-2 * max |grad| (+1e-6) per tensor.
#include "testutil.h"
#include "adapters/lora.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ULL;
static float rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }
static float *randv(size_t n) { float *v = malloc(n * sizeof(float)); for (size_t i = 0; i < n; i++) v[i] = rnd(); return v; }
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

typedef double (*loss_fn)(void *ctx);

// Checks grad (n) of input x against central differences of f.
static void fd_check(const char *what, loss_fn f, void *ctx, float *x, const float *grad, size_t n) {
    double maxg = 0, maxe = 0;
    for (size_t i = 0; i < n; i++) {
        float w = x[i], h = 1e-3f;
        x[i] = w + h; double lp = f(ctx);
        x[i] = w - h; double lm = f(ctx);
        x[i] = w;
        double num = (lp - lm) / ((double)(w + h) - (double)(w - h));
        maxg = fmax(maxg, fabs(grad[i]));
        maxe = fmax(maxe, fabs(num - grad[i]));
    }
    T_CHECK(maxe <= 1e-2 * maxg + 1e-6, "%s: max|fd - grad| = %.3g, max|grad| = %.3g", what, maxe, maxg);
    T_CHECK(maxg > 1e-4, "%s: gradient is all zero", what);
}

static double dot(const float *a, const float *b, size_t n) { double s = 0; for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i]; return s; }

enum { N = 7 };

// ---- LoRA on a linear's columns: y (N, LD) += s * x A^T B_seg^T at column offset
enum { LIN = 6, LR = 3, LOUT = 4, LD = 12 };
typedef struct { lmp_lora *l; float *x, *y, *u, *xd, *R; lmp_rng_ctx rc; } lo_ctx;
static double lora_loss(void *p) {
    lo_ctx *c = p;
    memset(c->y, 0, sizeof(float) * N * LD);
    lmp_lora_forward(c->l, c->y, LD, c->x, c->u, c->xd, N, &c->rc);
    return dot(c->y, c->R, N * LD);
}
// A case: segment layout and dropout; a0 > 0 takes the columns [a0, a0 + in_l) of A.
typedef struct { int nseg, ycol[2], brow[2], cnt[2], a0, in_l; float dropout; const char *name; } lo_case;

// Runs one case on `threads` threads: FD checks of dx, dA, dB; returns y, dx, dA, dB in got.
static void lora_case(const lo_case *k, int threads, float *got[4]) {
    omp_set_num_threads(threads);
    rs = 88172645463325252ULL;  // the same data for every thread count
    int in = k->a0 + k->in_l;
    lmp_param A = {.numel = (size_t)LR * in}, B = {.numel = LOUT * LR};
    A.data = randv(A.numel); A.grad = zeros(A.numel);
    B.data = randv(B.numel); B.grad = zeros(B.numel);
    lmp_lora l = {.A = &A, .B = &B, .in = in, .out = LOUT, .r = LR, .scale = 1.7f,
                  .dropout = k->dropout, .a0 = k->a0, .in_l = k->in_l, .nseg = k->nseg, .stream = 5};
    for (int s = 0; s < k->nseg; s++) { l.ycol[s] = k->ycol[s]; l.brow[s] = k->brow[s]; l.cnt[s] = k->cnt[s]; }
    lo_ctx c = {&l, randv(N * LIN), zeros(N * LD), zeros(N * LR), zeros(N * LIN), randv(N * LD), {3, 1, 0, 1}};
    float *dx = zeros(N * LIN), *du = zeros(N * LR);
    lora_loss(&c);
    lmp_lora_backward(&l, dx, c.R, LD, c.x, c.u, du, c.xd, N, &c.rc);
    char w[96];
    snprintf(w, sizeof w, "%s, %d threads: dx", k->name, threads);
    fd_check(w, lora_loss, &c, c.x, dx, (size_t)N * k->in_l);
    w[strlen(w) - 2] = 0; strcat(w, "dA");
    fd_check(w, lora_loss, &c, A.data, A.grad, A.numel);
    w[strlen(w) - 2] = 0; strcat(w, "dB");
    fd_check(w, lora_loss, &c, B.data, B.grad, B.numel);
    lora_loss(&c);
    int outside = 0;
    for (int n = 0; n < N; n++)
        for (int j = 0; j < LD; j++) {
            int in_seg = 0;
            for (int s = 0; s < k->nseg; s++) in_seg |= j >= l.ycol[s] && j < l.ycol[s] + l.cnt[s];
            outside |= !in_seg && c.y[n * LD + j] != 0;
        }
    T_CHECK(!outside, "%s: lora wrote outside its column segments", k->name);
    got[0] = c.y; got[1] = dx; got[2] = A.grad; got[3] = B.grad;
    float *owned[] = {A.data, B.data, c.x, c.u, c.xd, c.R, du};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) free(owned[i]);
}

static void test_lora(const lo_case *k) {
    float *one[4], *three[4];
    size_t n[4] = {N * LD, N * LIN, (size_t)LR * (k->a0 + k->in_l), LOUT * LR};
    lora_case(k, 1, one);
    lora_case(k, 3, three);
    static const char *what[4] = {"y", "dx", "dA", "dB"};
    for (int t = 0; t < 4; t++) {
        double d = t_max_rel_diff(three[t], one[t], n[t]);
        T_CHECK(d <= 1e-6, "%s: %s on 3 threads differs from 1 thread by %.3g relative", k->name, what[t], d);
        free(one[t]);
        free(three[t]);
    }
}

int main(void) {
    static const lo_case cases[] = {
        {1, {0}, {0}, {LOUT}, 0, LIN, 0, "lora"},
        {1, {8}, {0}, {LOUT}, 0, LIN, 0, "lora slice"},
        {1, {8}, {0}, {LOUT}, 0, LIN, 0.4f, "lora slice dropout"},
        {2, {1, 7}, {0, 3}, {3, 1}, 0, LIN, 0.4f, "lora two segments dropout"},
        {1, {0}, {0}, {LOUT}, 5, LIN, 0.4f, "lora row-parallel shard dropout"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) test_lora(&cases[i]);
    return t_finish();
}
