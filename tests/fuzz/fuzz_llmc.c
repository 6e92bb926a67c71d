// fuzz_llmc: llm.c model files (io/llmc.c): the header, the configuration taken from it
// (model/model_config.c) and, when the model is small, loading every tensor into a registry
// of that configuration, whole or as one tensor-parallel rank's slices.
#include "fuzzutil.h"
#include "io/llmc.h"
#include "model/model_config.h"
#include "core/registry.h"

#include <stdio.h>

// GPT-2's base entries for cfg; split: the column/row slices of rank 1 of tp = 2 (as the
// model holds them), else whole tensors.
static void gpt2_registry(lmp_registry *r, const lmp_model_config *cfg, int split) {
    int64_t C = cfg->n_embd;
    lmp_registry_init(r, 16 + 12 * cfg->n_layer);
    int64_t wte[2] = {cfg->vocab_size, C}, wpe[2] = {cfg->n_ctx, C}, lnf[1] = {C};
    lmp_registry_add(r, "wte.weight", 2, wte, -1, 1, 0, 0, LMP_ROLE_BASE, 0, LMP_GRAD_TP_SAME, 0);
    lmp_registry_add(r, "wpe.weight", 2, wpe, -1, 1, 0, 0, LMP_ROLE_BASE, 0, LMP_GRAD_TP_SAME, 0);
    static const char *leaf[12] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
        "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    static const int d0[12] = {1, 1, 1, 3, 1, 1, 1, 1, 1, 4, 4, 1}, d1[12] = {0, 0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0};
    // split dim and groups of each leaf under tp (c_attn: q, k, v column blocks)
    static const int sd[12] = {-1, -1, 1, 0, 0, -1, -1, -1, 1, 0, 0, -1}, gr[12] = {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int l = 0; l < cfg->n_layer; l++)
        for (int j = 0; j < 12; j++) {
            char name[64];
            snprintf(name, sizeof name, "h.%d.%s", l, leaf[j]);
            int64_t sh[2] = {d0[j] * C, d1[j] * C};
            int dim = split ? sd[j] : -1;
            int64_t part = dim < 0 ? 0 : sh[dim] / gr[j] / 2;  // rank 1 of 2: the second half
            lmp_registry_add(r, name, d1[j] ? 2 : 1, sh, dim, gr[j], part, part, LMP_ROLE_BASE, 0,
                             LMP_GRAD_TP_SAME, 0);
        }
    lmp_registry_add(r, "ln_f.weight", 1, lnf, -1, 1, 0, 0, LMP_ROLE_BASE, 0, LMP_GRAD_TP_SAME, 0);
    lmp_registry_add(r, "ln_f.bias", 1, lnf, -1, 1, 0, 0, LMP_ROLE_BASE, 0, LMP_GRAD_TP_SAME, 0);
    lmp_registry_alloc(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    lmp_fuzz_write(path, sizeof path, "model.bin", data, size);
    static lmp_registry reg;  // static: a die inside the load leaves it to the next input
    LMP_FUZZ_TRY({
        int hdr[256];
        uint64_t sz;
        lmp_llmc_read_header(path, hdr, &sz);
        lmp_model_config cfg;
        lmp_model_read_config(path, &cfg);
        if (cfg.n_layer > 4 || cfg.n_embd > 64 || cfg.vocab_size > 1024 || cfg.n_ctx > 256) return 0;
        int split = cfg.n_embd % 2 == 0 && hdr[8] % 2;  // hdr[8]: unused by llm.c
        gpt2_registry(&reg, &cfg, split);
        lmp_llmc_load(path, &reg);
        lmp_registry_free(&reg);
    });
    return 0;
}
