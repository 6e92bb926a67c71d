// bench_wgemm: the frozen-weight GEMMs of GPT-2 124M's LoRA step (B*T = N rows) in fp32
// (OpenBLAS sgemm, through lmp_wgemm) and bf16 (oneDNN, through lmp_wgemm: the input's
// rounding pass included, as in training), forward y = x W and backward dx = dy W^T, for
// c_attn (768 x 2304), attn c_proj (768 x 768), mlp c_fc (768 x 3072), mlp c_proj (3072 x
// 768) and a 4096-row chunk of the tied LM head (768 x 50257 stored (out, in)); GFLOP/s the
// best of REPS, at the thread count of OMP_NUM_THREADS (both libraries use OpenMP).
// Usage: bench_wgemm [N] [REPS]   (tests/bench/bench_bf16.sh runs it)
#include "core/bf16.h"
#include "core/rng.h"
#include "core/util.h"
#include "core/wgemm.h"

#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Best-of-reps GFLOP/s of lmp_wgemm on w (stored as w_oi says) for N rows.
static double rate(const lmp_param *w, int w_oi, int back, int N, int reps) {
    int in = (int)w->local_shape[w_oi ? 1 : 0], out = (int)w->local_shape[w_oi ? 0 : 1];
    int K = back ? out : in, M = back ? in : out;
    float *x = lmp_calloc((size_t)N * K * 4), *y = lmp_calloc((size_t)N * M * 4);
    for (size_t i = 0; i < (size_t)N * K; i++) x[i] = lmp_rng_normal(1, 1, i);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {  // r = 0: warm-up (oneDNN creates its primitive)
        double t0 = lmp_now();
        lmp_wgemm(w, w_oi, back, y, M, x, K, N, 0.0f);
        if (r && lmp_now() - t0 < best) best = lmp_now() - t0;
    }
    free(x);
    free(y);
    return 2.0 * N * K * M / best / 1e9;
}

static void shape(const char *name, int d0, int d1, int w_oi, int N, int reps) {
    lmp_param w32 = {.ndim = 2, .numel = (size_t)d0 * d1}, w16 = w32;
    w32.local_shape[0] = w16.local_shape[0] = d0;
    w32.local_shape[1] = w16.local_shape[1] = d1;
    w32.data = lmp_calloc(w32.numel * 4);
    w16.h = lmp_calloc(w16.numel * 2);
    w16.bf16 = 1;
    for (size_t i = 0; i < w32.numel; i++) {
        w32.data[i] = 0.02f * lmp_rng_normal(2, 2, i);
        w16.h[i] = lmp_f32_to_bf16(w32.data[i]);
    }
    for (int back = 0; back < 2; back++)
        printf("| %s | %s | %d | %.1f | %.1f |\n", name, back ? "dx = dy Wᵀ" : "y = x W", N,
               rate(&w32, w_oi, back, N, reps), rate(&w16, w_oi, back, N, reps));
    free(w32.data);
    free(w16.h);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int N = argc > 1 ? atoi(argv[1]) : 1024, reps = argc > 2 ? atoi(argv[2]) : 5;
    printf("%d threads; GFLOP/s, best of %d\n", omp_get_max_threads(), reps);
    printf("| GEMM | direction | rows | fp32 (OpenBLAS) | bf16 (oneDNN) |\n|---|---|---|---|---|\n");
    shape("c_attn 768x2304", 768, 2304, 0, N, reps);
    shape("attn.c_proj 768x768", 768, 768, 0, N, reps);
    shape("mlp.c_fc 768x3072", 768, 3072, 0, N, reps);
    shape("mlp.c_proj 3072x768", 3072, 768, 0, N, reps);
    shape("LM head 50257x768 (4096-row chunk)", 50257, 768, 1, N < 4096 ? N : 4096, reps);
    MPI_Finalize();
    return 0;
}
