// The tiled attention kernels (kernels_attn.c) against a naive double-precision reference,
// element by element: out and dq, dk, dv (and the prefixes' dpk, dpv) for T = 150 (two
// whole tiles of 64 query rows and a partial one), grouped-query (NH = 4 over KVH = 2),
// B = 2, without and with P = 3 prefixes; and the same bits with 1 and 2 OpenMP threads.
#include "testutil.h"
#include "model/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, T = 150, NH = 4, KVH = 2, HS = 8, LD = (NH + 2 * KVH) * HS, C = NH * HS,
       PMAX = 3, LDP = 2 * KVH * HS + 1, KO = NH * HS, VO = (NH + KVH) * HS };
#define TOL 2e-6  // max|kernel - reference| / max|reference| per tensor (observed <= 3.1e-7)

// Test data: xorshift64*, independent of the project's RNG.
static uint64_t rng_s = 88172645463325252ull;
static float rnd_normal(void) {
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_s ^= rng_s >> 12, rng_s ^= rng_s << 25, rng_s ^= rng_s >> 27;
        u[i] = (double)((rng_s * 2685821657736338717ull) >> 11) * 0x1.0p-53;
    }
    return (float)(sqrt(-2.0 * log(1.0 - u[0])) * cos(2.0 * M_PI * u[1]));
}
static float *randn(size_t n) {
    float *x = malloc(n * sizeof(float));
    if (!x) abort();
    for (size_t i = 0; i < n; i++) x[i] = rnd_normal();
    return x;
}
static void *zalloc(size_t n) {
    void *p = calloc(n, 8);  // room for doubles
    if (!p) abort();
    return p;
}

typedef struct {
    float *qkv, *pre, *R;                 // inputs: (B,T,LD), prefixes (PMAX,LDP) k | v, dout (B,T,C)
    float *out, *dqkv, *dpk, *dpv, *scr;  // the kernels' results and scratch
} bufs;

// Forward then backward with P prefixes (0: the plain kernels); out and the scratch start as
// NaN, so a row the kernels skip or a scratch entry read before written shows.
static void run(bufs *x, int P) {
    size_t ns = lmp_sdpa_scratch_floats(P, T);
    for (size_t i = 0; i < ns; i++) x->scr[i] = NAN;
    for (size_t i = 0; i < (size_t)B * T * C; i++) x->out[i] = NAN;
    memset(x->dqkv, 0, sizeof(float) * B * T * LD);
    memset(x->dpk, 0, sizeof(float) * PMAX * LDP);
    memset(x->dpv, 0, sizeof(float) * PMAX * LDP);
    const float *q = x->qkv, *k = q + KO, *v = q + VO;
    if (P) {
        lmp_sdpa_prefix_forward(x->out, x->scr, q, k, v, LD, x->pre, x->pre + KVH * HS, LDP, P, B, T,
                                NH, KVH, HS);
        lmp_sdpa_prefix_backward(x->dqkv, x->dqkv + KO, x->dqkv + VO, x->dpk, x->dpv, x->scr, x->R, q,
                                 k, v, LD, x->pre, x->pre + KVH * HS, LDP, P, B, T, NH, KVH, HS);
    } else {
        lmp_sdpa_forward(x->out, x->scr, q, k, v, LD, B, T, NH, KVH, HS);
        lmp_sdpa_backward(x->dqkv, x->dqkv + KO, x->dqkv + VO, x->scr, x->R, q, k, v, LD, B, T, NH,
                          KVH, HS);
    }
}

// Key (kv = 0) or value (kv = 1) row j of kv head kh of sequence b: the prefixes first.
static const float *kv_row(const bufs *x, int P, int b, int kh, int j, int kv) {
    if (j < P) return x->pre + (size_t)j * LDP + kv * KVH * HS + kh * HS;
    return x->qkv + ((size_t)b * T + j - P) * LD + (kv ? VO : KO) + kh * HS;
}
// Its gradient in the reference's buffers: dqkv (B,T,LD) or dpre (PMAX,LDP), same layouts.
static double *dkv_row(double *dqkv, double *dpre, int P, int b, int kh, int j, int kv) {
    if (j < P) return dpre + (size_t)j * LDP + kv * KVH * HS + kh * HS;
    return dqkv + ((size_t)b * T + j - P) * LD + (kv ? VO : KO) + kh * HS;
}

// Query (b, t, h) in double: p = softmax(q . keys / sqrt(HS)) over the P + t + 1 visible
// keys, out = p . values; backward dp_j = dout . v_j, ds_j = p_j (dp_j - sum p dp).
static void ref_query(const bufs *x, int P, int b, int t, int h, double *out, double *dqkv,
                      double *dpre) {
    int kh = h / (NH / KVH), n = P + t + 1;
    const float *q = x->qkv + ((size_t)b * T + t) * LD + h * HS, *dy = x->R + ((size_t)b * T + t) * C + h * HS;
    double p[PMAX + T], dp[PMAX + T], mx = -INFINITY, sum = 0, dot = 0, sc = 1.0 / sqrt(HS);
    for (int j = 0; j < n; j++) {
        const float *kr = kv_row(x, P, b, kh, j, 0), *vr = kv_row(x, P, b, kh, j, 1);
        double s = 0, d = 0;
        for (int i = 0; i < HS; i++) s += (double)q[i] * kr[i], d += (double)dy[i] * vr[i];
        p[j] = s * sc, dp[j] = d;
        mx = fmax(mx, p[j]);
    }
    for (int j = 0; j < n; j++) p[j] = exp(p[j] - mx), sum += p[j];
    for (int j = 0; j < n; j++) p[j] /= sum, dot += p[j] * dp[j];
    double *dq = dqkv + ((size_t)b * T + t) * LD + h * HS, *o = out + ((size_t)b * T + t) * C + h * HS;
    for (int j = 0; j < n; j++) {
        const float *kr = kv_row(x, P, b, kh, j, 0), *vr = kv_row(x, P, b, kh, j, 1);
        double ds = p[j] * (dp[j] - dot) * sc;
        double *dk = dkv_row(dqkv, dpre, P, b, kh, j, 0), *dv = dkv_row(dqkv, dpre, P, b, kh, j, 1);
        for (int i = 0; i < HS; i++) {
            o[i] += p[j] * vr[i];
            dq[i] += ds * kr[i];
            dk[i] += ds * q[i];
            dv[i] += p[j] * dy[i];
        }
    }
}

// max |a - ref| / max |ref| over the width columns from col0 of rows rows (row stride ld).
static double part_diff(const float *a, const double *ref, int rows, int ld, int col0, int width) {
    double d = 0, m = 1e-30;
    for (int r = 0; r < rows; r++)
        for (int i = col0; i < col0 + width; i++) {
            double e = a[(size_t)r * ld + i], f = ref[(size_t)r * ld + i];
            d = isnan(e) ? INFINITY : fmax(d, fabs(e - f));
            m = fmax(m, fabs(f));
        }
    return d / m;
}

static void check_reference(bufs *x, int P) {
    printf("tiled attention vs double reference, T = %d, NH = %d over KVH = %d, P = %d\n", T, NH, KVH, P);
    double *out = zalloc((size_t)B * T * C), *dqkv = zalloc((size_t)B * T * LD), *dpre = zalloc(PMAX * LDP);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) ref_query(x, P, b, t, h, out, dqkv, dpre);
    run(x, P);
    double d[6] = {part_diff(x->out, out, B * T, C, 0, C), part_diff(x->dqkv, dqkv, B * T, LD, 0, KO),
                   part_diff(x->dqkv, dqkv, B * T, LD, KO, KVH * HS),
                   part_diff(x->dqkv, dqkv, B * T, LD, VO, KVH * HS),
                   P ? part_diff(x->dpk, dpre, P, LDP, 0, KVH * HS) : 0,
                   P ? part_diff(x->dpv, dpre + KVH * HS, P, LDP, 0, KVH * HS) : 0};
    const char *name[6] = {"out", "dq", "dk", "dv", "dpk", "dpv"};
    for (int i = 0; i < 6; i++)
        T_CHECK(d[i] <= TOL, "P = %d: %s differs from the reference by %.3g (max relative)", P, name[i], d[i]);
    printf("  max relative differences: out %.2g dq %.2g dk %.2g dv %.2g dpk %.2g dpv %.2g\n", d[0],
           d[1], d[2], d[3], d[4], d[5]);
    free(out), free(dqkv), free(dpre);
}

// The same bits on 1 and 2 threads: every (b, kv head) unit's sums stay in one thread.
static void check_threads(bufs *x, int P) {
    size_t no = (size_t)B * T * C, nd = (size_t)B * T * LD, np = PMAX * LDP;
    float *keep[4] = {malloc(no * 4), malloc(nd * 4), malloc(np * 4), malloc(np * 4)};
    omp_set_num_threads(2);
    run(x, P);
    memcpy(keep[0], x->out, no * 4), memcpy(keep[1], x->dqkv, nd * 4);
    memcpy(keep[2], x->dpk, np * 4), memcpy(keep[3], x->dpv, np * 4);
    omp_set_num_threads(1);
    run(x, P);
    T_CHECK(!memcmp(keep[0], x->out, no * 4) && !memcmp(keep[1], x->dqkv, nd * 4) &&
                !memcmp(keep[2], x->dpk, np * 4) && !memcmp(keep[3], x->dpv, np * 4),
            "P = %d: 1 and 2 threads give different bits", P);
    omp_set_num_threads(2);
    for (int i = 0; i < 4; i++) free(keep[i]);
}

int main(void) {
    omp_set_num_threads(2);  // the scratch is sized for the most threads the kernels will use
    bufs x = {randn((size_t)B * T * LD), randn(PMAX * LDP), randn((size_t)B * T * C),
              zalloc((size_t)B * T * C), zalloc((size_t)B * T * LD), zalloc(PMAX * LDP),
              zalloc(PMAX * LDP), zalloc(lmp_sdpa_scratch_floats(PMAX, T))};
    for (int P = 0; P <= PMAX; P += PMAX) {
        check_reference(&x, P);
        check_threads(&x, P);
    }
    free(x.qkv), free(x.pre), free(x.R), free(x.out), free(x.dqkv), free(x.dpk), free(x.dpv), free(x.scr);
    return t_finish();
}
