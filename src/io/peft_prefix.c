// peft_prefix.c: PEFT prefix-tuning directories (peft_prefix.h).
#include "io/peft_prefix.h"
#include "core/util.h"
#include "io/peft_read.h"
#include "io/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *READ[] = {"peft_type", "num_virtual_tokens", "num_layers", "num_attention_heads",
                             "token_dim", "encoder_hidden_size", "prefix_projection",
                             "num_transformer_submodules", "task_type"};
static const char *HARMLESS[] = {"base_model_name_or_path", "revision", "peft_version", "inference_mode",
                                 "auto_mapping"};

static int listed(const char *k, const char *const *l, size_t n) {
    for (size_t i = 0; i < n; i++) if (!strcmp(k, l[i])) return 1;
    return 0;
}

char *lmp_peft_config_text(const char *dir, size_t *len, char *err, size_t errn) {
    char path[LMP_PATH_MAX + 32];
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    FILE *f = fopen(path, "rb");
    if (!f) {
        lmp_fmt(err, errn, "[adapter] init_from: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 24;  // a real adapter_config.json is a few kB
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap, f) : 0;
    int bad = !buf || ferror(f) || n == cap;
    fclose(f);
    if (bad) {
        lmp_fmt(err, errn, "[adapter] init_from: cannot read %s: %s", path,
                !buf ? "out of memory" : n == cap ? "larger than 16 MB" : "read error (a directory?)");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static json_t *load(const char *text, size_t len, const char *origin, char *err, size_t errn) {
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!o) lmp_fmt(err, errn, "%s:%d:%d: not valid JSON: %s", origin, je.line, je.column, je.text);
    else if (!json_is_object(o)) {
        lmp_fmt(err, errn, "%s: expected a JSON object", origin);
        json_decref(o);
        o = NULL;
    }
    return o;
}

int lmp_peft_type_of(const char *text, size_t len, const char *origin, char *type, size_t n,
                     char *err, size_t errn) {
    json_t *o = load(text, len, origin, err, errn);
    if (!o) return -1;
    json_t *t = json_object_get(o, "peft_type");
    lmp_fmt(type, n, "%s", json_is_string(t) ? json_string_value(t) : "");
    json_decref(o);
    return 0;
}

// An integer field in [lo, hi] into *out; absent or null: required ones are an error.
static int get_int(json_t *o, const char *key, int lo, int hi, int required, int *out,
                   const char *origin, char *err, size_t errn) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) lmp_fmt(err, errn, "%s: \"%s\" is missing", origin, key);
        return required ? -1 : 0;
    }
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : (json_int_t)lo - 1;
    if (x < lo || x > hi) {
        lmp_fmt(err, errn, "%s: \"%s\": expected an integer in [%d, %d]", origin, key, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

// Every field read, ignored or refused; the kind checked.
static int check_fields(json_t *o, const char *origin, char *err, size_t errn) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (listed(k, READ, sizeof READ / sizeof READ[0]) || listed(k, HARMLESS, sizeof HARMLESS / sizeof HARMLESS[0]) ||
            !lmp_peft_is_set(v))
            continue;
        lmp_fmt(err, errn, "%s: field \"%.100s\" is set; lorampi does not implement it for prefix tuning "
                "and refuses what it cannot reproduce", origin, k);
        return -1;
    }
    json_t *t = json_object_get(o, "peft_type"), *task = json_object_get(o, "task_type");
    if (!json_is_string(t) || strcmp(json_string_value(t), "PREFIX_TUNING")) {
        lmp_fmt(err, errn, "%s: \"peft_type\": expected \"PREFIX_TUNING\"", origin);
        return -1;
    }
    if (task && !json_is_null(task) && (!json_is_string(task) || strcmp(json_string_value(task), "CAUSAL_LM"))) {
        lmp_fmt(err, errn, "%s: \"task_type\": lorampi trains decoders (CAUSAL_LM) only", origin);
        return -1;
    }
    json_t *pp = json_object_get(o, "prefix_projection");
    if (pp && !json_is_null(pp) && !json_is_boolean(pp)) {
        lmp_fmt(err, errn, "%s: \"prefix_projection\": expected true or false", origin);
        return -1;
    }
    return 0;
}

int lmp_peft_prefix_parse(const char *text, size_t len, const char *origin, lmp_peft_prefix_config *pc,
                          char *err, size_t errn) {
    memset(pc, 0, sizeof *pc);
    pc->num_transformer_submodules = 1;
    json_t *o = load(text, len, origin, err, errn);
    if (!o) return -1;
    int rc = check_fields(o, origin, err, errn) ||
             get_int(o, "num_virtual_tokens", 1, 65536, 1, &pc->num_virtual_tokens, origin, err, errn) ||
             get_int(o, "num_layers", 1, LMP_MAX_LAYERS, 1, &pc->num_layers, origin, err, errn) ||
             get_int(o, "num_attention_heads", 1, 1 << 20, 1, &pc->num_attention_heads, origin, err, errn) ||
             get_int(o, "token_dim", 1, 1 << 24, 1, &pc->token_dim, origin, err, errn) ||
             get_int(o, "encoder_hidden_size", 0, 1 << 24, 0, &pc->encoder_hidden_size, origin, err, errn) ||
             get_int(o, "num_transformer_submodules", 1, 2, 0, &pc->num_transformer_submodules, origin, err, errn)
                 ? -1 : 0;
    pc->prefix_projection = json_is_true(json_object_get(o, "prefix_projection"));
    json_decref(o);
    if (!rc && pc->num_transformer_submodules != 1) {
        lmp_fmt(err, errn, "%s: \"num_transformer_submodules\" = %d: an encoder-decoder adapter; lorampi "
                "trains decoders (1)", origin, pc->num_transformer_submodules);
        rc = -1;
    }
    if (!rc && pc->token_dim % pc->num_attention_heads) {
        lmp_fmt(err, errn, "%s: \"token_dim\" = %d is not a multiple of \"num_attention_heads\" = %d", origin,
                pc->token_dim, pc->num_attention_heads);
        rc = -1;
    }
    return rc;
}

// The prefix records of reg must be layers 0 .. n-1 in order, all of one shape; their count.
static int prefix_layers(const lmp_registry *reg, const lmp_adapter_rec **first) {
    int n = 0;
    *first = NULL;
    for (int i = 0; i < reg->n_rec; i++) {
        const lmp_adapter_rec *r = &reg->rec[i];
        if (strcmp(r->method, "prefix")) continue;
        if (!*first) *first = r;
        LMP_CHECK(r->layer == n && r->r == (*first)->r && r->out == (*first)->out && r->in == (*first)->in,
                  "prefix module %s: PEFT's prefix tuning covers every layer alike (layer %d expected)",
                  r->name, n);
        n++;
    }
    return n;
}

int lmp_peft_prefix_load(const char *dir, const lmp_peft_prefix_config *pc, lmp_registry *reg,
                         char *err, size_t errn) {
    const lmp_adapter_rec *first;
    int L = prefix_layers(reg, &first);
    char path[LMP_PATH_MAX + 32];
    lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors");
    int64_t p = pc->num_virtual_tokens, w = 2 * (int64_t)pc->token_dim;
    if (L != pc->num_layers || !first || first->r != p || first->out != w) {
        lmp_fmt(err, errn, "[adapter] init_from: %s: the adapter has %d layers of %lld x %lld prefixes, the "
                "model %d of %lld x %lld", path, pc->num_layers, (long long)p, (long long)w, L,
                first ? (long long)first->r : 0LL, first ? (long long)first->out : 0LL);
        return -1;
    }
    lmp_st_file f;
    lmp_st_open(&f, path);
    const lmp_st_tensor *t = lmp_st_find(&f, "prompt_embeddings");
    int rc = 0;
    if (!t || f.n != 1 || t->ndim != 2 || t->shape[0] != p || t->shape[1] != L * w) {
        lmp_fmt(err, errn, "[adapter] init_from: %s: expected one tensor, prompt_embeddings (%lld, %lld) "
                "(num_virtual_tokens, num_layers x 2 x token_dim)", path, (long long)p, (long long)(L * w));
        rc = -1;
    }
    for (int i = 0, l = 0; !rc && i < reg->n_rec; i++) {
        if (strcmp(reg->rec[i].method, "prefix")) continue;
        lmp_param *x = lmp_rec_tensor(reg, &reg->rec[i], 0);
        lmp_st_read_block(&f, t, 0, p, (int64_t)l++ * w, w, x->data);
        for (size_t k = 0; k < x->numel && !rc; k++)
            if (!isfinite(x->data[k])) {
                lmp_fmt(err, errn, "[adapter] init_from: %s: prompt_embeddings holds %g", path, (double)x->data[k]);
                rc = -1;
            }
    }
    lmp_st_close(&f);
    return rc;
}

void lmp_peft_prefix_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg) {
    const lmp_adapter_rec *first;
    int L = prefix_layers(reg, &first);
    LMP_CHECK(first, "export: the model has no prefix adapters");
    int64_t p = first->r, w = first->out;
    float *all = lmp_malloc((size_t)(p * L * w) * sizeof(float));
    for (int i = 0, l = 0; i < reg->n_rec; i++) {
        if (strcmp(reg->rec[i].method, "prefix")) continue;
        const lmp_param *x = lmp_rec_tensor(reg, &reg->rec[i], 0);
        LMP_CHECK(x->split_dim < 0 && (int64_t)x->numel == p * w, "export: %s is not whole", x->name);
        for (int64_t t = 0; t < p; t++)
            memcpy(all + (t * L + l) * w, x->data + t * w, (size_t)w * sizeof(float));
        l++;
    }
    lmp_mkdir_p(dir);
    char path[LMP_PATH_MAX + 64];
    lmp_st_out o = {"prompt_embeddings", 2, {p, L * w}, all};
    lmp_st_write(lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors"), &o, 1, "{\"format\": \"pt\"}");
    free(all);
    // The fields PEFT 0.21 writes for PrefixTuningConfig (encoder_hidden_size defaults to
    // token_dim). With the projection the prefixes above are the MLP's output, as PEFT's
    // get_prompt_embedding_to_save writes them; PEFT loads them so for inference.
    int proj = cfg->adapter.prefix_projection;
    json_int_t H = proj && cfg->adapter.encoder_hidden_size ? cfg->adapter.encoder_hidden_size : w / 2;
    json_t *c = json_pack("{s:n, s:s, s:I, s:b, s:n, s:n, s:I, s:i, s:i, s:I, s:s, s:s, s:b, s:n, s:s, s:I}",
        "auto_mapping", "base_model_name_or_path", cfg->model.path, "encoder_hidden_size", H,
        "inference_mode", 1, "init_weights", "modules_to_save", "num_attention_heads", (json_int_t)first->in,
        "num_layers", L, "num_transformer_submodules", 1, "num_virtual_tokens", (json_int_t)p,
        "peft_type", "PREFIX_TUNING", "peft_version", "0.21.0", "prefix_projection", proj, "revision",
        "task_type", "CAUSAL_LM", "token_dim", (json_int_t)(w / 2));
    LMP_CHECK(c, "cannot build adapter_config.json");
    lmp_path_join(path, sizeof path, dir, "adapter_config.json");
    LMP_CHECK(json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0, "cannot write %s", path);
    json_decref(c);
}
