// adapter_out.c: adapters as files by method (adapter_out.h).
#include "io/adapter_out.h"
#include "core/util.h"
#include "io/model_io.h"
#include "io/peft.h"
#include "io/peft_prefix.h"
#include "io/peft_methods.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The layers the configuration adapts, as JSON (null: all).
static json_t *layers_json(const lmp_config *cfg) {
    if (!cfg->adapter.n_layers) return json_null();
    json_t *a = json_array();
    for (int i = 0; i < cfg->adapter.n_layers; i++) json_array_append_new(a, json_integer(cfg->adapter.layers[i]));
    return a;
}

// The double nearest the shortest decimal text of a float (0.001f as 0.001, not 0.0010000000474974513).
static double shortest(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static void write_config(const char *dir, const lmp_registry *reg, const lmp_config *cfg, const char *method,
                         const lmp_adapter_rec *first) {
    json_t *mods = json_array(), *subs = json_array();
    int sub = 0;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        if (strcmp(rec->method, method)) continue;
        char name[LMP_NAME_MAX + 16];
        json_array_append_new(mods, json_string(lmp_fmt(name, sizeof name, "transformer.%s", rec->name)));
        sub |= !strcmp(rec->target, "attn") ? 1 : 2;
    }
    if (sub & 1) json_array_append_new(subs, json_string("attn"));
    if (sub & 2) json_array_append_new(subs, json_string("mlp"));
    int series = !strcmp(method, "houlsby");
    json_t *c = json_pack("{s:s, s:i, s:s, s:i, s:I, s:s, s:f, s:f, s:o, s:o, s:o, s:s, s:s}",
        "format", "lorampi-bottleneck", "format_version", 1, "method", method, "size", first->r,
        "hidden_size", (json_int_t)first->in, "act", cfg->adapter.relu ? "relu" : "gelu_tanh",
        "scale", shortest(first->scale), "init_scale", shortest(cfg->adapter.init_scale), "sublayers", subs,
        "layers", layers_json(cfg), "modules", mods, "base_model_name_or_path", cfg->model.path,
        "forward", series ? "h <- h + up(act(down(h))) on the sublayer's output h, before the residual add"
                          : "h <- h + scale * up(act(down(x))) beside the sublayer, x its input (its norm's output)");
    LMP_CHECK(c, "cannot build adapter_config.json");
    char path[LMP_PATH_MAX + 64];
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
}

void lmp_bottleneck_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg, const char *method) {
    lmp_mkdir_p(dir);
    int n = 0;
    const lmp_adapter_rec *first = NULL;
    for (int i = 0; i < reg->n_rec; i++)
        if (!strcmp(reg->rec[i].method, method)) { n += reg->rec[i].n_tensor; first = first ? first : &reg->rec[i]; }
    LMP_CHECK(first, "export: the model has no %s adapters", method);
    lmp_st_out *t = lmp_calloc((size_t)n * sizeof *t);
    char (*names)[LMP_NAME_MAX + 32] = lmp_calloc((size_t)n * sizeof *names);
    int k = 0;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        if (strcmp(rec->method, method)) continue;
        for (int j = 0; j < rec->n_tensor; j++, k++) {
            const lmp_param *p = lmp_rec_tensor(reg, rec, j);
            LMP_CHECK(p->split_dim < 0, "export: %s is not whole", p->name);
            t[k] = (lmp_st_out){lmp_fmt(names[k], sizeof names[k], "transformer.%s", p->name), p->ndim,
                                {p->shape[0], p->ndim > 1 ? p->shape[1] : 0}, p->data};
        }
    }
    char path[LMP_PATH_MAX + 64], meta[96];
    lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    lmp_st_write(path, t, n, lmp_fmt(meta, sizeof meta, "{\"format\": \"pt\", \"method\": \"%s\"}", method));
    write_config(dir, reg, cfg, method, first);
    free(t);
    free(names);
}

// A copy of the records of `method` (lora, dora, ia3) in reg and their tensors (the PEFT
// writers take a registry of one method's records only).
static void lora_only(const lmp_registry *reg, lmp_registry *out, const char *method) {
    lmp_registry_init(out, reg->n + 1);
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        if (strcmp(rec->method, method)) continue;
        lmp_adapter_rec *x = lmp_registry_add_rec(out, rec);
        x->n_tensor = 0;
        for (int j = 0; j < rec->n_tensor; j++) {
            const lmp_param *p = lmp_rec_tensor(reg, rec, j);
            lmp_registry_attach(out, x, lmp_registry_add(out, p->name, p->ndim, p->shape, -1, 1, 0, 0,
                                                         LMP_ROLE_ADAPTER, 1, p->grad_kind, p->decay));
        }
    }
    lmp_registry_alloc(out);
    for (int i = 0; i < out->n; i++) {
        const lmp_param *p = lmp_registry_find((lmp_registry *)reg, out->p[i].name);
        memcpy(out->p[i].data, p->data, p->numel * sizeof(float));
    }
}

// Where one method's files go: DIR itself when it is the only method, else DIR/<method>.
static const char *method_dir(char *sub, size_t n, const char *dir, int multi, const char *method) {
    return multi ? lmp_path_join(sub, n, dir, method) : dir;
}

// The PEFT directory of the linear-layer method (LoRA and DoRA: PEFT's LORA; IA3).
static void peft_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    if (cfg->adapter.method & LMP_METHOD_IA3) lmp_peft_save_ia3(dir, reg, cfg);
    else lmp_peft_save(dir, reg, cfg);
}

void lmp_adapters_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    int bits = cfg->adapter.method, lin = bits & LMP_METHOD_LINEAR, multi = (bits & (bits - 1)) != 0;
    char sub[LMP_PATH_MAX + 16], name[16];
    if (lin && !multi) peft_save(dir, reg, cfg);  // LoRA, DoRA or IA3 alone: the PEFT directory itself
    else if (lin) {  // the PEFT writers take a registry of one method's records only
        lmp_registry lo;
        lmp_config_methods(lin, name, sizeof name);
        lora_only(reg, &lo, name);
        peft_save(method_dir(sub, sizeof sub, dir, multi, name), &lo, cfg);
        lmp_registry_free(&lo);
    }
    if (bits & (LMP_METHOD_HOULSBY | LMP_METHOD_PARALLEL)) {
        const char *bneck = bits & LMP_METHOD_HOULSBY ? "houlsby" : "parallel";
        lmp_bottleneck_save(method_dir(sub, sizeof sub, dir, multi, bneck), reg, cfg, bneck);
    }
    if (bits & LMP_METHOD_PREFIX)
        lmp_peft_prefix_save(method_dir(sub, sizeof sub, dir, multi, "prefix"), reg, cfg);
}
