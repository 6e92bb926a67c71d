// config.c: INI configuration through inih, one table of keys for parsing, --set, dump and
// error messages.
#include "core/config.h"
#include "core/util.h"

#include <errno.h>
#include <ini.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef enum { K_INT, K_FLOAT, K_BOOL, K_STR, K_U64, K_METHOD, K_INIT, K_SCHED, K_TARGETS, K_LAYERS, K_ACT, K_SUBLAYERS, K_FF, K_DTYPE, K_RECOMPUTE } ktype;

typedef struct {
    const char *section, *key;
    ktype type;
    size_t off;        // offset in lmp_config
    size_t size;       // string buffer size
    double lo, hi;     // inclusive range for numbers (lo_open: lo excluded)
    int lo_open, hi_open;
    const char *def;   // default as text
    const char *expect;
    int flags;         // LMP_KEY_* (config.h): what the key decides beyond its own value
} key_t_;

#define O(f) offsetof(lmp_config, f)
#define S(f) sizeof(((lmp_config *)0)->f)
// The one table of keys. Flags: LMP_KEY_TENSORS, the keys that decide which adapter tensors
// exist and what they mean (a checkpoint resumes only with the same values);
// LMP_KEY_RUN_ONLY, how and where this run works, not what it trains (not compared on resume).
static const key_t_ KEYS[] = {
    {"model", "path", K_STR, O(model.path), S(model.path), 0, 0, 0, 0, "", "a path", 0},
    {"model", "random_init", K_BOOL, O(model.random_init), 0, 0, 0, 0, 0, "false", "true or false", 0},
    {"model", "dtype", K_DTYPE, O(model.dtype), 0, 0, 0, 0, 0, "f32", "f32, bf16 or auto", 0},
    {"model", "n_layer", K_INT, O(model.n_layer), 0, 1, LMP_MAX_LAYERS, 0, 0, "4", "an integer in [1, 128]", 0},
    {"model", "n_head", K_INT, O(model.n_head), 0, 1, 1e6, 0, 0, "4", "a positive integer", 0},
    {"model", "n_embd", K_INT, O(model.n_embd), 0, 1, 1e6, 0, 0, "128", "a positive integer", 0},
    {"model", "vocab_size", K_INT, O(model.vocab_size), 0, 1, 65536, 0, 0, "256", "an integer in [1, 65536]", 0},
    {"model", "n_ctx", K_INT, O(model.n_ctx), 0, 1, 1e6, 0, 0, "256", "a positive integer", 0},
    {"adapter", "method", K_METHOD, O(adapter.method), 0, 0, 0, 0, 0, "lora",
     "none, or a comma list of lora, houlsby, parallel, prefix, ia3, dora (at most one of lora, ia3, dora; "
     "houlsby and parallel exclude each other)", LMP_KEY_TENSORS},
    {"adapter", "r", K_INT, O(adapter.r), 0, 1, 65536, 0, 0, "8", "a positive integer", LMP_KEY_TENSORS},
    {"adapter", "alpha", K_FLOAT, O(adapter.alpha), 0, 0, 1e9, 1, 0, "16", "a positive number", LMP_KEY_TENSORS},
    {"adapter", "dropout", K_FLOAT, O(adapter.dropout), 0, 0, 1, 0, 1, "0", "a number in [0, 1)", 0},
    {"adapter", "targets", K_TARGETS, O(adapter.targets), 0, 0, 0, 0, 0, "c_attn",
     "a comma list of c_attn, q, k, v, attn.c_proj, mlp.c_fc, mlp.c_proj, or all", LMP_KEY_TENSORS},
    {"adapter", "layers", K_LAYERS, O(adapter.n_layers), 0, 0, 0, 0, 0, "all",
     "all, or a comma list of layer numbers and ranges like 0-3,6", LMP_KEY_TENSORS},
    {"adapter", "rslora", K_BOOL, O(adapter.rslora), 0, 0, 0, 0, 0, "false", "true or false", LMP_KEY_TENSORS},
    {"adapter", "init", K_INIT, O(adapter.init), 0, 0, 0, 0, 0, "kaiming", "kaiming or gaussian", 0},
    {"adapter", "seed", K_U64, O(adapter.seed), 0, 0, 0, 0, 0, "1234", "a non-negative integer", 0},
    // Not LMP_KEY_TENSORS: it only seeds step 0 (a resume takes the checkpoint's tensors), and
    // the r, alpha, targets, layers it sets are compared as themselves.
    {"adapter", "init_from", K_STR, O(adapter.init_from), S(adapter.init_from), 0, 0, 0, 0, "",
     "a PEFT LoRA directory", 0},
    {"adapter", "size", K_INT, O(adapter.size), 0, 1, 65536, 0, 0, "64", "a positive integer", LMP_KEY_TENSORS},
    {"adapter", "act", K_ACT, O(adapter.relu), 0, 0, 0, 0, 0, "gelu", "gelu or relu", LMP_KEY_TENSORS},
    {"adapter", "init_scale", K_FLOAT, O(adapter.init_scale), 0, 0, 1e9, 1, 0, "1e-3", "a positive number", 0},
    {"adapter", "sublayers", K_SUBLAYERS, O(adapter.sublayers), 0, 0, 0, 0, 0, "auto",
     "auto (houlsby: attn,mlp; parallel: mlp) or a comma list of attn, mlp", LMP_KEY_TENSORS},
    {"adapter", "feedforward", K_FF, O(adapter.feedforward), 0, 0, 0, 0, 0, "auto",
     "auto (the MLP's output layer: mlp.c_proj, down_proj), none, or a comma list of [adapter] targets names", LMP_KEY_TENSORS},
    {"adapter", "scale", K_FLOAT, O(adapter.scale), 0, 0, 1e9, 0, 0, "4", "a non-negative number", LMP_KEY_TENSORS},
    {"adapter", "virtual_tokens", K_INT, O(adapter.virtual_tokens), 0, 1, 65536, 0, 0, "20", "a positive integer", LMP_KEY_TENSORS},
    {"adapter", "prefix_projection", K_BOOL, O(adapter.prefix_projection), 0, 0, 0, 0, 0, "false", "true or false", LMP_KEY_TENSORS},
    {"adapter", "encoder_hidden_size", K_INT, O(adapter.encoder_hidden_size), 0, 0, 65536, 0, 0, "0", "an integer in [0, 65536] (0: the token dim)", LMP_KEY_TENSORS},
    {"train", "steps", K_INT, O(train.steps), 0, 1, 2e9, 0, 0, "100", "a positive integer", 0},
    {"train", "batch_size", K_INT, O(train.batch_size), 0, 1, 1e7, 0, 0, "4", "a positive integer", 0},
    {"train", "seq_len", K_INT, O(train.seq_len), 0, 1, 1e6, 0, 0, "128", "a positive integer", 0},
    {"train", "lr", K_FLOAT, O(train.lr), 0, 0, 1e30, 1, 0, "2e-4", "a positive number", 0},
    {"train", "warmup_steps", K_INT, O(train.warmup_steps), 0, 0, 2e9, 0, 0, "0", "a non-negative integer", 0},
    {"train", "schedule", K_SCHED, O(train.schedule), 0, 0, 0, 0, 0, "cosine", "cosine, linear or constant", 0},
    {"train", "min_lr_ratio", K_FLOAT, O(train.min_lr_ratio), 0, 0, 1, 0, 0, "0", "a number in [0, 1]", 0},
    {"train", "weight_decay", K_FLOAT, O(train.weight_decay), 0, 0, 1e9, 0, 0, "0.01", "a non-negative number", 0},
    {"train", "beta1", K_FLOAT, O(train.beta1), 0, 0, 1, 0, 1, "0.9", "a number in [0, 1)", 0},
    {"train", "beta2", K_FLOAT, O(train.beta2), 0, 0, 1, 0, 1, "0.999", "a number in [0, 1)", 0},
    {"train", "eps", K_FLOAT, O(train.eps), 0, 0, 1, 1, 0, "1e-8", "a positive number", 0},
    {"train", "grad_clip", K_FLOAT, O(train.grad_clip), 0, 0, 1e30, 0, 0, "1.0", "a non-negative number (0: off)", 0},
    {"train", "grad_accum", K_INT, O(train.grad_accum), 0, 1, 1e6, 0, 0, "1", "a positive integer", 0},
    {"train", "seed", K_U64, O(train.seed), 0, 0, 0, 0, 0, "1234", "a non-negative integer", 0},
    {"train", "eval_every", K_INT, O(train.eval_every), 0, 0, 2e9, 0, 0, "0", "a non-negative integer (0: only before and after)", 0},
    {"train", "eval_batches", K_INT, O(train.eval_batches), 0, 1, 1e6, 0, 0, "8", "a positive integer", 0},
    {"train", "save_model", K_STR, O(train.save_model), S(train.save_model), 0, 0, 0, 0, "", "a path", 0},
    {"train", "save_adapter", K_STR, O(train.save_adapter), S(train.save_adapter), 0, 0, 0, 0, "", "a path", 0},
    // Bitwise the same results with every value (model.h): how this run spends memory, not
    // what it trains, so a checkpoint resumes under another.
    {"train", "recompute", K_RECOMPUTE, O(train.recompute), 0, 0, 0, 0, 0, "none",
     "none, attn (kept for old configs: the same as none, the attention keeps no probabilities) or "
     "block (recompute each block's forward in the backward)", LMP_KEY_RUN_ONLY},
    {"train", "nonfinite", K_STR, O(train.nonfinite), S(train.nonfinite), 0, 0, 0, 0, "stop", "stop or skip", 0},
    {"data", "train", K_STR, O(data.train), S(data.train), 0, 0, 0, 0, "", "a path", 0},
    {"data", "val", K_STR, O(data.val), S(data.val), 0, 0, 0, 0, "", "a path", 0},
    {"log", "metrics", K_STR, O(log.metrics), S(log.metrics), 0, 0, 0, 0, "", "a path", LMP_KEY_RUN_ONLY},
    {"log", "every", K_INT, O(log.every), 0, 1, 2e9, 0, 0, "1", "a positive integer", LMP_KEY_RUN_ONLY},
    {"parallel", "tp", K_INT, O(parallel.tp), 0, 1, 1e6, 0, 0, "1", "a positive integer", LMP_KEY_RUN_ONLY},
    {"parallel", "bucket_mb", K_FLOAT, O(parallel.bucket_mb), 0, 0, 1e6, 0, 0, "25",
     "a non-negative number of MiB (0: one all-reduce after the backward)", LMP_KEY_RUN_ONLY},
    {"parallel", "sequence_parallel", K_BOOL, O(parallel.sequence_parallel), 0, 0, 0, 0, 0, "false", "true or false", LMP_KEY_RUN_ONLY},
    {"checkpoint", "dir", K_STR, O(checkpoint.dir), S(checkpoint.dir), 0, 0, 0, 0, "", "a directory", LMP_KEY_RUN_ONLY},
    {"checkpoint", "every", K_INT, O(checkpoint.every), 0, 0, 2e9, 0, 0, "0", "a non-negative integer (0: only at the end)", LMP_KEY_RUN_ONLY},
    {"checkpoint", "keep", K_INT, O(checkpoint.keep), 0, 0, 1e6, 0, 0, "3", "a non-negative integer (0: keep all)", LMP_KEY_RUN_ONLY},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

// Bit i of LMP_T_* (core/targets.h): GPT-2's names, then the Llama family's (PEFT's).
static const char *TARGET_NAMES[] = {LMP_TARGET_NAME_LIST};
#define N_TARGET_NAMES (int)(sizeof TARGET_NAMES / sizeof TARGET_NAMES[0])

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

static int parse_targets(lmp_config *c, const char *v, char *err, int errlen) {
    char buf[256];
    if (strlen(v) >= sizeof buf) { snprintf(err, errlen, "too long"); return -1; }
    strcpy(buf, v);
    int bits = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        int found = 0;
        if (!strcmp(t, "all")) { bits |= LMP_T_C_ATTN | LMP_T_ATTN_PROJ | LMP_T_MLP_FC | LMP_T_MLP_PROJ; found = 1; }
        for (int i = 0; i < N_TARGET_NAMES && !found; i++)
            if (!strcmp(t, TARGET_NAMES[i])) { bits |= 1 << i; found = 1; }
        if (!found) { snprintf(err, errlen, "unknown target '%s'", t); return -1; }
    }
    if (!bits) { snprintf(err, errlen, "empty list"); return -1; }
    if ((bits & LMP_T_C_ATTN) && (bits & (LMP_T_Q | LMP_T_K | LMP_T_V))) {
        snprintf(err, errlen, "c_attn overlaps q/k/v (c_attn is the whole fused q|k|v projection)");
        return -1;
    }
    c->adapter.targets = bits;
    c->adapter.targets_str[0] = 0;
    for (int i = 0; i < N_TARGET_NAMES; i++)
        if (bits & (1 << i)) {
            if (c->adapter.targets_str[0]) strcat(c->adapter.targets_str, ",");
            strcat(c->adapter.targets_str, TARGET_NAMES[i]);
        }
    return 0;
}

// [adapter] feedforward: auto (0) or target names, as [adapter] targets takes them.
static int parse_ff(lmp_config *c, const char *v, char *err, int errlen) {
    if (!strcasecmp(v, "auto") || !strcasecmp(v, "none")) {
        c->adapter.feedforward = strcasecmp(v, "auto") ? LMP_FF_NONE : 0;
        strcpy(c->adapter.feedforward_str, strcasecmp(v, "auto") ? "none" : "auto");
        return 0;
    }
    int bits = c->adapter.targets;
    char str[256];
    strcpy(str, c->adapter.targets_str);
    int rc = parse_targets(c, v, err, errlen);
    if (!rc) {
        c->adapter.feedforward = c->adapter.targets;
        strcpy(c->adapter.feedforward_str, c->adapter.targets_str);
    }
    c->adapter.targets = bits;  // parse_targets wrote the targets' fields
    strcpy(c->adapter.targets_str, str);
    return rc;
}

static int parse_layers(lmp_config *c, const char *v, char *err, int errlen) {
    char buf[512];
    if (strlen(v) >= sizeof buf) { snprintf(err, errlen, "too long"); return -1; }
    strcpy(buf, v);
    char *t0 = trim(buf);
    unsigned char seen[LMP_MAX_LAYERS] = {0};
    int n = 0;
    if (!strcmp(t0, "all")) {
        c->adapter.n_layers = 0;
        strcpy(c->adapter.layers_str, "all");
        return 0;
    }
    for (char *save, *tok = strtok_r(t0, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok), *end;
        long a = strtol(t, &end, 10), b = a;
        if (end == t) { snprintf(err, errlen, "'%s' is not a layer number", t); return -1; }
        if (*end == '-') {
            char *s2 = end + 1;
            b = strtol(s2, &end, 10);
            if (end == s2) { snprintf(err, errlen, "'%s' is not a range", t); return -1; }
        }
        if (*end) { snprintf(err, errlen, "'%s' is not a layer number or range", t); return -1; }
        if (a < 0 || b < a || b >= LMP_MAX_LAYERS) { snprintf(err, errlen, "bad layer range '%s'", t); return -1; }
        for (long i = a; i <= b; i++) {
            if (seen[i]) { snprintf(err, errlen, "layer %ld listed twice", i); return -1; }
            seen[i] = 1;
            c->adapter.layers[n++] = (int)i;
        }
    }
    if (!n) { snprintf(err, errlen, "empty list"); return -1; }
    c->adapter.n_layers = n;
    c->adapter.layers_str[0] = 0;
    for (int i = 0; i < n; i++) {
        char num[16];
        snprintf(num, sizeof num, "%s%d", i ? "," : "", c->adapter.layers[i]);
        strcat(c->adapter.layers_str, num);
    }
    return 0;
}

static int parse_enum(const char *v, const char *const *names, int n) {
    for (int i = 0; i < n; i++) if (!strcasecmp(v, names[i])) return i;
    return -1;
}

static const char *METHODS[] = {"lora", "houlsby", "parallel", "prefix", "ia3", "dora"};  // bit i: 1 << i
#define N_METHODS 6
static const char *ACTS[] = {"gelu", "relu"};
static const char *SUBLAYERS[] = {"attn", "mlp"};                 // bit i: 1 << i

// A comma list of names[0..n) into bits (1 << index), each at most once; "" and "none" are
// refused here (callers handle their own words). 0, or -1 with why.
static int parse_bits(const char *v, const char *const *names, int n, int *bits, char *why, int whylen) {
    char buf[256];
    if (strlen(v) >= sizeof buf) { snprintf(why, whylen, "too long"); return -1; }
    strcpy(buf, v);
    *bits = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        int e = parse_enum(t, names, n);
        if (e < 0) { snprintf(why, whylen, "unknown name '%.100s'", t); return -1; }
        if (*bits & (1 << e)) { snprintf(why, whylen, "'%s' listed twice", names[e]); return -1; }
        *bits |= 1 << e;
    }
    if (!*bits) { snprintf(why, whylen, "empty list"); return -1; }
    return 0;
}

static int parse_method(lmp_config *c, const char *v, char *why, int whylen) {
    int bits;
    if (!strcasecmp(v, "none")) { c->adapter.method = LMP_METHOD_NONE; return 0; }
    if (parse_bits(v, METHODS, N_METHODS, &bits, why, whylen)) return -1;
    int lin = bits & LMP_METHOD_LINEAR;
    if (lin & (lin - 1)) {
        snprintf(why, whylen, "lora, ia3 and dora each adapt the layers of [adapter] targets; at most one "
                 "of them (each combines with houlsby or parallel)");
        return -1;
    }
    if ((bits & LMP_METHOD_HOULSBY) && (bits & LMP_METHOD_PARALLEL)) {
        snprintf(why, whylen, "houlsby and parallel do not combine (both are the bottleneck "
                 "h.<layer>.<sublayer>.adapter); lora combines with either");
        return -1;
    }
    c->adapter.method = bits;
    return 0;
}

const char *lmp_config_methods(int bits, char *buf, int n) {
    buf[0] = 0;
    if (!bits) snprintf(buf, n, "none");
    for (int i = 0; i < N_METHODS; i++)
        if (bits & (1 << i)) snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "," : "", METHODS[i]);
    return buf;
}
static const char *INITS[] = {"kaiming", "gaussian"};
static const char *SCHEDS[] = {"cosine", "linear", "constant"};
static const char *DTYPES[] = {"f32", "bf16", "auto"};  // lmp_wdtype's order
static const char *RECOMPUTES[] = {"none", "attn", "block"};  // lmp_recompute order

const char *lmp_recompute_name(lmp_recompute r) { return RECOMPUTES[r]; }

// A number for key k from text v into *p (int or float), range-checked after conversion to
// the stored type: a float that rounds to a bound, to 0, or to a subnormal is refused, as the
// run would use a value other than the one written. 0, or -1 with err.
static int set_number(const key_t_ *k, const char *v, void *p, char *err, int errlen) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    // ERANGE: an overflow (refused) or an underflow to 0 or a subnormal (refused below).
    int under = errno == ERANGE && fabs(d) < 1;
    int bad = end == v || *end || (errno && !under) || !isfinite(d);
    if (!bad && k->type == K_INT && (d != floor(d) || under)) bad = 1;
    double stored = k->type == K_INT ? d : (double)(float)d;
    if (!bad && k->type == K_FLOAT && (under || (d != 0 && !(fabs(stored) >= FLT_MIN)))) {
        snprintf(err, errlen, "[%s] %s = \"%s\": below the smallest float (%g); it would be stored as %g "
                 "(expected %s)", k->section, k->key, v, (double)FLT_MIN, stored, k->expect);
        return -1;
    }
    int rounded = 0;  // in range as written, out of range as stored
    for (int i = 0; i < 2 && !bad; i++) {  // as written, then as stored against stored bounds
        double x = i ? stored : d, lo = k->lo, hi = k->hi;
        if (i && k->type == K_FLOAT) { lo = (double)(float)lo; hi = (double)(float)hi; }
        bad = x < lo || x > hi || (k->lo_open && x == lo) || (k->hi_open && x == hi);
        rounded = bad && i;
    }
    if (bad) {
        snprintf(err, errlen, "[%s] %s = \"%.200s\": expected %s%s", k->section, k->key, v, k->expect,
                 rounded ? " (it rounds to a float outside that range)" : "");
        return -1;
    }
    if (k->type == K_INT) *(int *)p = (int)d;
    else *(float *)p = (float)d;
    return 0;
}

// A value INI text can hold as it is: no control character (a line break; inih trims \v and
// \f like blanks), no ';' first or after a blank (inih takes that
// for an inline comment), so a dumped configuration (checkpoints store one) reads back equal.
static int ini_safe(const char *v) {
    for (const char *q = v; *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f || (*q == ';' && (q == v || q[-1] == ' ' || q[-1] == '\t')))
            return 0;
    return 1;
}

// lmp_config_set for a known key k and its trimmed value v.
static int set_value(lmp_config *c, const key_t_ *k, const char *v, char *err, int errlen) {
    char *p = (char *)c + k->off, *end;
    const char *section = k->section, *key = k->key;
    int bad = 0;
    switch (k->type) {
    case K_INT: case K_FLOAT: return set_number(k, v, p, err, errlen);
    case K_U64: {
        errno = 0;
        unsigned long long u = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-') bad = 1;
        else *(unsigned long long *)p = u;
        break;
    }
    case K_BOOL: {
        static const char *T[] = {"true", "1", "yes", "on"}, *F[] = {"false", "0", "no", "off"};
        if (parse_enum(v, T, 4) >= 0) *(int *)p = 1;
        else if (parse_enum(v, F, 4) >= 0) *(int *)p = 0;
        else bad = 1;
        break;
    }
    case K_STR:
        if (strlen(v) >= k->size) { snprintf(err, errlen, "[%s] %s: value longer than %zu characters (%zu given)", section, key, k->size - 1, strlen(v)); return -1; }
        if (!ini_safe(v)) {
            snprintf(err, errlen, "[%s] %s = \"%.200s\": a control character, or a ';' first or after a space, cannot "
                     "be written back to an INI file (it starts a comment there)", section, key, v);
            return -1;
        }
        strcpy(p, v);
        break;
    case K_ACT: { int e = parse_enum(v, ACTS, 2); if (e < 0) bad = 1; else c->adapter.relu = e; break; }
    case K_INIT: { int e = parse_enum(v, INITS, 2); if (e < 0) bad = 1; else c->adapter.init = (lmp_lora_init)e; break; }
    case K_SCHED: { int e = parse_enum(v, SCHEDS, 3); if (e < 0) bad = 1; else c->train.schedule = (lmp_schedule)e; break; }
    case K_DTYPE: { int e = parse_enum(v, DTYPES, 3); if (e < 0) bad = 1; else c->model.dtype = (lmp_wdtype)e; break; }
    case K_RECOMPUTE: { int e = parse_enum(v, RECOMPUTES, 3); if (e < 0) bad = 1; else c->train.recompute = (lmp_recompute)e; break; }
    case K_TARGETS: case K_LAYERS: case K_METHOD: case K_SUBLAYERS: case K_FF: {
        char why[256];
        int rc = k->type == K_TARGETS ? parse_targets(c, v, why, sizeof why)
                 : k->type == K_FF ? parse_ff(c, v, why, sizeof why)
                 : k->type == K_LAYERS ? parse_layers(c, v, why, sizeof why)
                 : k->type == K_METHOD ? parse_method(c, v, why, sizeof why)
                 : !strcasecmp(v, "auto") ? (c->adapter.sublayers = 0)
                 : parse_bits(v, SUBLAYERS, 2, &c->adapter.sublayers, why, sizeof why);
        if (rc) { snprintf(err, errlen, "[%s] %s = \"%.200s\": %s; expected %s", section, key, v, why, k->expect); return -1; }
        break;
    }
    }
    if (bad) { snprintf(err, errlen, "[%s] %s = \"%.200s\": expected %s", section, key, v, k->expect); return -1; }
    return 0;
}

int lmp_config_set(lmp_config *c, const char *section, const char *key, const char *value,
                   char *err, int errlen) {
    const key_t_ *k = NULL;
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].section, section) && !strcmp(KEYS[i].key, key)) k = &KEYS[i];
    if (!k) {
        int known_section = 0;
        char list[1024] = "";
        for (size_t i = 0; i < NKEYS; i++)
            if (!strcmp(KEYS[i].section, section)) {
                known_section = 1;
                if (list[0]) strcat(list, ", ");
                strcat(list, KEYS[i].key);
            }
        if (known_section) snprintf(err, errlen, "unknown key [%s] %s (known keys: %s)", section, key, list);
        else snprintf(err, errlen, "unknown section [%.100s] (key %.100s; sections: model, adapter, train, data, log, parallel, checkpoint)", section, key);
        return -1;
    }
    // A copy as long as the value: a fixed buffer would cut a long value silently.
    size_t n = strlen(value);
    char *vbuf = lmp_malloc(n + 1);
    memcpy(vbuf, value, n + 1);
    int rc = set_value(c, k, trim(vbuf), err, errlen);
    free(vbuf);
    return rc;
}

void lmp_config_defaults(lmp_config *c) {
    memset(c, 0, sizeof *c);
    char err[512];
    for (size_t i = 0; i < NKEYS; i++)
        if (lmp_config_set(c, KEYS[i].section, KEYS[i].key, KEYS[i].def, err, sizeof err))
            lmp_die("internal: default of [%s] %s: %s", KEYS[i].section, KEYS[i].key, err);
}

int lmp_config_validate(const lmp_config *c, char *err, int errlen) {
    int m = c->adapter.method;
    if (c->adapter.init_from[0] && m != LMP_METHOD_LORA && m != LMP_METHOD_IA3 && m != LMP_METHOD_DORA &&
        m != LMP_METHOD_PREFIX) {
        snprintf(err, errlen, "[adapter] init_from = %s needs [adapter] method = lora, dora, ia3 or prefix "
                 "alone (the PEFT adapter's own method; it cannot seed full fine-tuning or a combination)",
                 c->adapter.init_from);
        return -1;
    }
    if ((m & LMP_METHOD_PREFIX) && c->adapter.encoder_hidden_size && !c->adapter.prefix_projection) {
        snprintf(err, errlen, "[adapter] encoder_hidden_size = %d is the width of prefix_projection's MLP, "
                 "and prefix_projection = false: set prefix_projection = true or leave encoder_hidden_size "
                 "at 0", c->adapter.encoder_hidden_size);
        return -1;
    }
    if (c->train.warmup_steps > c->train.steps) {
        snprintf(err, errlen, "[train] warmup_steps = %d exceeds [train] steps = %d", c->train.warmup_steps, c->train.steps);
        return -1;
    }
    if (!c->model.path[0]) {
        if (c->model.n_embd % c->model.n_head) {
            snprintf(err, errlen, "[model] n_embd = %d is not a multiple of [model] n_head = %d", c->model.n_embd, c->model.n_head);
            return -1;
        }
        for (int i = 0; i < c->adapter.n_layers; i++)
            if (c->adapter.layers[i] >= c->model.n_layer) {
                snprintf(err, errlen, "[adapter] layers names layer %d, but [model] n_layer = %d", c->adapter.layers[i], c->model.n_layer);
                return -1;
            }
    }
    return 0;
}

typedef struct { lmp_config *c; const char *path; char err[1024]; } parse_ctx;

// One key = value of the INI text (inih's handler): keeps the first error's text and stops
// taking values (0), else 1. inih passes no line number; it returns the first failing one.
static int handler(void *user, const char *section, const char *name, const char *value) {
    parse_ctx *x = user;
    if (x->err[0]) return 0;
    if (!section[0]) {
        snprintf(x->err, sizeof x->err, "key %.200s is outside any [section]", name);
        return 0;
    }
    if (lmp_config_set(x->c, section, name, value, x->err, sizeof x->err)) return 0;
    return 1;
}

// INI text through inih. Debian's inih reads lines into a fixed 200-byte buffer by default
// and takes the rest of a longer line for further lines (a long path failed as "not an INI
// line" on a line past the end); its run-time switches give a heap buffer that grows to any
// line length. Returns 0, or the number of the first failing line (x->err set, or empty for
// a line that is not INI).
static int parse_ini(const char *text, parse_ctx *x) {
    ini_use_stack = 0;
    ini_allow_realloc = 1;
    // An indented line is a key of its own, not the previous value continued (inih would pass
    // it as a second value of that key, which replaced the first).
    ini_allow_multiline = 0;
    ini_max_line = 1 << 30;
    int rc = ini_parse_string(text, handler, x);
    LMP_CHECK(rc != -2, "out of memory parsing a config");
    return rc;
}

// Parses text (len bytes, modified) from origin into c; 0, or -1 with "origin:line: why".
static int parse_buffer(lmp_config *c, char *text, size_t len, const char *origin, char *err, int errlen) {
    parse_ctx x = {c, origin, ""};
    if (strlen(text) != len) {  // a NUL byte would end the text early, unseen
        int line = 1;
        for (const char *q = text; *q; q++) line += *q == '\n';
        snprintf(err, errlen, "%s:%d: a NUL byte: not a text file", origin, line);
        return -1;
    }
    int rc = parse_ini(text, &x);
    if (rc == 0) return 0;
    if (x.err[0]) snprintf(err, errlen, "%s:%d: %s", origin, rc, x.err);
    else snprintf(err, errlen, "%s:%d: not an INI line (expected [section] or key = value)", origin, rc);
    return -1;
}

int lmp_config_parse_text(lmp_config *c, const char *text, const char *origin, char *err, int errlen) {
    lmp_config_defaults(c);
    size_t n = strlen(text);
    char *copy = lmp_malloc(n + 1);
    memcpy(copy, text, n + 1);
    int rc = parse_buffer(c, copy, n, origin, err, errlen);
    free(copy);
    return rc;
}

// The whole config file (any length, a pipe too); dies on every rank naming it.
static char *read_config(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) lmp_die_all("cannot open config %s: %s", path, strerror(errno));
    struct stat st;  // fopen succeeds on a directory, and reading it gives an empty "config"
    if (fstat(fileno(f), &st) != 0) lmp_die_all("cannot stat config %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) lmp_die_all("cannot read config %s: is a directory", path);
    size_t cap = 4096, n = 0, k;
    char *buf = lmp_malloc(cap + 1);
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) { cap *= 2; buf = realloc(buf, cap + 1); LMP_CHECK(buf, "out of memory"); }
    }
    if (ferror(f)) lmp_die_all("cannot read config %s: %s", path, strerror(errno));
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void lmp_config_load(lmp_config *c, const char *path, const char *const *sets, int n_set) {
    lmp_config_defaults(c);
    if (path) {
        size_t len;
        char *text = read_config(path, &len), e[1200];
        int rc = parse_buffer(c, text, len, path, e, sizeof e);
        free(text);
        if (rc) lmp_die_all("%s", e);
    }
    for (int i = 0; i < n_set; i++) {
        // A copy as long as the override: a fixed buffer would cut a long value silently.
        size_t n = strlen(sets[i]);
        char *buf = lmp_malloc(n + 1), e[1200];
        memcpy(buf, sets[i], n + 1);
        char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
        if (!eq || !dot || dot > eq)
            lmp_die_all("--set %.200s: expected section.key=value", sets[i]);
        *eq = 0;
        *dot = 0;
        if (lmp_config_set(c, trim(buf), trim(dot + 1), eq + 1, e, sizeof e))
            lmp_die_all("--set %.200s%s: %s", sets[i], n > 200 ? "..." : "", e);
        free(buf);
    }
    char e[1024];
    if (lmp_config_validate(c, e, sizeof e)) lmp_die_all("%s%s%s", path ? path : "", path ? ": " : "", e);
}

// The value of key k in c as the text lmp_config_dump writes (it reads back to the same value).
static void value_text(const lmp_config *c, const key_t_ *k, char *val, size_t n) {
    const char *p = (const char *)c + k->off;
    switch (k->type) {
    case K_INT: snprintf(val, n, "%d", *(const int *)p); break;
    case K_FLOAT:  // shortest text that reads back as the same float
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(val, n, "%.*g", prec, *(const float *)p);
            if (strtof(val, NULL) == *(const float *)p) break;
        }
        break;
    case K_U64: snprintf(val, n, "%llu", *(const unsigned long long *)p); break;
    case K_BOOL: snprintf(val, n, "%s", *(const int *)p ? "true" : "false"); break;
    case K_STR: snprintf(val, n, "%s", p); break;
    case K_METHOD: lmp_config_methods(c->adapter.method, val, (int)n); break;
    case K_ACT: snprintf(val, n, "%s", ACTS[c->adapter.relu]); break;
    case K_SUBLAYERS:
        snprintf(val, n, "%s", c->adapter.sublayers == 0 ? "auto" : c->adapter.sublayers == 1 ? "attn"
                 : c->adapter.sublayers == 2 ? "mlp" : "attn,mlp");
        break;
    case K_INIT: snprintf(val, n, "%s", INITS[c->adapter.init]); break;
    case K_SCHED: snprintf(val, n, "%s", SCHEDS[c->train.schedule]); break;
    case K_DTYPE: snprintf(val, n, "%s", DTYPES[c->model.dtype]); break;
    case K_RECOMPUTE: snprintf(val, n, "%s", RECOMPUTES[c->train.recompute]); break;
    case K_TARGETS: snprintf(val, n, "%s", c->adapter.targets_str); break;
    case K_FF: snprintf(val, n, "%s", c->adapter.feedforward_str); break;
    case K_LAYERS: snprintf(val, n, "%s", c->adapter.layers_str); break;
    }
}

// The methods that read an [adapter] key flagged LMP_KEY_TENSORS (0: every method).
static int key_methods(const key_t_ *k) {
    static const struct { const char *key; int methods; } M[] = {
        {"r", LMP_METHOD_LORA | LMP_METHOD_DORA}, {"alpha", LMP_METHOD_LORA | LMP_METHOD_DORA},
        {"targets", LMP_METHOD_LINEAR}, {"feedforward", LMP_METHOD_IA3},
        {"rslora", LMP_METHOD_LORA | LMP_METHOD_DORA}, {"size", LMP_METHOD_HOULSBY | LMP_METHOD_PARALLEL},
        {"act", LMP_METHOD_HOULSBY | LMP_METHOD_PARALLEL},
        {"sublayers", LMP_METHOD_HOULSBY | LMP_METHOD_PARALLEL}, {"scale", LMP_METHOD_PARALLEL},
        {"virtual_tokens", LMP_METHOD_PREFIX}, {"prefix_projection", LMP_METHOD_PREFIX},
        {"encoder_hidden_size", LMP_METHOD_PREFIX}};
    if (strcmp(k->section, "adapter")) return 0;
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (!strcmp(k->key, M[i].key)) return M[i].methods;
    return 0;
}

int lmp_config_diff(const lmp_config *a, const lmp_config *b, lmp_config_diff_fn fn, void *ctx) {
    int n = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        char va[LMP_PATH_MAX + 32], vb[LMP_PATH_MAX + 32];
        value_text(a, &KEYS[i], va, sizeof va);
        value_text(b, &KEYS[i], vb, sizeof vb);
        if (!strcmp(va, vb)) continue;
        n++;
        // A key no method of either run reads decides no tensor of theirs (LoRA's r under houlsby).
        int flags = KEYS[i].flags, used = key_methods(&KEYS[i]);
        if (used && !((a->adapter.method | b->adapter.method) & used)) flags &= ~LMP_KEY_TENSORS;
        if (fn) fn(ctx, KEYS[i].section, KEYS[i].key, va, vb, flags);
    }
    return n;
}

char *lmp_config_dump(const lmp_config *c) {
    size_t cap = 8192, n = 0;
    char *out = lmp_malloc(cap);
    const char *cur = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const key_t_ *k = &KEYS[i];
        char val[LMP_PATH_MAX + 32];
        value_text(c, k, val, sizeof val);
        char line[LMP_PATH_MAX + 128];
        int len = 0;
        if (strcmp(cur, k->section)) len = snprintf(line, sizeof line, "%s[%s]\n", n ? "\n" : "", k->section);
        len += snprintf(line + len, sizeof line - len, "%s = %s\n", k->key, val);
        cur = k->section;
        if (n + len + 1 > cap) { cap = 2 * (n + len + 1); out = realloc(out, cap); LMP_CHECK(out, "out of memory"); }
        memcpy(out + n, line, len);
        n += len;
        out[n] = 0;
    }
    return out;
}
