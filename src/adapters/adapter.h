// adapter.h: the adapter interface. A parameter-efficient method is one file that fills an
// lmp_adapter_method and one line in adapters/methods.c. The model attaches one instance
// (lmp_adapter) per adapted module and calls the method at its hook points:
//  - LMP_HOOK_LINEAR: a linear layer's output from its input, y += f(x) (LoRA; IA³ and DoRA
//    scale or re-normalise there). tp_linear.c calls it on this rank's shard of the layer, as
//    lmp_linear_view describes, before the row-parallel all-reduce (a partial product rides
//    on the layer's own collective).
//  - LMP_HOOK_SUBLAYER: a sublayer's output before the residual add, h = g(h) (series
//    adapters after attention and after the MLP); h is whole on every tp rank.
//  - LMP_HOOK_BESIDE: a branch beside a sublayer fed by the sublayer's input x, h += g(x)
//    (parallel adapters); x and h whole on every tp rank.
//  - LMP_HOOK_KV: extra keys and values prepended in attention (prefix tuning), per local
//    KV head: the method hands the block's attention p key and value rows (kv_forward) that
//    every query sees, and takes their gradients back (kv_backward).
// Each instance owns an adapter record (core/registry.h: layer, target, slice, method,
// shape, scaling) and registers its tensors under it, so checkpoints, PEFT export and the
// analysis read what an adapter is from the registry instead of from its tensor names.
// Replicated adapter tensors get gradients that are partial over the tp group
// (LMP_GRAD_TP_SUM: one world all-reduce, comm.c) unless the method says otherwise.
#ifndef LORAMPI_ADAPTER_H
#define LORAMPI_ADAPTER_H
#include <stddef.h>
#include <stdint.h>
#include "core/comm.h"
#include "core/registry.h"

#define LMP_VIEW_MAX_SEG 4

// Randomness of one forward/backward: dropout masks are drawn from (seed, step, stream,
// global row * in + global feature). row0 is the global index of this rank's first row.
typedef struct {
    uint64_t seed, step;
    int64_t row0;
    int training;         // dropout only when training
} lmp_rng_ctx;

typedef enum {
    LMP_HOOK_LINEAR = 1 << 0,
    LMP_HOOK_SUBLAYER = 1 << 1,
    LMP_HOOK_BESIDE = 1 << 2,
    LMP_HOOK_KV = 1 << 3,
} lmp_hook;

// How the adapted matrix ΔW (out, in) meets this rank's shard of a linear layer (from the
// weight's registry split, tp_linear.c): the local input x (N, in_l) holds global input
// features [a0, a0 + in_l); ΔW rows [brow[s], brow[s] + cnt[s]) produce local output
// columns [ycol[s], ycol[s] + cnt[s]) (column-parallel: this rank's columns of each q|k|v
// block; row-parallel: all rows, partial over the input features).
typedef struct {
    int in, out;
    int a0, in_l;
    int nseg;
    int brow[LMP_VIEW_MAX_SEG], ycol[LMP_VIEW_MAX_SEG], cnt[LMP_VIEW_MAX_SEG];
    // The layer itself, for the methods that read its frozen weight (IA³ on a feed-forward
    // input, DoRA's row norms): weight and bias entries (data set by lmp_registry_alloc; w
    // local (in_l, out_l), or (out_l, in_l) with w_oi; b NULL without bias, split like the
    // output columns on a column-parallel layer, whole and added after the all-reduce on a
    // row-parallel one), the local output width, and the tp group (model.c; NULL: one rank).
    lmp_param *w, *b;
    int w_oi, row_parallel, out_l;
    lmp_comm *comm;
} lmp_linear_view;

// What [adapter] says, for every method (each reads the keys it uses).
typedef struct lmp_adapter lmp_adapter;

typedef struct {
    int r;
    float alpha, dropout;
    int rslora;
    int gaussian;         // init choice of LoRA's A
    // Bottleneck adapters (houlsby, parallel: adapters/bottleneck.h): width m, activation
    // (0 GELU, 1 ReLU), std of houlsby's truncated-normal init, parallel's scale s.
    int size, relu;
    float init_scale, bscale;
    // Prefix tuning (adapters/prefix.h): p virtual tokens per layer; with projection the
    // prefixes are an MLP's output of hidden width enc_hidden (0: the token dim), computed
    // by one instance shared by the blocks (kv_shared, set by the model for add_kv).
    int virtual_tokens, projection, enc_hidden;
    lmp_adapter *kv_shared;
    // IA³ (adapters/ia3.h): the LMP_T_* targets that are feed-forward (PEFT's
    // feedforward_modules: their input is scaled), and whether this module is one (model.c).
    int feedforward, ff;
    // [parallel] sequence_parallel: the residual stream is split by rows over the tp group, so
    // a block-level (bottleneck) adapter sees this rank's rows only and its gradients are
    // partial sums over tp (LMP_GRAD_TP_SUM) instead of tp-identical (TP_SAME).
    int sp;
} lmp_adapter_opts;

// LMP_HOOK_KV: how one block's attention meets the prefixes: n_kv_head key/value heads of
// head_dim hd in all, of which this rank holds [kv0, kv0 + KVH_l).
typedef struct {
    int n_kv_head, kv0, KVH_l, hd;
} lmp_kv_view;

// The prefixes of one block as its attention reads them: rows t < p of keys k and values v,
// row stride ld, this rank's first KV head at column 0 (heads hd apart); dk, dv the same
// layout for their gradients (NULL: frozen), accumulated (+=) by the attention's backward.
typedef struct {
    int p, ld;
    const float *k, *v;
    float *dk, *dv;
} lmp_kv_prefix;

typedef struct {
    const char *name;     // [adapter] method = name
    unsigned hooks;       // the LMP_HOOK_* it implements
    // Registers the tensors of one module described by *rec (method, layer, target, slice,
    // in, out filled by the model) on a linear layer seen as *v; fills r/alpha/scale of the
    // record it adds. Returns the instance.
    lmp_adapter *(*add_linear)(lmp_registry *reg, const lmp_adapter_rec *rec,
                               const lmp_linear_view *v, const lmp_adapter_opts *o);
    // Initial values from the counter RNG (seed): the same on every rank and layout.
    void (*init)(lmp_adapter *a, const lmp_registry *reg, uint64_t seed, int gaussian);
    // Floats per batch row saved from forward for backward (carved into the model's
    // activation table), and floats per row of scratch shared by all adapters.
    size_t (*saved_per_row)(const lmp_adapter *a);
    size_t (*scratch_per_row)(const lmp_adapter *a);
    // LMP_HOOK_SUBLAYER / LMP_HOOK_BESIDE: registers the tensors of one module at a sublayer
    // (rec->target "attn" or "mlp") whose output h and input x are (N, C), whole on every tp
    // rank (so the module's gradients are tp-identical: LMP_GRAD_TP_SAME).
    lmp_adapter *(*add_block)(lmp_registry *reg, const lmp_adapter_rec *rec, int C,
                              const lmp_adapter_opts *o);
    // LMP_HOOK_LINEAR: y (N, ldy) += f(x), x (N, in_l); saved as sized above.
    void (*linear_forward)(lmp_adapter *a, float *y, int ldy, const float *x, float *saved,
                           float *scratch, int N, const lmp_rng_ctx *rc);
    // Accumulates the method's gradients and dx (N, in_l) += ... (dx may be NULL).
    void (*linear_backward)(lmp_adapter *a, float *dx, const float *dy, int ldy, const float *x,
                            const float *saved, float *scratch, int N, const lmp_rng_ctx *rc);
    // LMP_HOOK_SUBLAYER: h (N,C) <- g(h) in place (the sublayer's output, before the
    // residual add). Backward: dh (N,C) in place from d/d(g's output) to d/d(g's input);
    // accumulates the method's gradients.
    void (*sublayer_forward)(lmp_adapter *a, float *h, float *saved, float *scratch, int N,
                             const lmp_rng_ctx *rc);
    void (*sublayer_backward)(lmp_adapter *a, float *dh, const float *saved, float *scratch,
                              int N, const lmp_rng_ctx *rc);
    // LMP_HOOK_BESIDE: h (N,C) += g(x), x (N,C) the sublayer's input (its norm's output).
    // Backward: dx (N,C) += d/dx from dh; accumulates the method's gradients.
    void (*beside_forward)(lmp_adapter *a, float *h, const float *x, float *saved,
                           float *scratch, int N, const lmp_rng_ctx *rc);
    void (*beside_backward)(lmp_adapter *a, float *dx, const float *dh, const float *x,
                            const float *saved, float *scratch, int N, const lmp_rng_ctx *rc);
    // LMP_HOOK_KV: registers the prefixes of one block (rec->target "attn") seen as *v.
    lmp_adapter *(*add_kv)(lmp_registry *reg, const lmp_adapter_rec *rec, const lmp_kv_view *v,
                           const lmp_adapter_opts *o);
    // Fills *pf for this step's forward (the same pointers serve its backward); kv_backward
    // runs after the attention's backward has accumulated pf's dk, dv.
    void (*kv_forward)(lmp_adapter *a, lmp_kv_prefix *pf);
    void (*kv_backward)(lmp_adapter *a);
    // LMP_HOOK_KV, optional: the instance the blocks' share (prefix projection's MLP, on the
    // n_layer blocks seen as *v), registered before block 0's add_kv, which gets it in
    // o->kv_shared; NULL when o asks for none. The model inits and frees it like the others.
    lmp_adapter *(*add_kv_shared)(lmp_registry *reg, int n_layer, const lmp_kv_view *v,
                                  const lmp_adapter_opts *o);
    // Optional: brings tensors derived from the trainable ones up to date outside a forward
    // pass (the projected prefixes, before they are saved); NULL: none.
    void (*refresh)(lmp_adapter *a);
    void (*free)(lmp_adapter *a);
} lmp_adapter_method;

// Every instance starts with this header (methods embed it as their first member).
struct lmp_adapter {
    const lmp_adapter_method *method;
    int rec;              // its record in the registry
    float *saved;         // its saved activations, set by the model's activation table
};

// The methods compiled in (methods.c) and those added with lmp_adapter_add_method; NULL when
// `name` is none of them.
const lmp_adapter_method *lmp_adapter_find(const char *name);
// Makes a method known at run time (a plugin, or a test's own method); at most 8.
void lmp_adapter_add_method(const lmp_adapter_method *m);
// Their names, comma-separated (for messages).
const char *lmp_adapter_names(void);

#endif
