// init_from.c: [adapter] init_from (init_from.h).
#include "run/init_from.h"
#include "core/util.h"
#include "io/peft.h"
#include "io/peft_prefix.h"
#include "io/peft_methods.h"
#include "io/peft_read.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/model_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Modules of the HF GPT-2 model that are not linear layers lorampi adapts ("%d": a block).
// A target_modules entry or regex matching one of these is refused: PEFT would adapt it (an
// embedding, the LM head) or fail on it (a LayerNorm, a container), lorampi cannot do either.
static const char *GPT2_OTHER[] = {
    "transformer", "transformer.wte", "transformer.wpe", "transformer.drop", "transformer.h",
    "transformer.ln_f", "lm_head", "transformer.h.%d", "transformer.h.%d.ln_1",
    "transformer.h.%d.attn", "transformer.h.%d.attn.attn_dropout",
    "transformer.h.%d.attn.resid_dropout", "transformer.h.%d.ln_2", "transformer.h.%d.mlp",
    "transformer.h.%d.mlp.act", "transformer.h.%d.mlp.dropout"};

// What the adapter selects: per layer, the adaptable sites (LMP_SITE_*) it adapts.
typedef struct {
    const lmp_arch *a;
    const lmp_peft_naming *nm;
    const lmp_peft_config *pc;
    const char *origin;         // DIR/adapter_config.json
    unsigned char sel[LMP_MAX_LAYERS][LMP_N_SITES];
} selection;

// The PEFT name of site s of layer l ("transformer.h.3.mlp.c_fc").
static char *site_name(const selection *x, int l, int s, char *out, size_t n) {
    char mod[LMP_NAME_MAX];
    lmp_fmt(mod, sizeof mod, x->a->site[s], l);
    return lmp_peft_module(out, n, x->nm, mod);
}

// Whether one target_modules entry (e, list form) or the regex (e NULL) matches `name`.
static int matches(const selection *x, const char *e, const char *name) {
    char err[512];
    if (e) return lmp_peft_entry_matches(e, name);
    int m = lmp_regex_fullmatch(x->pc->target_re, name, err, sizeof err);
    if (m < 0) lmp_die_all("%s: \"target_modules\": %s", x->origin, err);
    return m;
}

// An entry (or the regex) must match an adaptable module and nothing else of the model.
static void check_entry(const selection *x, const char *e) {
    int hits = 0;
    char name[LMP_NAME_MAX + 32], what[LMP_PEFT_NAME + 32];
    if (e) lmp_fmt(what, sizeof what, "entry \"%s\"", e);
    else lmp_fmt(what, sizeof what, "regular expression \"%.200s\"", x->pc->target_re);
    int gpt2 = !strcmp(x->a->family, "gpt2");
    for (size_t i = 0; gpt2 && i < sizeof GPT2_OTHER / sizeof GPT2_OTHER[0]; i++)
        for (int l = 0; l < (strchr(GPT2_OTHER[i], '%') ? x->a->n_layer : 1); l++)
            if (matches(x, e, lmp_fmt(name, sizeof name, GPT2_OTHER[i], l)))
                lmp_die_all("%s: \"target_modules\" %s matches %s, which lorampi cannot adapt (it "
                            "adapts the linear layers attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)",
                            x->origin, what, name);
    int first = -1;  // a site the family has, for the message
    for (int l = 0; l < x->a->n_layer; l++)
        for (int s = 0; s < LMP_N_SITES; s++) {
            if (!x->a->site[s]) continue;  // a site this family does not have
            if (first < 0) first = s;
            hits += matches(x, e, site_name(x, l, s, name, sizeof name));
        }
    if (!hits)
        lmp_die_all("%s: \"target_modules\" %s matches no module of the model (an adapter for "
                    "another model? this %s model's adaptable modules are named like %s)", x->origin,
                    what, x->a->family, site_name(x, 0, first, name, sizeof name));
}

// sel from target_modules and layers_to_transform, as PEFT decides per module.
static void select_modules(selection *x) {
    char name[LMP_NAME_MAX + 32], err[512];
    if (x->pc->target_regex) check_entry(x, NULL);
    for (int i = 0; i < x->pc->n_targets; i++) check_entry(x, x->pc->targets[i]);
    for (int l = 0; l < x->a->n_layer; l++)
        for (int s = 0; s < LMP_N_SITES; s++) {
            if (!x->a->site[s]) continue;
            int m = lmp_peft_targets(x->pc, site_name(x, l, s, name, sizeof name), err, sizeof err);
            if (m < 0) lmp_die_all("%s: \"target_modules\": %s", x->origin, err);
            x->sel[l][s] = (unsigned char)m;
        }
    for (int i = 0; i < x->pc->n_layers; i++)
        if (x->pc->layers[i] >= x->a->n_layer)
            lmp_die_all("%s: \"layers_to_transform\" names layer %d, but the model has %d layers",
                        x->origin, x->pc->layers[i], x->a->n_layer);
}

// The [adapter] target of whole site s.
static const lmp_target_site *target_of(const lmp_arch *a, int s) {
    for (int i = 0; i < a->n_targets; i++)
        if ((int)a->targets[i].site == s && a->targets[i].slice < 0) return &a->targets[i];
    return NULL;
}

// sel as [adapter] targets x layers (text for lmp_config_set); refuses a selection that is
// not such a product, naming a module it would need.
static void as_targets_layers(const selection *x, char *targets, size_t tn, char *layers, size_t ln) {
    int site_on[LMP_N_SITES] = {0}, layer_on[LMP_MAX_LAYERS] = {0}, nl = 0;
    for (int l = 0; l < x->a->n_layer; l++)
        for (int s = 0; s < LMP_N_SITES; s++)
            if (x->sel[l][s]) site_on[s] = layer_on[l] = 1;
    char name[LMP_NAME_MAX + 32], other[LMP_NAME_MAX + 32];
    targets[0] = layers[0] = 0;
    for (int s = 0; s < LMP_N_SITES; s++) {
        if (!site_on[s]) continue;
        const lmp_target_site *t = target_of(x->a, s);
        if (!t) lmp_die_all("%s: the model family has no [adapter] target for %s", x->origin, x->a->site[s]);
        size_t k = strlen(targets);
        lmp_fmt(targets + k, tn - k, "%s%s", k ? "," : "", t->name);
    }
    for (int l = 0; l < x->a->n_layer; l++) {
        if (!layer_on[l]) continue;
        nl++;
        size_t k = strlen(layers);
        lmp_fmt(layers + k, ln - k, "%s%d", k ? "," : "", l);
        for (int s = 0; s < LMP_N_SITES; s++) {
            if (!site_on[s] || x->sel[l][s]) continue;
            for (int l2 = 0; l2 < x->a->n_layer; l2++)
                if (x->sel[l2][s]) site_name(x, l2, s, other, sizeof other);
            lmp_die_all("%s: the adapter adapts %s but not %s; lorampi adapts the same modules in "
                        "every adapted layer ([adapter] targets x layers)", x->origin, other,
                        site_name(x, l, s, name, sizeof name));
        }
    }
    if (!nl) lmp_die_all("%s: target_modules and layers_to_transform select no module of the model", x->origin);
    if (nl == x->a->n_layer) lmp_fmt(layers, ln, "all");
}

// Per-module r and alpha from rank_pattern / alpha_pattern where they differ from r, alpha.
static void per_module(const selection *x, lmp_config *cfg) {
    char name[LMP_NAME_MAX + 32], err[512];
    const lmp_peft_config *pc = x->pc;
    for (int l = 0; l < x->a->n_layer; l++)
        for (int s = 0; s < LMP_N_SITES; s++) {
            if (!x->sel[l][s]) continue;
            site_name(x, l, s, name, sizeof name);
            int ri = lmp_peft_pattern_find(pc->rank_pattern, pc->n_rank, name, err, sizeof err);
            int ai = lmp_peft_pattern_find(pc->alpha_pattern, pc->n_alpha, name, err, sizeof err);
            if (ri == -2 || ai == -2) lmp_die_all("%s: \"%s\": %s", x->origin, ri == -2 ? "rank_pattern" : "alpha_pattern", err);
            int t = __builtin_ctz((unsigned)target_of(x->a, s)->bit);
            if (ri >= 0 && (int)pc->rank_pattern[ri].value != pc->r) cfg->adapter.r_at[l][t] = (int)pc->rank_pattern[ri].value;
            if (ai >= 0 && (float)pc->alpha_pattern[ai].value != (float)pc->alpha)
                cfg->adapter.alpha_at[l][t] = (float)pc->alpha_pattern[ai].value;
        }
}

typedef struct { char text[2048]; } diff_list;

// Appends "r = 8 -> 4" for a key init_from changed.
static void note_diff(void *ctx, const char *section, const char *key, const char *old_value,
                      const char *new_value, int flags) {
    diff_list *d = ctx;
    size_t k = strlen(d->text);
    lmp_fmt(d->text + k, sizeof d->text - k, "%s[%s] %s = %s -> %s", k ? ", " : "", section, key,
            old_value, new_value);
}

// Sets one [adapter] key from init_from's text value.
static void set_key(lmp_config *cfg, const char *key, const char *value, const char *origin) {
    char err[512];
    if (lmp_config_set(cfg, "adapter", key, value, err, sizeof err))
        lmp_die_all("%s: the adapter's %s does not fit [adapter] %s: %s", origin, key, key, err);
}

// The hyperparameters of the model init_from will meet (its file, or the [model] keys).
static void model_arch(const lmp_config *cfg, lmp_model_config *mc, lmp_arch *a) {
    if (cfg->model.path[0]) lmp_model_read_config(cfg->model.path, mc);
    else *mc = (lmp_model_config){.n_layer = cfg->model.n_layer, .n_head = cfg->model.n_head,
                                  .n_embd = cfg->model.n_embd, .vocab_size = cfg->model.vocab_size,
                                  .n_ctx = cfg->model.n_ctx, .ln_eps = 1e-5f};
    lmp_model_arch(mc, a);
}

// The model's layers and key/value width against a prefix-tuning adapter's (pc).
static void check_prefix_shape(const lmp_config *cfg, const lmp_peft_prefix_config *pc, const char *origin) {
    lmp_model_config mc;
    lmp_arch a;
    model_arch(cfg, &mc, &a);
    int kv = a.n_kv_head * a.head_dim;
    if (pc->num_layers != a.n_layer || pc->num_attention_heads != a.n_kv_head || pc->token_dim != kv)
        lmp_die_all("%s: num_layers = %d, num_attention_heads = %d, token_dim = %d, but the model has %d "
                    "layers of %d key/value heads of %d (token_dim %d): an adapter for another model", origin,
                    pc->num_layers, pc->num_attention_heads, pc->token_dim, a.n_layer, a.n_kv_head, a.head_dim, kv);
}

// A PEFT prefix-tuning adapter (peft_type PREFIX_TUNING): [adapter] virtual_tokens from it.
// 0 when the directory holds another kind of adapter.
static int prefix_apply(lmp_config *cfg, const char *origin) {
    char err[2048], type[64], v[32];
    size_t len;
    char *text = lmp_peft_config_text(cfg->adapter.init_from, &len, err, sizeof err);
    if (!text || lmp_peft_type_of(text, len, origin, type, sizeof type, err, sizeof err)) lmp_die_all("%s", err);
    lmp_peft_prefix_config pc;
    int is = !strcmp(type, "PREFIX_TUNING");
    if (is && lmp_peft_prefix_parse(text, len, origin, &pc, err, sizeof err)) lmp_die_all("%s", err);
    free(text);
    if (!is) return 0;
    if (cfg->adapter.method != LMP_METHOD_PREFIX)
        lmp_die_all("%s: a PEFT prefix-tuning adapter; it needs [adapter] method = prefix", origin);
    check_prefix_shape(cfg, &pc, origin);
    if (cfg->adapter.prefix_projection)
        lmp_die_all("%s: [adapter] prefix_projection = true trains an MLP whose output the prefixes are, and "
                    "a PEFT prefix-tuning file holds the prefixes only (PEFT saves the MLP's output%s): set "
                    "prefix_projection = false to train the file's prefixes directly", origin,
                    pc.prefix_projection ? ", also for this adapter saved with prefix_projection = true" : "");
    if (pc.prefix_projection)
        lmp_warn("%s: prefix_projection = true: the file holds the prefixes PEFT's projection made (it "
                 "saves those, not the MLP); lorampi trains them directly", origin);
    lmp_config *old = lmp_malloc(sizeof *old);
    *old = *cfg;
    set_key(cfg, "virtual_tokens", lmp_fmt(v, sizeof v, "%d", pc.num_virtual_tokens), origin);
    diff_list d = {""};
    if (lmp_config_diff(old, cfg, note_diff, &d))
        lmp_warn("[adapter] init_from: the adapter's config overrides %s (from %s)", d.text, origin);
    free(old);
    return 1;
}

// IA3's feed-forward modules among the selected ones, as [adapter] feedforward (text).
static void as_feedforward(const selection *x, char *ff, size_t n) {
    char name[LMP_NAME_MAX + 32], err[512];
    lmp_fmt(ff, n, "none");
    for (int s = 0, any = 0; s < LMP_N_SITES; s++) {
        int on = -1;
        for (int l = 0; l < x->a->n_layer; l++) {
            if (!x->sel[l][s]) continue;
            int m = lmp_peft_feedforward(x->pc, site_name(x, l, s, name, sizeof name), err, sizeof err);
            if (m < 0) lmp_die_all("%s: \"feedforward_modules\": %s", x->origin, err);
            if (on >= 0 && m != on)
                lmp_die_all("%s: feedforward_modules selects %s in some layers only; lorampi treats a "
                            "target alike in every layer", x->origin, name);
            on = m;
        }
        if (on <= 0) continue;
        size_t k = any++ ? strlen(ff) : 0;
        lmp_fmt(ff + k, n - k, "%s%s", k ? "," : "", target_of(x->a, s)->name);
    }
}

// The [adapter] method an adapter of this config needs: lora, dora (use_dora) or ia3.
static void check_method(const lmp_config *cfg, const lmp_peft_config *pc, const char *origin) {
    int want = pc->ia3 ? LMP_METHOD_IA3 : pc->use_dora ? LMP_METHOD_DORA : LMP_METHOD_LORA;
    char have[64], need[64];
    if (cfg->adapter.method != want)
        lmp_die_all("[adapter] init_from = %s: %s holds a PEFT %s adapter; it needs [adapter] method = %s "
                    "(not %s)", cfg->adapter.init_from, origin, pc->ia3 ? "IA3" : pc->use_dora ? "DoRA" : "LoRA",
                    lmp_config_methods(want, need, sizeof need),
                    lmp_config_methods(cfg->adapter.method, have, sizeof have));
}

void lmp_init_from_apply(lmp_config *cfg) {
    if (!cfg->adapter.init_from[0]) return;
    char where[LMP_PATH_MAX + 32];
    if (prefix_apply(cfg, lmp_path_join(where, sizeof where, cfg->adapter.init_from, "adapter_config.json"))) return;
    selection *x = lmp_calloc(sizeof *x);
    lmp_peft_config *pc = lmp_calloc(sizeof *pc);
    char err[2048], origin[LMP_PATH_MAX + 32], v[64], targets[256], layers[512];
    lmp_path_join(origin, sizeof origin, cfg->adapter.init_from, "adapter_config.json");
    if (lmp_peft_read_config(cfg->adapter.init_from, pc, err, sizeof err)) lmp_die_all("%s", err);
    check_method(cfg, pc, origin);
    lmp_model_config mc;
    lmp_arch a;
    model_arch(cfg, &mc, &a);
    *x = (selection){.a = &a, .nm = lmp_peft_naming_of(a.family), .pc = pc, .origin = origin};
    if (pc->fan_in_fan_out >= 0 && pc->fan_in_fan_out != x->nm->fan_in_fan_out)
        lmp_warn("%s: fan_in_fan_out = %s, but %s's layers are %s; PEFT uses %s for them, and so "
                 "does lorampi", origin, pc->fan_in_fan_out ? "true" : "false", a.family,
                 x->nm->fan_in_fan_out ? "Conv1D (in, out)" : "Linear (out, in)",
                 x->nm->fan_in_fan_out ? "true" : "false");
    select_modules(x);
    as_targets_layers(x, targets, sizeof targets, layers, sizeof layers);
    lmp_config *old = lmp_malloc(sizeof *old);
    *old = *cfg;
    if (pc->ia3) {
        char ff[256];
        as_feedforward(x, ff, sizeof ff);
        set_key(cfg, "targets", targets, origin);
        set_key(cfg, "feedforward", ff, origin);
    } else {
        set_key(cfg, "r", lmp_fmt(v, sizeof v, "%d", pc->r), origin);
        set_key(cfg, "alpha", lmp_fmt(v, sizeof v, "%.9g", pc->alpha), origin);
        set_key(cfg, "dropout", lmp_fmt(v, sizeof v, "%.9g", pc->dropout), origin);
        set_key(cfg, "rslora", pc->rslora ? "true" : "false", origin);
        set_key(cfg, "targets", targets, origin);
    }
    set_key(cfg, "layers", layers, origin);
    memset(cfg->adapter.r_at, 0, sizeof cfg->adapter.r_at);
    memset(cfg->adapter.alpha_at, 0, sizeof cfg->adapter.alpha_at);
    per_module(x, cfg);
    diff_list d = {""};
    if (lmp_config_diff(old, cfg, note_diff, &d))
        lmp_warn("[adapter] init_from: the adapter's config overrides %s (from %s)", d.text, origin);
    free(old);
    free(pc);
    free(x);
}

// Reads tensor `key` of shape (rows, cols), or (cols) when rows < 0, into dst, or says what
// is wrong in err.
static int read_tensor(const lmp_st_file *f, const char *key, int64_t rows, int64_t cols,
                       const char *module, const char *side, float *dst, unsigned char *used,
                       char *err, size_t errn) {
    const lmp_st_tensor *t = lmp_st_find(f, key);
    if (!t) {
        lmp_fmt(err, errn, "[adapter] init_from: %s has no tensor %s: adapter_config.json adapts "
                "module %s, whose %s it would be", f->path, key, module, side);
        return -1;
    }
    used[t - f->t] = 1;
    int nd = rows < 0 ? 1 : 2;
    if (t->ndim != nd || t->shape[0] != (nd == 1 ? cols : rows) || (nd == 2 && t->shape[1] != cols)) {
        char got[96] = "(";
        for (int d = 0; d < t->ndim; d++) {
            size_t k = strlen(got);
            lmp_fmt(got + k, sizeof got - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        }
        strcat(got, ")");
        char need[64];
        if (nd == 1) lmp_fmt(need, sizeof need, "(%lld)", (long long)cols);
        else lmp_fmt(need, sizeof need, "(%lld, %lld)", (long long)rows, (long long)cols);
        lmp_fmt(err, errn, "[adapter] init_from: %s: tensor %s has shape %s; the model needs %s "
                "(an adapter for another model, or its config's r does not match its tensors)",
                f->path, key, got, need);
        return -1;
    }
    if (nd == 1) rows = 1;
    lmp_st_read_block(f, t, 0, rows, 0, cols, dst);
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(dst[i])) {
            lmp_fmt(err, errn, "[adapter] init_from: %s: tensor %s holds %g", f->path, key, (double)dst[i]);
            return -1;
        }
    return 0;
}

// Rank 0: every record's A and B from the file into reg; every tensor of the file used.
static void read_all(const char *dir, lmp_registry *reg, char *err, size_t errn) {
    const lmp_peft_naming *nm = reg->n_rec ? lmp_peft_naming_of_module(reg->rec[0].module) : lmp_peft_naming_of(NULL);
    char path[LMP_PATH_MAX + 32], key[LMP_NAME_MAX + 64];
    lmp_st_file f;
    lmp_st_open(&f, lmp_path_join(path, sizeof path, dir, "adapter_model.safetensors"));
    unsigned char *used = lmp_calloc((size_t)f.n + 1);
    for (int i = 0; i < reg->n_rec && !err[0]; i++) {
        const lmp_adapter_rec *rec = &reg->rec[i];
        lmp_param *A = lmp_rec_tensor(reg, rec, 0), *B = rec->n_tensor > 1 ? lmp_rec_tensor(reg, rec, 1) : A;
        int lora = !strcmp(rec->method, "lora"), dora = !strcmp(rec->method, "dora");
        if (rec->slice >= 0 || (!lora && !dora && strcmp(rec->method, "ia3")) || A->split_dim >= 0 ||
            B->split_dim >= 0) {
            lmp_fmt(err, errn, "[adapter] init_from: module %s is not a whole replicated LoRA, DoRA or "
                    "IA3 module", rec->name);
            break;
        }
        if (!lora && !dora) {  // ia3_l: (out, 1), or (1, in) on a feed-forward module (rec->r)
            if (read_tensor(&f, lmp_peft_leaf(key, sizeof key, nm, rec->module, "ia3_l"), rec->r ? 1 : rec->out,
                            rec->r ? rec->in : 1, rec->module, "ia3_l", A->data, used, err, errn))
                break;
            continue;
        }
        if (dora && read_tensor(&f, lmp_peft_leaf(key, sizeof key, nm, rec->module, "lora_magnitude_vector"),
                                -1, rec->out, rec->module, "lora_magnitude_vector",
                                lmp_rec_tensor(reg, rec, 2)->data, used, err, errn))
            break;
        if (read_tensor(&f, lmp_peft_tensor(key, sizeof key, nm, rec->module, "lora_A"), rec->r,
                        rec->in, rec->module, "lora_A", A->data, used, err, errn) ||
            read_tensor(&f, lmp_peft_tensor(key, sizeof key, nm, rec->module, "lora_B"), rec->out,
                        rec->r, rec->module, "lora_B", B->data, used, err, errn))
            break;
    }
    for (int k = 0; k < f.n && !err[0]; k++)
        if (!used[k])
            lmp_fmt(err, errn, "[adapter] init_from: %s: tensor %s belongs to no module that "
                    "adapter_config.json adapts in this model (every tensor must be used)", path, f.t[k].name);
    free(used);
    lmp_st_close(&f);
}

// Rank 0: the prefixes of a PEFT prefix-tuning directory into reg's prefix records.
static void prefix_read(const char *dir, lmp_registry *reg, char *err, size_t errn) {
    size_t len;
    char origin[LMP_PATH_MAX + 32];
    lmp_path_join(origin, sizeof origin, dir, "adapter_config.json");
    char *text = lmp_peft_config_text(dir, &len, err, errn);
    lmp_peft_prefix_config pc;
    if (text && !lmp_peft_prefix_parse(text, len, origin, &pc, err, errn)) lmp_peft_prefix_load(dir, &pc, reg, err, errn);
    free(text);
}

void lmp_init_from_load(const lmp_config *cfg, lmp_registry *reg, lmp_comm *c) {
    char err[LMP_PATH_MAX + 2048] = "";
    if (c->rank == 0 && cfg->adapter.method == LMP_METHOD_PREFIX) prefix_read(cfg->adapter.init_from, reg, err, sizeof err);
    else if (c->rank == 0) read_all(cfg->adapter.init_from, reg, err, sizeof err);
    lmp_die_if_any(c, err);
    // Adapters are replicated: every rank takes rank 0's values.
    for (int i = 0; i < reg->n_rec; i++)
        for (int k = 0; k < reg->rec[i].n_tensor; k++) {
            lmp_param *p = lmp_rec_tensor(reg, &reg->rec[i], k);
            LMP_CHECK(p->numel <= (size_t)INT32_MAX, "init_from: tensor %s too large to broadcast", p->name);
            LMP_CHECK_MPI(MPI_Bcast(p->data, (int)p->numel, MPI_FLOAT, 0, c->world));
        }
    lmp_log("init_from: %d adapted modules from %s\n", reg->n_rec, cfg->adapter.init_from);
}
