// gpt2.h: the GPT-2 family (pre-LayerNorm, tanh GELU MLP of width 4C, learned positions,
// fused q|k|v projection, tied embedding and LM head) as an lmp_arch, and its init.
// A new family (Llama, Mistral, Qwen) is a file like this one: its description from the
// model's configuration, its tensor names and targets, its initialisation.
#ifndef LORAMPI_GPT2_H
#define LORAMPI_GPT2_H
#include "io/model_io.h"
#include "model/model_config.h"
#include "model/arch.h"

// GPT-2's description from its hyperparameters (HF config.json or llm.c header). Tensor
// names are HF's without the "transformer." prefix: "wte.weight", "h.3.attn.c_attn.weight".
void lmp_gpt2_arch(const lmp_model_config *cfg, lmp_arch *a);
// GPT-2's initialisation of every base entry of reg: N(0, 0.02), residual projections
// (c_proj) scaled by 1/sqrt(2 n_layer), biases 0, LayerNorms 1 and 0; drawn from the counter
// RNG by global index, so the same on any layout.
void lmp_gpt2_init(lmp_registry *reg, const lmp_arch *a, uint64_t seed);

#endif
