// train.c: the training loop.
#include "run/train.h"
#include "io/ckpt_hdf5.h"
#include "core/comm.h"
#include "data/data.h"
#include "run/batches.h"
#include "run/merged.h"
#include "run/session.h"
#include "core/optim.h"
#include "io/adapter_out.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

// A resumed run continues the metrics file: lines of steps after the checkpoint (done by
// the interrupted run, redone now) are dropped so each step appears once.
static FILE *open_metrics(const char *path, int start) {
    if (start > 0) {
        FILE *f = fopen(path, "r");
        if (f) {
            char tmp[LMP_PATH_MAX + 8], line[4096];
            lmp_fmt(tmp, sizeof tmp, "%s.tmp", path);
            FILE *out = fopen(tmp, "w");
            if (!out) lmp_die("cannot write [log] metrics file %s", tmp);
            while (fgets(line, sizeof line, f)) {
                json_t *o = json_loads(line, 0, NULL);
                json_int_t st = o ? json_integer_value(json_object_get(o, "step")) : 0;
                json_decref(o);
                if (st >= 1 && st <= start) fputs(line, out);
            }
            fclose(f);
            LMP_CHECK(fclose(out) == 0 && rename(tmp, path) == 0, "cannot rewrite %s", path);
        }
    }
    FILE *f = fopen(path, start > 0 ? "a" : "w");
    if (!f) lmp_die("cannot write [log] metrics file %s", path);
    return f;
}

static void fmt_eta(char *buf, size_t n, double s) {
    int t = (int)(s + 0.5);
    snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
}

// Slurm's warning signal (sbatch --signal=B:USR1@T, forwarded to the ranks) or SIGTERM
// (scancel, preemption) only sets this flag; the ranks agree on it at the next step
// boundary and stop there with a checkpoint. A second signal changes nothing.
static volatile sig_atomic_t stop_signal = 0;
static void on_stop_signal(int sig) { stop_signal = sig; }

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    LMP_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0 && sigaction(SIGTERM, &sa, NULL) == 0,
              "cannot install the SIGUSR1/SIGTERM handlers");
}

// Every rank checks; one message when any cannot read the file (no per-rank abort storm).
static void check_readable(lmp_comm *c, const char *key, const char *path) {
    char err[LMP_PATH_MAX + 128] = "";
    if (path[0] && access(path, R_OK) != 0)
        snprintf(err, sizeof err, "[data] %s = %s: cannot read it: %s", key, path, strerror(errno));
    lmp_die_if_any(c, err);
}

// [checkpoint] dir/finished: lorampi's own record that the run reached its last step (job
// scripts read it instead of trusting a launcher's exit code). Rank 0 removes it when a run
// is about to train and writes it (atomically) once the last step's checkpoint is in place.
static void finished_marker(const lmp_config *cfg, int write, int steps) {
    char path[LMP_PATH_MAX + 16], tmp[LMP_PATH_MAX + 32];
    lmp_path_join(path, sizeof path, cfg->checkpoint.dir, "finished");
    if (!write) {
        if (unlink(path) != 0 && errno != ENOENT) lmp_die("cannot remove %s: %s", path, strerror(errno));
        return;
    }
    lmp_fmt(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) lmp_die("cannot write %s: %s", tmp, strerror(errno));
    int ok = fprintf(f, "step %d of %d\n", steps, steps) > 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) ok = 0;
    if (fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) lmp_die("cannot write %s: %s", path, strerror(errno));
}

// Rank 0: [checkpoint] dir exists or can be made, is a directory, takes a new file, and has
// room for one checkpoint of `bytes`; else the reason in err (size n).
static void probe_ckpt_dir(const char *dir, double bytes, char *err, size_t n) {
    char why[LMP_PATH_MAX + 256], probe[LMP_PATH_MAX + 64], name[48];
    if (lmp_mkdir_p_err(dir, why, sizeof why)) {
        snprintf(err, n, "[checkpoint] dir: %s", why);
        return;
    }
    lmp_path_join(probe, sizeof probe, dir, lmp_fmt(name, sizeof name, ".lorampi-probe-%ld", (long)getpid()));
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) {
        snprintf(err, n, "[checkpoint] dir = %s: cannot write a file there: %s", dir, strerror(errno));
        return;
    }
    int ok = close(fd) == 0;
    ok = (unlink(probe) == 0) & ok;
    struct statvfs fs;
    if (!ok || statvfs(dir, &fs) != 0) {
        snprintf(err, n, "[checkpoint] dir = %s: %s", dir, strerror(errno));
        return;
    }
    double avail = (double)fs.f_bavail * (double)fs.f_frsize;
    if (avail < bytes)
        snprintf(err, n, "[checkpoint] dir = %s: %.1f MB free, one checkpoint needs about %.1f MB "
                 "(12 bytes per trainable parameter and metadata; see lorampi plan)", dir,
                 avail / 1e6, bytes / 1e6);
}

// Before the first step, not after all of them: the checkpoint dir will take a checkpoint.
static void check_ckpt_dir(const lmp_config *cfg, lmp_comm *c, const lmp_registry *r) {
    char err[LMP_PATH_MAX + 512] = "";
    int64_t trainable, total;
    lmp_registry_counts(r, &trainable, &total);
    if (c->rank == 0) probe_ckpt_dir(cfg->checkpoint.dir, 12.0 * (double)trainable * 1.01, err, sizeof err);
    lmp_die_if_any(c, err);
}

// The lineage written into every checkpoint of this run (retention deletes only its own,
// ckpt_layout.h): the resumed checkpoint's, else a new one. A fresh run in a directory that
// holds other checkpoints is warned about them. Rank 0 decides, every rank writes it.
static void pick_lineage(const lmp_config *cfg, lmp_session *s, char *lineage, size_t n) {
    if (s->comm.rank == 0) {
        lineage[0] = 0;
        if (s->ckpt[0]) lmp_ckpt_lineage(s->ckpt, lineage, n);
        if (!lineage[0]) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            snprintf(lineage, n, "%llx-%lx-%lx", (unsigned long long)ts.tv_sec, (long)ts.tv_nsec, (long)getpid());
        }
        int k = 0;
        lmp_ckpt_entry *list = s->ckpt[0] ? NULL : lmp_ckpt_list(cfg->checkpoint.dir, &k);
        if (k)
            lmp_warn("[checkpoint] dir %s holds %d checkpoint(s) of another run (newest %s): this run "
                     "never deletes them (retention counts only its own), and a resume without "
                     "--resume picks the highest step, which may be theirs", cfg->checkpoint.dir, k,
                     list[k - 1].name);
        free(list);
    }
    LMP_CHECK_MPI(MPI_Bcast(lineage, (int)n, MPI_CHAR, 0, s->comm.world));
}

// Everything one run holds besides the session.
typedef struct {
    const lmp_config *cfg;
    const lmp_train_opts *o;
    lmp_session s;
    lmp_loader train, val;
    int have_val, eval_batches, ckpt_on;
    lmp_batches bb;
    lmp_optim_cfg oc;
    lmp_ckpt_meta meta;
    FILE *metrics;
    int skip_nonfinite;        // [train] nonfinite = skip
    float *backup;             // skip: trainable tensors, m, v before the step (3 x n_train)
    lmp_grad_buckets bk;       // [parallel] bucket_mb's buckets (none: one all-reduce after)
} run_state;

static void find_nonfinite(const lmp_registry *r, char *err, size_t n);

// Layout, data and model: every check that can fail before the first step.
static void setup(run_state *st) {
    const lmp_config *cfg = st->cfg;
    lmp_comm *c = &st->s.comm;
    lmp_comm_report(c);
    lmp_check_blas_core();
    int T = cfg->train.seq_len, Bg = cfg->train.batch_size;
    lmp_batches_init(&st->bb, Bg, T, c);
    if (cfg->parallel.sequence_parallel && c->tp_size > 1 && (long long)st->bb.B * T % c->tp_size)
        lmp_die_all("[parallel] sequence_parallel = true splits each replica's batch of %d x %d rows "
                    "([train] batch_size / dp x seq_len) over the tp = %d ranks: they must divide "
                    "evenly", st->bb.B, T, c->tp_size);
    if (!cfg->data.train[0]) lmp_die_all("[data] train is not set: give a token file");
    st->skip_nonfinite = !strcmp(cfg->train.nonfinite, "skip");
    if (!st->skip_nonfinite && strcmp(cfg->train.nonfinite, "stop"))
        lmp_die_all("[train] nonfinite = \"%s\": expected stop or skip", cfg->train.nonfinite);
    check_readable(c, "train", cfg->data.train);
    check_readable(c, "val", cfg->data.val);
    lmp_session_load(&st->s, cfg, st->o->resume, st->o->no_resume);
    lmp_model *m = &st->s.model;
    if (st->s.ckpt[0]) {  // one written before the check existed, or by another program
        char where[512], err[LMP_PATH_MAX + 900] = "";
        find_nonfinite(&m->reg, where, sizeof where);
        if (where[0])
            snprintf(err, sizeof err, "checkpoint %s: %s; resume from an older one with --resume PATH",
                     st->s.ckpt, where);
        lmp_die_if_any(c, err);
    }
    int trains = st->s.step < cfg->train.steps && !(st->o->stop_at > 0 && st->s.step >= st->o->stop_at);
    if (st->ckpt_on && trains) check_ckpt_dir(cfg, c, &m->reg);
    lmp_model_set_batch(m, st->bb.B, T);
    if (st->skip_nonfinite) st->backup = lmp_malloc(3 * m->reg.n_train * sizeof(float));
    lmp_buckets_plan(&st->bk, c, &m->reg, cfg->parallel.bucket_mb);
    lmp_loader_open(&st->train, cfg->data.train, T, st->s.mc.vocab_size, cfg->train.seed, 1);
    st->have_val = cfg->data.val[0] != 0;
    if (st->have_val) lmp_loader_open(&st->val, cfg->data.val, T, st->s.mc.vocab_size, 0, 0);
    if (st->have_val) {
        char what[LMP_PATH_MAX + 16];
        st->eval_batches = lmp_batches_available(&st->val, cfg->train.eval_batches, Bg,
                                                 lmp_fmt(what, sizeof what, "[data] val %s", cfg->data.val));
    }
}

static void report_setup(run_state *st, lmp_train_result *res) {
    const lmp_config *cfg = st->cfg;
    const lmp_model_config *mc = &st->s.mc;
    const lmp_model *m = &st->s.model;
    const lmp_comm *c = &st->s.comm;
    lmp_registry_counts(&m->reg, &res->trainable, &res->total);
    lmp_log("model: %d layers, %d heads, n_embd %d, vocab %d, context %d: %.2fM parameters\n",
            mc->n_layer, mc->n_head, mc->n_embd, mc->vocab_size, mc->n_ctx, res->total / 1e6);
    char methods[64];
    lmp_log("training: %s, %lld trainable parameters (%.3f%%), %d %s modules%s\n",
            st->s.opts.full_finetune ? "full fine-tuning" : "adapters", (long long)res->trainable,
            100.0 * res->trainable / res->total, m->n_ad - (m->kv_shared != NULL),
            lmp_config_methods(cfg->adapter.method, methods, sizeof methods),
            m->kv_shared ? " + their projection's MLP" : "");
    lmp_log("layout: %d ranks = tp %d x dp %d%s; global batch %d x %d tokens x %d accumulation\n",
            c->size, c->tp_size, c->dp_size, m->run.sp ? ", sequence parallel" : "",
            cfg->train.batch_size, cfg->train.seq_len, cfg->train.grad_accum);
    lmp_log("memory per rank: frozen %.1f MB%s, trainable %.1f MB (+ grad, m, v %.1f MB), activations "
            "%.1f MB ([train] recompute = %s)\n", lmp_registry_frozen_bytes(&m->reg) / 1e6,
            m->reg.n_frozen16 ? " (bf16 linear and embedding weights)" : "", m->reg.n_train * 4 / 1e6,
            m->reg.n_train * 12 / 1e6, m->act_floats * 4 / 1e6, lmp_recompute_name(cfg->train.recompute));
    if (st->bk.n)
        lmp_log("gradient all-reduce: %d buckets of >= %g MiB ([parallel] bucket_mb), started as the "
                "last micro-step's backward completes them\n", st->bk.n, (double)cfg->parallel.bucket_mb);
    const char *restarts = getenv("SLURM_RESTART_COUNT");
    if (restarts && atoi(restarts) > 0)
        lmp_log("Slurm restart %s of job %s\n", restarts, getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : "?");
    if (st->s.ckpt[0]) {
        lmp_log("resumed from %s: step %lld of %d (written by tp %d x dp %d)\n", st->s.ckpt,
                (long long)st->s.step, cfg->train.steps, st->s.ckpt_tp, st->s.ckpt_dp);
    } else if (st->ckpt_on) {
        char every[64] = "at the end";
        if (cfg->checkpoint.every > 0)
            snprintf(every, sizeof every, "every %d steps and at the end", cfg->checkpoint.every);
        lmp_log("checkpoints: %s/ckpt-<step>.h5 %s, keeping %d; none to resume from, starting "
                "at step 0\n", cfg->checkpoint.dir, every, cfg->checkpoint.keep);
    }
}

// The first non-finite value of this rank's trainable tensors and moments into err (size n):
// "<what> of <tensor> holds <value>"; "" when every value is finite.
static void find_nonfinite(const lmp_registry *r, char *err, size_t n) {
    err[0] = 0;
    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        const float *buf[3] = {p->data, p->m, p->v};
        static const char *what[3] = {"the tensor", "AdamW's m", "AdamW's v"};
        for (int w = 0; w < 3; w++)
            for (size_t i = 0; i < p->numel; i++)
                if (!isfinite(buf[w][i])) {
                    snprintf(err, n, "%s of %s holds %g (local element %zu)", what[w], p->name,
                             (double)buf[w][i], i);
                    return;
                }
    }
}

// Before anything is written from the tensors (a checkpoint, the exported model or adapter):
// a non-finite value stops every rank, naming the tensor and step; the newest checkpoint on
// disk stays the last good one.
static void check_finite_before_write(run_state *st, int step) {
    char where[512], err[1024] = "";
    find_nonfinite(&st->s.model.reg, where, sizeof where);
    if (where[0])
        snprintf(err, sizeof err, "after step %d %s: nothing written, the last checkpoint is the last "
                 "good state (lower [train] lr, set [train] grad_clip, or [train] nonfinite = skip)",
                 step, where);
    lmp_die_if_any(&st->s.comm, err);
}

// Test hook LORAMPI_TEST_NONFINITE=STEP: the first trainable value becomes +Inf in step STEP
// (as an overflowing update would make it) so that tests reach the non-finite checks.
static void test_nonfinite(run_state *st, int step) {
    const char *e = getenv("LORAMPI_TEST_NONFINITE");
    lmp_registry *r = &st->s.model.reg;
    if (!e || atoi(e) != step + 1) return;
    for (int k = 0; k < r->n; k++)
        if (r->p[k].trainable && r->p[k].numel) { r->p[k].data[0] = INFINITY; return; }
}

// [train] nonfinite = skip: a step that left a non-finite value anywhere is undone (the
// tensors and moments before it restored) with a warning. 1 when the step was skipped.
static int undo_if_nonfinite(run_state *st, int step) {
    lmp_registry *r = &st->s.model.reg;
    char where[512];
    find_nonfinite(r, where, sizeof where);
    int bad = where[0] != 0;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, st->s.comm.world));
    if (!bad) return 0;
    size_t n = r->n_train;
    memcpy(r->train_mem, st->backup, n * sizeof(float));
    memcpy(r->m_mem, st->backup + n, n * sizeof(float));
    memcpy(r->v_mem, st->backup + 2 * n, n * sizeof(float));
    lmp_warn("step %d skipped ([train] nonfinite = skip): it left a non-finite value%s%s; the "
             "state before it is restored", step + 1, where[0] ? ": " : " on another rank", where);
    return 1;
}

// One optimizer step: micro-batches, reductions, the divergence check, AdamW. Returns the loss.
static double train_step(run_state *st, int step, double *norm, float *lr) {
    const lmp_config *cfg = st->cfg;
    lmp_comm *c = &st->s.comm;
    lmp_model *m = &st->s.model;
    int accum = cfg->train.grad_accum, Bg = st->bb.Bg;
    lmp_registry_zero_grad(&m->reg);
    double loss = 0.0;
    float weight = lmp_batches_weight(&st->train, (int64_t)step * accum, accum, Bg);
    if (weight == 0.0f)  // a batch of prompts only: its loss would read as a perfect 0
        lmp_warn("step %d: the loss mask selects no target in its %d sequences: loss 0, nothing "
                 "learnt but weight decay", step + 1, Bg * accum);
    for (int a = 0; a < accum; a++) {
        // Gradients are final only in the last micro-step: its backward starts the buckets.
        m->bk = a == accum - 1 && st->bk.n ? &st->bk : NULL;
        loss += lmp_batches_micro(m, c, &st->train, &st->bb, (int64_t)step * accum + a, weight,
                          cfg->train.seed, 1);
    }
    m->bk = NULL;
    lmp_allreduce_d(c, &loss, 1, MPI_SUM, c->dp);
    if (st->bk.n) lmp_buckets_finish(c, &m->reg, &st->bk);
    else lmp_reduce_grads(c, &m->reg);
    *norm = lmp_grad_norm(c, &m->reg);
    if (!isfinite(loss) || !isfinite(*norm))
        lmp_die_all("training diverged at step %d: loss = %g, gradient norm = %g (lower "
                    "[train] lr or set [train] grad_clip)", step + 1, loss, *norm);
    *lr = lmp_lr_at(&st->oc, step);
    size_t n = m->reg.n_train;
    if (st->skip_nonfinite) {
        memcpy(st->backup, m->reg.train_mem, n * sizeof(float));
        memcpy(st->backup + n, m->reg.m_mem, n * sizeof(float));
        memcpy(st->backup + 2 * n, m->reg.v_mem, n * sizeof(float));
    }
    lmp_adamw_step(&m->reg, &st->oc, *lr, step + 1, lmp_clip_scale(*norm, cfg->train.grad_clip));
    test_nonfinite(st, step);
    if (st->skip_nonfinite) undo_if_nonfinite(st, step);
    return loss;
}

// Validation loss when this step evaluates (every eval_every steps and the last), else NAN.
static double maybe_eval(run_state *st, int step, int last) {
    int every = st->cfg->train.eval_every;
    if (!st->have_val || !(last || (every > 0 && (step + 1) % every == 0))) return NAN;
    return lmp_batches_eval(&st->s.model, &st->s.comm, &st->val, &st->bb, st->eval_batches);
}

static void log_step(run_state *st, int step, double loss, float lr, double norm, double dt,
                     double val_loss, double t_start) {
    const lmp_config *cfg = st->cfg;
    double tps = (double)st->bb.Bg * st->bb.T * cfg->train.grad_accum / dt;
    int last = step + 1 == cfg->train.steps;
    if ((step + 1) % cfg->log.every == 0 || last || step == 0) {
        char eta[32];
        double per = (lmp_now() - t_start) / (step + 1 - st->s.step);
        fmt_eta(eta, sizeof eta, per * (cfg->train.steps - step - 1));
        lmp_log("step %*d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f ms | %.0f tok/s | eta %s%s",
                (int)log10(cfg->train.steps) + 1, step + 1, cfg->train.steps, loss, lr, norm,
                dt * 1e3, tps, eta, isnan(val_loss) ? "\n" : "");
        if (!isnan(val_loss)) lmp_log(" | val %.4f\n", val_loss);
    }
    if (!st->metrics) return;
    json_t *o = json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "step", step + 1, "loss", loss,
                          "lr", (double)lr, "grad_norm", norm, "tokens_per_s", tps, "ms", dt * 1e3);
    if (o && !isnan(val_loss)) json_object_set_new(o, "val_loss", json_real(val_loss));
    LMP_CHECK(o && json_dumpf(o, st->metrics, JSON_COMPACT) == 0 && fputc('\n', st->metrics) != EOF,
              "cannot write metrics to %s", cfg->log.metrics);
    fflush(st->metrics);
    json_decref(o);
}

// After step `step`: agree on a stop (--stop-at, or a signal on any rank: one small
// all-reduce per step, so every rank stops at the same step), write a checkpoint when one
// is due. Returns 0 to go on, 1 stopped by --stop-at, 2 by a signal.
static int stop_and_checkpoint(run_state *st, int step, float lr) {
    const lmp_config *cfg = st->cfg;
    int last = step + 1 == cfg->train.steps;
    int stop = st->o->stop_at > 0 && step + 1 >= st->o->stop_at && !last;
    int sig = stop_signal;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, st->s.comm.world));
    if (sig && !last) stop = 2;
    int every = cfg->checkpoint.every;
    if (st->ckpt_on && (last || stop || (every > 0 && (step + 1) % every == 0))) {
        check_finite_before_write(st, step + 1);
        st->meta.step = step + 1;
        st->meta.lr = lr;
        lmp_ckpt_save(cfg->checkpoint.dir, cfg->checkpoint.keep, &st->s.model.reg, &st->s.comm,
                      cfg, &st->meta);
    }
    if (stop == 2) {
        if (!st->ckpt_on) lmp_warn("no [checkpoint] dir: stopping on the signal without a checkpoint");
        lmp_log("received %s: stopped after step %d with a checkpoint; exit code %d, the same "
                "command resumes\n", sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM", step + 1, LMP_EXIT_REQUEUE);
    } else if (stop) {
        lmp_log("stopped after step %d (--stop-at); the same command resumes from there\n", step + 1);
    }
    return stop;
}

// The steps from the session's step to [train] steps (or a stop). Returns the steps done.
static int train_loop(run_state *st, lmp_train_result *res) {
    const lmp_config *cfg = st->cfg;
    int start = (int)st->s.step, step = start;
    double t_start = lmp_now(), t_after_first = 0;
    for (; step < cfg->train.steps && !res->stopped; step++) {
        double t0 = lmp_now(), norm;
        float lr;
        double loss = train_step(st, step, &norm, &lr);
        double dt = lmp_now() - t0;
        if (step == start) { res->first_loss = loss; t_after_first = lmp_now(); }
        res->last_loss = loss;
        int last = step + 1 == cfg->train.steps;
        double val_loss = maybe_eval(st, step, last);
        if (!isnan(val_loss)) res->last_val = val_loss;
        log_step(st, step, loss, lr, norm, dt, val_loss, t_start);
        res->stopped = stop_and_checkpoint(st, step, lr);
    }
    int ran = step - start;
    res->tokens_per_s = ran > 1 ? (double)st->bb.Bg * st->bb.T * cfg->train.grad_accum * (ran - 1) /
                                      (lmp_now() - t_after_first) : 0;
    return step;
}

// What a finished run writes and reports.
static void finish(run_state *st, lmp_train_result *res) {
    const lmp_config *cfg = st->cfg;
    lmp_comm *c = &st->s.comm;
    lmp_model *m = &st->s.model;
    if ((cfg->train.save_model[0] || cfg->train.save_adapter[0]) && !res->stopped)
        check_finite_before_write(st, res->steps);
    if (cfg->train.save_model[0] && !res->stopped) {
        // The trained weights with the adapters merged (full fine-tuning: no adapters), by
        // every tp rank of dp replica 0 into one file: the code of `lorampi merge`.
        lmp_merged_opts mo = {LMP_MERGED_HF, LMP_DT_F32, cfg->model.path};
        lmp_merged_save(cfg->train.save_model, &st->s, &mo);
        lmp_log("saved model to %s\n", cfg->train.save_model);
    }
    if (cfg->train.save_adapter[0] && !st->s.opts.full_finetune && !res->stopped) {
        lmp_model_refresh_adapters(m);  // the projected prefixes from the last step's MLP
        if (c->rank == 0) lmp_adapters_save(cfg->train.save_adapter, &m->reg, cfg);
        lmp_log("saved adapter to %s\n", cfg->train.save_adapter);
    }
    int ran = res->steps - res->start_step;
    if (ran > 0)
        lmp_log("communication: %.1f ms per step in collectives, of which the gradient all-reduce %.1f ms%s; "
                "%.1f MB %s per step\n", 1e3 * c->comm_seconds / ran, 1e3 * c->grad_seconds / ran,
                st->bk.n ? " (exposed: its buckets' overlap with the backward not counted)" : "",
                c->comm_bytes / 1e6 / ran,
                m->run.sp ? "of collective buffers (all-reduced, reduce-scattered, all-gathered)" : "all-reduced");
    double rss[2] = {(double)lmp_peak_rss(), -(double)lmp_peak_rss()};
    lmp_allreduce_d(c, rss, 2, MPI_MAX, c->world);
    lmp_log("peak RSS per rank: max %.1f MB, min %.1f MB\n", rss[0] / 1e6, -rss[1] / 1e6);
    res->peak_rss_max = rss[0];
}

int lmp_train(const lmp_config *cfg, const lmp_train_opts *o, lmp_train_result *res) {
    if (o->stop_at > 0 && !cfg->checkpoint.dir[0])
        lmp_die_all("--stop-at needs [checkpoint] dir: the run would stop without saving its state");
    install_stop_handlers();
    run_state st = {.cfg = cfg, .o = o, .ckpt_on = cfg->checkpoint.dir[0] != 0};
    lmp_session_open(&st.s, cfg);
    setup(&st);
    report_setup(&st, res);
    int start = (int)st.s.step;
    res->start_step = start;
    res->stopped = 0;
    if (st.s.comm.rank == 0 && cfg->log.metrics[0]) st.metrics = open_metrics(cfg->log.metrics, start);
    if (st.s.comm.rank == 0 && st.ckpt_on && start < cfg->train.steps) finished_marker(cfg, 0, 0);
    res->first_val = res->last_val = res->first_loss = res->last_loss = NAN;
    if (st.have_val && start == 0) {
        res->first_val = lmp_batches_eval(&st.s.model, &st.s.comm, &st.val, &st.bb, st.eval_batches);
        lmp_log("val loss before training: %.4f\n", res->first_val);
    }
    st.oc = (lmp_optim_cfg){cfg->train.lr, cfg->train.beta1, cfg->train.beta2, cfg->train.eps,
                            cfg->train.weight_decay, cfg->train.warmup_steps, cfg->train.steps,
                            cfg->train.schedule, cfg->train.min_lr_ratio};
    st.meta = (lmp_ckpt_meta){0, 0.0f, st.s.base_checksum, (int64_t)st.bb.Bg * cfg->train.grad_accum,
                              st.train.n_windows, ""};
    if (st.ckpt_on) pick_lineage(cfg, &st.s, st.meta.lineage, sizeof st.meta.lineage);
    if (o->stop_at > 0 && start >= o->stop_at && start < cfg->train.steps) {
        lmp_log("already at step %d, at or past --stop-at %d: nothing to do\n", start, o->stop_at);
        res->stopped = 1;
    }
    res->steps = train_loop(&st, res);
    if (st.metrics) fclose(st.metrics);
    if (st.s.comm.rank == 0 && st.ckpt_on && res->steps == cfg->train.steps && !res->stopped)
        finished_marker(cfg, 1, res->steps);
    finish(&st, res);
    lmp_loader_close(&st.train);
    if (st.have_val) lmp_loader_close(&st.val);
    lmp_batches_free(&st.bb);
    free(st.backup);
    lmp_buckets_free(&st.bk);
    lmp_session_close(&st.s);
    return 0;
}
