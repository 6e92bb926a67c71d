// ckpt_hdf5.c: resuming from a checkpoint (layout in ckpt_hdf5.h and README): the file is
// read through ckpt_read.h, the configuration compared through config.h's KEYS table.
#include "io/ckpt_hdf5.h"
#include "io/ckpt_layout.h"
#include "io/ckpt_read.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *path;
    char *err, *warn;
    size_t errn, warnn, wl;
} compare_ctx;

// One changed key: a key that decides which tensors exist is an error (the first one is
// reported), a run-only key ([parallel], [checkpoint], [log]) nothing, any other a warning.
static void on_change(void *ctx, const char *section, const char *key, const char *was,
                      const char *now, int flags) {
    compare_ctx *x = ctx;
    if (flags & LMP_KEY_RUN_ONLY) return;
    if (flags & LMP_KEY_TENSORS) {
        if (!x->err[0])
            snprintf(x->err, x->errn, "checkpoint %.1000s has [%s] %.64s = %.200s, this run has %.64s = "
                     "%.200s: its adapter does not fit this run (start fresh with --no-resume or "
                     "another [checkpoint] dir)", x->path, section, key, was, key, now);
    } else if (x->wl + 1 < x->warnn) {
        int k = snprintf(x->warn + x->wl, x->warnn - x->wl, "%s[%s] %.64s %.200s -> %.200s",
                         x->wl ? ", " : "", section, key, was, now);
        x->wl = k < 0 || x->wl + (size_t)k >= x->warnn ? x->warnn - 1 : x->wl + (size_t)k;
    }
}

// Compares the checkpoint's configuration (INI text) with this run's: keys flagged
// LMP_KEY_TENSORS must match (error in err); other changes are listed in warn.
static void compare_config(const char *path, const char *old, const lmp_config *cfg,
                           char *err, size_t errn, char *warn, size_t warnn) {
    lmp_config was;
    char why[1024];
    warn[0] = 0;
    if (lmp_config_parse_text(&was, old, "its stored config", why, sizeof why)) {
        snprintf(err, errn, "checkpoint %s: cannot read its stored configuration: %s", path, why);
        return;
    }
    compare_ctx x = {path, err, warn, errn, warnn, 0};
    lmp_config_diff(&was, cfg, on_change, &x);
}

// Checks that the checkpoint fits this run: base weights, step, configuration.
static void check_fit(const char *path, const lmp_ckpt_header *h, lmp_comm *c,
                      const lmp_config *cfg, uint64_t base_checksum, char *warn, size_t warnn) {
    char base[LMP_PATH_MAX + 64], err[2048] = "";
    if (h->base_checksum != base_checksum)
        lmp_die_all("checkpoint %s was trained on other base weights: its base checksum "
                    "%016llx (base model: %s) differs from this run's %016llx (base model: %s); "
                    "start fresh with --no-resume or point [model] path at the right model (or give "
                    "[model] dtype its value of that run: bf16 rounds a model stored as fp32)",
                    path, (unsigned long long)h->base_checksum, h->base_model,
                    (unsigned long long)base_checksum, lmp_ckpt_base_desc(cfg, base, sizeof base));
    if (h->step > cfg->train.steps)
        lmp_die_all("checkpoint %s is at step %lld, beyond [train] steps = %d", path,
                    (long long)h->step, cfg->train.steps);
    compare_config(path, h->config, cfg, err, sizeof err, warn, warnn);
    lmp_die_if_any(c, err);
}

// This rank's part of every trainable tensor and its moments; 0, or -1 with err.
static int read_tensors(lmp_ckpt_reader *rd, lmp_registry *r, char *err, size_t errn) {
    for (int k = 0; k < r->n; k++) {
        lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        char dpath[LMP_NAME_MAX + 64], opath[LMP_NAME_MAX + 80];
        lmp_ckpt_tensor_path(r, p, dpath, sizeof dpath);
        if (lmp_ckpt_read_local(rd, dpath, p, p->data, err, errn) ||
            lmp_ckpt_read_local(rd, lmp_fmt(opath, sizeof opath, "optim/m/%s", dpath), p, p->m, err, errn) ||
            lmp_ckpt_read_local(rd, lmp_fmt(opath, sizeof opath, "optim/v/%s", dpath), p, p->v, err, errn))
            return -1;
    }
    return 0;
}

int64_t lmp_ckpt_load(const char *path, lmp_registry *r, lmp_comm *c, const lmp_config *cfg,
                      uint64_t base_checksum, int *tp, int *dp) {
    char err[2048] = "", warn[2048] = "";
    lmp_ckpt_reader rd;
    lmp_ckpt_header h;
    int opened = lmp_ckpt_open(&rd, path, err, sizeof err) == 0;
    if (!opened && strstr(err, "not an HDF5 file"))
        strncat(err, "; resume from an older one with --resume PATH or start fresh with --no-resume",
                sizeof err - strlen(err) - 1);
    lmp_die_if_any(c, err);
    lmp_ckpt_read_header(&rd, &h, err, sizeof err);
    lmp_die_if_any(c, err);
    check_fit(path, &h, c, cfg, base_checksum, warn, sizeof warn);
    read_tensors(&rd, r, err, sizeof err);
    char cerr[LMP_PATH_MAX + 64] = "";
    if (lmp_ckpt_close(&rd, cerr, sizeof cerr) && !err[0]) memcpy(err, cerr, sizeof cerr);
    lmp_die_if_any(c, err);
    if (warn[0]) lmp_warn("resuming with changed settings: %s", warn);
    *tp = (int)h.tp;
    *dp = (int)h.dp;
    int64_t step = h.step;
    lmp_ckpt_header_free(&h);
    return step;
}
