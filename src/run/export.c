// export.c: a checkpoint's adapter as a PEFT directory (export.h).
#include "run/export.h"
#include "core/comm.h"
#include "core/util.h"
#include "io/ckpt_read.h"
#include "io/peft.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

// 1 when dir exists and holds anything but . and ..
static int non_empty(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n > 0;
}

// Module m of the checkpoint as a record with its two whole tensors in reg.
static int add_module(lmp_ckpt_reader *rd, const lmp_ckpt_module *m, lmp_registry *reg,
                      double **ab, char *err, size_t errn) {
    lmp_adapter_rec rec = {.method = "lora", .layer = (int)m->layer, .slice = (int)m->slice,
                           .in = m->in, .out = m->out, .out_offset = m->out_offset,
                           .base_in = m->base_in, .base_out = m->base_out, .r = (int)m->r,
                           .alpha = (float)m->alpha, .scale = (float)m->scale};
    if (strcmp(m->method, "lora")) {
        lmp_fmt(err, errn, "%s: module %s uses method %s, which has no PEFT LoRA form", rd->path,
                m->name, m->method);
        return -1;
    }
    const char *name = strncmp(m->name, "transformer.", 12) ? m->name : m->name + 12;
    lmp_fmt(rec.name, sizeof rec.name, "%s", name);
    lmp_fmt(rec.module, sizeof rec.module, "%s", m->module);
    lmp_fmt(rec.site, sizeof rec.site, "%s", m->site);
    lmp_fmt(rec.base, sizeof rec.base, "%s", m->base_weight);
    lmp_fmt(rec.target, sizeof rec.target, "%s", m->target);
    lmp_adapter_rec *x = lmp_registry_add_rec(reg, &rec);
    static const char *LEAF[2] = {"lora_A", "lora_B"};
    for (int k = 0; k < 2; k++) {
        char dpath[LMP_NAME_MAX + 64], tname[LMP_NAME_MAX + 16];
        int64_t rows, cols;
        lmp_fmt(dpath, sizeof dpath, "adapter/%s/%s", m->name, LEAF[k]);
        if (lmp_ckpt_read_matrix(rd, dpath, k ? m->out : m->r, k ? m->r : m->in, &ab[k], &rows,
                                 &cols, err, errn))
            return -1;
        int64_t shape[2] = {rows, cols};
        lmp_param *p = lmp_registry_add(reg, lmp_fmt(tname, sizeof tname, "%s.%s", name, LEAF[k]),
                                        2, shape, -1, 1, 0, 0, LMP_ROLE_ADAPTER, 1, LMP_GRAD_TP_SUM, 1);
        lmp_registry_attach(reg, x, p);
    }
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
    double **ab = lmp_calloc((size_t)(2 * n + 1) * sizeof *ab);
    if (!rc) lmp_registry_init(reg, 2 * n + 1);
    for (int i = 0; i < n && !rc; i++) rc = add_module(&rd, &mods[i], reg, ab + 2 * i, err, errn);
    if (!rc) {
        lmp_registry_alloc(reg);
        for (int i = 0; i < reg->n; i++)
            for (size_t k = 0; k < reg->p[i].numel; k++) reg->p[i].data[k] = (float)ab[i][k];
    }
    for (int i = 0; i < 2 * n; i++) free(ab[i]);
    free(ab);
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
        if (!force && non_empty(dir))
            lmp_fmt(err, sizeof err, "export: %s exists and is not empty (give --force to write into it)", dir);
        else if (!read_adapter(ckpt, &reg, &cfg, err, sizeof err))
            lmp_peft_save(dir, &reg, &cfg);
        if (!err[0]) lmp_log("export: %s -> %s (%d modules)\n", ckpt, dir, reg.n_rec);
        lmp_registry_free(&reg);
    }
    lmp_die_if_any(&c, err);
    lmp_comm_free(&c);
    return 0;
}
