// generate.c: sampling from a (LoRA-adapted) model. Every rank computes the same gathered
// logits and draws the same token from the counter RNG, so no broadcast is needed and the
// text is the same under any tp x dp layout (dp replicas just repeat the work).
#include "run/generate.h"
#include "data/bpe.h"
#include "run/session.h"
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

// The prompt's token ids (an empty prompt starts a document).
static void encode_prompt(lmp_bpe *b, const char *prompt, int eot, lmp_ids *ids) {
    if (b) lmp_bpe_encode(b, prompt, strlen(prompt), ids, NULL);
    else for (const char *p = prompt; *p; p++) lmp_ids_push(ids, (unsigned char)*p);
    if (!ids->n) lmp_ids_push(ids, eot >= 0 ? eot : 0);
}

// Appends up to g->tokens sampled ids to ids (stopping at eot), every rank the same.
static void sample_tokens(lmp_model *m, const lmp_gen_opts *g, int eot, lmp_ids *ids) {
    int V = m->arch.vocab_size, n_ctx = m->arch.n_ctx;
    int T = (int)(ids->n + (size_t)g->tokens < (size_t)n_ctx ? ids->n + (size_t)g->tokens : (size_t)n_ctx);
    lmp_model_set_batch(m, 1, T);
    int *win = lmp_calloc((size_t)T * sizeof(int));
    float *logits = lmp_malloc((size_t)T * V * sizeof(float));
    for (int i = 0; i < g->tokens; i++) {
        size_t len = ids->n < (size_t)T ? ids->n : (size_t)T;  // the last T tokens
        memcpy(win, ids->v + ids->n - len, len * sizeof(int));
        lmp_model_logits(m, win, logits);  // causal: padding after len does not matter
        double u = (double)(lmp_rng_bits(g->seed, 0x67656e, (uint64_t)i) >> 11) * 0x1.0p-53;
        int next = sample(logits + (len - 1) * (size_t)V, V, g->temperature, g->top_k, u);
        if (next == eot) break;
        lmp_ids_push(ids, next);
    }
    free(win);
    free(logits);
}

static void print_text(lmp_bpe *b, const lmp_ids *ids, size_t n_prompt) {
    size_t n;
    char *text;
    if (b) {
        text = lmp_bpe_decode(b, ids->v, ids->n, &n);
    } else {
        text = lmp_malloc(ids->n + 1);
        for (size_t k = 0; k < ids->n; k++) text[k] = (char)ids->v[k];
        n = ids->n;
        text[n] = 0;
    }
    printf("generate: %zu prompt tokens + %zu generated\n", n_prompt, ids->n - n_prompt);
    fwrite(text, 1, n, stdout);
    printf("\n");
    fflush(stdout);
    free(text);
}

int lmp_generate(const lmp_config *cfg, const lmp_train_opts *o, const lmp_gen_opts *g) {
    lmp_session s;
    lmp_session_open(&s, cfg);
    lmp_session_load(&s, cfg, o->resume, o->no_resume);
    if (s.ckpt[0]) lmp_log("generate: weights from %s (step %lld)\n", s.ckpt, (long long)s.step);
    else lmp_log("generate: %s without a checkpoint\n", cfg->model.path[0] ? cfg->model.path : "a fresh model");
    lmp_bpe *b = g->bytes ? NULL : lmp_bpe_load(g->vocab);
    int eot = b ? lmp_bpe_eot(b) : -1;
    if (b && lmp_bpe_vocab_size(b) > s.mc.vocab_size)
        lmp_die_all("the vocabulary in %s has %d tokens, the model only %d", g->vocab,
                    lmp_bpe_vocab_size(b), s.mc.vocab_size);
    lmp_ids ids = {0};
    encode_prompt(b, g->prompt ? g->prompt : "", eot, &ids);
    size_t n_prompt = ids.n;
    sample_tokens(&s.model, g, eot, &ids);
    if (s.comm.rank == 0) print_text(b, &ids, n_prompt);
    lmp_ids_free(&ids);
    lmp_bpe_free(b);
    lmp_session_close(&s);
    return 0;
}
