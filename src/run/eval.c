// eval.c: loss of a model and its adapter on held-out data (eval.h).
#include "run/eval.h"
#include "core/util.h"
#include "run/batches.h"
#include "run/session.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int lmp_eval(const lmp_config *cfg, const lmp_train_opts *o, const lmp_eval_opts *e) {
    const char *data = e->data ? e->data : cfg->data.val;
    if (!data[0]) lmp_die_all("eval: give --data FILE or set [data] val");
    lmp_session s;
    lmp_session_open(&s, cfg);
    int T = cfg->train.seq_len, Bg = cfg->train.batch_size;
    lmp_batches bb;
    lmp_batches_init(&bb, Bg, T, &s.comm);
    lmp_session_load(&s, cfg, o->resume, o->no_resume);
    lmp_loader d;
    lmp_loader_open(&d, data, T, s.mc.vocab_size, 0, 0);
    char what[LMP_PATH_MAX + 16];
    int batches = lmp_batches_available(&d, e->batches > 0 ? e->batches : cfg->train.eval_batches,
                                        Bg, lmp_fmt(what, sizeof what, "eval: %s", data));
    lmp_model_set_batch(&s.model, bb.B, T);
    double loss = lmp_batches_eval(&s.model, &s.comm, &d, &bb, batches);
    int64_t tokens = lmp_batches_targets(&d, batches, Bg);
    const char *ckpt = s.ckpt[0] ? s.ckpt : "no checkpoint";
    lmp_log("eval: %s with %s on %s: loss %.6f, perplexity %.4f, %lld tokens in %d batches of %d x %d\n",
            cfg->model.path[0] ? cfg->model.path : "the model", ckpt, data, loss, exp(loss),
            (long long)tokens, batches, Bg, T);
    if (s.comm.rank == 0) {
        json_t *j = json_pack("{s:f, s:f, s:I, s:i, s:s, s:s, s:I}", "loss", loss, "perplexity",
                              exp(loss), "tokens", (json_int_t)tokens, "sequences", batches * Bg,
                              "data", data, "checkpoint", s.ckpt, "step", (json_int_t)s.step);
        LMP_CHECK(j && json_dumpf(j, stdout, JSON_COMPACT) == 0, "eval: cannot print the JSON line");
        printf("\n");
        fflush(stdout);
        json_decref(j);
    }
    lmp_batches_free(&bb);
    lmp_loader_close(&d);
    lmp_session_close(&s);
    return 0;
}
