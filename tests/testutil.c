#define _GNU_SOURCE  // nftw
#include "testutil.h"
#include <ftw.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int t_passed = 0, t_failed = 0;

void t_check_at(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) { t_passed++; return; }
    t_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

int t_close(double a, double b, double rtol, double atol) {
    return fabs(a - b) <= atol + rtol * fabs(b);
}

double t_max_rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return md / mb;
}

int t_finish(void) {
    printf("%d passed, %d failed\n", t_passed, t_failed);
    return t_failed ? 1 : 0;
}

// Every t_tmpdir of a process is a numbered directory in one root, /tmp/lmptest.XXXXXX,
// which tmp_cleanup removes at exit in the process that made it.
static char tmp_root[512];
static pid_t tmp_owner;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    if (remove(path) != 0) perror(path);
    return 0;
}

// At exit: a passing test leaves nothing behind; a failing one (or LMP_KEEP_TMP=1) keeps
// its files for a look and says where. A forked child (t_expect_death) exits through here
// too, so only the process that made the root removes it.
static void tmp_cleanup(void) {
    if (getpid() != tmp_owner || !tmp_root[0]) return;
    const char *keep = getenv("LMP_KEEP_TMP");
    if (t_failed > 0 || (keep && strcmp(keep, "1") == 0))
        fprintf(stderr, "kept the test's temporary files in %s\n", tmp_root);
    else
        nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmp_root[0] = 0;
}

const char *t_tmpdir(void) {
    // A ring of paths: the last T_TMP_SLOTS results stay valid (callers keep a few at once).
    enum { T_TMP_SLOTS = 16 };
    static char dirs[T_TMP_SLOTS][600];
    static unsigned n;
    if (tmp_owner != getpid() || !tmp_root[0]) {  // first call (or in a forked child): a root
        const char *base = getenv("TMPDIR");
        snprintf(tmp_root, sizeof tmp_root, "%s/lmptest.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp_root)) { perror("mkdtemp"); exit(1); }
        if (!tmp_owner) atexit(tmp_cleanup);
        tmp_owner = getpid();
    }
    char *dir = dirs[n % T_TMP_SLOTS];
    snprintf(dir, sizeof dirs[0], "%s/%u", tmp_root, n++);
    if (mkdir(dir, 0700) != 0) { perror(dir); exit(1); }
    return dir;
}

void t_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

unsigned char *t_from_hex(const char *hex, size_t *n) {
    size_t len = strlen(hex) / 2;
    unsigned char *b = malloc(len + 1);
    if (!b) { perror("t_from_hex"); exit(1); }
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) { fprintf(stderr, "t_from_hex: bad hex %s\n", hex); exit(1); }
        b[i] = (unsigned char)v;
    }
    b[len] = 0;
    *n = len;
    return b;
}

int t_mpi_ranks(int want) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != want) {
        if (rank == 0) fprintf(stderr, "run on %d ranks (got %d)\n", want, size);
        MPI_Finalize();
        exit(1);
    }
    return rank;
}

void t_expect_death(const char *what, void (*fn)(const char *), const char *arg, const char *w1,
                    const char *w2) {
    static const char *dir;  // one directory for every call's log
    if (!dir) dir = t_tmpdir();
    char log[600];
    snprintf(log, sizeof log, "%s/death.log", dir);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr)) _exit(99);
        fn(arg);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    char buf[4096] = "";
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "%s: expected an error exit", what);
    T_CHECK(strstr(buf, w1) && (!w2 || strstr(buf, w2)), "%s: message '%s' lacks '%s'/'%s'", what,
            buf, w1, w2 ? w2 : "");
}

// ---- Whole-model checks ----

const lmp_model_config t_gpt2_cfg = {.n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 8,
                                     .ln_eps = 1e-5f};
const lmp_model_config t_llama_cfg = {
    .n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 13, .n_ctx = 8, .ln_eps = 1e-6f,
    .family = LMP_FAMILY_LLAMA, .arch = "test", .n_kv_head = 1, .head_dim = 4, .mlp_hidden = 12,
    .qkv_bias = 1, .out_bias = 1, .mlp_bias = 1, .qk_norm = 1,
    .rope = {LMP_ROPE_LLAMA3, 10000.0f, 4.0f, 1.0f, 4.0f, 16}};

void t_batch_init(t_batch *b) {
    for (int n = 0; n < T_N; n++) {
        b->tokens[n] = (int)(lmp_rng_bits(1, 0, n) % t_gpt2_cfg.vocab_size);
        b->targets[n] = (int)(lmp_rng_bits(1, 1, n) % t_gpt2_cfg.vocab_size);
        b->scale[n] = n == 3 ? 0.0f : 1.0f / (T_N - 1);  // one masked position
    }
}

double t_loss(lmp_model *m, const t_batch *b, const lmp_rng_ctx *rc) {
    return lmp_model_step(m, b->tokens, b->targets, b->scale, rc, 0);
}

void t_scramble(lmp_model *m, uint64_t seed, int which) {
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        int on = p->role == LMP_ROLE_ADAPTER
                     ? (which & T_ADAPTERS)
                     : (which & T_BASE) && strstr(p->name, "weight") && !strstr(p->name, "ln_") &&
                           !((which & T_KEEP_NORMS) && strstr(p->name, "norm"));
        if (on)
            for (size_t k = 0; k < p->numel; k++) p->data[k] = 0.3f * lmp_rng_normal(seed, (uint64_t)i, k);
    }
}

void t_grad(lmp_model *m, const t_batch *b, const lmp_rng_ctx *rc) {
    lmp_registry_zero_grad(&m->reg);
    lmp_model_step(m, b->tokens, b->targets, b->scale, rc, 1);
}

int t_fd_check(lmp_model *m, const char *what, const t_batch *b, const lmp_rng_ctx *rc, double floor) {
    int checked = 0;
    for (int i = 0; i < m->reg.n; i++) {
        lmp_param *p = &m->reg.p[i];
        if (!p->trainable) continue;
        double maxg = 1e-12, maxerr = 0;
        for (size_t k = 0; k < p->numel; k++) {
            float w = p->data[k], h = 1e-3f * fmaxf(1.0f, fabsf(w));
            p->data[k] = w + h;
            double lp = t_loss(m, b, rc);
            p->data[k] = w - h;
            double lm = t_loss(m, b, rc);
            p->data[k] = w;
            double num = (lp - lm) / ((double)(w + h) - (double)(w - h));
            maxg = fmax(maxg, fabs(p->grad[k]));
            maxerr = fmax(maxerr, fabs(num - p->grad[k]));
        }
        checked++;
        T_CHECK(maxerr <= 2e-2 * maxg + floor, "%s: %s max|fd - grad| = %.3g, max|grad| = %.3g", what,
                p->name, maxerr, maxg);
        T_CHECK(maxg > 1e-6, "%s: %s has an all-zero gradient", what, p->name);
    }
    T_CHECK(checked > 0, "%s: no trainable tensor", what);
    return checked;
}

int t_check_grads(lmp_model *m, const char *what, const t_batch *b, const lmp_rng_ctx *rc, double floor) {
    t_grad(m, b, rc);
    return t_fd_check(m, what, b, rc, floor);
}

int t_same_logits(lmp_model *a, lmp_model *b, const int *tokens, double *maxd, double *maxl) {
    size_t n = (size_t)a->B * a->T * a->arch.vocab_size;
    float *la = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
    if (!la || !lb) { perror("t_same_logits"); exit(1); }
    lmp_model_logits(a, tokens, la);
    lmp_model_logits(b, tokens, lb);
    double d = 0, l = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)la[i] - lb[i]));
        l = fmax(l, fabs(la[i]));
    }
    if (maxd) *maxd = d;
    if (maxl) *maxl = l;
    int same = memcmp(la, lb, n * sizeof(float)) == 0;
    free(la);
    free(lb);
    return same;
}

double t_cache_vs_full(lmp_model *m, const int *tokens, int TT) {
    int V = m->arch.vocab_size;
    float *full = malloc(sizeof(float) * TT * V), *one = malloc(sizeof(float) * V);
    if (!full || !one) { perror("t_cache_vs_full"); exit(1); }
    lmp_model_set_batch(m, 1, TT);
    lmp_model_logits(m, tokens, full);
    lmp_model_prefill(m, tokens, 2, one);
    double worst = t_max_rel_diff(one, full + V, V);
    for (int t = 2; t < TT; t++) {
        lmp_model_decode(m, tokens[t], one);
        worst = fmax(worst, t_max_rel_diff(one, full + (size_t)t * V, V));
    }
    free(full);
    free(one);
    return worst;
}
