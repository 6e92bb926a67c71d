// Finite-difference gradient checks of every forward/backward pair in kernels.h, on sizes
// small enough that every element of every gradient is checked.
//
// Method: a forward's output is reduced to the scalar L = sum_i out_i * R_i with fixed random
// weights R, so every output element matters. Analytic gradient: backward with dout = R into
// zeroed gradients. Numeric gradient: central differences (L(x+h) - L(x-h)) / 2h, forward in
// fp32, L summed in double, h = FD_H * max(1, |x|). Per gradient tensor the check is
//   max|analytic - numeric| <= FD_TOL * max|numeric|  and  cosine(analytic, numeric) >= FD_COS.
// Alongside: every backward accumulates (two calls give twice the gradient) and skips NULL
// gradients; forwards match direct double-precision references; attention is causal; the
// embedding ignores tokens outside its vocab slice; cross-entropy statistics split over two
// vocab slices and combined as a tensor-parallel run does give the unsplit loss and gradient.
// The Llama family's kernels likewise: RMSNorm (plain and per head), RoPE (tables of the
// default, linear and llama3 rope_types against transformers' formulas in double; forward
// against HF's rotate_half), gated SiLU, the (out, in) linear into a wider row, and the
// composed q/k-norm + RoPE + grouped-query attention of Qwen3.
#include "testutil.h"
#include "model/kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FD_H 1e-2f     // finite-difference step, relative to max(1, |x|)
#define FD_TOL 1e-3       // max|analytic - numeric| / max|numeric| (observed <= 4e-5)
#define FD_COS 0.999999   // minimum cosine similarity (observed 1 - cos <= 2e-10)
#define FWD_TOL 1e-5   // forward vs double reference, relative to max|reference|
#define ACC_TOL 1e-6   // second backward call vs twice the first, relative
#define LN_EPS 1e-5f

// ---------------------------------------------------------------------------------------------
// Test data: xorshift64*, deliberately independent of the project's RNG.
static uint64_t rng_s = 88172645463325252ull;
static uint64_t rnd_u64(void) {
    rng_s ^= rng_s >> 12;
    rng_s ^= rng_s << 25;
    rng_s ^= rng_s >> 27;
    return rng_s * 2685821657736338717ull;
}
static double rnd_unif(void) { return (double)(rnd_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
static float rnd_normal(void) {  // Box-Muller
    double u = 1.0 - rnd_unif(), v = rnd_unif();
    return (float)(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) abort();
    return p;
}
static float *randn(size_t n, float mean, float std) {
    float *x = zeros(n);
    for (size_t i = 0; i < n; i++) x[i] = mean + std * rnd_normal();
    return x;
}
static float *copy_of(const float *x, size_t n) {
    float *y = zeros(n);
    memcpy(y, x, n * sizeof(float));
    return y;
}
static void fill(float *x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}
static float *from_double(const double *x, size_t n) {
    float *y = zeros(n);
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}
static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}
// sum_i out_i * R_i in double: the scalar loss of every gradient check.
static double dot_rd(const float *out, const float *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
    return s;
}
static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return (aa == 0 && bb == 0) ? 1.0 : ab / sqrt(aa * bb);
}

// ---------------------------------------------------------------------------------------------
// Generic checks. A kernel's test keeps its buffers in a context struct; loss_fn runs the
// forward on the context's current inputs and returns L, run_fn runs the backward (after a
// fresh forward where the backward needs saved activations) into the context's gradients.
typedef double (*loss_fn)(void *ctx);
typedef void (*run_fn)(void *ctx);
// One gradient of a context: *slot is the context's pointer to it (set to NULL to skip it).
typedef struct {
    const char *name;
    float **slot;
    size_t n;
} grad_t;

static void zero_grads(const grad_t *gs, int ng) {
    for (int k = 0; k < ng; k++) memset(*gs[k].slot, 0, gs[k].n * sizeof(float));
}

// Checks the analytic gradient g (n) of loss(ctx) w.r.t. x (n), every element, against
// central differences. x is perturbed in place and restored.
static void check_fd(const char *what, float *x, const float *g, size_t n, loss_fn loss,
                     void *ctx, float h_rel) {
    float *num = zeros(n);
    for (size_t i = 0; i < n; i++) {
        float xi = x[i], h = h_rel * fmaxf(1.0f, fabsf(xi));
        float xp = xi + h, xm = xi - h;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = xi;
        num[i] = (float)((lp - lm) / ((double)xp - (double)xm));
    }
    double err = t_max_rel_diff(g, num, n), cs = cosine(g, num, n);
    printf("  %-26s %4zu elements  max rel err %.2e  1-cos %.1e\n", what, n, err, 1.0 - cs);
    T_CHECK(max_abs(num, n) > 0, "%s: numeric gradient is all zero (test setup)", what);
    T_CHECK(err <= FD_TOL, "%s: max|grad - fd| / max|fd| = %.3g > %g", what, err, FD_TOL);
    T_CHECK(cs >= FD_COS, "%s: cosine(grad, fd) = %.9f < %g", what, cs, FD_COS);
    free(num);
}

// Runs bwd into zeroed gradients, then once more: every gradient must have doubled.
static void check_accumulates(const char *what, run_fn bwd, void *ctx, const grad_t *gs, int ng) {
    float *first[8];
    zero_grads(gs, ng);
    bwd(ctx);
    for (int k = 0; k < ng; k++) first[k] = copy_of(*gs[k].slot, gs[k].n);
    bwd(ctx);
    for (int k = 0; k < ng; k++) {
        for (size_t i = 0; i < gs[k].n; i++) first[k][i] *= 2.0f;
        double d = t_max_rel_diff(*gs[k].slot, first[k], gs[k].n);
        T_CHECK(d <= ACC_TOL, "%s: %s does not accumulate: second call vs 2x first %.3g", what,
                gs[k].name, d);
        free(first[k]);
    }
}

// For every subset of the gradients (those in `always` are always present), runs bwd with
// the others NULL: it must not crash, and the present ones must equal a full run's.
static void check_null_grads(const char *what, run_fn bwd, void *ctx, const grad_t *gs, int ng,
                             unsigned always) {
    float *buf[8], *full[8];
    zero_grads(gs, ng);
    bwd(ctx);
    for (int k = 0; k < ng; k++) {
        buf[k] = *gs[k].slot;
        full[k] = copy_of(buf[k], gs[k].n);
    }
    for (unsigned mask = 0; mask < (1u << ng); mask++) {
        if ((mask & always) != always || mask == (1u << ng) - 1) continue;
        for (int k = 0; k < ng; k++) {
            memset(buf[k], 0, gs[k].n * sizeof(float));
            *gs[k].slot = (mask >> k & 1) ? buf[k] : NULL;
        }
        bwd(ctx);
        for (int k = 0; k < ng; k++) {
            double d = t_max_rel_diff(buf[k], full[k], gs[k].n);
            if (mask >> k & 1)
                T_CHECK(d <= ACC_TOL, "%s: %s changed (%.3g) when others were NULL (mask %u)",
                        what, gs[k].name, d, mask);
            else
                T_CHECK(max_abs(buf[k], gs[k].n) == 0, "%s: NULL %s but its buffer was written",
                        what, gs[k].name);
        }
    }
    for (int k = 0; k < ng; k++) {
        *gs[k].slot = buf[k];
        free(full[k]);
    }
}

// Runs fn(ctx) in a forked child; 1 if it exited normally (it did not crash). libgomp's thread
// pool does not survive fork, so this must run before the parent's first OpenMP region.
static int survives(run_fn fn, void *ctx) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        fn(ctx);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// ---------------------------------------------------------------------------------------------
// LayerNorm
typedef struct {
    int N, C;
    float *x, *w, *b, *out, *mean, *rstd, *R, *dx, *dw, *db;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    lmp_layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, LN_EPS);
    return dot_rd(c->out, c->R, (size_t)c->N * c->C);
}
static void ln_bwd(void *p) {
    ln_ctx *c = p;
    ln_loss(c);  // mean and rstd of the current input
    lmp_layernorm_backward(c->dx, c->dw, c->db, c->R, c->x, c->w, c->mean, c->rstd, c->N, c->C);
}
static void ln_bwd_no_dinp(void *p) {
    ln_ctx c = *(ln_ctx *)p;
    c.dx = NULL;
    ln_bwd(&c);
}

static void test_layernorm(void) {
    printf("layernorm\n");
    enum { N = 6, C = 8 };
    ln_ctx c = {N, C, randn(N * C, 0.5f, 1.5f), randn(C, 1.0f, 0.5f), randn(C, 0.0f, 1.0f),
                zeros(N * C), zeros(N), zeros(N), randn(N * C, 0.0f, 1.0f), zeros(N * C),
                zeros(C), zeros(C)};
    grad_t gs[] = {{"dinp", &c.dx, N * C}, {"dw", &c.dw, C}, {"db", &c.db, C}};

    // First, before any OpenMP region in this process (see survives()).
    T_CHECK(survives(ln_bwd_no_dinp, &c),
            "layernorm_backward crashes with dinp = NULL (kernels.h: NULL gradients are skipped)");

    // Forward vs double reference, including the saved mean and rstd.
    ln_loss(&c);
    double ref[N * C], mref[N], sref[N];
    for (int n = 0; n < N; n++) {
        const float *x = c.x + n * C;
        double m = 0, v = 0;
        for (int i = 0; i < C; i++) m += x[i];
        m /= C;
        for (int i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
        double s = 1.0 / sqrt(v / C + LN_EPS);
        for (int i = 0; i < C; i++) ref[n * C + i] = (x[i] - m) * s * c.w[i] + c.b[i];
        mref[n] = m;
        sref[n] = s;
    }
    float *rf = from_double(ref, N * C), *mf = from_double(mref, N), *sf = from_double(sref, N);
    T_CHECK(t_max_rel_diff(c.out, rf, N * C) <= FWD_TOL, "layernorm forward != reference");
    T_CHECK(t_max_rel_diff(c.mean, mf, N) <= FWD_TOL, "layernorm mean != reference");
    T_CHECK(t_max_rel_diff(c.rstd, sf, N) <= FWD_TOL, "layernorm rstd != reference");
    free(rf), free(mf), free(sf);

    zero_grads(gs, 3);
    ln_bwd(&c);
    check_fd("layernorm dinp", c.x, c.dx, N * C, ln_loss, &c, FD_H);
    check_fd("layernorm dw", c.w, c.dw, C, ln_loss, &c, FD_H);
    check_fd("layernorm db", c.b, c.db, C, ln_loss, &c, FD_H);
    check_accumulates("layernorm", ln_bwd, &c, gs, 3);
    check_null_grads("layernorm", ln_bwd, &c, gs, 3, 1u);  // dinp = NULL checked above
    free(c.x), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.R);
    free(c.dx), free(c.dw), free(c.db);
}

// ---------------------------------------------------------------------------------------------
// Matmul with bias
typedef struct {
    int N, IC, OC;
    float *x, *w, *bias, *out, *R, *dx, *dw, *dbias;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    lmp_matmul_forward(c->out, c->x, c->w, c->bias, c->N, c->IC, c->OC, 0);
    return dot_rd(c->out, c->R, (size_t)c->N * c->OC);
}
static void mm_bwd(void *p) {
    mm_ctx *c = p;
    lmp_matmul_backward(c->dx, c->dw, c->dbias, c->R, c->x, c->w, c->N, c->IC, c->OC);
}

static void test_matmul(void) {
    printf("matmul\n");
    enum { N = 6, IC = 8, OC = 5 };  // all different, so a transposed operand shows
    mm_ctx c = {N, IC, OC, randn(N * IC, 0, 1), randn(IC * OC, 0, 1), randn(OC, 0, 1),
                zeros(N * OC), randn(N * OC, 0, 1), zeros(N * IC), zeros(IC * OC), zeros(OC)};
    grad_t gs[] = {{"dinp", &c.dx, N * IC}, {"dw", &c.dw, IC * OC}, {"dbias", &c.dbias, OC}};

    // Forward: overwrite (even NaN garbage), accumulate, with and without bias.
    double ref[N * OC], refnb[N * OC];
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int i = 0; i < IC; i++) s += (double)c.x[n * IC + i] * c.w[i * OC + o];
            refnb[n * OC + o] = s;
            ref[n * OC + o] = s + c.bias[o];
        }
    float *prior = randn(N * OC, 0, 3), *out = zeros(N * OC);
    for (int withbias = 0; withbias < 2; withbias++)
        for (int acc = 0; acc < 2; acc++) {
            double want[N * OC];
            for (int k = 0; k < N * OC; k++)
                want[k] = (withbias ? ref[k] : refnb[k]) + (acc ? prior[k] : 0.0);
            if (acc) memcpy(out, prior, sizeof(float) * N * OC);
            else fill(out, N * OC, NAN);
            lmp_matmul_forward(out, c.x, c.w, withbias ? c.bias : NULL, N, IC, OC, acc);
            float *wf = from_double(want, N * OC);
            double d = t_max_rel_diff(out, wf, N * OC);
            T_CHECK(d <= FWD_TOL, "matmul forward (bias %d, accumulate %d) off by %.3g", withbias,
                    acc, d);
            free(wf);
        }
    free(prior), free(out);

    zero_grads(gs, 3);
    mm_bwd(&c);
    check_fd("matmul dinp", c.x, c.dx, N * IC, mm_loss, &c, FD_H);
    check_fd("matmul dw", c.w, c.dw, IC * OC, mm_loss, &c, FD_H);
    check_fd("matmul dbias", c.bias, c.dbias, OC, mm_loss, &c, FD_H);
    check_accumulates("matmul", mm_bwd, &c, gs, 3);
    check_null_grads("matmul", mm_bwd, &c, gs, 3, 0u);
    free(c.x), free(c.w), free(c.bias), free(c.out), free(c.R), free(c.dx), free(c.dw);
    free(c.dbias);
}

// ---------------------------------------------------------------------------------------------
// GELU
typedef struct {
    size_t n;
    float *x, *out, *R, *dx;
} gelu_ctx;

static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    lmp_gelu_forward(c->out, c->x, c->n);
    return dot_rd(c->out, c->R, c->n);
}
static void gelu_bwd(void *p) {
    gelu_ctx *c = p;
    lmp_gelu_backward(c->dx, c->x, c->R, c->n);
}

static void test_gelu(void) {
    printf("gelu\n");
    enum { n = 48 };
    gelu_ctx c = {n, randn(n, 0, 2.5f), zeros(n), randn(n, 0, 1), zeros(n)};
    grad_t gs[] = {{"dinp", &c.dx, n}};
    const float special[] = {0.0f, 1e-3f, -1e-3f, 5.0f, -5.0f, 10.0f, -10.0f, 30.0f, -30.0f};
    memcpy(c.x, special, sizeof special);  // the tails and the saturation of tanh

    gelu_loss(&c);
    double ref[n];
    for (int i = 0; i < n; i++) {
        double x = c.x[i];
        ref[i] = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    }
    float *rf = from_double(ref, n);
    T_CHECK(t_max_rel_diff(c.out, rf, n) <= FWD_TOL, "gelu forward != reference");
    free(rf);

    zero_grads(gs, 1);
    gelu_bwd(&c);
    check_fd("gelu dinp", c.x, c.dx, n, gelu_loss, &c, FD_H);
    check_accumulates("gelu", gelu_bwd, &c, gs, 1);
    free(c.x), free(c.out), free(c.R), free(c.dx);
}

// ---------------------------------------------------------------------------------------------
// Causal self-attention
typedef struct {
    int B, T, C, NH;
    float *qkv, *out, *scr, *R, *dqkv;  // scr: the kernels' scratch (lmp_sdpa_scratch_floats)
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    lmp_sdpa_forward(c->out, c->scr, c->qkv, c->qkv + c->C, c->qkv + 2 * c->C, 3 * c->C, c->B, c->T, c->NH, c->NH, c->C / c->NH);
    return dot_rd(c->out, c->R, (size_t)c->B * c->T * c->C);
}
static void att_bwd(void *p) {
    att_ctx *c = p;
    att_loss(c);
    fill(c->scr, lmp_sdpa_scratch_floats(0, c->T), NAN);  // scratch: never read before written
    lmp_sdpa_backward(c->dqkv, c->dqkv + c->C, c->dqkv + 2 * c->C, c->scr, c->R, c->qkv, c->qkv + c->C, c->qkv + 2 * c->C, 3 * c->C, c->B, c->T, c->NH, c->NH, c->C / c->NH);
}

// T = 130 spans the kernel's row blocks of 64 queries (two whole, one partial).
static void test_attention(int T) {
    printf("attention, T = %d\n", T);
    enum { B = 2, C = 8, NH = 2, hs = C / NH, C3 = 3 * C };
    att_ctx c = {B, T, C, NH, randn(B * T * C3, 0, 1), zeros(B * T * C),
                 zeros(lmp_sdpa_scratch_floats(0, T)), randn(B * T * C, 0, 1), zeros(B * T * C3)};
    grad_t gs[] = {{"dqkv", &c.dqkv, B * T * C3}};

    // Forward vs double reference.
    att_loss(&c);
    double *oref = malloc(sizeof(double) * B * T * C), *aref = malloc(sizeof(double) * B * NH * T * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const float *q = c.qkv + (b * T + t) * C3 + h * hs;
                double *a = aref + ((b * NH + h) * T + t) * T, mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    const float *k = c.qkv + (b * T + j) * C3 + C + h * hs;
                    double s = 0;
                    for (int i = 0; i < hs; i++) s += (double)q[i] * k[i];
                    a[j] = s / sqrt(hs);
                    if (j <= t) mx = fmax(mx, a[j]);
                }
                for (int j = 0; j < T; j++) {
                    a[j] = j <= t ? exp(a[j] - mx) : 0.0;
                    sum += a[j];
                }
                for (int j = 0; j < T; j++) a[j] /= sum;
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++)
                        o += a[j] * c.qkv[(b * T + j) * C3 + 2 * C + h * hs + i];
                    oref[(b * T + t) * C + h * hs + i] = o;
                }
            }
    float *of = from_double(oref, B * T * C);
    T_CHECK(t_max_rel_diff(c.out, of, B * T * C) <= FWD_TOL, "attention out != reference");
    free(of), free(oref), free(aref);

    // Causality: replacing q, k and v at every position > t leaves out at positions <= t
    // exactly unchanged (masked probabilities are exact zeros).
    float *base = copy_of(c.out, B * T * C), *saved = copy_of(c.qkv, B * T * C3);
    for (int t = 0; t < T - 1; t++) {
        for (int b = 0; b < B; b++)
            for (int s = t + 1; s < T; s++)
                for (int i = 0; i < C3; i++) c.qkv[(b * T + s) * C3 + i] = 10.0f * rnd_normal();
        att_loss(&c);
        int same = 1;
        for (int b = 0; b < B; b++)
            for (int s = 0; s <= t; s++)
                same &= memcmp(c.out + (b * T + s) * C, base + (b * T + s) * C,
                               C * sizeof(float)) == 0;
        T_CHECK(same, "attention: out at positions <= %d depends on later positions", t);
        memcpy(c.qkv, saved, sizeof(float) * B * T * C3);
    }
    free(base), free(saved);

    zero_grads(gs, 1);
    att_bwd(&c);
    check_fd("attention dqkv", c.qkv, c.dqkv, B * T * C3, att_loss, &c, FD_H);
    check_accumulates("attention", att_bwd, &c, gs, 1);
    free(c.qkv), free(c.out), free(c.scr), free(c.R), free(c.dqkv);
}

// ---------------------------------------------------------------------------------------------
// Token + position embedding on a vocab slice
typedef struct {
    int B, T, C, v0, Vl;
    const int *tok;
    float *wte, *wpe, *out, *R, *dwte, *dwpe;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    lmp_embedding_forward(c->out, c->tok, c->wte, c->wpe, c->B, c->T, c->C, c->v0, c->Vl);
    return dot_rd(c->out, c->R, (size_t)c->B * c->T * c->C);
}
static void emb_bwd(void *p) {
    emb_ctx *c = p;
    lmp_embedding_backward(c->dwte, c->dwpe, c->R, c->tok, c->B, c->T, c->C, c->v0, c->Vl);
}

static void test_embedding(void) {
    printf("embedding\n");
    // Vocab 10, this slice [3, 7). Token 4 twice (its gradient sums two rows), token 5 never
    // (no gradient); 2, 7 (just outside), 0 and 9 are outside the slice. maxT = 6 > T: the
    // last two wpe rows get no gradient.
    enum { B = 2, T = 4, C = 6, maxT = 6, v0 = 3, Vl = 4 };
    static const int tok[B * T] = {3, 4, 6, 4, 2, 7, 0, 9};
    emb_ctx c = {B, T, C, v0, Vl, tok, randn(Vl * C, 0, 1), randn(maxT * C, 0, 1),
                 zeros(B * T * C), randn(B * T * C, 0, 1), zeros(Vl * C), zeros(maxT * C)};
    grad_t gs[] = {{"dwte", &c.dwte, Vl * C}, {"dwpe", &c.dwpe, maxT * C}};

    // Forward, with and without wpe: out-of-slice rows get only the position part (or zero).
    for (int pos = 0; pos < 2; pos++) {
        fill(c.out, B * T * C, NAN);
        lmp_embedding_forward(c.out, tok, c.wte, pos ? c.wpe : NULL, B, T, C, v0, Vl);
        int ok = 1;
        for (int n = 0; n < B * T; n++) {
            int v = tok[n] - v0, in = v >= 0 && v < Vl;
            for (int i = 0; i < C; i++) {
                float e = in ? c.wte[v * C + i] : 0.0f, p = pos ? c.wpe[(n % T) * C + i] : 0.0f;
                ok &= c.out[n * C + i] == e + p;
            }
        }
        T_CHECK(ok, "embedding forward (wpe %s) != token part (in slice only) + position part",
                pos ? "given" : "NULL");
    }

    zero_grads(gs, 2);
    emb_bwd(&c);
    for (int i = 0; i < C; i++)
        T_CHECK(c.dwte[(5 - v0) * C + i] == 0.0f, "dwte of an absent token is not zero");
    check_fd("embedding dwte", c.wte, c.dwte, Vl * C, emb_loss, &c, FD_H);
    check_fd("embedding dwpe", c.wpe, c.dwpe, maxT * C, emb_loss, &c, FD_H);
    check_accumulates("embedding", emb_bwd, &c, gs, 2);
    check_null_grads("embedding", emb_bwd, &c, gs, 2, 0u);
    free(c.wte), free(c.wpe), free(c.out), free(c.R), free(c.dwte), free(c.dwpe);
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy: statistics + gradient, whole vocabulary and split in two slices
enum { XN = 6, XV = 11, XLD = XV + 2, XV1 = 4 };  // rows, vocab, row stride (2 pad), split
#define XPAD 777.0f  // value of the padding columns: must neither be read nor written

typedef struct {
    float *logits;  // (XN, XLD)
    const int *tg;
    const float *scale;
} xent_ctx;

// sum_n scale_n * (log(sumexp_n) + rowmax_n - tgt_n) from the kernel's statistics.
static double xent_loss(void *p) {
    xent_ctx *c = p;
    double mx[XN], se[XN], tg[XN], L = 0;
    lmp_xent_stats(mx, se, tg, c->logits, XLD, c->tg, XN, XV, 0);
    for (int n = 0; n < XN; n++) L += c->scale[n] * (log(se[n]) + mx[n] - tg[n]);
    return L;
}

static void test_xent(void) {
    printf("cross-entropy\n");
    static const int tg[XN] = {2, 7, 0, 10, 5, 3};  // targets in both slices
    static const float scale[XN] = {1.0f, 0.5f, 1.5f, 0.0f, 0.7f, 1.2f};  // row 3 masked
    xent_ctx c = {randn(XN * XLD, 0, 2.5f), tg, scale};
    for (int n = 0; n < XN; n++) c.logits[n * XLD + XV] = c.logits[n * XLD + XV + 1] = XPAD;
    c.logits[0 * XLD + 1] = 8.0f;  // row 0's max in the first slice,
    c.logits[1 * XLD + 9] = 8.0f;  // row 1's in the second

    // Loss from the statistics vs a direct double-precision cross-entropy.
    double mx[XN], se[XN], tgt[XN], lse[XN];
    lmp_xent_stats(mx, se, tgt, c.logits, XLD, tg, XN, XV, 0);
    for (int n = 0; n < XN; n++) {
        const float *l = c.logits + n * XLD;
        double m = -INFINITY, s = 0;
        for (int j = 0; j < XV; j++) m = fmax(m, l[j]);
        for (int j = 0; j < XV; j++) s += exp((double)l[j] - m);
        double ref = log(s) + m - l[tg[n]], got = log(se[n]) + mx[n] - tgt[n];
        T_CHECK(t_close(got, ref, 1e-6, 1e-7), "xent row %d: loss %.9f != reference %.9f", n,
                got, ref);
        lse[n] = log(se[n]);
    }

    // Gradient, in place on a copy.
    float *g = copy_of(c.logits, XN * XLD);
    lmp_xent_grad(g, XLD, tg, mx, lse, scale, XN, XV, 0);
    for (int n = 0; n < XN; n++) {
        T_CHECK(g[n * XLD + XV] == XPAD && g[n * XLD + XV + 1] == XPAD,
                "xent_grad wrote past Vl in row %d", n);
        if (scale[n] == 0.0f)
            T_CHECK(max_abs(g + n * XLD, XV) == 0, "xent row %d has scale 0 but a gradient", n);
    }

    // Vocab split [0, XV1) + [XV1, XV): per-slice statistics, combined as tensor parallelism
    // does (global max, rescaled sum of sumexp, sum of tgt), give the same loss, and the
    // per-slice gradients side by side equal the unsplit gradient.
    double m1[XN], s1[XN], t1[XN], m2[XN], s2[XN], t2[XN], gm[XN], glse[XN];
    lmp_xent_stats(m1, s1, t1, c.logits, XLD, tg, XN, XV1, 0);
    lmp_xent_stats(m2, s2, t2, c.logits + XV1, XLD, tg, XN, XV - XV1, XV1);
    for (int n = 0; n < XN; n++) {
        gm[n] = fmax(m1[n], m2[n]);
        double S = s1[n] * exp(m1[n] - gm[n]) + s2[n] * exp(m2[n] - gm[n]);
        glse[n] = log(S);
        double got = glse[n] + gm[n] - (t1[n] + t2[n]), want = lse[n] + mx[n] - tgt[n];
        T_CHECK(t_close(got, want, 1e-6, 1e-7), "xent split row %d: loss %.9f != %.9f", n, got,
                want);
    }
    float *g2 = copy_of(c.logits, XN * XLD);
    lmp_xent_grad(g2, XLD, tg, gm, glse, scale, XN, XV1, 0);
    lmp_xent_grad(g2 + XV1, XLD, tg, gm, glse, scale, XN, XV - XV1, XV1);
    double d = t_max_rel_diff(g2, g, XN * XLD);
    T_CHECK(d <= 1e-6, "xent split gradient differs from unsplit by %.3g", d);

    // Gradient vs central differences of the loss, over the padded buffer (padding: 0).
    for (int n = 0; n < XN; n++) g[n * XLD + XV] = g[n * XLD + XV + 1] = 0.0f;
    check_fd("xent dlogits", c.logits, g, XN * XLD, xent_loss, &c, FD_H);
    free(c.logits), free(g), free(g2);
}

// Grouped-query attention: NH = 4 query heads over KVH = 2 key/value heads (query head h
// reads kv head h / 2), q|k|v of unequal widths in one buffer.
typedef struct {
    int B, T, NH, KVH, hs, ld;
    float *qkv, *out, *scr, *R, *dqkv;
} gqa_ctx;

static double gqa_loss(void *p) {
    gqa_ctx *c = p;
    int q = c->NH * c->hs, kv = c->KVH * c->hs;
    lmp_sdpa_forward(c->out, c->scr, c->qkv, c->qkv + q, c->qkv + q + kv, c->ld, c->B, c->T, c->NH, c->KVH, c->hs);
    return dot_rd(c->out, c->R, (size_t)c->B * c->T * q);
}
static void gqa_bwd(void *p) {
    gqa_ctx *c = p;
    int q = c->NH * c->hs, kv = c->KVH * c->hs;
    gqa_loss(c);
    fill(c->scr, lmp_sdpa_scratch_floats(0, c->T), NAN);  // scratch: never read before written
    lmp_sdpa_backward(c->dqkv, c->dqkv + q, c->dqkv + q + kv, c->scr, c->R, c->qkv, c->qkv + q,
                      c->qkv + q + kv, c->ld, c->B, c->T, c->NH, c->KVH, c->hs);
}

static void test_attention_gqa(void) {
    printf("attention, grouped-query\n");
    enum { B = 2, T = 5, NH = 4, KVH = 2, hs = 3, LD = (NH + 2 * KVH) * hs, C = NH * hs };
    gqa_ctx c = {B, T, NH, KVH, hs, LD, randn(B * T * LD, 0, 1), zeros(B * T * C),
                 zeros(lmp_sdpa_scratch_floats(0, T)), randn(B * T * C, 0, 1), zeros(B * T * LD)};
    grad_t gs[] = {{"dqkv", &c.dqkv, B * T * LD}};
    gqa_loss(&c);
    // Forward vs a double reference that reads kv head h / (NH / KVH).
    double oref[B * T * C];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                int kh = h / (NH / KVH);
                const float *qr = c.qkv + (b * T + t) * LD + h * hs;
                double a[T], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const float *k = c.qkv + (b * T + j) * LD + C + kh * hs;
                    double sc = 0;
                    for (int i = 0; i < hs; i++) sc += (double)qr[i] * k[i];
                    a[j] = sc / sqrt(hs);
                    mx = fmax(mx, a[j]);
                }
                for (int j = 0; j <= t; j++) { a[j] = exp(a[j] - mx); sum += a[j]; }
                for (int i = 0; i < hs; i++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += a[j] / sum * c.qkv[(b * T + j) * LD + C + KVH * hs + kh * hs + i];
                    oref[(b * T + t) * C + h * hs + i] = o;
                }
            }
    float *of = from_double(oref, B * T * C);
    T_CHECK(t_max_rel_diff(c.out, of, B * T * C) <= FWD_TOL, "grouped-query attention out != reference");
    free(of);
    zero_grads(gs, 1);
    gqa_bwd(&c);
    check_fd("grouped-query attention dqkv", c.qkv, c.dqkv, B * T * LD, gqa_loss, &c, FD_H);
    check_accumulates("grouped-query attention", gqa_bwd, &c, gs, 1);
    free(c.qkv), free(c.out), free(c.scr), free(c.R), free(c.dqkv);
}

// ---------------------------------------------------------------------------------------------
// The Llama family's kernels (kernels_llama.c)

// RMSNorm on rows of C, as N x H heads of a strided layout (H = 1, ld = C: a plain norm).
typedef struct {
    int N, H, C, ld;
    float *x, *w, *out, *rstd, *R, *dx, *dw;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    lmp_rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->N, c->H, c->C, c->ld, LN_EPS);
    double L = 0;  // only the normalised columns count (the others are not written)
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->H * c->C; j++) L += (double)c->out[n * c->ld + j] * c->R[n * c->ld + j];
    return L;
}
static void rms_bwd(void *p) {
    rms_ctx *c = p;
    rms_loss(c);
    lmp_rmsnorm_backward(c->dx, c->dw, c->R, c->x, c->w, c->rstd, c->N, c->H, c->C, c->ld);
}

static void test_rmsnorm_case(int H, int ld) {
    enum { N = 5, C = 8 };
    size_t n = (size_t)N * ld;
    rms_ctx c = {N, H, C, ld, randn(n, 0.3f, 1.5f), randn(C, 1.0f, 0.5f), zeros(n), zeros(N * H),
                 randn(n, 0, 1), zeros(n), zeros(C)};
    grad_t gs[] = {{"dinp", &c.dx, n}, {"dw", &c.dw, C}};
    rms_loss(&c);
    double worst = 0;
    for (int r = 0; r < N * H; r++) {  // forward vs double reference
        const float *x = c.x + (r / H) * ld + (r % H) * C;
        double ms = 0;
        for (int i = 0; i < C; i++) ms += (double)x[i] * x[i];
        double s = 1.0 / sqrt(ms / C + LN_EPS);
        for (int i = 0; i < C; i++)
            worst = fmax(worst, fabs(c.out[(r / H) * ld + (r % H) * C + i] - x[i] * s * c.w[i]));
    }
    T_CHECK(worst <= FWD_TOL * 4, "rmsnorm forward != reference (%.3g)", worst);
    zero_grads(gs, 2);
    rms_bwd(&c);
    check_fd(H == 1 ? "rmsnorm dinp" : "rmsnorm per head dinp", c.x, c.dx, n, rms_loss, &c, FD_H);
    check_fd(H == 1 ? "rmsnorm dw" : "rmsnorm per head dw", c.w, c.dw, C, rms_loss, &c, FD_H);
    check_accumulates("rmsnorm", rms_bwd, &c, gs, 2);
    check_null_grads("rmsnorm", rms_bwd, &c, gs, 2, 0u);
    free(c.x), free(c.w), free(c.out), free(c.rstd), free(c.R), free(c.dx), free(c.dw);
}

static void test_rmsnorm(void) {
    printf("rmsnorm (plain, and per head inside a wider row: Qwen3's q/k norm)\n");
    test_rmsnorm_case(1, 8);
    test_rmsnorm_case(3, 3 * 8 + 5);
}

// RoPE on H heads of hd inside rows of ld, positions pos0 + n % T.
typedef struct {
    int N, T, pos0, H, hd, ld;
    const float *cs, *sn;
    float *x, *y, *R, *dx;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    memcpy(c->y, c->x, (size_t)c->N * c->ld * sizeof(float));
    lmp_rope_forward(c->y, c->ld, c->N, c->T, c->pos0, c->H, c->hd, c->cs, c->sn);
    return dot_rd(c->y, c->R, (size_t)c->N * c->ld);
}
static void rope_bwd(void *p) {
    rope_ctx *c = p;
    float *d = copy_of(c->R, (size_t)c->N * c->ld);
    lmp_rope_backward(d, c->ld, c->N, c->T, c->pos0, c->H, c->hd, c->cs, c->sn);
    for (int i = 0; i < c->N * c->ld; i++) c->dx[i] += d[i];
    free(d);
}

// Inverse frequencies in double, written from transformers' formulas independently of
// kernels_llama.c (default, linear, llama3).
static double ref_inv_freq(const lmp_rope_params *rp, int i, int hd) {
    double f = 1.0 / pow(rp->theta, 2.0 * i / hd);
    if (rp->type == LMP_ROPE_LINEAR) return f / rp->factor;
    if (rp->type != LMP_ROPE_LLAMA3) return f;
    double wl = 2 * M_PI / f, lo = rp->original_max_pos / rp->low_freq_factor;
    double hi = rp->original_max_pos / rp->high_freq_factor;
    if (wl < hi) return f;
    if (wl > lo) return f / rp->factor;
    double sm = (rp->original_max_pos / wl - rp->low_freq_factor) / (rp->high_freq_factor - rp->low_freq_factor);
    return (1 - sm) * f / rp->factor + sm * f;
}

static void check_rope_tables(const char *what, const lmp_rope_params *rp, int hd, int P) {
    float *cs = zeros((size_t)P * hd / 2), *sn = zeros((size_t)P * hd / 2);
    lmp_rope_tables(cs, sn, P, hd, rp);
    double worst = 0;
    for (int p = 0; p < P; p++)
        for (int i = 0; i < hd / 2; i++) {
            double a = p * ref_inv_freq(rp, i, hd);
            worst = fmax(worst, fabs(cs[p * hd / 2 + i] - cos(a)));
            worst = fmax(worst, fabs(sn[p * hd / 2 + i] - sin(a)));
        }
    printf("  rope tables %-8s max abs err %.2e\n", what, worst);
    T_CHECK(worst <= 2e-5, "rope tables (%s) differ from the reference by %.3g", what, worst);
    free(cs), free(sn);
}

static void test_rope(void) {
    printf("rotary embeddings\n");
    lmp_rope_params def = {LMP_ROPE_DEFAULT, 10000.0f, 0, 0, 0, 0};
    lmp_rope_params lin = {LMP_ROPE_LINEAR, 10000.0f, 4.0f, 0, 0, 0};
    lmp_rope_params l3 = {LMP_ROPE_LLAMA3, 500000.0f, 8.0f, 1.0f, 4.0f, 64};  // all three bands at hd 32
    check_rope_tables("default", &def, 32, 40);
    check_rope_tables("linear", &lin, 32, 40);
    check_rope_tables("llama3", &l3, 32, 40);
    enum { B = 2, T = 5, N = B * T, H = 3, hd = 6, LD = H * hd + 4, P = 16 };
    float *cs = zeros(P * hd / 2), *sn = zeros(P * hd / 2);
    lmp_rope_tables(cs, sn, P, hd, &def);
    rope_ctx c = {N, T, 2, H, hd, LD, cs, sn, randn(N * LD, 0, 1), zeros(N * LD), randn(N * LD, 0, 1), zeros(N * LD)};
    rope_loss(&c);
    double worst = 0;  // HF: x * cos + rotate_half(x) * sin, rotate_half = (-x2, x1)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < hd; i++) {
                int p = 2 + n % T, k = i % (hd / 2);
                const float *x = c.x + n * LD + h * hd;
                double rot = i < hd / 2 ? -x[i + hd / 2] : x[i - hd / 2];
                double ref = x[i] * cs[p * hd / 2 + k] + rot * sn[p * hd / 2 + k];
                worst = fmax(worst, fabs(c.y[n * LD + h * hd + i] - ref));
            }
    for (int n = 0; n < N; n++)  // columns past the heads untouched
        for (int j = H * hd; j < LD; j++) worst = fmax(worst, fabs(c.y[n * LD + j] - c.x[n * LD + j]));
    T_CHECK(worst <= 1e-6, "rope forward != reference (%.3g)", worst);
    grad_t gs[] = {{"dx", &c.dx, N * LD}};
    zero_grads(gs, 1);
    rope_bwd(&c);
    check_fd("rope dx", c.x, c.dx, N * LD, rope_loss, &c, FD_H);
    free(cs), free(sn), free(c.x), free(c.y), free(c.R), free(c.dx);
}

// Gated SiLU: h = gate | up per row.
typedef struct {
    int N, H;
    float *h, *out, *R, *dh;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    lmp_swiglu_forward(c->out, c->h, c->N, c->H);
    return dot_rd(c->out, c->R, (size_t)c->N * c->H);
}
static void swiglu_bwd(void *p) {
    swiglu_ctx *c = p;
    lmp_swiglu_backward(c->dh, c->h, c->R, c->N, c->H);
}

static void test_swiglu(void) {
    printf("gated SiLU\n");
    enum { N = 4, H = 7 };
    swiglu_ctx c = {N, H, randn(N * 2 * H, 0, 2), zeros(N * H), randn(N * H, 0, 1), zeros(N * 2 * H)};
    swiglu_loss(&c);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int i = 0; i < H; i++) {
            double g = c.h[n * 2 * H + i], u = c.h[n * 2 * H + H + i];
            worst = fmax(worst, fabs(c.out[n * H + i] - g / (1 + exp(-g)) * u));
        }
    T_CHECK(worst <= 1e-5, "swiglu forward != reference (%.3g)", worst);
    grad_t gs[] = {{"dh", &c.dh, N * 2 * H}};
    zero_grads(gs, 1);
    swiglu_bwd(&c);
    check_fd("swiglu dh", c.h, c.dh, N * 2 * H, swiglu_loss, &c, FD_H);
    check_accumulates("swiglu", swiglu_bwd, &c, gs, 1);
    free(c.h), free(c.out), free(c.R), free(c.dh);
}

// Linear with an (out, in) weight writing into columns of a wider row (ld > OC).
typedef struct {
    int N, IC, OC, ld;
    float *x, *w, *bias, *out, *R, *dx, *dw, *db;
} mmoi_ctx;

static double mmoi_loss(void *p) {
    mmoi_ctx *c = p;
    lmp_matmul_oi_forward(c->out, c->ld, c->x, c->w, c->bias, c->N, c->IC, c->OC);
    return dot_rd(c->out, c->R, (size_t)c->N * c->ld);
}
static void mmoi_bwd(void *p) {
    mmoi_ctx *c = p;
    lmp_matmul_oi_backward(c->dx, c->dw, c->db, c->R, c->ld, c->x, c->w, c->N, c->IC, c->OC);
}

static void test_matmul_oi(void) {
    printf("matmul, weight (out, in), output rows of a wider buffer\n");
    enum { N = 5, IC = 6, OC = 4, LD = 9 };
    mmoi_ctx c = {N, IC, OC, LD, randn(N * IC, 0, 1), randn(OC * IC, 0, 1), randn(OC, 0, 1),
                  zeros(N * LD), randn(N * LD, 0, 1), zeros(N * IC), zeros(OC * IC), zeros(OC)};
    for (int n = 0; n < N; n++)  // columns past OC are another part's: zero R there
        for (int j = OC; j < LD; j++) c.R[n * LD + j] = 0;
    mmoi_loss(&c);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = c.bias[o];
            for (int i = 0; i < IC; i++) s += (double)c.x[n * IC + i] * c.w[o * IC + i];
            worst = fmax(worst, fabs(c.out[n * LD + o] - s));
        }
    T_CHECK(worst <= 1e-5, "matmul_oi forward != reference (%.3g)", worst);
    grad_t gs[] = {{"dinp", &c.dx, N * IC}, {"dw", &c.dw, OC * IC}, {"dbias", &c.db, OC}};
    zero_grads(gs, 3);
    mmoi_bwd(&c);
    check_fd("matmul_oi dinp", c.x, c.dx, N * IC, mmoi_loss, &c, FD_H);
    check_fd("matmul_oi dw", c.w, c.dw, OC * IC, mmoi_loss, &c, FD_H);
    check_fd("matmul_oi dbias", c.bias, c.db, OC, mmoi_loss, &c, FD_H);
    check_accumulates("matmul_oi", mmoi_bwd, &c, gs, 3);
    check_null_grads("matmul_oi", mmoi_bwd, &c, gs, 3, 0u);
    free(c.x), free(c.w), free(c.bias), free(c.out), free(c.R), free(c.dx), free(c.dw), free(c.db);
}

// Qwen3's attention core: raw q|k|v -> per-head q/k RMSNorm -> RoPE on q, k -> grouped-query
// attention, its backward composed as attention.c does; FD w.r.t. raw q|k|v and both norms.
typedef struct {
    int B, T, NH, KVH, hs, ld;
    const float *cs, *sn;
    float *raw, *qn, *kn, *qkv, *rstd, *out, *scr, *R, *draw, *dqn, *dkn, *dqkv;
} qkn_ctx;

static double qkn_loss(void *p) {
    qkn_ctx *c = p;
    int N = c->B * c->T, q = c->NH * c->hs, kv = c->KVH * c->hs;
    memcpy(c->qkv, c->raw, (size_t)N * c->ld * sizeof(float));
    lmp_rmsnorm_forward(c->qkv, c->rstd, c->raw, c->qn, N, c->NH, c->hs, c->ld, LN_EPS);
    lmp_rmsnorm_forward(c->qkv + q, c->rstd + N * c->NH, c->raw + q, c->kn, N, c->KVH, c->hs, c->ld, LN_EPS);
    lmp_rope_forward(c->qkv, c->ld, N, c->T, 0, c->NH + c->KVH, c->hs, c->cs, c->sn);
    lmp_sdpa_forward(c->out, c->scr, c->qkv, c->qkv + q, c->qkv + q + kv, c->ld, c->B, c->T, c->NH, c->KVH, c->hs);
    return dot_rd(c->out, c->R, (size_t)N * q);
}
static void qkn_bwd(void *p) {
    qkn_ctx *c = p;
    int N = c->B * c->T, q = c->NH * c->hs, kv = c->KVH * c->hs;
    qkn_loss(c);
    memset(c->dqkv, 0, (size_t)N * c->ld * sizeof(float));
    lmp_sdpa_backward(c->dqkv, c->dqkv + q, c->dqkv + q + kv, c->scr, c->R, c->qkv, c->qkv + q,
                      c->qkv + q + kv, c->ld, c->B, c->T, c->NH, c->KVH, c->hs);
    lmp_rope_backward(c->dqkv, c->ld, N, c->T, 0, c->NH + c->KVH, c->hs, c->cs, c->sn);
    for (int n = 0; n < N; n++)  // v passes through the norm untouched
        for (int j = q + kv; j < c->ld; j++) c->draw[n * c->ld + j] += c->dqkv[n * c->ld + j];
    lmp_rmsnorm_backward(c->draw, c->dqn, c->dqkv, c->raw, c->qn, c->rstd, N, c->NH, c->hs, c->ld);
    lmp_rmsnorm_backward(c->draw + q, c->dkn, c->dqkv + q, c->raw + q, c->kn, c->rstd + N * c->NH, N,
                         c->KVH, c->hs, c->ld);
}

static void test_qk_norm_attention(void) {
    printf("grouped-query attention with q/k RMSNorm and RoPE (Qwen3)\n");
    enum { B = 2, T = 4, NH = 4, KVH = 2, hs = 4, LD = (NH + 2 * KVH) * hs, N = B * T };
    float *cs = zeros(T * hs / 2), *sn = zeros(T * hs / 2);
    lmp_rope_params def = {LMP_ROPE_DEFAULT, 10000.0f, 0, 0, 0, 0};
    lmp_rope_tables(cs, sn, T, hs, &def);
    qkn_ctx c = {B, T, NH, KVH, hs, LD, cs, sn, randn(N * LD, 0, 1), randn(hs, 1, 0.3f),
                 randn(hs, 1, 0.3f), zeros(N * LD), zeros(N * (NH + KVH)), zeros(N * NH * hs),
                 zeros(lmp_sdpa_scratch_floats(0, T)), randn(N * NH * hs, 0, 1), zeros(N * LD), zeros(hs),
                 zeros(hs), zeros(N * LD)};
    grad_t gs[] = {{"draw", &c.draw, N * LD}, {"dq_norm", &c.dqn, hs}, {"dk_norm", &c.dkn, hs}};
    zero_grads(gs, 3);
    qkn_bwd(&c);
    check_fd("q/k norm attention draw", c.raw, c.draw, N * LD, qkn_loss, &c, FD_H);
    check_fd("q/k norm attention dq_norm", c.qn, c.dqn, hs, qkn_loss, &c, FD_H);
    check_fd("q/k norm attention dk_norm", c.kn, c.dkn, hs, qkn_loss, &c, FD_H);
    free(cs), free(sn), free(c.raw), free(c.qn), free(c.kn), free(c.qkv), free(c.rstd), free(c.out);
    free(c.scr), free(c.R), free(c.draw), free(c.dqn), free(c.dkn), free(c.dqkv);
}

// Attention with P prefix keys/values (prefix tuning, kernels_attn.c), grouped-query: every
// query sees the P prefixes and its causal window; the prefixes sit in one (P, ldp) buffer
// [keys | values | pad] shared by the batch.
typedef struct {
    int B, T, NH, KVH, hs, ld, P, ldp;
    float *qkv, *pre, *out, *scr, *R, *dqkv, *dpk, *dpv;
} pfx_ctx;

static double pfx_loss(void *p) {
    pfx_ctx *c = p;
    int q = c->NH * c->hs, kv = c->KVH * c->hs;
    lmp_sdpa_prefix_forward(c->out, c->scr, c->qkv, c->qkv + q, c->qkv + q + kv, c->ld, c->pre,
                            c->pre + kv, c->ldp, c->P, c->B, c->T, c->NH, c->KVH, c->hs);
    return dot_rd(c->out, c->R, (size_t)c->B * c->T * q);
}
static void pfx_bwd(void *p) {
    pfx_ctx *c = p;
    int q = c->NH * c->hs, kv = c->KVH * c->hs;
    pfx_loss(c);
    fill(c->scr, lmp_sdpa_scratch_floats(c->P, c->T), NAN);  // scratch: never read before written
    lmp_sdpa_prefix_backward(c->dqkv, c->dqkv + q, c->dqkv + q + kv, c->dpk, c->dpv, c->scr, c->R,
                             c->qkv, c->qkv + q, c->qkv + q + kv, c->ld, c->pre, c->pre + kv, c->ldp,
                             c->P, c->B, c->T, c->NH, c->KVH, c->hs);
}

// out of query (b, t, h) in double: softmax over the P prefixes and keys 0..t.
static void pfx_ref_row(const pfx_ctx *c, int b, int t, int h, double *o) {
    int kh = h / (c->NH / c->KVH), q = c->NH * c->hs, kv = c->KVH * c->hs, hs = c->hs;
    const float *qr = c->qkv + (size_t)(b * c->T + t) * c->ld + h * hs;
    double a[64], mx = -INFINITY, sum = 0;
    for (int j = 0; j < c->P + t + 1; j++) {
        const float *k = j < c->P ? c->pre + (size_t)j * c->ldp + kh * hs
                                  : c->qkv + (size_t)(b * c->T + j - c->P) * c->ld + q + kh * hs;
        double sc = 0;
        for (int i = 0; i < hs; i++) sc += (double)qr[i] * k[i];
        a[j] = sc / sqrt(hs);
        mx = fmax(mx, a[j]);
    }
    for (int j = 0; j < c->P + t + 1; j++) { a[j] = exp(a[j] - mx); sum += a[j]; }
    for (int i = 0; i < hs; i++) {
        o[i] = 0;
        for (int j = 0; j < c->P + t + 1; j++) {
            const float *v = j < c->P ? c->pre + (size_t)j * c->ldp + kv + kh * hs
                                      : c->qkv + (size_t)(b * c->T + j - c->P) * c->ld + q + kv + kh * hs;
            o[i] += a[j] / sum * v[i];
        }
    }
}

static void test_attention_prefix(void) {
    printf("attention with prefix keys/values, grouped-query\n");
    enum { B = 2, T = 5, NH = 4, KVH = 2, hs = 3, P = 3, LD = (NH + 2 * KVH) * hs, C = NH * hs,
           LDP = 2 * KVH * hs + 1 };
    pfx_ctx c = {B, T, NH, KVH, hs, LD, P, LDP, randn(B * T * LD, 0, 1), randn(P * LDP, 0, 1),
                 zeros(B * T * C), zeros(lmp_sdpa_scratch_floats(P, T)), randn(B * T * C, 0, 1),
                 zeros(B * T * LD), zeros(P * LDP), zeros(P * LDP)};
    grad_t gs[] = {{"dqkv", &c.dqkv, B * T * LD}, {"dpk", &c.dpk, P * LDP}, {"dpv", &c.dpv, P * LDP}};
    pfx_loss(&c);
    double oref[B * T * C];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) pfx_ref_row(&c, b, t, h, oref + (b * T + t) * C + h * hs);
    float *of = from_double(oref, B * T * C);
    T_CHECK(t_max_rel_diff(c.out, of, B * T * C) <= FWD_TOL, "prefix attention out != reference");
    free(of);
    zero_grads(gs, 3);
    pfx_bwd(&c);
    check_fd("prefix attention dqkv", c.qkv, c.dqkv, B * T * LD, pfx_loss, &c, FD_H);
    // dpk and dpv share the prefix buffer's layout: keys at column 0, values at KVH hs.
    float *g = zeros(P * LDP);
    for (int t = 0; t < P; t++)
        for (int i = 0; i < KVH * hs; i++) {
            g[t * LDP + i] = c.dpk[t * LDP + i];
            g[t * LDP + KVH * hs + i] = c.dpv[t * LDP + i];
        }
    check_fd("prefix attention dprefix", c.pre, g, P * LDP, pfx_loss, &c, FD_H);
    free(g);
    check_accumulates("prefix attention", pfx_bwd, &c, gs, 3);
    check_null_grads("prefix attention", pfx_bwd, &c, gs, 3, 1u);
    free(c.qkv), free(c.pre), free(c.out), free(c.scr), free(c.R), free(c.dqkv), free(c.dpk);
    free(c.dpv);
}

int main(void) {
    test_layernorm();  // first: it forks before this process's first OpenMP region
    test_matmul();
    test_gelu();
    test_attention(5);
    test_attention(130);
    test_attention_gqa();
    test_embedding();
    test_xent();
    test_rmsnorm();
    test_rope();
    test_swiglu();
    test_matmul_oi();
    test_qk_norm_attention();
    test_attention_prefix();
    return t_finish();
}
