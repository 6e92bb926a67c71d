// generate.c: sampling from a (LoRA-adapted) model. Every rank computes the same gathered
// logits and draws the same token from the counter RNG, so no broadcast is needed and the
// text is the same under any tp x dp layout (dp replicas just repeat the work).
#include "run/generate.h"
#include "data/bpe.h"
#include "io/ckpt_hdf5.h"
#include "core/rng.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Next token from logits (V): argmax, or temperature + top-k sampling with uniform u.
static int sample(const float *logits, int V, float temperature, int top_k, double u) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature <= 0) return best;
    int k = top_k > 0 && top_k < V ? top_k : V;
    // The k largest logits (a partial selection; k is small in practice).
    int *idx = lmp_malloc((size_t)k * sizeof(int));
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (n < k) {
            idx[n++] = v;
        } else {
            int lo = 0;
            for (int j = 1; j < k; j++) if (logits[idx[j]] < logits[idx[lo]]) lo = j;
            if (logits[v] > logits[idx[lo]]) idx[lo] = v;
        }
    }
    double z = 0, acc = 0;
    for (int j = 0; j < n; j++) z += exp((logits[idx[j]] - logits[best]) / temperature);
    int pick = idx[n - 1];
    // Walk in id order so the draw does not depend on the selection's order.
    for (int v = 0, j; v < V; v++) {
        for (j = 0; j < n && idx[j] != v; j++) {}
        if (j == n) continue;
        acc += exp((logits[v] - logits[best]) / temperature) / z;
        pick = v;
        if (u < acc) break;
    }
    free(idx);
    return pick;
}

int lmp_generate(const lmp_config *cfg, const lmp_train_opts *o, const lmp_gen_opts *g) {
    lmp_comm comm;
    lmp_comm_init(&comm, MPI_COMM_WORLD, cfg->parallel.tp);
    lmp_model_config mc;
    lmp_gpt2_opts opts;
    unsigned char layer_on[LMP_MAX_LAYERS];
    lmp_resolve_model(cfg, &mc, &opts, layer_on);
    lmp_gpt2 m;
    lmp_gpt2_build(&m, &mc, &opts, &comm);
    lmp_init_weights(cfg, &m);
    char resume[LMP_PATH_MAX + 300];
    lmp_pick_resume(cfg, o, &comm, resume, sizeof resume);
    if (resume[0]) {
        int ctp, cdp;
        int64_t step = lmp_ckpt_load(resume, &m.reg, &comm, cfg, lmp_base_checksum(&m.reg, &comm), &ctp, &cdp);
        lmp_log("generate: weights from %s (step %lld)\n", resume, (long long)step);
    } else {
        lmp_log("generate: %s without a checkpoint\n", cfg->model.path[0] ? cfg->model.path : "a fresh model");
    }

    lmp_bpe *b = g->bytes ? NULL : lmp_bpe_load(g->vocab);
    int eot = b ? lmp_bpe_eot(b) : -1;
    if (b && lmp_bpe_vocab_size(b) > mc.vocab_size)
        lmp_die_all("the vocabulary in %s has %d tokens, the model only %d", g->vocab, lmp_bpe_vocab_size(b),
                    mc.vocab_size);
    lmp_ids ids = {0};
    const char *prompt = g->prompt ? g->prompt : "";
    if (b) lmp_bpe_encode(b, prompt, strlen(prompt), &ids, NULL);
    else for (const char *p = prompt; *p; p++) lmp_ids_push(&ids, (unsigned char)*p);
    if (!ids.n) lmp_ids_push(&ids, eot >= 0 ? eot : 0);  // an empty prompt starts a document
    size_t n_prompt = ids.n;
    int T = (int)(ids.n + (size_t)g->tokens < (size_t)mc.n_ctx ? ids.n + (size_t)g->tokens : (size_t)mc.n_ctx);
    lmp_gpt2_set_batch(&m, 1, T);
    int *win = lmp_calloc((size_t)T * sizeof(int));
    float *logits = lmp_malloc((size_t)T * mc.vocab_size * sizeof(float));
    for (int i = 0; i < g->tokens; i++) {
        size_t len = ids.n < (size_t)T ? ids.n : (size_t)T;  // the last T tokens
        memcpy(win, ids.v + ids.n - len, len * sizeof(int));
        lmp_gpt2_logits(&m, win, logits);  // causal: padding after len does not matter
        double u = (double)(lmp_rng_bits(g->seed, 0x67656e, (uint64_t)i) >> 11) * 0x1.0p-53;
        int next = sample(logits + (len - 1) * (size_t)mc.vocab_size, mc.vocab_size, g->temperature, g->top_k, u);
        if (next == eot) break;
        lmp_ids_push(&ids, next);
    }
    if (comm.rank == 0) {
        size_t n;
        char *text;
        if (b) {
            text = lmp_bpe_decode(b, ids.v, ids.n, &n);
        } else {
            text = lmp_malloc(ids.n + 1);
            for (size_t k = 0; k < ids.n; k++) text[k] = (char)ids.v[k];
            n = ids.n;
            text[n] = 0;
        }
        printf("generate: %zu prompt tokens + %zu generated\n", n_prompt, ids.n - n_prompt);
        fwrite(text, 1, n, stdout);
        printf("\n");
        fflush(stdout);
        free(text);
    }
    free(win);
    free(logits);
    lmp_ids_free(&ids);
    lmp_bpe_free(b);
    lmp_gpt2_free(&m);
    lmp_comm_free(&comm);
    return 0;
}
