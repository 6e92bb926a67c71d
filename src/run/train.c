// train.c: the training loop.
#include "run/train.h"
#include "io/ckpt_hdf5.h"
#include "core/comm.h"
#include "data/data.h"
#include "model/gpt2.h"
#include "core/optim.h"
#include "io/peft.h"
#include "core/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int B, T, Bg;           // this replica's rows, sequence length, global rows per micro-step
    int *tok, *tgt;
    float *scale;
} batch_buf;

// Fills this replica's rows of global micro-batch `micro` and runs forward (+backward).
// The loss is the mean over the targets that count (loss mask) in the optimizer step's
// global batch: `weight` = 1 / their number (batch_weight).
static double run_micro(lmp_gpt2 *m, lmp_comm *c, lmp_loader *d, batch_buf *bb, int64_t micro,
                        float weight, uint64_t seed, int backward) {
    for (int b = 0; b < bb->B; b++) {
        int64_t idx = lmp_batch_seq(micro, bb->Bg, c->dp_rank, bb->B, b);
        size_t o = (size_t)b * bb->T;
        lmp_loader_get(d, idx, bb->tok + o, bb->tgt + o, bb->scale + o);
    }
    for (int i = 0; i < bb->B * bb->T; i++) bb->scale[i] *= weight;
    lmp_rng_ctx rc = {seed, (uint64_t)micro,
                      lmp_batch_seq(micro, bb->Bg, c->dp_rank, bb->B, 0) * bb->T, backward};
    return lmp_gpt2_step(m, bb->tok, bb->tgt, bb->scale, &rc, backward);
}

// 1 / (targets that count in global micro-batches [m0, m0 + n)), 0 when none does. Every
// rank computes it over the whole global batch, so no communication is needed.
static float batch_weight(lmp_loader *d, int64_t m0, int n, int Bg) {
    int64_t count = 0;
    for (int64_t i = m0 * Bg; i < (m0 + n) * Bg; i++) count += lmp_loader_count(d, i);
    return count ? 1.0f / (float)count : 0.0f;
}

static double evaluate(lmp_gpt2 *m, lmp_comm *c, lmp_loader *val, batch_buf *bb, int batches) {
    float w = batch_weight(val, 0, batches, bb->Bg);
    double loss = 0.0;
    for (int k = 0; k < batches; k++) loss += run_micro(m, c, val, bb, k, w, 0, 0);
    lmp_allreduce_d(c, &loss, 1, MPI_SUM, c->dp);
    return loss;
}

// A resumed run continues the metrics file: lines of steps after the checkpoint (done by
// the interrupted run, redone now) are dropped so each step appears once.
static FILE *open_metrics(const char *path, int start) {
    if (start > 0) {
        FILE *f = fopen(path, "r");
        if (f) {
            char tmp[LMP_PATH_MAX + 8], line[4096];
            snprintf(tmp, sizeof tmp, "%s.tmp", path);
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

void lmp_pick_resume(const lmp_config *cfg, const lmp_train_opts *o, lmp_comm *c, char *path,
                     size_t n) {
    path[0] = 0;
    if (o->resume) snprintf(path, n, "%s", o->resume);
    else if (cfg->checkpoint.dir[0] && !o->no_resume)
        lmp_ckpt_find_latest(cfg->checkpoint.dir, path, n, c);
}

static void fmt_eta(char *buf, size_t n, double s) {
    int t = (int)(s + 0.5);
    snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
}

void lmp_init_weights(const lmp_config *cfg, lmp_gpt2 *m) {
    if (cfg->model.path[0]) lmp_model_load(cfg->model.path, &m->reg);
    else lmp_gpt2_init_base(m, cfg->train.seed);
    lmp_gpt2_init_adapters(m, cfg->adapter.init == LMP_INIT_GAUSSIAN, cfg->adapter.seed);
}

void lmp_resolve_model(const lmp_config *cfg, lmp_model_config *mc_out, lmp_gpt2_opts *opts,
                       unsigned char *layer_on) {
    lmp_model_config mc;
    if (cfg->model.path[0]) {
        lmp_model_read_config(cfg->model.path, &mc);
    } else {
        mc = (lmp_model_config){cfg->model.n_layer, cfg->model.n_head, cfg->model.n_embd,
                                cfg->model.vocab_size, cfg->model.n_ctx, 1e-5f};
        if (mc.n_embd % mc.n_head)
            lmp_die_all("[model] n_embd = %d is not a multiple of n_head = %d", mc.n_embd, mc.n_head);
    }
    if (mc.n_layer > LMP_MAX_LAYERS)
        lmp_die_all("model has %d layers; lorampi supports up to %d", mc.n_layer, LMP_MAX_LAYERS);
    memset(layer_on, cfg->adapter.n_layers ? 0 : 1, LMP_MAX_LAYERS);
    for (int i = 0; i < cfg->adapter.n_layers; i++) {
        if (cfg->adapter.layers[i] >= mc.n_layer)
            lmp_die_all("[adapter] layers names layer %d, but the model has %d layers (0..%d)",
                        cfg->adapter.layers[i], mc.n_layer, mc.n_layer - 1);
        layer_on[cfg->adapter.layers[i]] = 1;
    }
    int lora = cfg->adapter.method == LMP_METHOD_LORA;
    *opts = (lmp_gpt2_opts){.full_finetune = !lora,
                            .lora_targets = lora ? cfg->adapter.targets : 0,
                            .lora_r = cfg->adapter.r,
                            .lora_alpha = cfg->adapter.alpha,
                            .lora_dropout = cfg->adapter.dropout,
                            .rslora = cfg->adapter.rslora,
                            .layer_on = layer_on};
    if (cfg->train.seq_len > mc.n_ctx)
        lmp_die_all("[train] seq_len = %d exceeds the model's context length %d",
                    cfg->train.seq_len, mc.n_ctx);
    *mc_out = mc;
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

int lmp_train(const lmp_config *cfg, const lmp_train_opts *o, lmp_train_result *res) {
    if (o->stop_at > 0 && !cfg->checkpoint.dir[0])
        lmp_die_all("--stop-at needs [checkpoint] dir: the run would stop without saving its state");
    install_stop_handlers();
    lmp_comm comm;
    lmp_comm_init(&comm, MPI_COMM_WORLD, cfg->parallel.tp);
    lmp_comm_report(&comm);
    lmp_check_blas_core();

    lmp_model_config mc;
    lmp_gpt2_opts opts;
    unsigned char layer_on[LMP_MAX_LAYERS];
    lmp_resolve_model(cfg, &mc, &opts, layer_on);
    int lora = !opts.full_finetune;
    int T = cfg->train.seq_len, Bg = cfg->train.batch_size, accum = cfg->train.grad_accum;
    if (Bg % comm.dp_size)
        lmp_die_all("[train] batch_size = %d (the global batch) is not divisible by the %d "
                    "data-parallel replicas", Bg, comm.dp_size);
    if (!cfg->data.train[0]) lmp_die_all("[data] train is not set: give a token file");
    check_readable(&comm, "train", cfg->data.train);
    check_readable(&comm, "val", cfg->data.val);

    lmp_gpt2 m;
    lmp_gpt2_build(&m, &mc, &opts, &comm);
    lmp_init_weights(cfg, &m);
    batch_buf bb = {Bg / comm.dp_size, T, Bg, NULL, NULL, NULL};
    lmp_gpt2_set_batch(&m, bb.B, T);
    bb.tok = lmp_malloc((size_t)bb.B * T * sizeof(int));
    bb.tgt = lmp_malloc((size_t)bb.B * T * sizeof(int));
    bb.scale = lmp_malloc((size_t)bb.B * T * sizeof(float));

    lmp_loader train, val;
    lmp_loader_open(&train, cfg->data.train, T, mc.vocab_size, cfg->train.seed, 1);
    int have_val = cfg->data.val[0] != 0;
    if (have_val) lmp_loader_open(&val, cfg->data.val, T, mc.vocab_size, 0, 0);

    int64_t n_train, n_total;
    lmp_registry_counts(&m.reg, &n_train, &n_total);
    lmp_log("model: %d layers, %d heads, n_embd %d, vocab %d, context %d: %.2fM parameters\n",
            mc.n_layer, mc.n_head, mc.n_embd, mc.vocab_size, mc.n_ctx, n_total / 1e6);
    lmp_log("training: %s, %lld trainable parameters (%.3f%%), %d LoRA modules\n",
            lora ? "LoRA" : "full fine-tuning", (long long)n_train, 100.0 * n_train / n_total,
            m.n_lora);
    lmp_log("layout: %d ranks = tp %d x dp %d; global batch %d x %d tokens x %d accumulation\n",
            comm.size, comm.tp_size, comm.dp_size, Bg, T, accum);
    lmp_log("memory per rank: frozen %.1f MB, trainable %.1f MB (+ grad, m, v %.1f MB)\n",
            m.reg.n_frozen * 4 / 1e6, m.reg.n_train * 4 / 1e6, m.reg.n_train * 12 / 1e6);

    // Resume: the base weights must be those the checkpoint was trained from (checksum).
    char resume[LMP_PATH_MAX + 300];
    lmp_pick_resume(cfg, o, &comm, resume, sizeof resume);
    int ckpt_on = cfg->checkpoint.dir[0] != 0, start = 0;
    uint64_t base_sum = (ckpt_on || resume[0]) ? lmp_base_checksum(&m.reg, &comm) : 0;
    const char *restarts = getenv("SLURM_RESTART_COUNT");
    if (restarts && atoi(restarts) > 0)
        lmp_log("Slurm restart %s of job %s\n", restarts, getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : "?");
    if (resume[0]) {
        int ctp, cdp;
        start = (int)lmp_ckpt_load(resume, &m.reg, &comm, cfg, base_sum, &ctp, &cdp);
        lmp_log("resumed from %s: step %d of %d (written by tp %d x dp %d)\n", resume, start,
                cfg->train.steps, ctp, cdp);
    } else if (ckpt_on) {
        char every[64] = "at the end";
        if (cfg->checkpoint.every > 0)
            snprintf(every, sizeof every, "every %d steps and at the end", cfg->checkpoint.every);
        lmp_log("checkpoints: %s/ckpt-<step>.h5 %s, keeping %d; none to resume from, starting "
                "at step 0\n", cfg->checkpoint.dir, every, cfg->checkpoint.keep);
    }
    res->start_step = start;
    res->stopped = 0;

    FILE *metrics = NULL;
    if (comm.rank == 0 && cfg->log.metrics[0]) metrics = open_metrics(cfg->log.metrics, start);
    int eval_batches = cfg->train.eval_batches;
    if (have_val && eval_batches * (int64_t)Bg > val.n_windows) {
        eval_batches = (int)(val.n_windows / Bg);
        if (eval_batches < 1)
            lmp_die_all("[data] val %s holds %lld sequences of %d tokens, fewer than one global "
                        "batch of %d", cfg->data.val, (long long)val.n_windows, T, Bg);
    }
    res->first_val = res->last_val = res->first_loss = res->last_loss = NAN;
    if (have_val && start == 0) {
        res->first_val = evaluate(&m, &comm, &val, &bb, eval_batches);
        lmp_log("val loss before training: %.4f\n", res->first_val);
    }

    lmp_optim_cfg oc = {cfg->train.lr, cfg->train.beta1, cfg->train.beta2, cfg->train.eps,
                        cfg->train.weight_decay, cfg->train.warmup_steps, cfg->train.steps,
                        cfg->train.schedule, cfg->train.min_lr_ratio};
    double t_start = lmp_now(), t_after_first = 0;
    lmp_ckpt_meta meta = {0, 0.0f, base_sum, (int64_t)Bg * accum, train.n_windows};
    int step = start;
    if (o->stop_at > 0 && start >= o->stop_at && start < cfg->train.steps) {
        lmp_log("already at step %d, at or past --stop-at %d: nothing to do\n", start, o->stop_at);
        res->stopped = 1;
    }
    for (; step < cfg->train.steps && !res->stopped; step++) {
        double t0 = lmp_now();
        lmp_registry_zero_grad(&m.reg);
        double loss = 0.0;
        float weight = batch_weight(&train, (int64_t)step * accum, accum, Bg);
        for (int a = 0; a < accum; a++)
            loss += run_micro(&m, &comm, &train, &bb, (int64_t)step * accum + a, weight,
                              cfg->train.seed, 1);
        lmp_allreduce_d(&comm, &loss, 1, MPI_SUM, comm.dp);
        lmp_reduce_grads(&comm, &m.reg);
        double norm = lmp_grad_norm(&comm, &m.reg);
        if (!isfinite(loss) || !isfinite(norm))
            lmp_die_all("training diverged at step %d: loss = %g, gradient norm = %g (lower "
                        "[train] lr or set [train] grad_clip)", step + 1, loss, norm);
        float lr = lmp_lr_at(&oc, step);
        lmp_adamw_step(&m.reg, &oc, lr, step + 1, lmp_clip_scale(norm, cfg->train.grad_clip));
        double dt = lmp_now() - t0;
        if (step == start) { res->first_loss = loss; t_after_first = lmp_now(); }
        res->last_loss = loss;
        double tps = (double)Bg * T * accum / dt;
        double val_loss = NAN;
        int last = step + 1 == cfg->train.steps;
        if (have_val && cfg->train.eval_every > 0 && ((step + 1) % cfg->train.eval_every == 0 || last))
            val_loss = evaluate(&m, &comm, &val, &bb, eval_batches);
        if (have_val && last && isnan(val_loss)) val_loss = evaluate(&m, &comm, &val, &bb, eval_batches);
        if (!isnan(val_loss)) res->last_val = val_loss;
        if ((step + 1) % cfg->log.every == 0 || last || step == 0) {
            char eta[32];
            double per = (lmp_now() - t_start) / (step + 1 - start);
            fmt_eta(eta, sizeof eta, per * (cfg->train.steps - step - 1));
            lmp_log("step %*d/%d | loss %.4f | lr %.2e | norm %.3f | %.0f ms | %.0f tok/s | eta %s%s",
                    (int)log10(cfg->train.steps) + 1, step + 1, cfg->train.steps, loss, lr, norm,
                    dt * 1e3, tps, eta, isnan(val_loss) ? "\n" : "");
            if (!isnan(val_loss)) lmp_log(" | val %.4f\n", val_loss);
        }
        if (metrics) {
            json_t *o = json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "step", step + 1, "loss", loss,
                                  "lr", (double)lr, "grad_norm", norm, "tokens_per_s", tps,
                                  "ms", dt * 1e3);
            if (!isnan(val_loss)) json_object_set_new(o, "val_loss", json_real(val_loss));
            LMP_CHECK(o && json_dumpf(o, metrics, JSON_COMPACT) == 0 && fputc('\n', metrics) != EOF,
                      "cannot write metrics to %s", cfg->log.metrics);
            fflush(metrics);
            json_decref(o);
        }
        int stop = o->stop_at > 0 && step + 1 >= o->stop_at && !last;
        int sig = stop_signal;  // one small all-reduce per step: every rank stops at the same step
        LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, comm.world));
        if (sig && !last) stop = 2;
        int every = cfg->checkpoint.every;
        if (ckpt_on && (last || stop || (every > 0 && (step + 1) % every == 0))) {
            meta.step = step + 1;
            meta.lr = lr;
            lmp_ckpt_save(cfg->checkpoint.dir, cfg->checkpoint.keep, &m.reg, &comm, cfg, &meta);
        }
        if (stop == 2) {
            res->stopped = 2;
            if (!ckpt_on) lmp_warn("no [checkpoint] dir: stopping on the signal without a checkpoint");
            lmp_log("received %s: stopped after step %d with a checkpoint; exit code %d, the same "
                    "command resumes\n", sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM", step + 1, LMP_EXIT_REQUEUE);
        } else if (stop) {
            res->stopped = 1;
            lmp_log("stopped after step %d (--stop-at); the same command resumes from there\n",
                    step + 1);
        }
    }
    res->steps = step;
    int ran = step - start;
    double rest = lmp_now() - t_after_first;
    res->tokens_per_s = ran > 1 ? (double)Bg * T * accum * (ran - 1) / rest : 0;
    res->trainable = n_train;
    res->total = n_total;
    if (metrics) fclose(metrics);

    if (cfg->train.save_model[0] && !res->stopped) {
        if (comm.tp_size > 1) lmp_die_all("[train] save_model needs tp = 1 for now");
        if (comm.rank == 0) lmp_model_save_hf(cfg->train.save_model, &mc, &m.reg);
        lmp_log("saved model to %s\n", cfg->train.save_model);
    }
    if (cfg->train.save_adapter[0] && lora && !res->stopped) {
        if (comm.rank == 0) lmp_peft_save(cfg->train.save_adapter, &m, cfg);
        lmp_log("saved adapter to %s\n", cfg->train.save_adapter);
    }
    if (ran > 0)
        lmp_log("communication: %.1f ms per step in collectives, %.1f MB all-reduced per step\n",
                1e3 * comm.comm_seconds / ran, comm.comm_bytes / 1e6 / ran);
    double rss[2] = {(double)lmp_peak_rss(), -(double)lmp_peak_rss()};
    lmp_allreduce_d(&comm, rss, 2, MPI_MAX, comm.world);
    lmp_log("peak RSS per rank: max %.1f MB, min %.1f MB\n", rss[0] / 1e6, -rss[1] / 1e6);
    res->peak_rss_max = rss[0];
    lmp_loader_close(&train);
    if (have_val) lmp_loader_close(&val);
    free(bb.tok);
    free(bb.tgt);
    free(bb.scale);
    lmp_gpt2_free(&m);
    lmp_comm_free(&comm);
    return 0;
}
