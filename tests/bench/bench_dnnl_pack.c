// bench_dnnl_pack: should the frozen weights be handed to oneDNN packed? For the frozen
// GEMMs of GPT-2 124M and Llama-3.2-1B (forward y = x W and backward dx = dy W^T, in the
// storage lorampi keeps: Conv1D (in, out) for GPT-2, (out, in) for Llama and the LM head),
// GFLOP/s of: OpenBLAS sgemm; oneDNN's matmul with the weights as stored (plain strides, what
// core/dnnl.c does) and packed once into the layout the primitive asks for (format `any` +
// a reorder outside the timing), in fp32 and in bf16 with fp32 output. Inputs already in the
// GEMM's dtype (lmp_wgemm's rounding pass is not timed here; bench_wgemm times it). Best of
// REPS after one warm-up, at the thread count of OMP_NUM_THREADS; the kernel oneDNN picked
// and the packed weight's inner blocks are printed per row.
// Usage: bench_dnnl_pack [M] [REPS]   (M = rows, default 1024)
#include "core/util.h"

#include <cblas.h>
#include <dnnl.h>
#include <dnnl_debug.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_DNNL(call) do { dnnl_status_t st_ = (call); if (st_ != dnnl_success) \
    lmp_die("%s:%d: %s failed: %s (oneDNN)", __FILE__, __LINE__, #call, dnnl_status2str(st_)); } while (0)

static dnnl_engine_t eng;
static dnnl_stream_t stream;

// C (M, N) fp32 = A (M, K) . B (K, N), B read (K, N) row-major or (trans) from (N, K) rows.
static double blas_rate(int M, int K, int N, int trans, int reps) {
    float *a = lmp_calloc((size_t)M * K * 4), *b = lmp_calloc((size_t)K * N * 4), *c = lmp_calloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = 0.01f * (float)(i % 13);
    for (size_t i = 0; i < (size_t)K * N; i++) b[i] = 0.01f * (float)(i % 17);
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = lmp_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, a, K, b,
                    trans ? K : N, 0.0f, c, N);
        if (r && lmp_now() - t0 < best) best = lmp_now() - t0;
    }
    free(a), free(b), free(c);
    return 2.0 * M * K * N / best / 1e9;
}

// The same product through oneDNN, inputs in dt (f32 or bf16), weights plain or packed;
// impl gets the kernel's name (and the packed layout's inner blocks).
static double dnnl_rate(int M, int K, int N, int trans, dnnl_data_type_t dt, int packed, int reps, char *impl) {
    dnnl_memory_desc_t ad, bd, bany, cd;
    dnnl_dims_t adims = {M, K}, astr = {K, 1}, bdims = {K, N}, bstr = {trans ? 1 : N, trans ? K : 1};
    dnnl_dims_t cdims = {M, N}, cstr = {N, 1};
    CHECK_DNNL(dnnl_memory_desc_init_by_strides(&ad, 2, adims, dt, astr));
    CHECK_DNNL(dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dt, bstr));
    CHECK_DNNL(dnnl_memory_desc_init_by_tag(&bany, 2, bdims, dt, dnnl_format_tag_any));
    CHECK_DNNL(dnnl_memory_desc_init_by_strides(&cd, 2, cdims, dnnl_f32, cstr));
    dnnl_matmul_desc_t md;
    CHECK_DNNL(dnnl_matmul_desc_init(&md, &ad, packed ? &bany : &bd, NULL, &cd));
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    CHECK_DNNL(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *name;
    CHECK_DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name));
    snprintf(impl, 128, "%s", name);
    dnnl_memory_desc_t wd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    CHECK_DNNL(dnnl_primitive_create(&prim, pd));
    size_t es = dt == dnnl_f32 ? 4 : 2;
    char *a = lmp_calloc((size_t)M * K * es), *b = lmp_calloc((size_t)K * N * es);
    float *c = lmp_calloc((size_t)M * N * 4);
    for (size_t i = 0; i < (size_t)M * K * es; i += 2) a[i + 1] = 0x3c;  // bf16 0x3c00 = 1/128; fp32 0x3c003c00 ~ 0.0078
    for (size_t i = 0; i < (size_t)K * N * es; i += 2) b[i + 1] = 0x3c;
    dnnl_memory_t ma, mb, mc, mw;
    CHECK_DNNL(dnnl_memory_create(&ma, &ad, eng, a));
    CHECK_DNNL(dnnl_memory_create(&mb, &bd, eng, b));
    CHECK_DNNL(dnnl_memory_create(&mc, &cd, eng, c));
    mw = mb;
    if (packed) {  // the reorder a packed model would do once, at load
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t reorder;
        CHECK_DNNL(dnnl_memory_create(&mw, &wd, eng, DNNL_MEMORY_ALLOCATE));
        CHECK_DNNL(dnnl_reorder_primitive_desc_create(&rpd, &bd, eng, &wd, eng, NULL));
        CHECK_DNNL(dnnl_primitive_create(&reorder, rpd));
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, mb}, {DNNL_ARG_TO, mw}};
        CHECK_DNNL(dnnl_primitive_execute(reorder, stream, 2, ra));
        CHECK_DNNL(dnnl_stream_wait(stream));
        CHECK_DNNL(dnnl_primitive_destroy(reorder));
        CHECK_DNNL(dnnl_primitive_desc_destroy(rpd));
        for (int i = 0; wd.format_kind == dnnl_blocked && i < wd.format_desc.blocking.inner_nblks; i++)
            snprintf(impl + strlen(impl), 128 - strlen(impl), "%s%c%ld", i ? "" : " ",
                     (int)('a' + wd.format_desc.blocking.inner_idxs[i]), (long)wd.format_desc.blocking.inner_blks[i]);
    }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DST, mc}};
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = lmp_now();
        CHECK_DNNL(dnnl_primitive_execute(prim, stream, 3, args));
        CHECK_DNNL(dnnl_stream_wait(stream));
        if (r && lmp_now() - t0 < best) best = lmp_now() - t0;
    }
    if (mw != mb) CHECK_DNNL(dnnl_memory_destroy(mw));
    CHECK_DNNL(dnnl_memory_destroy(ma));
    CHECK_DNNL(dnnl_memory_destroy(mb));
    CHECK_DNNL(dnnl_memory_destroy(mc));
    CHECK_DNNL(dnnl_primitive_destroy(prim));
    CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    free(a), free(b), free(c);
    return 2.0 * M * K * N / best / 1e9;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int M = argc > 1 ? atoi(argv[1]) : 1024, reps = argc > 2 ? atoi(argv[2]) : 5;
    CHECK_DNNL(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK_DNNL(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    // K x N of the product and whether B is read transposed from lorampi's storage.
    static const struct { const char *name; int K, N, trans; } g[] = {
        {"gpt2 c_attn fwd", 768, 2304, 0},      {"gpt2 c_attn bwd", 2304, 768, 1},
        {"gpt2 mlp.c_fc fwd", 768, 3072, 0},    {"gpt2 mlp.c_fc bwd", 3072, 768, 1},
        {"gpt2 mlp.c_proj fwd", 3072, 768, 0},  {"gpt2 mlp.c_proj bwd", 768, 3072, 1},
        {"gpt2 LM head chunk fwd", 768, 4096, 1}, {"gpt2 LM head chunk bwd", 4096, 768, 0},
        {"llama q_proj fwd", 2048, 2048, 1},    {"llama q_proj bwd", 2048, 2048, 0},
        {"llama gate_proj fwd", 2048, 8192, 1}, {"llama down_proj fwd", 8192, 2048, 1},
        {"llama down_proj bwd", 2048, 8192, 0}};
    printf("%d threads, M = %d rows; GFLOP/s, best of %d\n", omp_get_max_threads(), M, reps);
    printf("| GEMM | K x N | OpenBLAS fp32 | oneDNN fp32 plain | fp32 packed | bf16 plain | bf16 packed | bf16 kernel, packed layout |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof g / sizeof *g; i++) {
        int K = g[i].K, N = g[i].N, t = g[i].trans;
        char skip[128], impl[128];
        double ob = blas_rate(M, K, N, t, reps);
        double fp = dnnl_rate(M, K, N, t, dnnl_f32, 0, reps, skip), fq = dnnl_rate(M, K, N, t, dnnl_f32, 1, reps, skip);
        double bp = dnnl_rate(M, K, N, t, dnnl_bf16, 0, reps, skip), bq = dnnl_rate(M, K, N, t, dnnl_bf16, 1, reps, impl);
        printf("| %s | %dx%d | %.0f | %.0f | %.0f | %.0f | %.0f | %s |\n", g[i].name, K, N, ob, fp, fq, bp, bq, impl);
        fflush(stdout);
    }
    CHECK_DNNL(dnnl_stream_destroy(stream));
    CHECK_DNNL(dnnl_engine_destroy(eng));
    MPI_Finalize();
    return 0;
}
