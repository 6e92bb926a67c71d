// model.h: a decoder-only transformer built from its description (arch.h): embedding, blocks
// of norm -> attention -> residual, norm -> MLP -> residual, final norm, tied LM head;
// tensor-parallel over comm->tp, with adapters hooked into it (adapters/adapter.h).
// Every tensor lives in m->reg; activations in one allocation carved by one table (acts.h).
#ifndef LORAMPI_MODEL_H
#define LORAMPI_MODEL_H
#include "adapters/adapter.h"
#include "core/comm.h"
#include "io/model_io.h"
#include "model/model_config.h"
#include "model/attention.h"
#include "model/embed.h"
#include "model/mlp.h"
#include "model/norm.h"

// What is trained: every base weight (full_finetune), or adapters of `method` on `targets`
// (LMP_T_* bits) of the layers marked in layer_on.
typedef struct {
    int full_finetune;
    int bf16;                       // frozen linear weights held in bf16 ([model] dtype)
    const char *method;             // adapter method (adapters/methods.c); NULL: "lora"
    int targets;                    // LMP_T_* bits (linear-layer methods)
    int sublayers;                  // block-level methods: 1 attention, 2 MLP (0: both)
    lmp_adapter_opts ad;            // r, alpha, dropout, rslora, init
    // Per-module r and alpha (a PEFT rank_pattern/alpha_pattern read by init_from), indexed
    // [layer * LMP_N_TARGETS + target bit index]; 0 or NULL: ad's.
    const int *r_at;
    const float *alpha_at;
    const unsigned char *layer_on;  // [n_layer]: 1 where adapters go; NULL: every layer
    // [train] recompute (lmp_recompute, core/config.h): which activations the backward
    // computes again instead of keeping. The recompute runs the forward's own code on the
    // same inputs (dropout masks come from the counter RNG), so losses and gradients are the
    // same bits with every value; only the memory and the time differ. attn keeps what none
    // keeps: the attention kernels keep no probabilities to recompute (kernels.h).
    int recompute;
    // [parallel] sequence_parallel (comm.h, run.h): with tp > 1, the residual stream, norms and
    // block-level adapters split by rows over the tp group in training and evaluation steps
    // whose B T rows divide by tp (generation never: its cache decodes one row at a time).
    int sp;
} lmp_model_opts;

#define LMP_BLOCK_MAX_ADAPTERS 4

// Adapters at a sublayer (0 attention, 1 MLP) of a block: series (LMP_HOOK_SUBLAYER), applied
// to the sublayer's output, then parallel (LMP_HOOK_BESIDE), added from its input:
// h = series(sublayer(x)) + parallel(x).
typedef struct {
    int n_series, n_beside;
    lmp_adapter *series[LMP_BLOCK_MAX_ADAPTERS], *beside[LMP_BLOCK_MAX_ADAPTERS];
} lmp_sublayer_hooks;

typedef struct {
    lmp_norm ln1, ln2;
    lmp_attention attn;
    lmp_mlp mlp;
    lmp_sublayer_hooks hooks[2];
    float *res2, *res3;             // (N,C) residual after attention, block output
} lmp_block;

// Keys and values of this rank's heads for every layer and position, for generation.
typedef struct {
    float *mem;                     // (n_layer, 2, n_ctx, KVH_l hd)
    float *sc;                      // (n_ctx) attention scores of one head
    int len;                        // positions held (tokens: prefixes, in the first
                                    // n_prefix slots, not counted)
} lmp_kv_cache;

typedef struct {
    lmp_arch arch;
    lmp_model_opts opts;
    lmp_comm *comm;
    lmp_registry reg;
    lmp_embed emb;
    lmp_norm lnf;
    lmp_block *blocks;
    lmp_adapter **ad;               // every adapter instance, in registration order
    lmp_adapter *kv_shared;         // the blocks' shared key/value instance (prefix
                                    // projection's MLP, also in ad), or NULL
    int n_prefix;                   // prefix tuning's virtual tokens (0: none): the sequence
                                    // sits at positions n_prefix .. n_prefix + T - 1
    int n_ad;
    // activations for B x T, (re)allocated by lmp_model_set_batch
    int B, T;
    float *act_mem;
    size_t act_floats;              // its size
    lmp_run run;                    // scratch buffers shared by the blocks
    lmp_kv_cache cache;
    float *rope_cos;                // rotary tables (n_ctx, hd/2): cos, then sin; or NULL
    lmp_grad_buckets *bk;           // set for the last micro-step of a training step: the
                                    // backward starts each bucket's gradient all-reduce as
                                    // its blocks finish (comm.h); NULL: no reduction inside
} lmp_model;

// The description of the model of cfg: its family's (model/gpt2.c, model/llama.c).
void lmp_model_arch(const lmp_model_config *cfg, lmp_arch *a);
// Registers every tensor of the model of cfg (its family's description) and its adapters for
// this rank's shard and allocates them. Dies on every rank naming the problem when tp cannot
// split the model or a component is not implemented.
void lmp_model_build(lmp_model *m, const lmp_model_config *cfg, const lmp_model_opts *opts,
                     lmp_comm *comm);
// The registration half of lmp_model_build: every entry with its shapes and shard, nothing
// allocated. Reads only comm->tp_rank and comm->tp_size (plan fills them by hand).
void lmp_model_register(lmp_model *m, const lmp_model_config *cfg, const lmp_model_opts *opts,
                        lmp_comm *comm);
// The same from a description directly (a family's lmp_arch; tests build variants, e.g.
// grouped-query attention, this way).
void lmp_model_register_arch(lmp_model *m, const lmp_arch *arch, const lmp_model_opts *opts,
                             lmp_comm *comm);
void lmp_model_build_arch(lmp_model *m, const lmp_arch *arch, const lmp_model_opts *opts,
                          lmp_comm *comm);
void lmp_model_free(lmp_model *m);
// Floats of activation memory lmp_model_set_batch allocates for B x T on this rank.
size_t lmp_model_act_floats(lmp_model *m, int B, int T);
// The family's initialisation of the base weights from the counter RNG (the same global
// weights on any layout).
void lmp_model_init_base(lmp_model *m, uint64_t seed);
// Every adapter's initial values (counter RNG: the same on every rank and layout).
void lmp_model_init_adapters(lmp_model *m, int gaussian, uint64_t seed);
// Recomputes what adapters derive from their trainable tensors (the projected prefixes) from
// the current values: before saving them outside a forward pass (after an optimizer step).
void lmp_model_refresh_adapters(lmp_model *m);
// Allocates activations for B sequences of T tokens (this rank's rows).
void lmp_model_set_batch(lmp_model *m, int B, int T);

// Forward over tokens (B,T) and the loss sum_n scale[n] * CE(n) of this rank's rows (the
// caller sums over dp). With backward != 0 it also accumulates every trainable gradient
// (not reduced). scale[n] = 0 masks a position. rc->row0 is the global index of row 0.
double lmp_model_step(lmp_model *m, const int *tokens, const int *targets, const float *scale,
                      const lmp_rng_ctx *rc, int backward);
// Full logits (B*T, V) of every position, gathered over the tp group (for tests and
// generation; training never forms them).
void lmp_model_logits(lmp_model *m, const int *tokens, float *logits);

// Generation with a key/value cache (each rank keeps its heads'): prefill runs the T tokens
// (T <= n_ctx) as one sequence and fills the cache; decode runs one token at position
// cache.len and appends to it. Both give the logits (V) of their last position only,
// gathered over the tp group. Dropout is off.
void lmp_model_prefill(lmp_model *m, const int *tokens, int T, float *logits);
void lmp_model_decode(lmp_model *m, int token, float *logits);

#endif
