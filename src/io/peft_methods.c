// peft_methods.c: adapter_config.json fields of PEFT's IA3 (and the checks between LoRA's and
// IA3's fields) for peft_read.c.
#include "io/peft_methods.h"
#include "core/util.h"

#include <string.h>

// PEFT writes unused fields as null, false or empty containers.
static int set(const json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    return 1;
}

static const char *LORA_ONLY[] = {"r", "lora_alpha", "lora_dropout", "use_rslora", "use_dora", "bias",
                                  "rank_pattern", "alpha_pattern", "init_lora_weights"};
static const char *IA3_ONLY[] = {"feedforward_modules", "init_ia3_weights"};

// One name of feedforward_modules (a string of 1 to LMP_PEFT_NAME - 1 bytes, no NUL).
static int ff_name(json_t *v, char *dst, const char *origin, char *err, size_t errn) {
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= LMP_PEFT_NAME ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        lmp_fmt(err, errn, "%s: \"feedforward_modules\": expected module names of 1 to %d characters",
                origin, LMP_PEFT_NAME - 1);
        return -1;
    }
    strcpy(dst, json_string_value(v));
    return 0;
}

// feedforward_modules: null (none), a regex string, or a list of target_modules' names.
static int get_ff(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, "feedforward_modules");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) >= sizeof pc->ff_re || strlen(json_string_value(v)) != json_string_length(v)) {
            lmp_fmt(err, errn, "%s: \"feedforward_modules\": a regular expression of at most %zu "
                    "characters expected", origin, sizeof pc->ff_re - 1);
            return -1;
        }
        pc->ff_regex = 1;
        strcpy(pc->ff_re, json_string_value(v));
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > LMP_PEFT_MAX_TARGETS) {
        lmp_fmt(err, errn, "%s: \"feedforward_modules\": expected a list of at most %d module names "
                "or a regular expression", origin, LMP_PEFT_MAX_TARGETS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(v); i++)
        if (ff_name(json_array_get(v, i), pc->ff[pc->n_ff++], origin, err, errn)) return -1;
    return 0;
}

// PEFT: feedforward_modules must be a subset of target_modules (both lists).
static int ff_in_targets(const lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    if (pc->target_regex || pc->ff_regex) return 0;
    for (int i = 0; i < pc->n_ff; i++) {
        int found = 0;
        for (int k = 0; k < pc->n_targets; k++) found |= !strcmp(pc->ff[i], pc->targets[k]);
        if (!found) {
            lmp_fmt(err, errn, "%s: \"feedforward_modules\": \"%s\" is not in target_modules (PEFT "
                    "requires a subset)", origin, pc->ff[i]);
            return -1;
        }
    }
    return 0;
}

int lmp_peft_ia3_fields(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    const char *const *other = pc->ia3 ? LORA_ONLY : IA3_ONLY;
    size_t n = pc->ia3 ? sizeof LORA_ONLY / sizeof *LORA_ONLY : sizeof IA3_ONLY / sizeof *IA3_ONLY;
    for (size_t i = 0; i < n; i++)
        if (set(json_object_get(o, other[i]))) {
            lmp_fmt(err, errn, "%s: \"%s\" is set in a %s adapter (a field of %s adapters)", origin,
                    other[i], pc->ia3 ? "IA3" : "LORA", pc->ia3 ? "LORA" : "IA3");
            return -1;
        }
    return pc->ia3 ? get_ff(o, pc, origin, err, errn) : 0;
}

int lmp_peft_ia3_check(const lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    return pc->ia3 ? ff_in_targets(pc, origin, err, errn) : 0;
}

int lmp_peft_feedforward(const lmp_peft_config *pc, const char *name, char *err, size_t errn) {
    if (pc->ff_regex) return lmp_regex_fullmatch(pc->ff_re, name, err, errn);
    for (int i = 0; i < pc->n_ff; i++)
        if (lmp_peft_entry_matches(pc->ff[i], name)) return 1;
    return 0;
}

// ---------------------------------------------------------------------------------------
// Writing: DoRA's magnitudes, IA3's directory

void lmp_peft_dora_magnitudes(const lmp_registry *reg, const lmp_peft_naming *nm, lmp_st_out *t,
                              char (*names)[LMP_NAME_MAX + 64], size_t name_n) {
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        LMP_CHECK(rec->slice < 0 && rec->n_tensor == 3, "PEFT export: DoRA on %s, one block of %s, has no "
                  "PEFT form (the magnitudes of the other rows need the base weight)", rec->name, rec->module);
        const lmp_param *m = lmp_rec_tensor(reg, rec, 2);
        LMP_CHECK(m->split_dim < 0, "PEFT export: %s is not whole", m->name);
        t[i] = (lmp_st_out){lmp_peft_leaf(names[i], name_n, nm, rec->module, "lora_magnitude_vector"), 1,
                            {rec->out, 0}, m->data};
    }
}

// One PEFT IA3 module: the records of one base linear layer as one vector.
typedef struct {
    const lmp_adapter_rec *first;
    int ff;
    int64_t n;
    float *l;
} ia3_module;

static int ia3_group(const lmp_registry *reg, ia3_module *pm) {
    int np = 0;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        LMP_CHECK(!strcmp(rec->method, "ia3"), "PEFT IA3 export: a %s module (%s)", rec->method, rec->name);
        ia3_module *p = NULL;
        for (int k = 0; k < np; k++) if (!strcmp(pm[k].first->module, rec->module)) p = &pm[k];
        if (!p) {
            p = &pm[np++];
            *p = (ia3_module){.first = rec, .ff = rec->r, .n = rec->r ? rec->in : rec->base_out};
            p->l = lmp_malloc((size_t)p->n * sizeof(float));
            for (int64_t k = 0; k < p->n; k++) p->l[k] = 1.0f;  // rows no slice adapts
        }
        const lmp_param *l = lmp_rec_tensor(reg, rec, 0);
        LMP_CHECK(l->split_dim < 0, "PEFT export: %s is not whole", l->name);
        memcpy(p->l + (rec->r ? 0 : rec->out_offset), l->data, l->numel * sizeof(float));
    }
    return np;
}

// A module's name in target_modules: its site ("attn.c_attn"), or its whole PEFT name when
// only some layers are adapted.
static json_t *ia3_entry(const ia3_module *p, const lmp_peft_naming *nm, const lmp_config *cfg) {
    char key[LMP_NAME_MAX + 32];
    if (!cfg->adapter.n_layers) return json_string(p->first->site);
    return json_string(lmp_peft_module(key, sizeof key, nm, p->first->module));
}

static void append_once(json_t *a, json_t *s) {
    for (size_t j = 0; j < json_array_size(a); j++)
        if (json_equal(json_array_get(a, j), s)) { json_decref(s); return; }
    LMP_CHECK(json_array_append_new(a, s) == 0, "cannot build adapter_config.json");
}

static void ia3_config(const char *dir, const ia3_module *pm, int np, const lmp_peft_naming *nm,
                       const lmp_config *cfg) {
    json_t *targets = json_array(), *ff = json_array();
    for (int k = 0; k < np; k++) {
        append_once(targets, ia3_entry(&pm[k], nm, cfg));
        if (pm[k].ff) append_once(ff, ia3_entry(&pm[k], nm, cfg));
    }
    lmp_peft_sort_strings(targets);
    lmp_peft_sort_strings(ff);
    json_t *c = json_pack("{s:n, s:s, s:n, s:b, s:o, s:b, s:b, s:n, s:s, s:n, s:o, s:s}",
        "auto_mapping", "base_model_name_or_path", cfg->model.path, "exclude_modules",
        "fan_in_fan_out", nm->fan_in_fan_out, "feedforward_modules", ff, "inference_mode", 1,
        "init_ia3_weights", 1, "modules_to_save", "peft_type", "IA3", "revision",
        "target_modules", targets, "task_type", "CAUSAL_LM");
    LMP_CHECK(c, "cannot build adapter_config.json");
    char path[LMP_PATH_MAX + 64];
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
}

void lmp_peft_save_ia3(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    lmp_mkdir_p(dir);
    LMP_CHECK(reg->n_rec > 0, "PEFT export: the model has no adapters");
    ia3_module *pm = lmp_calloc((size_t)reg->n_rec * sizeof *pm);
    int np = ia3_group(reg, pm);
    const lmp_peft_naming *nm = lmp_peft_naming_of_module(reg->rec[0].module);
    lmp_st_out *t = lmp_malloc((size_t)np * sizeof *t);
    char (*names)[LMP_NAME_MAX + 64] = lmp_malloc((size_t)np * sizeof *names);
    for (int k = 0; k < np; k++)
        t[k] = (lmp_st_out){lmp_peft_leaf(names[k], sizeof names[k], nm, pm[k].first->module, "ia3_l"), 2,
                            {pm[k].ff ? 1 : pm[k].n, pm[k].ff ? pm[k].n : 1}, pm[k].l};
    char path[LMP_PATH_MAX + 64];
    lmp_st_write(lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors"), t, np, "{\"format\": \"pt\"}");
    ia3_config(dir, pm, np, nm, cfg);
    for (int k = 0; k < np; k++) free(pm[k].l);
    free(pm);
    free(t);
    free(names);
}
