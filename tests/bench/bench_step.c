// bench_step: ms/step and tokens/s of one training step of a GPT-2 124M-shaped model
// (random weights) at B*T = 1024, LoRA r=8 on c_attn vs full fine-tuning, at the thread
// count given by OMP_NUM_THREADS; plus OpenBLAS sgemm GFLOP/s on the model's shapes in the
// same process, and the memory each mode holds for parameters/gradients/optimizer state.
// Usage: bench_step [steps] [B] [T]   (run by tests/bench/run.sh)
#include "model/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/util.h"

#include <cblas.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *openblas_get_corename(void);

// CPU seconds of the process (all threads): on a shared machine a one-thread step's CPU time
// barely moves with the other jobs' load, while its wall time does.
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// Best of reps: wall-clock GFLOP/s, and in *cpu_rate the rate by CPU time per thread.
static double sgemm_gflops(int M, int N, int K, int reps, double *cpu_rate) {
    float *a = lmp_calloc((size_t)M * K * 4), *b = lmp_calloc((size_t)K * N * 4),
          *c = lmp_calloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = 0.001f * (i % 97);
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = 0.001f * (i % 89);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a, K, b, N, 0, c, N);
    double best = 1e30, cbest = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = lmp_now(), c0 = cpu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a, K, b, N, 0, c, N);
        double dt = lmp_now() - t0, dc = (cpu_now() - c0) / omp_get_max_threads();
        if (dt < best) best = dt;
        if (dc < cbest) cbest = dc;
    }
    *cpu_rate = 2.0 * M * N * K / cbest / 1e9;
    free(a); free(b); free(c);
    return 2.0 * M * N * K / best / 1e9;
}


static void run_mode(lmp_comm *c, const char *label, int full, int steps, int B, int T) {
    lmp_model_config cfg = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257, .n_ctx = 1024, .ln_eps = 1e-5f};
    lmp_model_opts o = {.full_finetune = full, .targets = full ? 0 : LMP_T_C_ATTN,
                        .ad = {.r = 8, .alpha = 16}};
    lmp_model m;
    lmp_model_build(&m, &cfg, &o, c);
    lmp_model_init_base(&m, 1);
    lmp_model_init_adapters(&m, 0, 2);
    lmp_model_set_batch(&m, B, T);
    int N = B * T;
    int *tok = malloc(N * sizeof(int)), *tgt = malloc(N * sizeof(int));
    float *sc = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) {
        tok[i] = (int)(lmp_rng_bits(3, 0, i) % 50257);
        tgt[i] = (int)(lmp_rng_bits(3, 1, i) % 50257);
        sc[i] = 1.0f / N;
    }
    lmp_optim_cfg oc = {1e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, steps, 2, 0};
    double best = 1e30, sum = 0, loss = 0, cpu_best = 1e30;
    for (int s = 0; s <= steps; s++) {  // step 0 warms up caches and page faults
        double t0 = lmp_now(), c0 = cpu_now();
        lmp_registry_zero_grad(&m.reg);
        lmp_rng_ctx rc = {1, (uint64_t)s, 0, 1};
        loss = lmp_model_step(&m, tok, tgt, sc, &rc, 1);
        lmp_reduce_grads(c, &m.reg);
        lmp_adamw_step(&m.reg, &oc, 1e-4f, s + 1, 1.0f);
        double dt = lmp_now() - t0, dc = cpu_now() - c0;
        if (s == 0) continue;
        if (dc < cpu_best) cpu_best = dc;
        sum += dt;
        if (dt < best) best = dt;
    }
    double mean = sum / steps;
    printf("| %-22s | %d | %7.0f | %7.0f | %7.0f | %8.1f | %8.1f | %7.1f | %7.0f |\n", label,
           omp_get_max_threads(), mean * 1e3, best * 1e3, N / mean, m.reg.n_frozen * 4 / 1e6,
           m.reg.n_train * 16 / 1e6, lmp_peak_rss() / 1e6, cpu_best * 1e3);
    fflush(stdout);
    (void)loss;
    free(tok); free(tgt); free(sc);
    lmp_model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int steps = argc > 1 ? atoi(argv[1]) : 3, B = argc > 2 ? atoi(argv[2]) : 4,
        T = argc > 3 ? atoi(argv[3]) : 256;
    const char *mode = argc > 4 ? argv[4] : "both";
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    printf("openblas core %s, %d threads, B=%d T=%d, %d timed steps\n", openblas_get_corename(),
           omp_get_max_threads(), B, T, steps);
    double c1, c2, c3, g1 = sgemm_gflops(1024, 2304, 768, 5, &c1),
           g2 = sgemm_gflops(1024, 768, 3072, 5, &c2), g3 = sgemm_gflops(1024, 50257, 768, 2, &c3);
    printf("sgemm GFLOP/s: (1024x768x2304) %.0f  (1024x3072x768) %.0f  (1024x50257x768, LM head) %.0f\n",
           g1, g2, g3);
    printf("sgemm GFLOP/s by CPU time per thread: %.0f  %.0f  %.0f\n", c1, c2, c3);
    printf("| mode | threads | ms/step mean | ms/step best | tokens/s | frozen MB | trainable+grad+m+v MB | peak RSS MB | CPU ms/step best |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    if (strcmp(mode, "full")) run_mode(&c, "LoRA r=8 on c_attn", 0, steps, B, T);
    if (strcmp(mode, "lora")) run_mode(&c, "full fine-tuning", 1, steps, B, T);
    lmp_comm_free(&c);
    MPI_Finalize();
    return 0;
}
