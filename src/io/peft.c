// peft.c: PEFT adapter export.
#include "io/peft.h"
#include "core/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// One PEFT module assembled from one or more lorampi LoRA modules of the same layer/linear.
typedef struct {
    char module[LMP_NAME_MAX];   // "h.3.attn.c_attn"
    int in, out, r;
    float *A, *B;                // (r, in), (out, r)
} peft_module;


void lmp_peft_save(const char *dir, const lmp_gpt2 *m, const lmp_config *cfg) {
    lmp_mkdir_p(dir);
    peft_module *pm = lmp_calloc((size_t)m->n_lora * sizeof *pm);
    int np = 0;
    float base_scale = m->loras[0].scale;
    // Group q/k/v slices of the same layer into one c_attn module.
    for (int i = 0; i < m->n_lora; i++) {
        const lmp_lora *l = &m->loras[i];
        char mod[LMP_NAME_MAX];
        snprintf(mod, sizeof mod, "%s", l->A->name);
        *strrchr(mod, '.') = 0;  // strip ".lora_A"
        int slice = -1;
        size_t ml = strlen(mod);
        if (ml > 2 && mod[ml - 2] == '.' && strchr("qkv", mod[ml - 1])) {
            slice = (int)(strchr("qkv", mod[ml - 1]) - "qkv");
            mod[ml - 2] = 0;
        }
        peft_module *p = NULL;
        for (int k = 0; k < np; k++) if (!strcmp(pm[k].module, mod)) p = &pm[k];
        if (!p) {
            p = &pm[np++];
            snprintf(p->module, sizeof p->module, "%s", mod);
            p->in = l->in;
            p->out = slice < 0 ? l->out : 3 * l->out;
        }
        p->r += l->r;
    }
    // Fill: A rows stacked in module order; B block columns, rows at the slice's offset.
    for (int k = 0; k < np; k++) {
        pm[k].A = lmp_calloc((size_t)pm[k].r * pm[k].in * sizeof(float));
        pm[k].B = lmp_calloc((size_t)pm[k].out * pm[k].r * sizeof(float));
        int r0 = 0;
        for (int i = 0; i < m->n_lora; i++) {
            const lmp_lora *l = &m->loras[i];
            size_t ml = strlen(pm[k].module);
            if (strncmp(l->A->name, pm[k].module, ml) || (l->A->name[ml] != '.')) continue;
            const char *rest = l->A->name + ml + 1;
            int slice = (rest[0] && rest[1] == '.' && strchr("qkv", rest[0])) ? (int)(strchr("qkv", rest[0]) - "qkv") : -1;
            if (slice < 0 && strcmp(rest, "lora_A")) continue;
            memcpy(pm[k].A + (size_t)r0 * l->in, l->A->data, (size_t)l->r * l->in * sizeof(float));
            int row0 = slice < 0 ? 0 : slice * l->out;
            for (int o = 0; o < l->out; o++)
                memcpy(pm[k].B + (size_t)(row0 + o) * pm[k].r + r0, l->B->data + (size_t)o * l->r,
                       (size_t)l->r * sizeof(float));
            r0 += l->r;
        }
    }
    lmp_st_out *t = lmp_malloc(2 * (size_t)np * sizeof *t);
    char (*names)[LMP_NAME_MAX + 64] = lmp_malloc(2 * (size_t)np * sizeof *names);
    for (int k = 0; k < np; k++) {
        snprintf(names[2 * k], sizeof names[0], "base_model.model.transformer.%s.lora_A.weight", pm[k].module);
        snprintf(names[2 * k + 1], sizeof names[0], "base_model.model.transformer.%s.lora_B.weight", pm[k].module);
        t[2 * k] = (lmp_st_out){names[2 * k], 2, {pm[k].r, pm[k].in}, pm[k].A};
        t[2 * k + 1] = (lmp_st_out){names[2 * k + 1], 2, {pm[k].out, pm[k].r}, pm[k].B};
    }
    char path[LMP_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lmp_st_write(path, t, 2 * np, "{\"format\": \"pt\"}");

    // adapter_config.json. PEFT's scaling is lora_alpha / r (or / sqrt(r) with rsLoRA); a
    // merged q/k/v module has a larger r, so its alpha is set to keep the same scaling.
    json_t *targets = json_array(), *rank_pat = json_object(), *alpha_pat = json_object();
    int r = cfg->adapter.r;
    for (int k = 0; k < np; k++) {
        const char *leaf = strchr(strchr(pm[k].module, '.') + 1, '.') + 1;  // "attn.c_attn"
        int seen = 0;
        for (size_t j = 0; j < json_array_size(targets); j++)
            if (!strcmp(json_string_value(json_array_get(targets, j)), leaf)) seen = 1;
        if (!seen) json_array_append_new(targets, json_string(leaf));
        if (pm[k].r != r) {
            char key[LMP_NAME_MAX + 16];
            snprintf(key, sizeof key, "transformer.%s", pm[k].module);
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
        "lora_dropout", (double)cfg->adapter.dropout, "target_modules", targets, "fan_in_fan_out", 1,
        "bias", "none", "use_rslora", cfg->adapter.rslora, "base_model_name_or_path", cfg->model.path,
        "rank_pattern", rank_pat, "alpha_pattern", alpha_pat, "layers_to_transform", layers,
        "inference_mode", 1, "init_lora_weights", 1, "modules_to_save");
    LMP_CHECK(c, "cannot build adapter_config.json");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
    for (int k = 0; k < np; k++) { free(pm[k].A); free(pm[k].B); }
    free(pm);
    free(t);
    free(names);
}
