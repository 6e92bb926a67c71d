// merge.c: `lorampi merge` (merge.h).
#include "run/merge.h"
#include "core/util.h"
#include "io/ckpt_read.h"
#include "model/model.h"

#include <string.h>

// The configuration stored in the checkpoint, into cfg; err on failure.
static void stored_config(const char *ckpt, lmp_config *cfg, char *err, size_t errn) {
    lmp_ckpt_reader rd;
    lmp_ckpt_header h = {0};
    if (lmp_ckpt_open(&rd, ckpt, err, errn)) return;
    if (!lmp_ckpt_read_header(&rd, &h, err, errn) &&
        lmp_config_parse_text(cfg, h.config, ckpt, err, (int)errn) && !err[0])
        lmp_fmt(err, errn, "%s: its stored configuration does not parse", ckpt);
    lmp_ckpt_header_free(&h);
    char cerr[512];
    if (lmp_ckpt_close(&rd, cerr, sizeof cerr) && !err[0]) lmp_fmt(err, errn, "%s", cerr);
}

// The largest tp that divides the world size and that the model splits into (merge.h).
static int pick_tp(const lmp_config *cfg, int world) {
    lmp_model_config mc;
    lmp_model_opts opts;
    unsigned char layer_on[LMP_MAX_LAYERS];
    lmp_session_resolve(cfg, &mc, &opts, layer_on);
    lmp_arch a;
    lmp_model_arch(&mc, &a);
    char err[512];
    for (int tp = world; tp > 1; tp--)
        if (world % tp == 0 && !lmp_arch_check(&a, tp, err, sizeof err)) return tp;
    return 1;
}

// The run's configuration from the checkpoint, its layout for this merge; checks --out.
static void prepare(const lmp_merge_args *a, lmp_config *cfg) {
    char err[4096] = "";
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, 1);
    if (c.rank == 0 && !a->force && lmp_dir_non_empty(a->out))
        lmp_fmt(err, sizeof err, "merge: %s exists and is not empty (give --force to write into it)", a->out);
    lmp_die_if_any(&c, err);
    stored_config(a->ckpt, cfg, err, sizeof err);
    lmp_die_if_any(&c, err);
    if (a->model) lmp_fmt(cfg->model.path, sizeof cfg->model.path, "%s", a->model);
    cfg->parallel.tp = pick_tp(cfg, c.size);
    cfg->checkpoint.dir[0] = 0;  // the checkpoint named is the one loaded
    lmp_comm_free(&c);
}

int lmp_merge(const lmp_merge_args *a) {
    lmp_config cfg;
    double t0 = lmp_now();
    prepare(a, &cfg);
    lmp_merged_opts o = {a->format < 0 ? LMP_MERGED_HF : (lmp_merged_format)a->format, a->dtype, cfg.model.path};
    if (a->format < 0 && cfg.model.path[0] && !lmp_is_dir(cfg.model.path)) o.format = LMP_MERGED_LLMC;
    lmp_session s;
    lmp_session_open(&s, &cfg);
    lmp_comm_report(&s.comm);  // every rank is up, and where
    lmp_session_load(&s, &cfg, a->ckpt, 0);
    double t_load = lmp_now() - t0, loop = lmp_merged_save(a->out, &s, &o);
    lmp_allreduce_d(&s.comm, &loop, 1, MPI_MAX, s.comm.world);
    static const char *DT[] = {"f32", "f16", "bf16"};
    lmp_log("merge: %s (step %lld, %d adapted modules) -> %s (%s, %s) on tp = %d x dp = %d: "
            "loaded in %.2f s, merged in %.3f s, %.2f s in all\n", a->ckpt, (long long)s.step,
            s.model.reg.n_rec, a->out, o.format == LMP_MERGED_LLMC ? "llm.c model.bin" : "HF",
            DT[a->dtype], s.comm.tp_size, s.comm.dp_size, t_load, loop, lmp_now() - t0);
    lmp_session_close(&s);
    return 0;
}
