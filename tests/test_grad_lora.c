// Finite-difference checks of LoRA on a linear layer's columns (whole output, and a
// q/k/v-style column slice of a wider fused output, with and without dropout): dx, dA, dB.
// Loss L = sum(y * R) with fixed random R; central differences in double around an fp32
// forward, h = 1e-3; tolerance max |fd - grad| <= 1e-2 * max |grad| (+1e-6) per tensor.
#include "testutil.h"
#include "adapters/lora.h"

#include <math.h>
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

enum { N = 6 };

// ---- LoRA on a linear's columns: y (N, LD) += s * x A^T B_seg^T at column offset
enum { LIN = 6, LR = 3, LOUT = 4, LD = 12 };
typedef struct { lmp_lora *l; float *x, *y, *u, *xd, *R; lmp_rng_ctx rc; } lo_ctx;
static double lora_loss(void *p) {
    lo_ctx *c = p;
    memset(c->y, 0, sizeof(float) * N * LD);
    lmp_lora_forward(c->l, c->y, LD, c->x, c->u, c->xd, N, &c->rc);
    return dot(c->y, c->R, N * LD);
}
static void test_lora(int slice, float dropout) {
    lmp_param A = {.numel = LR * LIN}, B = {.numel = LOUT * LR};
    A.data = randv(LR * LIN); A.grad = zeros(LR * LIN);
    B.data = randv(LOUT * LR); B.grad = zeros(LOUT * LR);
    lmp_lora l = {.A = &A, .B = &B, .in = LIN, .out = LOUT, .r = LR, .scale = 1.7f, .dropout = dropout,
                  .a0 = 0, .in_l = LIN, .nseg = 1, .stream = 5};
    l.ycol[0] = slice ? 8 : 0;  // a v-like slice of a wider fused output
    l.cnt[0] = LOUT;
    lo_ctx c = {&l, randv(N * LIN), zeros(N * LD), zeros(N * LR), zeros(N * LIN), randv(N * LD), {3, 1, 0, 1}};
    float *dx = zeros(N * LIN), *du = zeros(N * LR);
    lora_loss(&c);
    lmp_lora_backward(&l, dx, c.R, LD, c.x, c.u, du, c.xd, N, &c.rc);
    char w[64];
    snprintf(w, sizeof w, "lora%s%s dx", slice ? " slice" : "", dropout > 0 ? " dropout" : "");
    fd_check(w, lora_loss, &c, c.x, dx, N * LIN);
    w[strlen(w) - 2] = 0; strcat(w, "dA");
    fd_check(w, lora_loss, &c, A.data, A.grad, LR * LIN);
    w[strlen(w) - 2] = 0; strcat(w, "dB");
    fd_check(w, lora_loss, &c, B.data, B.grad, LOUT * LR);
    lora_loss(&c);
    int outside = 0;
    for (int n = 0; n < N; n++) for (int j = 0; j < LD; j++) if (j < l.ycol[0] || j >= l.ycol[0] + LOUT) outside |= c.y[n * LD + j] != 0;
    T_CHECK(!outside, "lora wrote outside its column slice");
    float *owned[] = {A.data, A.grad, B.data, B.grad, c.x, c.y, c.u, c.xd, c.R, dx, du};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++) free(owned[i]);
}

int main(void) {
    test_lora(0, 0);
    test_lora(1, 0);
    test_lora(1, 0.4f);
    return t_finish();
}
