// gpt2.h: the GPT-2 model (pre-LayerNorm, tanh GELU, learned positions, tied embedding and
// LM head, causal attention), tensor-parallel over comm->tp, with LoRA adapters.
// Every tensor lives in m->reg; activations in one allocation carved per layer.
#ifndef LORAMPI_GPT2_H
#define LORAMPI_GPT2_H
#include "core/comm.h"
#include "adapters/lora.h"
#include "io/model_io.h"
#include "model/tp_linear.h"

typedef struct {
    int full_finetune;        // every base weight trainable (method none)
    int lora_targets;         // LMP_T_* bits; 0: no adapters
    int lora_r;
    float lora_alpha, lora_dropout;
    int rslora;
    const unsigned char *layer_on;  // [n_layer]: 1 where adapters go; NULL: every layer
} lmp_gpt2_opts;

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd;  // (N,C) (N) (N)
    float *qkv;                        // (N,3C_l)
    float *atty;                       // (N,C_l)
    float *att;                        // (B,NH_l,T,T)
    float *res2;                       // (N,C) residual after attention
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;             // (N,H_l)
    float *res3;                       // (N,C) block output
} lmp_block_acts;

typedef struct {
    lmp_param *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lmp_linear c_attn, attn_proj, c_fc, mlp_proj;
    lmp_block_acts a;
} lmp_block;

typedef struct {
    lmp_model_config cfg;
    lmp_gpt2_opts opts;
    lmp_comm *comm;
    int C, NH_l, C_l, H_l, V_l, v0;  // local sizes: heads, features, MLP width, vocab slice
    lmp_registry reg;
    lmp_param *wte, *wpe, *lnf_w, *lnf_b;
    lmp_block *blocks;
    lmp_lora *loras;
    int n_lora;
    // activations for B x T, (re)allocated by lmp_gpt2_set_batch
    int B, T, chunk;
    float *act_mem;
    float *encoded, *lnf, *lnf_mean, *lnf_rstd, *tmp;  // (N,C) (N,C) (N) (N) (N,C)
    float *logits;                                     // (chunk, V_l)
    double *xstat;                                     // (4*chunk) row max/sumexp/tgt
    // backward scratch, shared across layers
    float *dres, *dln, *dqkv, *datty, *datt, *dfch, *dfchg, *du, *xd;
} lmp_gpt2;

// Registers every tensor of the model and its adapters for this rank's shard and
// allocates them. Dies (on every rank) when tp does not divide n_head or exceeds the vocab.
void lmp_gpt2_build(lmp_gpt2 *m, const lmp_model_config *cfg, const lmp_gpt2_opts *opts,
                    lmp_comm *comm);
void lmp_gpt2_free(lmp_gpt2 *m);
// The registration half of lmp_gpt2_build: every entry with its shapes and shard, nothing
// allocated. Reads only comm->tp_rank and comm->tp_size (plan fills them by hand).
void lmp_gpt2_register(lmp_gpt2 *m, const lmp_model_config *cfg, const lmp_gpt2_opts *opts,
                       lmp_comm *comm);
// Floats of activation memory lmp_gpt2_set_batch allocates for B x T on this rank.
size_t lmp_gpt2_act_floats(const lmp_gpt2 *m, int B, int T);
// GPT-2 initialisation of the base weights (N(0,0.02), residual projections scaled by
// 1/sqrt(2L), biases 0, LayerNorms 1/0) from the counter RNG: the same global weights on
// any layout.
void lmp_gpt2_init_base(lmp_gpt2 *m, uint64_t seed);
// A per the init choice, B = 0, from the counter RNG.
void lmp_gpt2_init_adapters(lmp_gpt2 *m, int gaussian, uint64_t seed);
// Allocates activations for B sequences of T tokens (this rank's rows).
void lmp_gpt2_set_batch(lmp_gpt2 *m, int B, int T);

// Forward over tokens (B,T) and the loss sum_n scale[n] * CE(n) of this rank's rows (the
// caller sums over dp). With backward != 0 it also accumulates every trainable gradient
// (not reduced). scale[n] = 0 masks a position. rc->row0 is the global index of row 0.
double lmp_gpt2_step(lmp_gpt2 *m, const int *tokens, const int *targets, const float *scale,
                     const lmp_rng_ctx *rc, int backward);
// Full logits (B*T, V) of every position, gathered over the tp group (for tests and
// generation; training never forms them).
void lmp_gpt2_logits(lmp_gpt2 *m, const int *tokens, float *logits);

#endif
