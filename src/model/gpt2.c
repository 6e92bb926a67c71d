// gpt2.c: the GPT-2 family (gpt2.h).
#include "model/gpt2.h"
#include "core/rng.h"

#include <math.h>
#include <string.h>

// [adapter] targets on GPT-2, in registration order: the fused c_attn whole or one of its
// q, k, v blocks (loralib's MergedLinear), the attention output, the MLP's two projections.
static const lmp_target_site TARGETS[] = {
    {LMP_T_C_ATTN, "c_attn", LMP_SITE_QKV, -1},
    {LMP_T_Q, "q", LMP_SITE_QKV, 0},
    {LMP_T_K, "k", LMP_SITE_QKV, 1},
    {LMP_T_V, "v", LMP_SITE_QKV, 2},
    {LMP_T_ATTN_PROJ, "attn.c_proj", LMP_SITE_ATTN_OUT, -1},
    {LMP_T_MLP_FC, "mlp.c_fc", LMP_SITE_MLP_IN, -1},
    {LMP_T_MLP_PROJ, "mlp.c_proj", LMP_SITE_MLP_OUT, -1},
};

void lmp_gpt2_arch(const lmp_model_config *cfg, lmp_arch *a) {
    *a = (lmp_arch){
        .family = "gpt2",
        .n_layer = cfg->n_layer, .n_embd = cfg->n_embd, .vocab_size = cfg->vocab_size,
        .n_ctx = cfg->n_ctx,
        .norm = LMP_NORM_LAYERNORM, .norm_eps = cfg->ln_eps, .norm_bias = 1,
        .n_head = cfg->n_head, .n_kv_head = cfg->n_head, .head_dim = cfg->n_embd / cfg->n_head,
        .qkv_bias = 1, .attn_out_bias = 1, .pos = LMP_POS_LEARNED,
        .mlp = LMP_MLP_GELU, .mlp_hidden = 4 * cfg->n_embd, .mlp_bias = 1,
        .tied_head = 1,
        .wte = "wte.weight", .wpe = "wpe.weight", .lnf = "ln_f", .ln1 = "h.%d.ln_1",
        .ln2 = "h.%d.ln_2",
        .site = {"h.%d.attn.c_attn", "h.%d.attn.c_proj", "h.%d.mlp.c_fc", "h.%d.mlp.c_proj"},
        .targets = TARGETS, .n_targets = (int)(sizeof TARGETS / sizeof TARGETS[0]),
    };
}

void lmp_gpt2_init(lmp_registry *reg, const lmp_arch *a, uint64_t seed) {
    float proj_sd = 0.02f / sqrtf(2.0f * a->n_layer);
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        const char *s = strrchr(p->name, '.');
        int is_bias = strcmp(s, ".bias") == 0;
        int is_ln = strstr(p->name, "ln_") != NULL;
        float sd = strstr(p->name, "c_proj.weight") ? proj_sd : 0.02f;
        uint64_t stream = lmp_hash_str(p->name);
        for (size_t k = 0; k < p->numel; k++) {
            if (is_ln) lmp_param_set(p, k, is_bias ? 0.0f : 1.0f);
            else if (is_bias) lmp_param_set(p, k, 0.0f);
            else lmp_param_set(p, k, sd * lmp_rng_normal(seed, stream, (uint64_t)lmp_param_global_index(p, k)));
        }
    }
}
