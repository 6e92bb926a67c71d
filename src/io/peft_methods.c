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
