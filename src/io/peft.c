// peft.c: PEFT adapter export.
#include "io/peft.h"
#include "core/util.h"
#include "io/model_io.h"
#include "io/peft_methods.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const lmp_peft_naming NAMING[] = {
    {"gpt2", "transformer.", 1},  // Conv1D (in, out)
    {"llama", "", 0},             // the Llama family: records carry "model.layers..." whole; nn.Linear
};

const lmp_peft_naming *lmp_peft_naming_of(const char *family) {
    if (!family || !strcmp(family, "gpt2")) return &NAMING[0];
    return &NAMING[1];  // every other family lorampi builds is the Llama family
}

const lmp_peft_naming *lmp_peft_naming_of_module(const char *module) {
    return *lmp_hf_prefix(module) ? &NAMING[0] : &NAMING[1];
}

void lmp_peft_sort_strings(json_t *a) {
    size_t n = json_array_size(a);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0; j--) {
            json_t *x = json_array_get(a, j - 1), *y = json_array_get(a, j);
            if (strcmp(json_string_value(x), json_string_value(y)) <= 0) break;
            json_incref(x);
            LMP_CHECK(json_array_set(a, j - 1, y) == 0 && json_array_set_new(a, j, x) == 0,
                      "cannot build adapter_config.json");
        }
}

char *lmp_peft_module(char *out, size_t n, const lmp_peft_naming *nm, const char *module) {
    return lmp_fmt(out, n, "%s%s", nm->prefix, module);
}

char *lmp_peft_tensor(char *out, size_t n, const lmp_peft_naming *nm, const char *module,
                      const char *leaf) {
    return lmp_fmt(out, n, "base_model.model.%s%s.%s.weight", nm->prefix, module, leaf);
}

char *lmp_peft_leaf(char *out, size_t n, const lmp_peft_naming *nm, const char *module,
                    const char *leaf) {
    return lmp_fmt(out, n, "base_model.model.%s%s.%s", nm->prefix, module, leaf);
}

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
        LMP_CHECK(!strcmp(rec->method, "lora") || !strcmp(rec->method, "dora"),
                  "PEFT export: method %s has no PEFT LoRA form", rec->method);
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

// One module's part of adapter_config.json: its site in target_modules (once), and its r and
// alpha in rank_pattern/alpha_pattern when they differ from the config's. A single record's
// alpha is its own; merged q/k/v records keep their common scaling at the summed r.
static void add_module_config(const peft_module *p, const lmp_registry *reg, const lmp_config *cfg,
                              const lmp_peft_naming *nm, json_t *targets, json_t *rank_pat,
                              json_t *alpha_pat) {
    const char *leaf = p->first->site;  // "attn.c_attn"
    int seen = 0, nrec = 0;
    for (size_t j = 0; j < json_array_size(targets); j++)
        if (!strcmp(json_string_value(json_array_get(targets, j)), leaf)) seen = 1;
    if (!seen) LMP_CHECK(json_array_append_new(targets, json_string(leaf)) == 0, "cannot build adapter_config.json");
    for (int i = 0; i < reg->n_rec; i++) nrec += !strcmp(reg->rec[i].module, p->first->module);
    double scale = p->first->scale;
    double alpha = nrec == 1 ? (double)p->first->alpha
                 : cfg->adapter.rslora ? scale * sqrt(p->r) : scale * p->r;
    char key[LMP_NAME_MAX + 32];
    lmp_peft_module(key, sizeof key, nm, p->first->module);
    if (p->r != cfg->adapter.r)
        LMP_CHECK(json_object_set_new(rank_pat, key, json_integer(p->r)) == 0, "cannot build adapter_config.json");
    if ((float)alpha != cfg->adapter.alpha)
        LMP_CHECK(json_object_set_new(alpha_pat, key, json_real(alpha)) == 0, "cannot build adapter_config.json");
}

void lmp_peft_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    lmp_mkdir_p(dir);
    peft_module *pm = lmp_calloc((size_t)(reg->n_rec + 1) * sizeof *pm);
    int np = group_modules(reg, pm);
    LMP_CHECK(np > 0, "PEFT export: the model has no adapters");
    for (int k = 0; k < np; k++) fill_module(reg, &pm[k]);
    // The family shows in the records' module names (lmp_hf_prefix).
    const lmp_peft_naming *nm = lmp_peft_naming_of_module(reg->rec[0].module);
    int dora = !strcmp(reg->rec[0].method, "dora");  // + lora_magnitude_vector per module
    lmp_st_out *t = lmp_malloc(3 * (size_t)np * sizeof *t);
    char (*names)[LMP_NAME_MAX + 64] = lmp_malloc(3 * (size_t)np * sizeof *names);
    for (int k = 0; k < np; k++) {
        lmp_peft_tensor(names[2 * k], sizeof names[0], nm, pm[k].first->module, "lora_A");
        lmp_peft_tensor(names[2 * k + 1], sizeof names[0], nm, pm[k].first->module, "lora_B");
        t[2 * k] = (lmp_st_out){names[2 * k], 2, {pm[k].r, pm[k].in}, pm[k].A};
        t[2 * k + 1] = (lmp_st_out){names[2 * k + 1], 2, {pm[k].out, pm[k].r}, pm[k].B};
    }
    char path[LMP_PATH_MAX + 64];
    lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (dora) lmp_peft_dora_magnitudes(reg, nm, t + 2 * np, names + 2 * np, sizeof names[0]);
    lmp_st_write(path, t, (dora ? 3 : 2) * np, "{\"format\": \"pt\"}");

    // adapter_config.json. PEFT's scaling is lora_alpha / r (or / sqrt(r) with rsLoRA); a
    // merged q/k/v module has a larger r, so its alpha is set to keep the same scaling. A
    // module whose r or alpha differs from [adapter] r, alpha (per-module values that
    // init_from took from a PEFT rank_pattern/alpha_pattern) gets its own pattern entries.
    json_t *targets = json_array(), *rank_pat = json_object(), *alpha_pat = json_object();
    for (int k = 0; k < np; k++) add_module_config(&pm[k], reg, cfg, nm, targets, rank_pat, alpha_pat);
    // Sorted, so the list does not depend on the order modules come in (registration order
    // here, a checkpoint's group order in `export`).
    lmp_peft_sort_strings(targets);
    json_t *layers = json_null();
    if (cfg->adapter.n_layers) {
        layers = json_array();
        for (int i = 0; i < cfg->adapter.n_layers; i++) json_array_append_new(layers, json_integer(cfg->adapter.layers[i]));
    }
    json_t *c = json_pack("{s:s, s:s, s:i, s:f, s:f, s:o, s:b, s:s, s:b, s:s, s:o, s:o, s:o, s:b, s:b, s:n}",
        "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", cfg->adapter.r, "lora_alpha", (double)cfg->adapter.alpha,
        "lora_dropout", (double)cfg->adapter.dropout, "target_modules", targets, "fan_in_fan_out", nm->fan_in_fan_out,
        "bias", "none", "use_rslora", cfg->adapter.rslora, "base_model_name_or_path", cfg->model.path,
        "rank_pattern", rank_pat, "alpha_pattern", alpha_pat, "layers_to_transform", layers,
        "inference_mode", 1, "init_lora_weights", 1, "modules_to_save");
    LMP_CHECK(c && json_object_set_new(c, "use_dora", json_boolean(dora)) == 0, "cannot build adapter_config.json");
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
    for (int k = 0; k < np; k++) { free(pm[k].A); free(pm[k].B); }
    free(pm);
    free(t);
    free(names);
}
