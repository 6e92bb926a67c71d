// peft.c: PEFT adapter export.
#include "io/peft.h"
#include "core/util.h"
#include "io/model_io.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// One PEFT module: the LoRA records of one base linear layer, merged.
typedef struct {
    const lmp_adapter_rec *first;
    int in, out, r;
    float *A, *B;                // (r, in), (out, r)
} peft_module;

// Groups the records by the layer they adapt (in order of first appearance) and sizes each.
static int group_modules(const lmp_registry *reg, peft_module *pm) {
    int np = 0;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        LMP_CHECK(!strcmp(rec->method, "lora"), "PEFT export: method %s has no PEFT LoRA form", rec->method);
        peft_module *p = NULL;
        for (int k = 0; k < np; k++) if (!strcmp(pm[k].first->module, rec->module)) p = &pm[k];
        if (!p) {
            p = &pm[np++];
            p->first = rec;
            p->in = (int)rec->in;
            p->out = (int)rec->base_out;
        }
        p->r += rec->r;
    }
    return np;
}

// A rows stacked in record order; B's block of each record at its output rows.
static void fill_module(const lmp_registry *reg, peft_module *p) {
    p->A = lmp_calloc((size_t)p->r * p->in * sizeof(float));
    p->B = lmp_calloc((size_t)p->out * p->r * sizeof(float));
    int r0 = 0;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        if (strcmp(rec->module, p->first->module)) continue;
        const lmp_param *A = lmp_rec_tensor(reg, rec, 0), *B = lmp_rec_tensor(reg, rec, 1);
        LMP_CHECK(A->split_dim < 0 && B->split_dim < 0, "PEFT export: %s is not whole", rec->name);
        memcpy(p->A + (size_t)r0 * p->in, A->data, (size_t)rec->r * p->in * sizeof(float));
        for (int64_t o = 0; o < rec->out; o++)
            memcpy(p->B + (size_t)(rec->out_offset + o) * p->r + r0, B->data + (size_t)o * rec->r,
                   (size_t)rec->r * sizeof(float));
        r0 += rec->r;
    }
}

void lmp_peft_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    lmp_mkdir_p(dir);
    peft_module *pm = lmp_calloc((size_t)(reg->n_rec + 1) * sizeof *pm);
    int np = group_modules(reg, pm);
    LMP_CHECK(np > 0, "PEFT export: the model has no adapters");
    for (int k = 0; k < np; k++) fill_module(reg, &pm[k]);
    float base_scale = reg->rec[0].scale;
    lmp_st_out *t = lmp_malloc(2 * (size_t)np * sizeof *t);
    char (*names)[LMP_NAME_MAX + 64] = lmp_malloc(2 * (size_t)np * sizeof *names);
    for (int k = 0; k < np; k++) {
        const char *pre = lmp_hf_prefix(pm[k].first->module);
        lmp_fmt(names[2 * k], sizeof names[0], "base_model.model.%s%s.lora_A.weight", pre, pm[k].first->module);
        lmp_fmt(names[2 * k + 1], sizeof names[0], "base_model.model.%s%s.lora_B.weight", pre, pm[k].first->module);
        t[2 * k] = (lmp_st_out){names[2 * k], 2, {pm[k].r, pm[k].in}, pm[k].A};
        t[2 * k + 1] = (lmp_st_out){names[2 * k + 1], 2, {pm[k].out, pm[k].r}, pm[k].B};
    }
    char path[LMP_PATH_MAX + 64];
    lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    lmp_st_write(path, t, 2 * np, "{\"format\": \"pt\"}");

    // adapter_config.json. PEFT's scaling is lora_alpha / r (or / sqrt(r) with rsLoRA); a
    // merged q/k/v module has a larger r, so its alpha is set to keep the same scaling.
    json_t *targets = json_array(), *rank_pat = json_object(), *alpha_pat = json_object();
    int r = cfg->adapter.r;
    for (int k = 0; k < np; k++) {
        const char *leaf = pm[k].first->site;  // "attn.c_attn"
        // Sorted, so the list does not depend on the order modules come in (registration
        // order here, a checkpoint's group order in `export`).
        size_t j = 0, n = json_array_size(targets);
        while (j < n && strcmp(json_string_value(json_array_get(targets, j)), leaf) < 0) j++;
        if (j == n || strcmp(json_string_value(json_array_get(targets, j)), leaf))
            json_array_insert_new(targets, j, json_string(leaf));
        if (pm[k].r != r) {
            char key[LMP_NAME_MAX + 16];
            lmp_fmt(key, sizeof key, "%s%s", lmp_hf_prefix(pm[k].first->module), pm[k].first->module);
            double alpha = cfg->adapter.rslora ? base_scale * sqrt(pm[k].r) : base_scale * pm[k].r;
            json_object_set_new(rank_pat, key, json_integer(pm[k].r));
            json_object_set_new(alpha_pat, key, json_real(alpha));
        }
    }
    json_t *layers = json_null();
    if (cfg->adapter.n_layers) {
        layers = json_array();
        for (int i = 0; i < cfg->adapter.n_layers; i++) json_array_append_new(layers, json_integer(cfg->adapter.layers[i]));
    }
    json_t *c = json_pack("{s:s, s:s, s:i, s:f, s:f, s:o, s:b, s:s, s:b, s:s, s:o, s:o, s:o, s:b, s:b, s:n}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", r, "lora_alpha", (double)cfg->adapter.alpha,
        "lora_dropout", (double)cfg->adapter.dropout, "target_modules", targets,
        "fan_in_fan_out", *lmp_hf_prefix(reg->rec[0].module) != 0,  // GPT-2's Conv1D: (in, out)
        "bias", "none", "use_rslora", cfg->adapter.rslora, "base_model_name_or_path", cfg->model.path,
        "rank_pattern", rank_pat, "alpha_pattern", alpha_pat, "layers_to_transform", layers,
        "inference_mode", 1, "init_lora_weights", 1, "modules_to_save");
    LMP_CHECK(c, "cannot build adapter_config.json");
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
    for (int k = 0; k < np; k++) { free(pm[k].A); free(pm[k].B); }
    free(pm);
    free(t);
    free(names);
}
