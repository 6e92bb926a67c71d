// model_config.c: GPT-2 hyperparameters from config.json or an llm.c header, and back.
#include "model/model_config.h"
#include "io/hf_dir.h"
#include "io/llmc.h"
#include "io/safetensors.h"
#include "core/util.h"

#include <float.h>
#include <jansson.h>
#include <stdint.h>
#include <string.h>

static int json_int_key(json_t *o, const char *key, const char *path, int required, int def) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required) lmp_die("%s: missing key \"%s\" (an integer)", path, key);
        return def;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        lmp_die("%s: key \"%s\" must be a positive integer", path, key);
    return (int)json_integer_value(v);
}

// The tensors of dir/model.safetensors that carry each size of config.json (the embeddings,
// the last layer and the one after it), compared before anything is allocated from those
// sizes: a config.json that claims vocab_size 2^30 for a small file is refused here, naming
// the tensor, not by an allocation of 128 GiB.
static void check_hf_tensors(const char *dir, const lmp_model_config *c) {
    char path[4096], last[64], next[64];
    lmp_path_join(path, sizeof path, dir, "model.safetensors");
    lmp_fmt(last, sizeof last, "h.%d.attn.c_attn.weight", c->n_layer - 1);
    lmp_fmt(next, sizeof next, "h.%d.attn.c_attn.weight", c->n_layer);
    lmp_st_file f;
    lmp_st_open(&f, path);
    const struct { const char *name; int64_t rows, cols; } want[] = {
        {"wte.weight", c->vocab_size, c->n_embd}, {"wpe.weight", c->n_ctx, c->n_embd},
        {last, c->n_embd, 3 * (int64_t)c->n_embd}, {next, -1, -1}};
    for (int i = 0; i < 4; i++) {
        char pre[LMP_NAME_MAX + 16];
        const lmp_st_tensor *t = lmp_st_find(&f, want[i].name);
        if (!t) t = lmp_st_find(&f, lmp_fmt(pre, sizeof pre, "transformer.%s", want[i].name));
        if (want[i].rows < 0 && t)
            lmp_die("%s: holds %s, but config.json says n_layer = %d", path, want[i].name, c->n_layer);
        if (want[i].rows < 0) continue;
        if (!t) lmp_die("%s: no tensor %s (config.json: n_layer = %d)", path, want[i].name, c->n_layer);
        if (t->ndim != 2 || t->shape[0] != want[i].rows || t->shape[1] != want[i].cols)
            lmp_die("%s: tensor %s has shape [%lld%s%lld], config.json (n_layer %d, n_embd %d, "
                    "vocab_size %d, n_positions %d) needs [%lld, %lld]", path, want[i].name,
                    (long long)t->shape[0], t->ndim == 2 ? ", " : " ...",
                    t->ndim == 2 ? (long long)t->shape[1] : 0LL, c->n_layer, c->n_embd,
                    c->vocab_size, c->n_ctx, (long long)want[i].rows, (long long)want[i].cols);
    }
    lmp_st_close(&f);
}

static void read_hf_config(const char *dir, lmp_model_config *cfg) {
    char cp[4096];
    lmp_path_join(cp, sizeof cp, dir, "config.json");
    if (lmp_llama_read_config(cp, cfg)) {
        // A directory of config.json alone: [model] random_init (loading names the file).
        if (lmp_hf_has_weights(dir)) lmp_llama_check_tensors(dir, cfg);
        return;
    }
    json_error_t je;
    json_t *o = json_load_file(cp, 0, &je);
    if (!o) lmp_die("%s: %s (line %d, column %d)", cp, je.text, je.line, je.column);
    if (!json_is_object(o)) lmp_die("%s: not a JSON object", cp);
    cfg->n_layer = json_int_key(o, "n_layer", cp, 1, 0);
    cfg->n_head = json_int_key(o, "n_head", cp, 1, 0);
    cfg->n_embd = json_int_key(o, "n_embd", cp, 1, 0);
    cfg->vocab_size = json_int_key(o, "vocab_size", cp, 1, 0);
    cfg->n_ctx = json_int_key(o, "n_positions", cp, 0, json_int_key(o, "n_ctx", cp, 0, 0));
    if (!cfg->n_ctx) lmp_die("%s: missing key \"n_positions\" (an integer)", cp);
    json_t *eps = json_object_get(o, "layer_norm_epsilon");
    cfg->ln_eps = eps ? (float)json_number_value(eps) : 1e-5f;
    // Checked as stored (a float): 1e300 would become infinity, 1e-50 zero.
    if (eps && (!json_is_number(eps) || !(cfg->ln_eps >= FLT_MIN && cfg->ln_eps <= 1)))
        lmp_die("%s: layer_norm_epsilon = %g: expected a number in [%g, 1] (as a float it is %g)", cp,
                json_number_value(eps), (double)FLT_MIN, (double)cfg->ln_eps);
    json_t *act = json_object_get(o, "activation_function");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_new")))
        lmp_die("%s: activation_function must be \"gelu_new\" (GPT-2's tanh GELU)", cp);
    json_decref(o);
    if (cfg->n_embd % cfg->n_head) lmp_die("%s: n_embd %d is not a multiple of n_head %d", cp, cfg->n_embd, cfg->n_head);
    check_hf_tensors(dir, cfg);
}

static void read_llmc_config(const char *path, lmp_model_config *cfg) {
    int hdr[256];
    uint64_t size;
    lmp_llmc_read_header(path, hdr, &size);
    cfg->n_ctx = hdr[2];
    cfg->vocab_size = hdr[3];
    cfg->n_layer = hdr[4];
    cfg->n_head = hdr[5];
    cfg->n_embd = hdr[6];
    cfg->ln_eps = 1e-5f;
    if (cfg->n_ctx <= 0 || cfg->vocab_size <= 0 || cfg->n_layer <= 0 || cfg->n_head <= 0 || cfg->n_embd <= 0 ||
        hdr[7] < hdr[3] || cfg->n_embd % cfg->n_head)
        lmp_die("%s: inconsistent llm.c header (maxT %d, V %d, L %d, NH %d, C %d, Vp %d)", path, hdr[2], hdr[3], hdr[4],
                hdr[5], hdr[6], hdr[7]);
    // The file's size against its header, in double (exact to 2^53; no wrap), before any
    // allocation from these sizes (llm.c's 16 tensors: wte, wpe, L blocks, ln_f).
    double C = cfg->n_embd, L = cfg->n_layer;
    double need = 1024 + 4 * ((double)hdr[7] * C + cfg->n_ctx * C + L * (12 * C * C + 13 * C) + 2 * C);
    if (need != (double)size)
        lmp_die("%s: %llu bytes, an llm.c model of this header (maxT %d, V %d, L %d, C %d, Vp %d) has %.0f "
                "(truncated, or not fp32)", path, (unsigned long long)size, hdr[2], hdr[3], hdr[4], hdr[6],
                hdr[7], need);
}

void lmp_model_read_config(const char *path, lmp_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (lmp_is_dir(path)) read_hf_config(path, cfg);
    else read_llmc_config(path, cfg);
}

void lmp_model_write_config(const char *path, const lmp_model_config *cfg) {
    if (cfg->family != LMP_FAMILY_GPT2)
        lmp_die("%s: writing a config.json of %s is not implemented yet", path, cfg->arch);
    json_t *c = json_pack("{s:s, s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:f, s:f, s:f, s:f, s:i, s:i}",
                          "model_type", "gpt2", "architectures", "GPT2LMHeadModel", "n_layer", cfg->n_layer,
                          "n_head", cfg->n_head, "n_embd", cfg->n_embd, "vocab_size", cfg->vocab_size,
                          "n_positions", cfg->n_ctx, "n_ctx", cfg->n_ctx, "layer_norm_epsilon", (double)cfg->ln_eps,
                          "activation_function", "gelu_new", "resid_pdrop", 0.1, "embd_pdrop", 0.1,
                          "attn_pdrop", 0.1, "initializer_range", 0.02, "bos_token_id", cfg->vocab_size - 1,
                          "eos_token_id", cfg->vocab_size - 1);
    LMP_CHECK(c, "cannot build config.json");
    if (json_dump_file(c, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) lmp_die("cannot write %s", path);
    json_decref(c);
}

void lmp_model_save_hf(const char *dir, const lmp_model_config *cfg, const lmp_registry *reg) {
    char path[4096];
    lmp_hf_save_weights(dir, reg);
    lmp_model_write_config(lmp_path_join(path, sizeof path, dir, "config.json"), cfg);
}
