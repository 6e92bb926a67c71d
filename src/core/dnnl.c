// dnnl.c: the oneDNN matmul wrapper (dnnl.h): every oneDNN call checked, naming file, line
// and call as the MPI and HDF5 wrappers do.
#include "core/dnnl.h"
#include "core/util.h"

#include <dnnl.h>
#include <dnnl_debug.h>
#include <string.h>

#define LMP_CHECK_DNNL(call) do { dnnl_status_t lmp_st_ = (call); if (lmp_st_ != dnnl_success) \
    lmp_die("%s:%d: %s failed: %s (oneDNN)", __FILE__, __LINE__, #call, dnnl_status2str(lmp_st_)); } while (0)

// One primitive per (shape, layout, accumulate), with its three memory objects (their data
// handles are set per call). Round-robin replacement past LMP_DNNL_CACHE: a model has a few
// dozen distinct shapes (per linear kind, forward and backward, training and generation).
#define LMP_DNNL_CACHE 64
typedef struct {
    int M, K, N, ldc, b_trans, acc;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} dnnl_entry;

static dnnl_engine_t eng;
static dnnl_stream_t stream;
static dnnl_entry cache[LMP_DNNL_CACHE];
static int n_cache, next_evict;

static void entry_free(dnnl_entry *e) {
    LMP_CHECK_DNNL(dnnl_primitive_destroy(e->prim));
    LMP_CHECK_DNNL(dnnl_memory_destroy(e->a));
    LMP_CHECK_DNNL(dnnl_memory_destroy(e->b));
    LMP_CHECK_DNNL(dnnl_memory_destroy(e->c));
    memset(e, 0, sizeof *e);
}

// The primitive and memory objects of e's shape (fields M..acc set).
static void entry_create(dnnl_entry *e) {
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_dims_t adims = {e->M, e->K}, astr = {e->K, 1}, bdims = {e->K, e->N}, cdims = {e->M, e->N};
    dnnl_dims_t bstr = {e->b_trans ? 1 : e->N, e->b_trans ? e->K : 1}, cstr = {e->ldc, 1};
    LMP_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&ad, 2, adims, dnnl_bf16, astr));
    LMP_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dnnl_bf16, bstr));
    LMP_CHECK_DNNL(dnnl_memory_desc_init_by_strides(&cd, 2, cdims, dnnl_f32, cstr));
    dnnl_matmul_desc_t md;
    LMP_CHECK_DNNL(dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd));
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po;
    LMP_CHECK_DNNL(dnnl_primitive_attr_create(&attr));
    LMP_CHECK_DNNL(dnnl_post_ops_create(&po));
    // Accumulation (dx += dy W^T over q, k, v) is oneDNN's sum post-op: C = C + A.B, one pass.
    if (e->acc) LMP_CHECK_DNNL(dnnl_post_ops_append_sum(po, 1.0f));
    LMP_CHECK_DNNL(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_primitive_desc_t pd;
    LMP_CHECK_DNNL(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL));
    LMP_CHECK_DNNL(dnnl_primitive_create(&e->prim, pd));
    LMP_CHECK_DNNL(dnnl_primitive_desc_destroy(pd));
    LMP_CHECK_DNNL(dnnl_post_ops_destroy(po));
    LMP_CHECK_DNNL(dnnl_primitive_attr_destroy(attr));
    LMP_CHECK_DNNL(dnnl_memory_create(&e->a, &ad, eng, DNNL_MEMORY_NONE));
    LMP_CHECK_DNNL(dnnl_memory_create(&e->b, &bd, eng, DNNL_MEMORY_NONE));
    LMP_CHECK_DNNL(dnnl_memory_create(&e->c, &cd, eng, DNNL_MEMORY_NONE));
}

static dnnl_entry *entry_get(int M, int K, int N, int ldc, int b_trans, int acc) {
    if (!eng) {
        LMP_CHECK_DNNL(dnnl_engine_create(&eng, dnnl_cpu, 0));
        LMP_CHECK_DNNL(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    }
    for (int i = 0; i < n_cache; i++) {
        dnnl_entry *e = &cache[i];
        if (e->M == M && e->K == K && e->N == N && e->ldc == ldc && e->b_trans == b_trans && e->acc == acc)
            return e;
    }
    dnnl_entry *e = n_cache < LMP_DNNL_CACHE ? &cache[n_cache++] : &cache[next_evict++ % LMP_DNNL_CACHE];
    if (e->prim) entry_free(e);
    *e = (dnnl_entry){M, K, N, ldc, b_trans, acc, NULL, NULL, NULL, NULL};
    entry_create(e);
    return e;
}

void lmp_dnnl_matmul_bf16(float *C, int ldc, const uint16_t *A, const uint16_t *B, int M, int K,
                          int N, int b_trans, int accumulate) {
    if (M == 0 || N == 0) return;
    LMP_CHECK(K > 0 && ldc >= N, "internal: bf16 matmul of K = %d, ldc %d < N %d", K, ldc, N);
    dnnl_entry *e = entry_get(M, K, N, ldc, b_trans, accumulate);
    LMP_CHECK_DNNL(dnnl_memory_set_data_handle(e->a, (void *)A));
    LMP_CHECK_DNNL(dnnl_memory_set_data_handle(e->b, (void *)B));
    LMP_CHECK_DNNL(dnnl_memory_set_data_handle(e->c, C));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    LMP_CHECK_DNNL(dnnl_primitive_execute(e->prim, stream, 3, args));
    LMP_CHECK_DNNL(dnnl_stream_wait(stream));
}

void lmp_dnnl_release(void) {
    for (int i = 0; i < n_cache; i++) entry_free(&cache[i]);
    n_cache = next_evict = 0;
    if (eng) {
        LMP_CHECK_DNNL(dnnl_stream_destroy(stream));
        LMP_CHECK_DNNL(dnnl_engine_destroy(eng));
        eng = NULL;
    }
}
