// peft_read.c: PEFT adapter_config.json and PEFT's module-matching rules (peft_read.h).
#include "io/peft_read.h"
#include "core/util.h"
#include "io/peft_methods.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Regular expressions (Python's re semantics as far as PCRE2 shares them)

// Runs pattern `re` (compiled with `opts`) on s: 1 match, 0 none, -1 error (err). A match
// limit keeps a pathological pattern (catastrophic backtracking) from running for ever: it
// counts as an error, not as "no match".
static int regex_run(const char *re, uint32_t opts, const char *s, char *err, size_t errn) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, opts | PCRE2_UTF, &code, &off, NULL);
    if (!c) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", code);
        lmp_fmt(err, errn, "regular expression \"%.200s\": %s at offset %zu", re, (char *)msg, (size_t)off);
        return -1;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    int rc = -1;
    if (md && mc) {
        pcre2_set_match_limit(mc, 1000000);
        pcre2_set_depth_limit(mc, 10000);
        rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, mc);
    }
    int out = rc >= 0 ? 1 : rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
    if (out < 0) lmp_fmt(err, errn, "regular expression \"%.200s\" could not be matched against %.200s "
                         "(PCRE2 error %d)", re, s, rc);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(c);
    return out;
}

int lmp_regex_fullmatch(const char *re, const char *s, char *err, size_t errn) {
    // re.fullmatch: anchored at both ends of the subject (not a wrapper around the text,
    // which an unbalanced ")" in the pattern could escape).
    return regex_run(re, PCRE2_ANCHORED | PCRE2_ENDANCHORED, s, err, errn);
}

int lmp_peft_entry_matches(const char *entry, const char *name) {
    size_t ne = strlen(entry), nn = strlen(name);
    if (!strcmp(entry, name)) return 1;
    return nn > ne && name[nn - ne - 1] == '.' && !strcmp(name + nn - ne, entry);
}

// The number right after "<seg>." at a "." boundary, as PEFT's r".*\.{seg}\.(\d+)\." (seg
// NULL: any segment without a dot), taking the last such place (".*" is greedy). -1: none.
static int index_after(const char *name, const char *seg) {
    int found = -1;
    for (const char *p = strchr(name, '.'); p; p = strchr(p + 1, '.')) {
        const char *s = p + 1, *e = s;
        if (seg) {
            size_t n = strlen(seg);
            if (strncmp(s, seg, n) || s[n] != '.') continue;
            e = s + n;
        } else {
            while (*e && *e != '.') e++;
            if (*e != '.') continue;
        }
        const char *d = e + 1, *q = d;
        long v = 0;
        while (*q >= '0' && *q <= '9' && v < 1000000) v = v * 10 + (*q++ - '0');
        if (q > d && *q == '.') found = (int)v;
    }
    return found;
}

int lmp_peft_layer_index(const lmp_peft_config *pc, const char *name) {
    if (!pc->n_layer_patterns) return index_after(name, NULL);
    for (int i = 0; i < pc->n_layer_patterns; i++) {
        int k = index_after(name, pc->layer_patterns[i]);
        if (k >= 0) return k;
    }
    return -1;
}

int lmp_peft_targets(const lmp_peft_config *pc, const char *name, char *err, size_t errn) {
    if (pc->target_regex) return lmp_regex_fullmatch(pc->target_re, name, err, errn);
    int found = 0;
    for (int i = 0; i < pc->n_targets; i++) {
        if (!strcmp(pc->targets[i], name)) return 1;  // named whole: no layer filter (PEFT)
        found |= lmp_peft_entry_matches(pc->targets[i], name);
    }
    if (!found || !pc->n_layers) return found;
    int l = lmp_peft_layer_index(pc, name);
    for (int i = 0; i < pc->n_layers && l >= 0; i++)
        if (pc->layers[i] == l) return 1;
    return 0;
}

int lmp_peft_pattern_find(const lmp_peft_pattern *p, int n, const char *name, char *err,
                          size_t errn) {
    for (int i = 0; i < n; i++) {
        // PEFT: re.match(rf"(.*\.)?({key})$", name), the key pasted in as it is.
        char re[LMP_PEFT_NAME + 32];
        lmp_fmt(re, sizeof re, "(.*\\.)?(%s)$", p[i].key);
        int m = regex_run(re, PCRE2_ANCHORED, name, err, errn);
        if (m < 0) return -2;
        if (m) return i;
    }
    return -1;
}

// ---------------------------------------------------------------------------------------
// adapter_config.json

// Fields that say nothing about the tensors or how they are applied (see peft_read.h).
static const char *HARMLESS[] = {
    "task_type", "base_model_name_or_path", "revision", "peft_version", "inference_mode",
    "auto_mapping", "megatron_core", "qalora_group_size", "loftq_config", "eva_config",
    "corda_config", "lora_ga_config"};
// Fields this parser reads itself.
static const char *READ[] = {
    "peft_type", "r", "lora_alpha", "lora_dropout", "use_rslora", "fan_in_fan_out", "bias",
    "target_modules", "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
    "init_lora_weights", "use_dora", "feedforward_modules", "init_ia3_weights"};
// Fields PEFT has that change the adapter and lorampi does not implement: refused when set.
static const char *REFUSED[] = {
    "modules_to_save", "lora_bias", "layer_replication", "trainable_token_indices",
    "target_parameters", "exclude_modules", "use_qalora", "use_bdlora", "megatron_config",
    "alora_invocation_tokens", "arrow_config", "kasa_config", "monteclora_config", "velora_config",
    "ensure_weight_tying"};

static int in_list(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++) if (!strcmp(k, list[i])) return 1;
    return 0;
}
#define IN(k, L) in_list(k, L, sizeof L / sizeof L[0])

int lmp_peft_is_set(const json_t *v) {
    if (json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    return 1;
}

// A short rendering of a JSON value for messages.
static const char *show(const json_t *v, char *buf, size_t n) {
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    lmp_fmt(buf, n, "%.80s%s", s ? s : "?", s && strlen(s) > 80 ? "..." : "");
    free(s);
    return buf;
}

// Every field is read, ignored or refused by name (peft_read.h says which).
static int check_fields(json_t *o, const char *origin, char *err, size_t errn) {
    const char *k;
    json_t *v;
    char buf[128];
    json_object_foreach(o, k, v) {
        if (IN(k, READ) || IN(k, HARMLESS) || !lmp_peft_is_set(v)) continue;
        if (IN(k, REFUSED))
            lmp_fmt(err, errn, "%s: \"%s\": %s is set; lorampi does not implement it (only plain "
                    "LoRA, DoRA and IA3 adapters can be loaded)", origin, k, show(v, buf, sizeof buf));
        else
            lmp_fmt(err, errn, "%s: unknown field \"%.100s\" = %s: lorampi cannot tell whether it "
                    "changes the adapter, so it refuses it (remove it if it does not)", origin, k,
                    show(v, buf, sizeof buf));
        return -1;
    }
    return 0;
}

// A number field into *out (absent or null: unchanged). Integers must be whole.
static int get_num(json_t *o, const char *key, int integer, double lo, double hi, double *out,
                   const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, key);
    char buf[128];
    if (!v || json_is_null(v)) return 0;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) {
        lmp_fmt(err, errn, "%s: \"%s\" = %s: expected %s in [%g, %g]", origin, key,
                show(v, buf, sizeof buf), integer ? "an integer" : "a number", lo, hi);
        return -1;
    }
    *out = d;
    return 0;
}

// A boolean field into *out (absent or null: unchanged).
static int get_bool(json_t *o, const char *key, int *out, const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, key);
    char buf[128];
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        lmp_fmt(err, errn, "%s: \"%s\" = %s: expected true or false", origin, key, show(v, buf, sizeof buf));
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

// A string of a list (or a lone string) into dst; refuses other types, empty and long ones.
static int get_name(json_t *v, const char *key, char *dst, const char *origin, char *err, size_t errn) {
    char buf[128];
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= LMP_PEFT_NAME ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        lmp_fmt(err, errn, "%s: \"%s\": %s is not a module name (a non-empty string of at most %d "
                "characters)", origin, key, show(v, buf, sizeof buf), LMP_PEFT_NAME - 1);
        return -1;
    }
    strcpy(dst, json_string_value(v));
    return 0;
}

// target_modules: a regex string or a list of names (required: a null would mean PEFT's
// per-model default, which a saved adapter never has).
static int get_targets(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, "target_modules");
    char buf[128];
    if (json_is_string(v)) {
        if (json_string_length(v) == 0 || json_string_length(v) >= sizeof pc->target_re ||
            strlen(json_string_value(v)) != json_string_length(v)) {
            lmp_fmt(err, errn, "%s: \"target_modules\" = %s: expected a regular expression of 1 to "
                    "%zu characters", origin, show(v, buf, sizeof buf), sizeof pc->target_re - 1);
            return -1;
        }
        pc->target_regex = 1;
        strcpy(pc->target_re, json_string_value(v));
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > LMP_PEFT_MAX_TARGETS) {
        lmp_fmt(err, errn, "%s: \"target_modules\" = %s: expected a list of 1 to %d module names or a "
                "regular expression", origin, v ? show(v, buf, sizeof buf) : "(absent)", LMP_PEFT_MAX_TARGETS);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(v); i++)
        if (get_name(json_array_get(v, i), "target_modules", pc->targets[pc->n_targets++], origin, err, errn))
            return -1;
    return 0;
}

// layers_to_transform (an int or a list of ints) and layers_pattern (a string or a list).
static int get_layers(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, "layers_to_transform"), *one = NULL;
    char buf[128];
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (v && !json_is_null(v) && (json_is_array(v) || json_is_integer(v))) {
        if (n > LMP_MAX_LAYERS) goto bad_layers;
        for (size_t i = 0; i < n; i++) {
            one = json_is_array(v) ? json_array_get(v, i) : v;
            json_int_t l = json_is_integer(one) ? json_integer_value(one) : -1;
            if (l < 0 || l >= LMP_MAX_LAYERS) goto bad_layers;
            pc->layers[pc->n_layers++] = (int)l;
        }
    } else if (v && !json_is_null(v)) goto bad_layers;
    v = json_object_get(o, "layers_pattern");
    if (!v || json_is_null(v)) return 0;
    n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > LMP_PEFT_MAX_LAYER_PATTERNS) {
        lmp_fmt(err, errn, "%s: \"layers_pattern\": more than %d entries", origin, LMP_PEFT_MAX_LAYER_PATTERNS);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (get_name(json_is_array(v) ? json_array_get(v, i) : v, "layers_pattern",
                     pc->layer_patterns[pc->n_layer_patterns++], origin, err, errn))
            return -1;
    return 0;
bad_layers:
    lmp_fmt(err, errn, "%s: \"layers_to_transform\" = %s: expected a layer index or a list of at most "
            "%d indices in [0, %d]", origin, show(v, buf, sizeof buf), LMP_MAX_LAYERS, LMP_MAX_LAYERS - 1);
    return -1;
}

// rank_pattern / alpha_pattern: an object of module pattern -> positive number (an integer
// for ranks), kept in the file's order.
static int get_patterns(json_t *o, const char *key, int integer, lmp_peft_pattern *p, int *n,
                        const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, key), *x;
    const char *k;
    char buf[128];
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v) || json_object_size(v) > LMP_PEFT_MAX_PATTERNS) {
        lmp_fmt(err, errn, "%s: \"%s\" = %s: expected an object of at most %d module patterns", origin,
                key, show(v, buf, sizeof buf), LMP_PEFT_MAX_PATTERNS);
        return -1;
    }
    json_object_foreach(v, k, x) {
        double d = json_is_number(x) ? json_number_value(x) : NAN;
        if (strlen(k) == 0 || strlen(k) >= LMP_PEFT_NAME || !isfinite(d) || d <= 0 ||
            d > (integer ? 65536 : 1e9) || (integer && d != floor(d))) {
            lmp_fmt(err, errn, "%s: \"%s\": \"%.100s\" = %s: expected a module pattern of at most %d "
                    "characters and a positive %s", origin, key, k, show(x, buf, sizeof buf),
                    LMP_PEFT_NAME - 1, integer ? "integer up to 65536" : "number up to 1e9");
            return -1;
        }
        lmp_fmt(p[*n].key, sizeof p[*n].key, "%s", k);
        p[(*n)++].value = d;
    }
    return 0;
}

// peft_type, bias and init_lora_weights: what kind of adapter this is.
static int get_kind(json_t *o, lmp_peft_config *pc, const char *origin, char *err, size_t errn) {
    json_t *t = json_object_get(o, "peft_type"), *b = json_object_get(o, "bias");
    json_t *init = json_object_get(o, "init_lora_weights");
    char buf[128];
    pc->ia3 = json_is_string(t) && !strcmp(json_string_value(t), "IA3");
    if (!json_is_string(t) || (strcmp(json_string_value(t), "LORA") && !pc->ia3)) {
        lmp_fmt(err, errn, "%s: \"peft_type\" = %s: lorampi loads LORA (with or without use_dora) "
                "and IA3 adapters", origin, t ? show(t, buf, sizeof buf) : "(absent)");
        return -1;
    }
    if (lmp_peft_ia3_fields(o, pc, origin, err, errn)) return -1;
    if (pc->ia3) return 0;
    if (b && !json_is_null(b) && (!json_is_string(b) || strcmp(json_string_value(b), "none"))) {
        lmp_fmt(err, errn, "%s: \"bias\" = %s: lorampi trains no biases with LoRA; only \"none\" is "
                "supported", origin, show(b, buf, sizeof buf));
        return -1;
    }
    static const char *SAFE_INIT[] = {"gaussian", "eva", "orthogonal"};
    if (init && !json_is_null(init) && !json_is_boolean(init) &&
        !(json_is_string(init) && IN(json_string_value(init), SAFE_INIT))) {
        lmp_fmt(err, errn, "%s: \"init_lora_weights\" = %s: this initialisation changes the base "
                "weights the adapter belongs to; lorampi loads adapters of unchanged base models only",
                origin, show(init, buf, sizeof buf));
        return -1;
    }
    return 0;
}

// The fields of an already parsed JSON object.
static int parse_object(json_t *o, const char *origin, lmp_peft_config *pc, char *err, size_t errn) {
    double r = 8, alpha = 8, dropout = 0;
    pc->fan_in_fan_out = -1;
    if (get_kind(o, pc, origin, err, errn) || check_fields(o, origin, err, errn)) return -1;
    if (get_num(o, "r", 1, 1, 65536, &r, origin, err, errn) ||
        get_num(o, "lora_alpha", 0, 0, 1e9, &alpha, origin, err, errn) ||
        get_num(o, "lora_dropout", 0, 0, 0.999999, &dropout, origin, err, errn) ||
        get_bool(o, "use_rslora", &pc->rslora, origin, err, errn) ||
        get_bool(o, "use_dora", &pc->use_dora, origin, err, errn) ||
        get_bool(o, "fan_in_fan_out", &pc->fan_in_fan_out, origin, err, errn) ||
        get_targets(o, pc, origin, err, errn) || get_layers(o, pc, origin, err, errn) ||
        get_patterns(o, "rank_pattern", 1, pc->rank_pattern, &pc->n_rank, origin, err, errn) ||
        get_patterns(o, "alpha_pattern", 0, pc->alpha_pattern, &pc->n_alpha, origin, err, errn) ||
        lmp_peft_ia3_check(pc, origin, err, errn))
        return -1;
    if (alpha <= 0) {
        lmp_fmt(err, errn, "%s: \"lora_alpha\" = %g: expected a positive number", origin, alpha);
        return -1;
    }
    pc->r = (int)r;
    pc->alpha = alpha;
    pc->dropout = dropout;
    return 0;
}

int lmp_peft_parse_config(const char *text, size_t len, const char *origin, lmp_peft_config *pc,
                          char *err, size_t errn) {
    memset(pc, 0, sizeof *pc);
    json_error_t je;
    // Duplicate keys would let two values of one field disagree: refused.
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        lmp_fmt(err, errn, "%s:%d:%d: not valid JSON: %s", origin, je.line, je.column, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(o)) lmp_fmt(err, errn, "%s: expected a JSON object", origin);
    else rc = parse_object(o, origin, pc, err, errn);
    json_decref(o);
    return rc;
}

int lmp_peft_read_config(const char *dir, lmp_peft_config *pc, char *err, size_t errn) {
    char path[LMP_PATH_MAX + 32];
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    FILE *f = fopen(path, "rb");
    if (!f) {
        lmp_fmt(err, errn, "[adapter] init_from: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    // An adapter_config.json is a few kB; 16 MB is far beyond any real one.
    size_t cap = 1 << 24, n = 0;
    char *buf = malloc(cap);
    if (buf) n = fread(buf, 1, cap, f);
    int bad = !buf || ferror(f) || n == cap;
    fclose(f);
    int rc = -1;
    if (bad) lmp_fmt(err, errn, "[adapter] init_from: cannot read %s: %s", path,
                     !buf ? "out of memory" : n == cap ? "larger than 16 MB" : "read error (a directory?)");
    else rc = lmp_peft_parse_config(buf, n, path, pc, err, errn);
    free(buf);
    return rc;
}
