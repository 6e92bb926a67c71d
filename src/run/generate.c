// generate.c: sampling from a (LoRA-adapted) model. Every rank computes the same gathered
// logits and draws the same token from the counter RNG, so no broadcast is needed and the
// text is the same under any tp x dp layout (dp replicas just repeat the work).
#include "run/generate.h"
#include "data/bpe.h"
#include "data/chat.h"
#include "run/session.h"
#include "core/rng.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Candidates in descending logit order, ties by id (qsort's comparator reads this).
static const float *sort_logits;
static int by_logit_desc(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_logits[x] != sort_logits[y]) return sort_logits[x] > sort_logits[y] ? -1 : 1;
    return x - y;
}

// Next token from logits (V): argmax, or temperature sampling from the top_k largest (0: all)
// whose probabilities sum to top_p (nucleus; >= 1: all), with uniform u. O(V log V) at most.
static int sample(const float *logits, int V, float temperature, int top_k, float top_p, double u) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature <= 0) return best;
    int k = top_k > 0 && top_k < V ? top_k : V, n = k;
    unsigned char *keep = lmp_calloc((size_t)V);
    if (k < V || top_p < 1.0f) {
        int *idx = lmp_malloc((size_t)V * sizeof(int));
        for (int v = 0; v < V; v++) idx[v] = v;
        sort_logits = logits;
        qsort(idx, (size_t)V, sizeof(int), by_logit_desc);
        double z = 0, acc = 0;
        for (int j = 0; j < k; j++) z += exp((logits[idx[j]] - logits[best]) / temperature);
        for (n = 0; n < k && (n == 0 || acc < top_p * z); n++)
            acc += exp((logits[idx[n]] - logits[best]) / temperature);
        for (int j = 0; j < n; j++) keep[idx[j]] = 1;
        free(idx);
    } else {
        memset(keep, 1, (size_t)V);
    }
    double z = 0, acc = 0;
    for (int v = 0; v < V; v++)
        if (keep[v]) z += exp((logits[v] - logits[best]) / temperature);
    int pick = best;
    // Walk in id order so the draw does not depend on the selection's order.
    for (int v = 0; v < V; v++) {
        if (!keep[v]) continue;
        acc += exp((logits[v] - logits[best]) / temperature) / z;
        pick = v;
        if (u < acc) break;
    }
    free(keep);
    return pick;
}

// The prompt as a user turn of the tokenizer's chat format, the assistant header after it
// (llama3's renderer ends with it; ChatML's generation prompt is added here).
static void chat_prompt(lmp_bpe *b, const char *prompt, lmp_ids *ids) {
    lmp_chat_format f = lmp_chat_format_of(b, LMP_CHAT_AUTO, "generate --chat");
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", prompt);
    LMP_CHECK(msgs, "generate --chat: the prompt is not valid UTF-8");
    lmp_chat_text t = {0};
    size_t bad;
    const char *err = lmp_chat_render(f, lmp_bpe_token_id(b, "<think>") >= 0, msgs, &t, &bad);
    if (err) lmp_die_all("generate --chat: %s", err);
    lmp_bpe_encode(b, t.text, t.len, ids, NULL);
    if (f == LMP_CHAT_CHATML) {
        static const char *gen = "<|im_start|>assistant\n";
        lmp_bpe_encode(b, gen, strlen(gen), ids, NULL);
    }
    lmp_chat_text_free(&t);
    json_decref(msgs);
}

// The prompt's token ids: BOS first when the tokenizer adds one (an empty prompt starts a
// document).
static void encode_prompt(lmp_bpe *b, const lmp_gen_opts *g, int eot, lmp_ids *ids) {
    const char *prompt = g->prompt ? g->prompt : "";
    if (b && g->chat) {
        chat_prompt(b, prompt, ids);
        return;
    }
    if (b && lmp_bpe_bos(b) >= 0) lmp_ids_push(ids, lmp_bpe_bos(b));
    if (b) lmp_bpe_encode(b, prompt, strlen(prompt), ids, NULL);
    else for (const char *p = prompt; *p; p++) lmp_ids_push(ids, (unsigned char)*p);
    if (!ids->n) lmp_ids_push(ids, eot >= 0 ? eot : 0);
}

// The ids generation stops at: the tokenizer's EOS and generation_config.json's eos_token_id
// (an id or a list) of the model directory, when there.
static void stop_ids(const char *model, int eot, lmp_ids *stop) {
    if (eot >= 0) lmp_ids_push(stop, eot);
    char path[4096];
    if (!model || !model[0] || !lmp_is_dir(model)) return;
    lmp_path_join(path, sizeof path, model, "generation_config.json");
    if (access(path, F_OK) != 0) return;
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je), *e = o ? json_object_get(o, "eos_token_id") : NULL, *v;
    if (!o) lmp_die_all("%s: %s (line %d)", path, je.text, je.line);
    if (json_is_integer(e)) lmp_ids_push(stop, (int)json_integer_value(e));
    size_t i;
    json_array_foreach(e, i, v) if (json_is_integer(v)) lmp_ids_push(stop, (int)json_integer_value(v));
    json_decref(o);
}

// Logits (V) of the position after the last of ids. With the cache: one decode step of the
// newest token, after (re)filling the cache with up to n_ctx - 1 tokens before it when it
// does not hold them (the first token, or a full context). Without: a forward of the whole
// window of the last T tokens. Both see the same window.
static void next_logits(lmp_model *m, const lmp_gen_opts *g, const lmp_ids *ids, size_t done,
                        int T, int *win, float *logits) {
    int n_ctx = m->arch.n_ctx - m->n_prefix;  // prefix tuning's virtual tokens come first
    if (!g->no_cache) {
        if (ids->n == 1) {
            lmp_model_prefill(m, ids->v, 1, logits);
            return;
        }
        if (!(done == ids->n - 1 && m->cache.len > 0 && m->cache.len < n_ctx)) {
            size_t len = ids->n - 1 < (size_t)n_ctx - 1 ? ids->n - 1 : (size_t)n_ctx - 1;
            lmp_model_prefill(m, ids->v + ids->n - 1 - len, (int)len, logits);
        }
        lmp_model_decode(m, ids->v[ids->n - 1], logits);
        return;
    }
    size_t len = ids->n < (size_t)T ? ids->n : (size_t)T;  // the last T tokens
    memcpy(win, ids->v + ids->n - len, len * sizeof(int));
    lmp_model_set_batch(m, 1, T);
    float *all = lmp_malloc((size_t)T * m->arch.vocab_size * sizeof(float));
    lmp_model_logits(m, win, all);  // causal: padding after len does not matter
    memcpy(logits, all + (len - 1) * (size_t)m->arch.vocab_size, (size_t)m->arch.vocab_size * sizeof(float));
    free(all);
}

// Appends up to g->tokens sampled ids to ids (stopping at any of stop), every rank the same.
// secs[0]: the first token's time (with the cache: the prompt's prefill), secs[1]: the rest's.
static void sample_tokens(lmp_model *m, const lmp_gen_opts *g, const lmp_ids *stop, lmp_ids *ids, double *secs) {
    int V = m->arch.vocab_size, n_ctx = m->arch.n_ctx - m->n_prefix;
    int T = (int)(ids->n + (size_t)g->tokens < (size_t)n_ctx ? ids->n + (size_t)g->tokens : (size_t)n_ctx);
    int *win = lmp_calloc((size_t)T * sizeof(int));
    float *logits = lmp_malloc((size_t)V * sizeof(float));
    size_t done = 0;  // ids already in the cache
    double t0 = lmp_now();
    for (int i = 0; i < g->tokens; i++) {
        if (i == 1) secs[0] = lmp_now() - t0;
        next_logits(m, g, ids, done, T, win, logits);
        done = ids->n;
        double u = (double)(lmp_rng_bits(g->seed, 0x67656e, (uint64_t)i) >> 11) * 0x1.0p-53;
        int next = sample(logits, V, g->temperature, g->top_k, g->top_p, u);
        int end = 0;
        for (size_t k = 0; k < stop->n; k++) end |= next == stop->v[k];
        if (end) break;
        lmp_ids_push(ids, next);
    }
    secs[1] = lmp_now() - t0 - secs[0];
    free(win);
    free(logits);
}

static void print_text(lmp_bpe *b, const lmp_ids *ids, size_t n_prompt, const double *secs) {
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
    size_t made = ids->n - n_prompt;
    printf("generate: %zu prompt tokens + %zu generated in %.2f s (first token %.0f ms, then %.1f "
           "ms per token)\n", n_prompt, made, secs[0] + secs[1], 1e3 * secs[0],
           made > 1 ? 1e3 * secs[1] / (double)(made - 1) : 0.0);
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
    lmp_bpe *b = g->bytes ? NULL : g->tokenizer_first ? lmp_tokenizer_load(g->vocab) : lmp_bpe_load(g->vocab);
    int eot = b ? lmp_bpe_eot(b) : -1;
    if (b && lmp_bpe_vocab_size(b) > s.mc.vocab_size)
        lmp_die_all("the vocabulary in %s has %d tokens, the model only %d", g->vocab,
                    lmp_bpe_vocab_size(b), s.mc.vocab_size);
    if (g->chat && !b) lmp_die_all("generate --chat needs a tokenizer (--tokenizer DIR)");
    lmp_ids ids = {0}, stop = {0};
    encode_prompt(b, g, eot, &ids);
    stop_ids(cfg->model.path, eot, &stop);
    size_t n_prompt = ids.n;
    double secs[2] = {0, 0};
    sample_tokens(&s.model, g, &stop, &ids, secs);
    if (s.comm.rank == 0) print_text(b, &ids, n_prompt, secs);
    lmp_ids_free(&ids);
    lmp_ids_free(&stop);
    lmp_bpe_free(b);
    lmp_session_close(&s);
    return 0;
}
