// llama_config.c: the Llama family's config.json (model_config.h). Each key is read as
// transformers reads it (defaults of LlamaConfig / MistralConfig / Qwen2Config /
// Qwen3Config), and every field whose meaning lorampi does not implement is refused by name.
#include "model/model_config.h"
#include "core/util.h"
#include "io/safetensors.h"

#include <float.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const struct { const char *arch, *type; } FAMILY[] = {
    {"LlamaForCausalLM", "llama"}, {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"}, {"Qwen3ForCausalLM", "qwen3"}};
#define N_FAMILY 4

static int pos_int(json_t *o, const char *key, const char *cp, int required, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) lmp_die("%s: missing key \"%s\" (an integer)", cp, key);
        return def;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        lmp_die("%s: key \"%s\" must be a positive integer", cp, key);
    return (int)json_integer_value(v);
}

static int get_bool(json_t *o, const char *key, const char *cp, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) lmp_die("%s: key \"%s\" must be true or false", cp, key);
    return json_is_true(v);
}

// A positive float (as stored: 1e300 would be infinity, 1e-50 zero) within [lo, hi].
static float get_float(json_t *o, const char *key, const char *cp, float def, double lo, double hi) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    float f = (float)json_number_value(v);
    if (!json_is_number(v) || !(f >= lo && f <= hi))
        lmp_die("%s: %s = %g: expected a number in [%g, %g]", cp, key, json_number_value(v), lo, hi);
    return f;
}

// The family index of o (architectures[0] or model_type), or -1. Another causal-LM class
// named in architectures is refused by name.
static int family_of(json_t *o, const char *cp, const char **arch) {
    json_t *a = json_object_get(o, "architectures"), *t = json_object_get(o, "model_type");
    const char *an = json_is_array(a) && json_is_string(json_array_get(a, 0))
                         ? json_string_value(json_array_get(a, 0)) : NULL;
    const char *tn = json_is_string(t) ? json_string_value(t) : NULL;
    for (int i = 0; i < N_FAMILY; i++)
        if ((an && !strcmp(an, FAMILY[i].arch)) || (!an && tn && !strcmp(tn, FAMILY[i].type))) {
            *arch = FAMILY[i].arch;
            return i;
        }
    if ((an && strcmp(an, "GPT2LMHeadModel") && strcmp(an, "GPT2Model")) || (tn && strcmp(tn, "gpt2")))
        lmp_die("%s: model %s (model_type %s) is not implemented: lorampi runs GPT2LMHeadModel, "
                "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM", cp,
                an ? an : "?", tn ? tn : "?");
    return -1;
}

// rope_type (or the older "type") of a rope object: default, linear or llama3.
static void read_rope_scaling(json_t *s, const char *cp, lmp_rope_params *r) {
    json_t *t = json_object_get(s, "rope_type");
    if (!t) t = json_object_get(s, "type");
    const char *tn = json_is_string(t) ? json_string_value(t) : "default";
    if (!strcmp(tn, "default")) return;
    r->factor = get_float(s, "factor", cp, 0.0f, 1e-6, 1e6);
    if (r->factor <= 0) lmp_die("%s: rope_type %s needs \"factor\"", cp, tn);
    if (!strcmp(tn, "linear")) { r->type = LMP_ROPE_LINEAR; return; }
    if (strcmp(tn, "llama3"))
        lmp_die("%s: rope_type \"%s\" is not implemented (lorampi implements default, linear, "
                "llama3)", cp, tn);
    r->type = LMP_ROPE_LLAMA3;
    r->low_freq_factor = get_float(s, "low_freq_factor", cp, 0.0f, 1e-6, 1e6);
    r->high_freq_factor = get_float(s, "high_freq_factor", cp, 0.0f, 1e-6, 1e6);
    r->original_max_pos = pos_int(s, "original_max_position_embeddings", cp, 1, 0);
    if (!(r->low_freq_factor > 0 && r->high_freq_factor > r->low_freq_factor))
        lmp_die("%s: rope llama3 needs low_freq_factor > 0 and high_freq_factor > low_freq_factor", cp);
}

// transformers 5: rope_parameters {rope_theta, rope_type, ...}; transformers 4: top-level
// rope_theta and rope_scaling (null or {rope_type|type, factor, ...}).
static void read_rope(json_t *o, const char *cp, lmp_rope_params *r) {
    memset(r, 0, sizeof *r);
    json_t *p = json_object_get(o, "rope_parameters");
    if (p && !json_is_null(p) && !json_is_object(p)) lmp_die("%s: rope_parameters must be an object", cp);
    json_t *src = json_is_object(p) ? p : o;
    r->theta = get_float(src, "rope_theta", cp, 10000.0f, 1.0, 1e12);
    json_t *s = json_is_object(p) ? p : json_object_get(o, "rope_scaling");
    if (s && !json_is_null(s) && !json_is_object(s)) lmp_die("%s: rope_scaling must be an object or null", cp);
    if (json_is_object(s)) read_rope_scaling(s, cp, r);
}

// Keys whose features lorampi does not implement: present and not null/false/0 is refused.
static void refuse_unimplemented(json_t *o, const char *cp) {
    static const char *MOE[] = {"num_experts", "num_local_experts", "n_routed_experts",
                                "moe_intermediate_size", "num_experts_per_tok"};
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(o, MOE[i]);
        if (v && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
            lmp_die("%s: %s is set: mixture-of-experts models are not implemented", cp, MOE[i]);
    }
    json_t *act = json_object_get(o, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu")))
        lmp_die("%s: hidden_act must be \"silu\" (the gated SiLU MLP)", cp);
}

// The window that applies, or 0: Mistral applies a non-null sliding_window; Qwen2/Qwen3 only
// with use_sliding_window true (layer_types naming sliding_attention as well).
static int sliding_window(json_t *o, const char *cp, int fam) {
    int w = pos_int(o, "sliding_window", cp, 0, 0);
    if (fam == 1) return w;
    if (fam >= 2 && get_bool(o, "use_sliding_window", cp, 0)) return w;
    json_t *lt = json_object_get(o, "layer_types"), *v;
    size_t i;
    json_array_foreach(lt, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), "sliding_attention")) return w;
    return 0;
}

int lmp_llama_read_config(const char *cp, lmp_model_config *cfg) {
    json_error_t je;
    json_t *o = json_load_file(cp, 0, &je);
    if (!o) lmp_die("%s: %s (line %d, column %d)", cp, je.text, je.line, je.column);
    if (!json_is_object(o)) lmp_die("%s: not a JSON object", cp);
    const char *arch = NULL;
    int fam = family_of(o, cp, &arch);
    if (fam < 0) { json_decref(o); return 0; }
    refuse_unimplemented(o, cp);
    lmp_fmt(cfg->arch, sizeof cfg->arch, "%s", arch);
    cfg->family = LMP_FAMILY_LLAMA;
    cfg->n_layer = pos_int(o, "num_hidden_layers", cp, 1, 0);
    cfg->n_embd = pos_int(o, "hidden_size", cp, 1, 0);
    cfg->n_head = pos_int(o, "num_attention_heads", cp, 1, 0);
    cfg->n_kv_head = pos_int(o, "num_key_value_heads", cp, 0, cfg->n_head);
    cfg->head_dim = pos_int(o, "head_dim", cp, 0, cfg->n_embd / cfg->n_head);
    cfg->mlp_hidden = pos_int(o, "intermediate_size", cp, 1, 0);
    cfg->vocab_size = pos_int(o, "vocab_size", cp, 1, 0);
    cfg->n_ctx = pos_int(o, "max_position_embeddings", cp, 1, 0);
    cfg->ln_eps = get_float(o, "rms_norm_eps", cp, 1e-6f, FLT_MIN, 1.0);
    cfg->tied_head = get_bool(o, "tie_word_embeddings", cp, 0);
    // Qwen2: biases on q, k, v always, none on o; the others: attention_bias on all four.
    cfg->qkv_bias = fam == 2 ? 1 : get_bool(o, "attention_bias", cp, 0);
    cfg->out_bias = fam == 2 ? 0 : cfg->qkv_bias;
    cfg->mlp_bias = get_bool(o, "mlp_bias", cp, 0);
    cfg->qk_norm = fam == 3;
    cfg->sliding_window = sliding_window(o, cp, fam);
    read_rope(o, cp, &cfg->rope);
    json_decref(o);
    if (cfg->n_head % cfg->n_kv_head)
        lmp_die("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", cp,
                cfg->n_head, cfg->n_kv_head);
    if (cfg->head_dim % 2) lmp_die("%s: head_dim %d is odd (rotary embeddings rotate pairs)", cp, cfg->head_dim);
    return 1;
}

// Shape of tensor `name` in the model of dir (model.safetensors, or the file the index's
// weight_map names): its ndim, or -1 when absent. Only headers are read.
static int tensor_shape(const char *dir, json_t *map, const char *name, int64_t *shape) {
    char path[4096];
    json_t *v = map ? json_object_get(map, name) : NULL;
    if (map && !json_is_string(v)) return -1;
    lmp_path_join(path, sizeof path, dir, map ? json_string_value(v) : "model.safetensors");
    if (map && strchr(json_string_value(v), '/')) lmp_die("%s: weight_map names a file outside the directory", dir);
    lmp_st_file f;
    lmp_st_open(&f, path);
    const lmp_st_tensor *t = lmp_st_find(&f, name);
    int nd = t ? t->ndim : -1;
    for (int d = 0; t && d < nd && d < 2; d++) shape[d] = t->shape[d];
    lmp_st_close(&f);
    return nd;
}

void lmp_llama_check_tensors(const char *dir, const lmp_model_config *c) {
    char index[4096], name[4][96];
    lmp_path_join(index, sizeof index, dir, "model.safetensors.index.json");
    json_t *idx = NULL, *map = NULL;
    char single[4096];
    lmp_path_join(single, sizeof single, dir, "model.safetensors");
    if (access(single, F_OK) != 0 && access(index, F_OK) == 0) {
        json_error_t je;
        if (!(idx = json_load_file(index, 0, &je))) lmp_die("%s: %s (line %d)", index, je.text, je.line);
        if (!json_is_object(map = json_object_get(idx, "weight_map"))) lmp_die("%s: no \"weight_map\" object", index);
    }
    lmp_fmt(name[0], sizeof name[0], "model.embed_tokens.weight");
    lmp_fmt(name[1], sizeof name[1], "model.layers.%d.self_attn.k_proj.weight", c->n_layer - 1);
    lmp_fmt(name[2], sizeof name[2], "model.layers.%d.mlp.down_proj.weight", c->n_layer - 1);
    lmp_fmt(name[3], sizeof name[3], "model.layers.%d.self_attn.q_proj.weight", c->n_layer);
    const int64_t want[4][2] = {{c->vocab_size, c->n_embd}, {(int64_t)c->n_kv_head * c->head_dim, c->n_embd},
                                {c->n_embd, c->mlp_hidden}, {-1, -1}};
    for (int i = 0; i < 4; i++) {
        int64_t sh[2] = {0, 0};
        int nd = tensor_shape(dir, map, name[i], sh);
        if (want[i][0] < 0 && nd >= 0) lmp_die("%s: holds %s, but config.json says num_hidden_layers = %d", dir, name[i], c->n_layer);
        if (want[i][0] < 0) continue;
        if (nd < 0) lmp_die("%s: no tensor %s (config.json: num_hidden_layers = %d)", dir, name[i], c->n_layer);
        if (nd != 2 || sh[0] != want[i][0] || sh[1] != want[i][1])
            lmp_die("%s: tensor %s has shape [%lld, %lld], config.json needs [%lld, %lld]", dir, name[i],
                    (long long)sh[0], (long long)sh[1], (long long)want[i][0], (long long)want[i][1]);
    }
    json_decref(idx);
}

// cfg as a transformers 4 config.json of its class (every key lmp_llama_read_config reads).
static json_t *full_config(const lmp_model_config *c) {
    static const char *RT[] = {"default", "linear", "llama3"};
    const char *type = "llama";
    for (int i = 0; i < N_FAMILY; i++)
        if (!strcmp(c->arch, FAMILY[i].arch)) type = FAMILY[i].type;
    json_t *o = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:b, s:b, s:s, s:f}",
                          "architectures", c->arch[0] ? c->arch : "LlamaForCausalLM", "model_type", type,
                          "hidden_size", c->n_embd, "intermediate_size", c->mlp_hidden,
                          "num_hidden_layers", c->n_layer, "num_attention_heads", c->n_head,
                          "num_key_value_heads", c->n_kv_head, "head_dim", c->head_dim,
                          "vocab_size", c->vocab_size, "max_position_embeddings", c->n_ctx,
                          "rms_norm_eps", (double)c->ln_eps, "tie_word_embeddings", c->tied_head,
                          "attention_bias", c->qkv_bias, "mlp_bias", c->mlp_bias, "hidden_act", "silu",
                          "rope_theta", (double)c->rope.theta);
    LMP_CHECK(o, "cannot build config.json");
    json_t *rs = c->rope.type == LMP_ROPE_DEFAULT ? json_null()
                 : json_pack("{s:s, s:f}", "rope_type", RT[c->rope.type], "factor", (double)c->rope.factor);
    LMP_CHECK(rs, "cannot build config.json's rope_scaling");
    if (c->rope.type == LMP_ROPE_LLAMA3 &&
        (json_object_set_new(rs, "low_freq_factor", json_real(c->rope.low_freq_factor)) ||
         json_object_set_new(rs, "high_freq_factor", json_real(c->rope.high_freq_factor)) ||
         json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->rope.original_max_pos))))
        lmp_die("cannot build config.json's rope_scaling");
    if (json_object_set_new(o, "rope_scaling", rs)) lmp_die("cannot build config.json");
    return o;
}

// Copies src to dst byte for byte; dies naming either.
static void copy_file(const char *src, const char *dst) {
    FILE *in = fopen(src, "rb"), *out = in ? fopen(dst, "wb") : NULL;
    if (!in || !out) lmp_die("cannot copy %s to %s", src, dst);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) lmp_die("cannot write %s", dst);
    if (ferror(in)) lmp_die("cannot read %s", src);
    fclose(in);
    if (fclose(out)) lmp_die("cannot write %s", dst);
}

void lmp_llama_write_config(const char *dir, const lmp_model_config *cfg, const char *src, const char *dtype) {
    char in[4096], out[4096];
    json_t *o = NULL;
    if (src && src[0] && access(lmp_path_join(in, sizeof in, src, "config.json"), F_OK) == 0) {
        json_error_t je;
        if (!(o = json_load_file(in, JSON_PRESERVE_ORDER, &je)) || !json_is_object(o))
            lmp_die("%s: %s (line %d)", in, je.text, je.line);
    } else o = full_config(cfg);
    // transformers 5 writes "dtype", 4 "torch_dtype": the key the input has, else torch_dtype.
    int has5 = json_object_get(o, "dtype") != NULL, has4 = json_object_get(o, "torch_dtype") != NULL;
    if ((has5 && json_object_set_new(o, "dtype", json_string(dtype))) ||
        ((has4 || !has5) && json_object_set_new(o, "torch_dtype", json_string(dtype))))
        lmp_die("cannot set the dtype of %s", in);
    lmp_path_join(out, sizeof out, dir, "config.json");
    if (json_dump_file(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) lmp_die("cannot write %s", out);
    json_decref(o);
    if (src && src[0] && access(lmp_path_join(in, sizeof in, src, "generation_config.json"), F_OK) == 0)
        copy_file(in, lmp_path_join(out, sizeof out, dir, "generation_config.json"));
}
