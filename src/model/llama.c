// llama.c: the Llama family (llama.h).
#include "model/llama.h"
#include "core/rng.h"

#include <string.h>

// [adapter] targets by PEFT's module names, each one nn.Linear of the block (a part of the
// q|k|v or gate|up buffer, so an adapter on it sees exactly that weight).
static const lmp_target_site TARGETS[] = {
    {LMP_T_Q_PROJ, "q_proj", LMP_SITE_Q, -1},
    {LMP_T_K_PROJ, "k_proj", LMP_SITE_K, -1},
    {LMP_T_V_PROJ, "v_proj", LMP_SITE_V, -1},
    {LMP_T_O_PROJ, "o_proj", LMP_SITE_ATTN_OUT, -1},
    {LMP_T_GATE_PROJ, "gate_proj", LMP_SITE_MLP_GATE, -1},
    {LMP_T_UP_PROJ, "up_proj", LMP_SITE_MLP_IN, -1},
    {LMP_T_DOWN_PROJ, "down_proj", LMP_SITE_MLP_OUT, -1},
};

void lmp_llama_arch(const lmp_model_config *cfg, lmp_arch *a) {
    *a = (lmp_arch){
        .family = cfg->arch[0] ? cfg->arch : "llama",
        .n_layer = cfg->n_layer, .n_embd = cfg->n_embd, .vocab_size = cfg->vocab_size,
        .n_ctx = cfg->n_ctx,
        .norm = LMP_NORM_RMSNORM, .norm_eps = cfg->ln_eps, .norm_bias = 0,
        .n_head = cfg->n_head, .n_kv_head = cfg->n_kv_head, .head_dim = cfg->head_dim,
        .qkv_bias = cfg->qkv_bias, .attn_out_bias = cfg->out_bias, .pos = LMP_POS_ROPE,
        .rope = cfg->rope, .qk_norm = cfg->qk_norm, .hf_linear = 1,
        .mlp = LMP_MLP_GATED_SILU, .mlp_hidden = cfg->mlp_hidden, .mlp_bias = cfg->mlp_bias,
        .tied_head = cfg->tied_head,
        .wte = "model.embed_tokens.weight", .wpe = NULL, .lnf = "model.norm",
        .ln1 = "model.layers.%d.input_layernorm", .ln2 = "model.layers.%d.post_attention_layernorm",
        .site = {[LMP_SITE_Q] = "model.layers.%d.self_attn.q_proj",
                 [LMP_SITE_K] = "model.layers.%d.self_attn.k_proj",
                 [LMP_SITE_V] = "model.layers.%d.self_attn.v_proj",
                 [LMP_SITE_ATTN_OUT] = "model.layers.%d.self_attn.o_proj",
                 [LMP_SITE_MLP_GATE] = "model.layers.%d.mlp.gate_proj",
                 [LMP_SITE_MLP_IN] = "model.layers.%d.mlp.up_proj",
                 [LMP_SITE_MLP_OUT] = "model.layers.%d.mlp.down_proj"},
        .head = "lm_head.weight",
        .q_norm = "model.layers.%d.self_attn.q_norm.weight",
        .k_norm = "model.layers.%d.self_attn.k_norm.weight",
        .targets = TARGETS, .n_targets = (int)(sizeof TARGETS / sizeof TARGETS[0]),
    };
}

void lmp_llama_init(lmp_registry *reg, const lmp_arch *a, uint64_t seed) {
    (void)a;
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        int is_norm = strstr(p->name, "norm") != NULL, is_bias = strstr(p->name, ".bias") != NULL;
        uint64_t stream = lmp_hash_str(p->name);
        for (size_t k = 0; k < p->numel; k++) {
            if (is_norm) lmp_param_set(p, k, 1.0f);
            else if (is_bias) lmp_param_set(p, k, 0.0f);
            else lmp_param_set(p, k, 0.02f * lmp_rng_normal(seed, stream, (uint64_t)lmp_param_global_index(p, k)));
        }
    }
}
