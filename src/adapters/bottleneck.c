// bottleneck.c: the houlsby (series) and parallel bottleneck adapters (bottleneck.h). The two
// methods share everything but the hook they sit at, the output scale and the init.
//
// Forward, x (N,C) the input (houlsby: the sublayer's output h itself; parallel: the
// sublayer's input), s the scale:
//   u = x Wd^T + bd (N,m)    a = f(u)    h += s (a Wu^T + bu)
// Backward with g = dL/dh_out (houlsby: h_out = h + ..., so dL/dh_in = g + the branch's part):
//   dbu += s sum_n g    dWu += s g^T a    du = (s g Wu) * f'(u)
//   dbd += sum_n du     dWd += du^T x     dx += du Wd
#include "adapters/bottleneck.h"
#include "core/rng.h"
#include "core/util.h"

#include "core/sgemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GELU_K 0.7978845608028654f  // sqrt(2/pi)

// a = f(u), n elements.
static void act_forward(int relu, float *a, const float *u, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = u[i];
        a[i] = relu ? (x > 0.0f ? x : 0.0f)
                    : 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

// d *= f'(u), n elements.
static void act_backward(int relu, float *d, const float *u, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = u[i];
        if (relu) {
            d[i] = x > 0.0f ? d[i] : 0.0f;
            continue;
        }
        float t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
        float dt = (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        d[i] *= 0.5f * (1.0f + t) + 0.5f * x * dt;
    }
}

// g (cols) += s * column sums of d (rows, cols), each in double over the rows in order.
static void colsum(float *g, const float *d, int rows, int cols, float s) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < cols; j++) {
        double acc = 0.0;
        for (int n = 0; n < rows; n++) acc += d[(size_t)n * cols + j];
        g[j] += (float)((double)s * acc);
    }
}

void lmp_bottleneck_forward(const lmp_bottleneck *b, float *h, const float *x, float *u, float *a,
                            int N) {
    int C = b->C, m = b->m;
    const float *bd = b->bd->data, *bu = b->bu->data;
    for (int n = 0; n < N; n++) memcpy(u + (size_t)n * m, bd, (size_t)m * sizeof(float));
    lmp_sgemm(0, 1, N, m, C, 1.0f, x, C, b->Wd->data, C, 1.0f, u, m);
    act_forward(b->relu, a, u, (size_t)N * m);
    // y = a Wu^T + bu, then h += s y: with Wu = bu = 0 (parallel's init) h is unchanged bitwise.
    float *y = a + (size_t)N * m;
    for (int n = 0; n < N; n++) memcpy(y + (size_t)n * C, bu, (size_t)C * sizeof(float));
    lmp_sgemm(0, 1, N, C, m, 1.0f, a, m, b->Wu->data, m, 1.0f, y, C);
    size_t NC = (size_t)N * C;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < NC; i++) h[i] += b->s * y[i];
}

void lmp_bottleneck_backward(const lmp_bottleneck *b, float *dx, const float *dh, const float *x,
                             const float *u, float *a, float *du, int N) {
    int C = b->C, m = b->m;
    float s = b->s;
    act_forward(b->relu, a, u, (size_t)N * m);  // recomputed rather than stored
    if (b->bu->grad) colsum(b->bu->grad, dh, N, C, s);
    if (b->Wu->grad)  // dWu (C,m) += s dh^T (C,N) a (N,m)
        lmp_sgemm(1, 0, C, m, N, s, dh, C, a, m, 1.0f, b->Wu->grad, m);
    // du (N,m) = s dh (N,C) Wu (C,m), times f'(u)
    lmp_sgemm(0, 0, N, m, C, s, dh, C, b->Wu->data, m, 0.0f, du, m);
    act_backward(b->relu, du, u, (size_t)N * m);
    if (b->bd->grad) colsum(b->bd->grad, du, N, m, 1.0f);
    if (b->Wd->grad)  // dWd (m,C) += du^T (m,N) x (N,C)
        lmp_sgemm(1, 0, m, C, N, 1.0f, du, m, x, C, 1.0f, b->Wd->grad, C);
    if (dx)  // dx (N,C) += du (N,m) Wd (m,C); dh is not read from here on (dx may be dh)
        lmp_sgemm(0, 0, N, C, m, 1.0f, du, m, b->Wd->data, C, 1.0f, dx, C);
}

// ---------------------------------------------------------------------------------------
// The two methods behind the adapter interface.

static lmp_param *add_tensor(lmp_registry *reg, lmp_adapter_rec *x, const char *leaf, int ndim,
                             int64_t d0, int64_t d1, lmp_grad_kind kind) {
    char name[LMP_NAME_MAX + 16];
    int64_t shape[2] = {d0, d1};
    lmp_param *p = lmp_registry_add(reg, lmp_fmt(name, sizeof name, "%s.%s", x->name, leaf), ndim, shape,
                                    -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, kind, ndim == 2);
    lmp_registry_attach(reg, x, p);
    return p;
}

static lmp_adapter *add_block(lmp_registry *reg, const lmp_adapter_rec *rec, int C,
                              const lmp_adapter_opts *o, const lmp_adapter_method *meth) {
    LMP_CHECK(o->size >= 1, "[adapter] size = %d: a bottleneck needs at least 1 unit", o->size);
    lmp_bottleneck *b = lmp_calloc(sizeof *b);
    int series = meth == &lmp_houlsby_method;
    lmp_adapter_rec r = *rec;
    r.r = o->size;
    r.alpha = r.scale = series ? 1.0f : o->bscale;
    lmp_adapter_rec *x = lmp_registry_add_rec(reg, &r);
    *b = (lmp_bottleneck){.base = {.method = meth, .rec = (int)(x - reg->rec)}, .C = C, .m = o->size,
                          .relu = o->relu, .series = series, .s = r.scale, .init_scale = o->init_scale};
    lmp_grad_kind kind = o->sp ? LMP_GRAD_TP_SUM : LMP_GRAD_TP_SAME;  // adapter.h
    b->Wd = add_tensor(reg, x, "down.weight", 2, o->size, C, kind);
    b->bd = add_tensor(reg, x, "down.bias", 1, o->size, 0, kind);
    b->Wu = add_tensor(reg, x, "up.weight", 2, C, o->size, kind);
    b->bu = add_tensor(reg, x, "up.bias", 1, C, 0, kind);
    return &b->base;
}

static lmp_adapter *houlsby_add(lmp_registry *reg, const lmp_adapter_rec *rec, int C, const lmp_adapter_opts *o) {
    return add_block(reg, rec, C, o, &lmp_houlsby_method);
}
static lmp_adapter *parallel_add(lmp_registry *reg, const lmp_adapter_rec *rec, int C, const lmp_adapter_opts *o) {
    return add_block(reg, rec, C, o, &lmp_parallel_method);
}

// N(0, sd^2) truncated at 2 sd: element i redraws (counter i * 64 + attempt) until inside.
static void truncated_normal(lmp_param *p, float sd, uint64_t seed) {
    uint64_t stream = lmp_hash_str(p->name);
    for (size_t i = 0; i < p->numel; i++) {
        uint64_t gi = (uint64_t)lmp_param_global_index(p, i);
        float z = 0.0f;
        for (uint64_t k = 0; k < 64; k++) {
            z = lmp_rng_normal(seed, stream, gi * 64 + k);
            if (fabsf(z) <= 2.0f) break;
        }
        p->data[i] = sd * fmaxf(-2.0f, fminf(2.0f, z));
    }
}

static void bottleneck_init(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian) {
    lmp_bottleneck *b = (lmp_bottleneck *)a;
    memset(b->bd->data, 0, b->bd->numel * sizeof(float));
    memset(b->bu->data, 0, b->bu->numel * sizeof(float));
    if (b->series) {
        truncated_normal(b->Wd, b->init_scale, seed);
        truncated_normal(b->Wu, b->init_scale, seed);
        return;
    }
    uint64_t stream = lmp_hash_str(b->Wd->name);
    float bound = 1.0f / sqrtf((float)b->C);  // Kaiming-uniform, a = sqrt(5), fan_in C
    for (size_t i = 0; i < b->Wd->numel; i++)
        b->Wd->data[i] = lmp_rng_sym(seed, stream, (uint64_t)lmp_param_global_index(b->Wd, i), bound);
    memset(b->Wu->data, 0, b->Wu->numel * sizeof(float));
}

// Saved: houlsby the input h (N,C) (h is changed in place), both the pre-activation u (N,m).
static size_t bottleneck_saved(const lmp_adapter *a) {
    const lmp_bottleneck *b = (const lmp_bottleneck *)a;
    return (size_t)b->m + (b->series ? (size_t)b->C : 0);
}
// Scratch: a (N,m), then y (N,C) in forward or du (N,m) in backward.
static size_t bottleneck_scratch(const lmp_adapter *a) {
    const lmp_bottleneck *b = (const lmp_bottleneck *)a;
    return (size_t)b->m + (size_t)(b->C > b->m ? b->C : b->m);
}

static void houlsby_fwd(lmp_adapter *a, float *h, float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    const lmp_bottleneck *b = (const lmp_bottleneck *)a;
    float *x = saved + (size_t)N * b->m;
    memcpy(x, h, (size_t)N * b->C * sizeof(float));
    lmp_bottleneck_forward(b, h, x, saved, scratch, N);
}
static void houlsby_bwd(lmp_adapter *a, float *dh, const float *saved, float *scratch, int N, const lmp_rng_ctx *rc) {
    const lmp_bottleneck *b = (const lmp_bottleneck *)a;
    lmp_bottleneck_backward(b, dh, dh, saved + (size_t)N * b->m, saved, scratch, scratch + (size_t)N * b->m, N);
}
static void parallel_fwd(lmp_adapter *a, float *h, const float *x, float *saved, float *scratch, int N,
                         const lmp_rng_ctx *rc) {
    lmp_bottleneck_forward((const lmp_bottleneck *)a, h, x, saved, scratch, N);
}
static void parallel_bwd(lmp_adapter *a, float *dx, const float *dh, const float *x, const float *saved,
                         float *scratch, int N, const lmp_rng_ctx *rc) {
    const lmp_bottleneck *b = (const lmp_bottleneck *)a;
    lmp_bottleneck_backward(b, dx, dh, x, saved, scratch, scratch + (size_t)N * b->m, N);
}

static void bottleneck_free(lmp_adapter *a) { free(a); }

const lmp_adapter_method lmp_houlsby_method = {
    .name = "houlsby", .hooks = LMP_HOOK_SUBLAYER, .add_block = houlsby_add, .init = bottleneck_init,
    .saved_per_row = bottleneck_saved, .scratch_per_row = bottleneck_scratch,
    .sublayer_forward = houlsby_fwd, .sublayer_backward = houlsby_bwd, .free = bottleneck_free,
};
const lmp_adapter_method lmp_parallel_method = {
    .name = "parallel", .hooks = LMP_HOOK_BESIDE, .add_block = parallel_add, .init = bottleneck_init,
    .saved_per_row = bottleneck_saved, .scratch_per_row = bottleneck_scratch,
    .beside_forward = parallel_fwd, .beside_backward = parallel_bwd, .free = bottleneck_free,
};
