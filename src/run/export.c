// export.c: a checkpoint's adapter as a PEFT directory (export.h).
#include "run/export.h"
#include "core/comm.h"
#include "core/util.h"
#include "io/ckpt_read.h"
#include "adapters/adapter.h"
#include "adapters/prefix.h"
#include "io/adapter_out.h"
#include "io/ckpt_layout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

// Module m of the checkpoint registered in reg through its method (the same records and
// tensors, names and shapes as training makes), its record's scaling kept as stored.
// enc: prefix projection's MLP (the prefix records' tensors are its output), or NULL.
static int add_module(lmp_ckpt_reader *rd, const lmp_ckpt_module *m, lmp_registry *reg, lmp_adapter *enc,
                      const lmp_config *cfg, char *err, size_t errn) {
    const lmp_adapter_method *meth = lmp_adapter_find(m->method);
    if (!meth) {
        lmp_fmt(err, errn, "%s: module %s uses method %s, which this lorampi does not know (%s)", rd->path,
                m->name, m->method, lmp_adapter_names());
        return -1;
    }
    int proj = meth == &lmp_prefix_method && cfg->adapter.prefix_projection;
    const lmp_prefix_encoder *e = (const lmp_prefix_encoder *)enc;
    if (proj && (!e || m->layer >= e->L || m->r != e->p || m->out != 2 * (int64_t)e->D)) {
        lmp_fmt(err, errn, "%s: prefix module %s of a prefix_projection run does not match the prefix_encoder "
                "module (the MLP whose output the prefixes are: %s)", rd->path, m->name,
                e ? "its layers, virtual tokens and token dim" : "missing");
        return -1;
    }
    lmp_adapter_rec rec = {.method = meth->name, .layer = (int)m->layer, .slice = (int)m->slice,
                           .in = m->in, .out = m->out, .out_offset = m->out_offset,
                           .base_in = m->base_in, .base_out = m->base_out};
    const char *name = strncmp(m->name, "transformer.", 12) ? m->name : m->name + 12;
    lmp_fmt(rec.name, sizeof rec.name, "%s", name);
    lmp_fmt(rec.module, sizeof rec.module, "%s", m->module);
    lmp_fmt(rec.site, sizeof rec.site, "%s", m->site);
    lmp_fmt(rec.base, sizeof rec.base, "%s", m->base_weight);
    lmp_fmt(rec.target, sizeof rec.target, "%s", m->target);
    // ia3 keeps in r whether the module is feed-forward (adapters/ia3.h); prefix its virtual tokens
    lmp_adapter_opts o = {.r = (int)m->r, .alpha = (float)m->alpha, .size = (int)m->r, .bscale = (float)m->scale,
                          .virtual_tokens = (int)m->r, .ff = (int)m->r, .projection = proj, .kv_shared = enc};
    lmp_linear_view v = {.in = (int)m->in, .out = (int)m->out, .a0 = 0, .in_l = (int)m->in, .nseg = 1,
                         .cnt = {(int)m->out}};
    // Prefix records: in = the KV heads, out = 2 x their width (adapters/prefix.h).
    lmp_kv_view kv = {.n_kv_head = (int)m->in, .KVH_l = (int)m->in, .hd = m->in ? (int)(m->out / (2 * m->in)) : 0};
    lmp_adapter *a = meth->add_linear ? meth->add_linear(reg, &rec, &v, &o)
                     : meth->add_kv   ? meth->add_kv(reg, &rec, &kv, &o)
                                      : meth->add_block(reg, &rec, (int)m->in, &o);
    reg->rec[a->rec].alpha = (float)m->alpha;
    reg->rec[a->rec].scale = (float)m->scale;
    meth->free(a);
    return 0;
}

// Prefix projection's MLP (adapters/prefix.h: record r = H, in = the token dim D, out =
// n_layer 2 D), registered before the prefix records that are its output; *enc kept.
static int add_encoder(lmp_ckpt_reader *rd, const lmp_ckpt_module *m, lmp_registry *reg, const lmp_config *cfg,
                       lmp_adapter **enc, char *err, size_t errn) {
    if (*enc || m->r < 1 || m->r > 65536 || m->out % (2 * m->in) || m->out / (2 * m->in) > LMP_MAX_LAYERS ||
        !cfg->adapter.prefix_projection) {
        lmp_fmt(err, errn, "%s: module %s: expected one prefix_encoder with r (its hidden width) in [1, 65536] and "
                "out = 2 in x at most %d layers, in a run with prefix_projection = true", rd->path, m->name,
                LMP_MAX_LAYERS);
        return -1;
    }
    lmp_kv_view v = {.n_kv_head = 1, .KVH_l = 1, .hd = (int)m->in};  // the MLP sees the token dim only
    lmp_adapter_opts o = {.virtual_tokens = cfg->adapter.virtual_tokens, .projection = 1, .enc_hidden = (int)m->r};
    *enc = lmp_prefix_method.add_kv_shared(reg, (int)(m->out / (2 * m->in)), &v, &o);
    return 0;
}

// Reads the checkpoint's adapter into reg (records + tensors) and its configuration into cfg.
static int read_adapter(const char *ckpt, lmp_registry *reg, lmp_config *cfg, char *err, size_t errn) {
    lmp_ckpt_reader rd;
    lmp_ckpt_header h = {0};
    lmp_ckpt_module *mods = NULL;
    int n = 0, rc = lmp_ckpt_open(&rd, ckpt, err, errn);
    if (rc) return rc;
    rc = lmp_ckpt_read_header(&rd, &h, err, errn) || lmp_ckpt_modules(&rd, &mods, &n, err, errn);
    if (!rc && lmp_config_parse_text(cfg, h.config, ckpt, err, (int)errn)) rc = -1;
    if (!rc) lmp_registry_init(reg, LMP_REC_MAX_TENSORS * n + 1);
    const char *encm = lmp_prefix_encoder_method.name;
    lmp_adapter *enc = NULL;
    for (int i = 0; i < n && !rc; i++)
        if (!strcmp(mods[i].method, encm)) rc = add_encoder(&rd, &mods[i], reg, cfg, &enc, err, errn);
    for (int i = 0; i < n && !rc; i++)
        if (strcmp(mods[i].method, encm)) rc = add_module(&rd, &mods[i], reg, enc, cfg, err, errn);
    if (!rc) lmp_registry_alloc(reg);
    for (int i = 0; !rc && i < reg->n; i++) {  // each tensor from its dataset, shape checked
        char dpath[LMP_NAME_MAX + 64];
        if (!reg->p[i].trainable) continue;  // derived (the projected prefixes): refreshed below
        lmp_ckpt_tensor_path(reg, &reg->p[i], dpath, sizeof dpath);
        rc = lmp_ckpt_read_local(&rd, dpath, &reg->p[i], reg->p[i].data, err, errn);
    }
    if (enc && !rc) enc->method->refresh(enc);
    if (enc) enc->method->free(enc);
    free(mods);
    lmp_ckpt_header_free(&h);
    char cerr[512];
    if (lmp_ckpt_close(&rd, cerr, sizeof cerr) && !rc) { lmp_fmt(err, errn, "%s", cerr); rc = -1; }
    return rc;
}

int lmp_export(const char *ckpt, const char *dir, int force) {
    char err[2048] = "";
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    if (c.rank == 0) {
        lmp_registry reg = {0};
        lmp_config cfg;
        if (!force && lmp_dir_non_empty(dir))
            lmp_fmt(err, sizeof err, "export: %s exists and is not empty (give --force to write into it)", dir);
        else if (!read_adapter(ckpt, &reg, &cfg, err, sizeof err))
            lmp_adapters_save(dir, &reg, &cfg);
        if (!err[0]) lmp_log("export: %s -> %s (%d modules)\n", ckpt, dir, reg.n_rec);
        lmp_registry_free(&reg);
    }
    lmp_die_if_any(&c, err);
    lmp_comm_free(&c);
    return 0;
}
