// The Llama family against Hugging Face transformers (run on 4 ranks): each fixture model of
// tests/fixtures/hf-tiny (llama: GQA, untied head; qwen2: q/k/v biases, tied; qwen3:
// q/k norm, head_dim given) is read from its directory (config.json, model.safetensors) on
// the layouts (tp, dp) = (1,1), (2,1), (1,2), (2,2) (tp = 2 splits the 2 KV heads) and must
// give transformers' logits of the fixture batch (ref.safetensors; max abs difference
// <= 2e-5) and its mean cross-entropy (ref.json "loss"; 1e-5 relative). The same from a
// sharded copy (two model-0000i-of-00002.safetensors files and an index). With the
// fixture's PEFT LoRA adapter (lora/: r 4, alpha 8, on its target_modules; read here by a
// test-only reader of adapter_model.safetensors, the [adapter] init_from reader being
// another change): the adapted loss (ref.json lora.loss, 1e-5 relative) and the losses of 5
// AdamW steps (lora.adamw_losses: lr 1e-3, wd 0, eps 1e-8; 1e-4 relative), on every layout.
#include "testutil.h"
#include "io/model_io.h"
#include "model/model.h"
#include "core/optim.h"

#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LMP_HF_TINY
#define LMP_HF_TINY "tests/fixtures/hf-tiny"
#endif

enum { BG = 2, T = 16 };

typedef struct {
    int ids[BG * T];
    float *logits;  // (BG*T, V)
    double loss;
    int V;
    double lora_loss, adamw[5];
    int n_adamw, targets;
} fixture;

// PEFT module names of adapter_config.json's target_modules -> LMP_T_* bits.
static int peft_targets(json_t *tm) {
    static const struct { const char *n; int bit; } M[] = {
        {"q_proj", LMP_T_Q_PROJ}, {"k_proj", LMP_T_K_PROJ}, {"v_proj", LMP_T_V_PROJ},
        {"o_proj", LMP_T_O_PROJ}, {"gate_proj", LMP_T_GATE_PROJ}, {"up_proj", LMP_T_UP_PROJ},
        {"down_proj", LMP_T_DOWN_PROJ}};
    size_t i;
    json_t *v;
    int bits = 0;
    json_array_foreach(tm, i, v)
        for (int k = 0; k < 7; k++)
            if (!strcmp(json_string_value(v), M[k].n)) bits |= M[k].bit;
    return bits;
}

static void read_lora_refs(const char *name, fixture *f) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/ref.json", LMP_HF_TINY, name);
    json_t *o = json_load_file(path, 0, NULL), *l = json_object_get(o, "lora");
    f->lora_loss = json_number_value(json_object_get(l, "loss"));
    json_t *a = json_object_get(l, "adamw_losses");
    f->n_adamw = (int)json_array_size(a);
    for (int i = 0; i < f->n_adamw && i < 5; i++) f->adamw[i] = json_number_value(json_array_get(a, i));
    json_decref(o);
    snprintf(path, sizeof path, "%s/%s/lora/adapter_config.json", LMP_HF_TINY, name);
    o = json_load_file(path, 0, NULL);
    T_CHECK(o && json_integer_value(json_object_get(o, "r")) == 4 &&
            json_number_value(json_object_get(o, "lora_alpha")) == 8, "%s: r 4, alpha 8 expected", path);
    f->targets = peft_targets(json_object_get(o, "target_modules"));
    json_decref(o);
}

// input_ids (int64, read as raw bytes: safetensors.c converts floats only) and logits.
static void read_fixture(const char *name, fixture *f) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/ref.safetensors", LMP_HF_TINY, name);
    lmp_st_file st;
    lmp_st_open(&st, path);
    const lmp_st_tensor *ids = lmp_st_find(&st, "input_ids"), *lg = lmp_st_find(&st, "logits");
    T_CHECK(ids && lg && ids->end - ids->begin == 8 * BG * T, "%s: input_ids, logits", path);
    int64_t raw[BG * T];
    FILE *fp = fopen(path, "rb");
    T_CHECK(fp && fseek(fp, (long)ids->begin, SEEK_SET) == 0 && fread(raw, 8, BG * T, fp) == BG * T,
            "%s: cannot read input_ids", path);
    if (fp) fclose(fp);
    for (int i = 0; i < BG * T; i++) f->ids[i] = (int)raw[i];
    f->V = (int)lg->shape[2];
    f->logits = malloc(sizeof(float) * BG * T * f->V);
    lmp_st_read_block(&st, lg, 0, 1, 0, (int64_t)BG * T * f->V, f->logits);
    lmp_st_close(&st);
    snprintf(path, sizeof path, "%s/%s/ref.json", LMP_HF_TINY, name);
    json_t *o = json_load_file(path, 0, NULL);
    T_CHECK(o != NULL, "%s: cannot read", path);
    f->loss = json_number_value(json_object_get(o, "loss"));
    json_decref(o);
    read_lora_refs(name, f);
}

// Test-only reader of a PEFT adapter: every record's lora_A (r, in) and lora_B (out, r),
// whole on every rank, from "base_model.model.<module>.lora_{A,B}.weight".
static void load_peft(lmp_model *m, const char *name) {
    char path[1024], key[LMP_NAME_MAX + 64];
    snprintf(path, sizeof path, "%s/%s/lora/adapter_model.safetensors", LMP_HF_TINY, name);
    lmp_st_file st;
    lmp_st_open(&st, path);
    for (int i = 0; i < m->reg.n_rec; i++)
        for (int k = 0; k < 2; k++) {
            lmp_param *p = lmp_rec_tensor(&m->reg, &m->reg.rec[i], k);
            snprintf(key, sizeof key, "base_model.model.%s.lora_%c.weight", m->reg.rec[i].module, k ? 'B' : 'A');
            const lmp_st_tensor *t = lmp_st_find(&st, key);
            T_CHECK(t && t->shape[0] == p->shape[0] && t->shape[1] == p->shape[1], "%s: %s", path, key);
            if (t) lmp_st_read_block(&st, t, 0, t->shape[0], 0, t->shape[1], p->data);
        }
    lmp_st_close(&st);
}

// The fixture batch's loss (mean over dp) and, with backward, the reduced gradients.
static double batch_loss(lmp_model *m, lmp_comm *c, const fixture *f, int backward) {
    int N = m->B * T, off = c->dp_rank * N;
    int tgt[BG * T];
    float scale[BG * T];
    for (int n = 0; n < BG * T; n++) {  // the window's next token; the data repeat period T
        tgt[n] = f->ids[(n / T) * T + (n % T + 1) % T];
        scale[n] = 1.0f / (BG * T);
    }
    lmp_rng_ctx rc = {1, 0, off, 1};
    if (backward) lmp_registry_zero_grad(&m->reg);
    double loss = lmp_model_step(m, f->ids + off, tgt + off, scale + off, &rc, backward);
    lmp_allreduce_d(c, &loss, 1, MPI_SUM, c->dp);
    if (backward) lmp_reduce_grads(c, &m->reg);
    return loss;
}

// LoRA from the fixture's adapter: its loss, then 5 AdamW steps (the loss before each, as
// transformers' trajectory); relative differences into d[0] (loss) and d[1] (worst step).
static void run_lora(MPI_Comm world, const char *dir, const char *name, int tp, const fixture *f, double *d) {
    lmp_comm c;
    lmp_comm_init(&c, world, tp);
    lmp_model_config cfg;
    lmp_model_read_config(dir, &cfg);
    lmp_model_opts o = {.targets = f->targets, .ad = {.r = 4, .alpha = 8}};
    lmp_model m;
    lmp_model_build(&m, &cfg, &o, &c);
    lmp_model_load(dir, &m.reg);
    load_peft(&m, name);
    lmp_model_set_batch(&m, BG / c.dp_size, T);
    d[0] = fabs(batch_loss(&m, &c, f, 0) - f->lora_loss) / f->lora_loss;
    d[1] = 0;
    lmp_optim_cfg oc = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 5, 2, 0};
    for (int s = 0; s < f->n_adamw; s++) {
        double l = batch_loss(&m, &c, f, 1);
        d[1] = fmax(d[1], fabs(l - f->adamw[s]) / f->adamw[s]);
        lmp_adamw_step(&m.reg, &oc, 1e-3f, s + 1, 1.0f);
    }
    lmp_model_free(&m);
    lmp_comm_free(&c);
}

// Builds the model of dir on `world` as tp x dp, loads it, and compares its logits and loss
// on the fixture batch (dp replica d: rows d*B..) with transformers'. Returns the largest
// logit difference on rank 0 (else 0); *dloss the relative loss difference.
static double run_layout(MPI_Comm world, const char *dir, int tp, const fixture *f, double *dloss) {
    lmp_comm c;
    lmp_comm_init(&c, world, tp);
    lmp_model_config cfg;
    lmp_model_read_config(dir, &cfg);
    lmp_model_opts o = {0};
    lmp_model m;
    lmp_model_build(&m, &cfg, &o, &c);
    lmp_model_load(dir, &m.reg);
    int B = BG / c.dp_size, N = B * T, off = c.dp_rank * N, V = cfg.vocab_size;
    int tgt[BG * T];
    float scale[BG * T];
    for (int n = 0; n < BG * T; n++) {  // the window's next token; the data repeat period T
        tgt[n] = f->ids[(n / T) * T + (n % T + 1) % T];
        scale[n] = 1.0f / (BG * T);
    }
    lmp_model_set_batch(&m, B, T);
    lmp_rng_ctx rc = {1, 0, off, 1};
    double loss = lmp_model_step(&m, f->ids + off, tgt + off, scale + off, &rc, 0);
    lmp_allreduce_d(&c, &loss, 1, MPI_SUM, c.dp);
    float *lg = malloc(sizeof(float) * BG * T * V);
    lmp_model_logits(&m, f->ids + off, lg + (size_t)off * V);
    if (c.tp_rank == 0 && c.dp_size > 1)
        MPI_Gather(c.dp_rank == 0 ? MPI_IN_PLACE : lg + (size_t)off * V, N * V, MPI_FLOAT, lg,
                   N * V, MPI_FLOAT, 0, c.dp);
    double worst = 0;
    if (c.rank == 0)
        for (size_t i = 0; i < (size_t)BG * T * V; i++) worst = fmax(worst, fabs(lg[i] - f->logits[i]));
    *dloss = fabs(loss - f->loss) / f->loss;
    free(lg);
    lmp_model_free(&m);
    lmp_comm_free(&c);
    return worst;
}

// Every layout on the ranks it needs (the others wait); checks on rank 0.
static void check_dir(const char *label, const char *dir, const fixture *f, double tol, const char *lora) {
    static const int layouts[][2] = {{1, 1}, {2, 1}, {1, 2}, {2, 2}};
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int li = 0; li < 4; li++) {
        int tp = layouts[li][0], np = tp * layouts[li][1];
        MPI_Comm sub;
        MPI_Comm_split(MPI_COMM_WORLD, rank < np ? 0 : MPI_UNDEFINED, rank, &sub);
        if (sub == MPI_COMM_NULL) continue;
        double dloss = 0, d = run_layout(sub, dir, tp, f, &dloss), dl[2] = {0, 0};
        if (lora) run_lora(sub, dir, lora, tp, f, dl);
        MPI_Comm_free(&sub);
        if (rank != 0) continue;
        printf("%-14s tp=%d dp=%d: max |logit - transformers| %.2e, loss rel diff %.2e", label,
               tp, np / tp, d, dloss);
        if (lora) printf("; LoRA loss %.2e, %d AdamW steps %.2e", dl[0], f->n_adamw, dl[1]);
        printf("\n");
        T_CHECK(!lora || dl[0] <= 1e-5, "%s tp=%d dp=%d: LoRA loss differs by %.3g relative", label, tp, np / tp, dl[0]);
        T_CHECK(!lora || dl[1] <= 1e-4, "%s tp=%d dp=%d: AdamW trajectory differs by %.3g relative", label, tp, np / tp, dl[1]);
        T_CHECK(d <= tol, "%s tp=%d dp=%d: logits differ from transformers' by %.3g", label, tp, np / tp, d);
        T_CHECK(dloss <= 1e-5, "%s tp=%d dp=%d: loss differs by %.3g relative", label, tp, np / tp, dloss);
    }
}

// dst: a sharded copy of the model in src (config.json; tensors alternately in
// model-00001-of-00002 and model-00002-of-00002.safetensors; model.safetensors.index.json).
static void write_sharded(const char *src, const char *dst) {
    char path[2200], cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp '%s/config.json' '%s/'", dst, dst, src, dst);
    T_CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    lmp_st_file f;
    lmp_st_open(&f, path);
    lmp_st_out *out[2] = {calloc(f.n, sizeof(lmp_st_out)), calloc(f.n, sizeof(lmp_st_out))};
    int cnt[2] = {0, 0};
    json_t *map = json_object();
    for (int i = 0; i < f.n; i++) {
        const lmp_st_tensor *t = &f.t[i];
        int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->shape[t->ndim - 1];
        float *d = malloc(sizeof(float) * rows * cols);
        lmp_st_read_block(&f, t, 0, rows, 0, cols, d);
        int k = i % 2;
        out[k][cnt[k]++] = (lmp_st_out){t->name, t->ndim, {t->shape[0], t->ndim > 1 ? t->shape[1] : 0}, d};
        json_object_set_new(map, t->name, json_string(k ? "model-00002-of-00002.safetensors"
                                                         : "model-00001-of-00002.safetensors"));
    }
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/model-0000%d-of-00002.safetensors", dst, k + 1);
        lmp_st_write(path, out[k], cnt[k], NULL);
        for (int i = 0; i < cnt[k]; i++) free((void *)out[k][i].data);
        free(out[k]);
    }
    json_t *idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst);
    T_CHECK(json_dump_file(idx, path, JSON_INDENT(2)) == 0, "cannot write %s", path);
    json_decref(idx);
    lmp_st_close(&f);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = t_mpi_ranks(4);
    static const char *NAMES[] = {"llama", "qwen2", "qwen3"};
    char dir[1024], sharded[1024] = "";
    if (rank == 0) snprintf(sharded, sizeof sharded, "%s/sharded", t_tmpdir());  // rank 0's dir
    MPI_Bcast(sharded, sizeof sharded, MPI_CHAR, 0, MPI_COMM_WORLD);
    for (int i = 0; i < 3; i++) {
        fixture f;
        read_fixture(NAMES[i], &f);
        snprintf(dir, sizeof dir, "%s/%s/model", LMP_HF_TINY, NAMES[i]);
        check_dir(NAMES[i], dir, &f, 2e-5, NAMES[i]);
        if (rank == 0) write_sharded(dir, sharded);
        MPI_Barrier(MPI_COMM_WORLD);
        char label[64];
        snprintf(label, sizeof label, "%s sharded", NAMES[i]);
        check_dir(label, sharded, &f, 2e-5, NULL);
        free(f.logits);
    }
    int failed = t_failed, any = 0;
    MPI_Reduce(&failed, &any, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    int rc = 0;
    if (rank == 0) {
        t_failed += any - failed;
        rc = t_finish();
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
