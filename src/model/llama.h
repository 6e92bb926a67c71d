// llama.h: the Llama family (LlamaForCausalLM: Llama 2, 3, 3.1, 3.2 and the models of that
// class; MistralForCausalLM; Qwen2ForCausalLM; Qwen3ForCausalLM) as an lmp_arch, and its
// init. Pre-RMSNorm blocks, rotary positions, grouped-query attention with separate
// q_proj/k_proj/v_proj (Qwen2: their biases; Qwen3: per-head q/k RMSNorm), gated SiLU MLP,
// tied or untied LM head. Tensor names are the file's ("model.layers.0.self_attn.q_proj.weight",
// "model.embed_tokens.weight", "lm_head.weight"), so loading, checkpoints and analyze vs-base
// need no mapping; linear weights are (out, in) as in the file.
#ifndef LORAMPI_LLAMA_H
#define LORAMPI_LLAMA_H
#include "model/arch.h"
#include "model/model_config.h"

void lmp_llama_arch(const lmp_model_config *cfg, lmp_arch *a);
// N(0, 0.02) for matrices (HF's initializer_range), norms 1, biases 0; from the counter RNG
// by global index (the same on any layout). For tests and benchmarks without a model file.
void lmp_llama_init(lmp_registry *reg, const lmp_arch *a, uint64_t seed);

#endif
