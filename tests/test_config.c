// Configuration: defaults, every value type from a file, --set over the file, each kind of
// bad input with a message naming file:line and key, and dump -> load giving the same struct.
#include "testutil.h"
#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// A value lmp_config_set must refuse, and a part of the message that names what was wanted.
typedef struct { const char *sec, *key, *val, *want; } bad_value;

// Each of b[0..n) is refused with a message naming its key and what was expected.
static void expect_refused(const bad_value *b, size_t n) {
    lmp_config c;
    char err[1024];
    for (size_t i = 0; i < n; i++) {
        lmp_config_defaults(&c);
        int rc = lmp_config_set(&c, b[i].sec, b[i].key, b[i].val, err, sizeof err);
        T_CHECK(rc == -1 && strstr(err, b[i].key) && strstr(err, b[i].want), "[%s] %s = %s: rc %d, '%s'",
                b[i].sec, b[i].key, b[i].val, rc, err);
    }
}

static const char *dir;

typedef struct { int n, tensors, run_only; char last[256]; } diff_seen;

static void on_diff(void *ctx, const char *section, const char *key, const char *was, const char *now, int flags) {
    diff_seen *d = ctx;
    d->n++;
    d->tensors += !!(flags & LMP_KEY_TENSORS);
    d->run_only += !!(flags & LMP_KEY_RUN_ONLY);
    snprintf(d->last, sizeof d->last, "[%s] %s %s -> %s", section, key, was, now);
}

// Text parsing returns errors instead of dying; the diff walks the one KEYS table with its flags.
static void check_text_and_diff(void) {
    lmp_config a, b;
    char err[512];
    lmp_config_defaults(&a);
    a.adapter.r = 4;
    a.train.lr = 1e-3f;
    char *text = lmp_config_dump(&a);
    T_CHECK(lmp_config_parse_text(&b, text, "ckpt", err, sizeof err) == 0 && !memcmp(&a, &b, sizeof a),
            "parse_text of a dump gives the same struct (%s)", err);
    free(text);
    T_CHECK(lmp_config_parse_text(&b, "[train]\nsteps = 2\nlr = fast\n", "mem.ini", err, sizeof err) == -1 &&
            strstr(err, "mem.ini:3") && strstr(err, "[train] lr"), "parse_text error: '%s'", err);
    T_CHECK(lmp_config_parse_text(&b, "[nosuch]\nx = 1\n", "t", err, sizeof err) == -1 && strstr(err, "t:2"),
            "parse_text unknown section: '%s'", err);
    T_CHECK(lmp_config_parse_text(&b, "garbage\n", "g", err, sizeof err) == -1 && strstr(err, "g:1: not an INI line"),
            "parse_text bad line: '%s'", err);

    lmp_config_defaults(&b);
    diff_seen d = {0};
    T_CHECK(lmp_config_diff(&b, &b, on_diff, &d) == 0 && d.n == 0, "no differences with itself");
    b.adapter.r = 16;
    b.parallel.tp = 2;
    b.checkpoint.keep = 1;
    b.train.lr = 5e-4f;
    T_CHECK(lmp_config_diff(&a, &b, on_diff, &d) == 4 && d.n == 4, "4 differences, %d seen", d.n);
    T_CHECK(d.tensors == 1 && d.run_only == 2, "flags: %d tensor keys, %d run-only", d.tensors, d.run_only);
    T_CHECK(!strcmp(d.last, "[checkpoint] keep 3 -> 1"), "last difference '%s'", d.last);
    // Every adapter key that shapes the tensors is flagged, nothing else in [adapter]/[train].
    const char *must[] = {"adapter.method=none", "adapter.r=2", "adapter.alpha=3", "adapter.targets=q",
                          "adapter.layers=0", "adapter.rslora=true"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        char sec[32], key[32], val[32];
        T_CHECK(sscanf(must[i], "%31[^.].%31[^=]=%31s", sec, key, val) == 3, "bad test entry");
        lmp_config_defaults(&b);
        T_CHECK(lmp_config_set(&b, sec, key, val, err, sizeof err) == 0, "set %s", must[i]);
        memset(&d, 0, sizeof d);
        lmp_config_defaults(&a);
        T_CHECK(lmp_config_diff(&a, &b, on_diff, &d) == 1 && d.tensors == 1, "%s is a tensor key", must[i]);
    }
    lmp_config_defaults(&b);
    b.adapter.dropout = 0.5f;
    b.adapter.seed = 9;
    memset(&d, 0, sizeof d);
    T_CHECK(lmp_config_diff(&a, &b, on_diff, &d) == 2 && d.tensors == 0 && d.run_only == 0, "dropout, seed: not flagged");
    // init_from only seeds step 0: a resume takes the checkpoint's tensors, and the keys it
    // sets (r, alpha, targets, ...) are compared as themselves. Not a tensor key.
    lmp_config_defaults(&b);
    T_CHECK(lmp_config_set(&b, "adapter", "init_from", "peft/dir", err, sizeof err) == 0 &&
            !strcmp(b.adapter.init_from, "peft/dir"), "init_from set (%s)", err);
    memset(&d, 0, sizeof d);
    T_CHECK(lmp_config_diff(&a, &b, on_diff, &d) == 1 && d.tensors == 0 && d.run_only == 0, "init_from: not flagged");
    T_CHECK(lmp_config_validate(&b, err, sizeof err) == 0, "init_from with lora: valid (%s)", err);
    b.adapter.method = LMP_METHOD_NONE;
    T_CHECK(lmp_config_validate(&b, err, sizeof err) == -1 && strstr(err, "init_from") && strstr(err, "method = lora"),
            "init_from with full fine-tuning refused: '%s'", err);
    // A tensor key counts only where a method of either run reads it.
    struct { int method; const char *set; int tensors; } by[] = {
        {LMP_METHOD_LORA, "size=4", 0}, {LMP_METHOD_HOULSBY, "size=4", 1}, {LMP_METHOD_HOULSBY, "scale=2", 0},
        {LMP_METHOD_PARALLEL, "scale=2", 1}, {LMP_METHOD_HOULSBY, "r=2", 0}, {LMP_METHOD_HOULSBY | LMP_METHOD_LORA, "r=2", 1},
        {LMP_METHOD_NONE, "targets=q", 0}, {LMP_METHOD_PARALLEL, "act=relu", 1}};
    for (size_t i = 0; i < sizeof by / sizeof by[0]; i++) {
        char key[32], val[32];
        T_CHECK(sscanf(by[i].set, "%31[^=]=%31s", key, val) == 2, "bad test entry");
        lmp_config_defaults(&a);
        lmp_config_defaults(&b);
        a.adapter.method = b.adapter.method = by[i].method;
        T_CHECK(lmp_config_set(&b, "adapter", key, val, err, sizeof err) == 0, "set %s", by[i].set);
        memset(&d, 0, sizeof d);
        T_CHECK(lmp_config_diff(&a, &b, on_diff, &d) == 1 && d.tensors == by[i].tensors, "method bits %d, %s: "
                "%d tensor keys, expected %d", by[i].method, by[i].set, d.tensors, by[i].tensors);
    }
}

static const char *write_ini(const char *name, const char *text) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    t_write_file(path, text, strlen(text));
    return path;
}

// Loads in a child and expects exit 1 with `w1` and `w2` in the message.
static void expect_load_error(const char *what, const char *path, const char *set, const char *w1, const char *w2) {
    char log[600];
    snprintf(log, sizeof log, "%s/err.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stderr)) _exit(99);
        lmp_config c;
        const char *sets[1] = {set};
        lmp_config_load(&c, path, sets, set ? 1 : 0);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    char buf[2048] = "";
    FILE *f = fopen(log, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: exit status %d, expected 1", what, WEXITSTATUS(st));
    T_CHECK(strstr(buf, w1) && (!w2 || strstr(buf, w2)), "%s: message '%s' lacks '%s' / '%s'", what, buf, w1, w2 ? w2 : "");
}

// Values that convert to something else than they say, long values and lines, odd files.
static void check_hostile_values(void) {
    lmp_config c;
    char err[1024];
    // After conversion to float: a non-zero value stays non-zero, a value stays in its range.
    bad_value bad[] = {
        {"train", "lr", "1e-50", "smallest float"}, {"train", "eps", "1e-40", "smallest float"},
        {"adapter", "alpha", "1e-45", "smallest float"}, {"train", "beta2", "0.99999999", "[0, 1)"},
        {"adapter", "dropout", "0.999999999", "[0, 1)"}, {"train", "weight_decay", "1e-300", "smallest float"},
    };
    expect_refused(bad, sizeof bad / sizeof bad[0]);
    lmp_config_defaults(&c);
    T_CHECK(lmp_config_set(&c, "train", "weight_decay", "0", err, sizeof err) == 0 && c.train.weight_decay == 0,
            "weight_decay 0 is fine");
    T_CHECK(lmp_config_set(&c, "train", "lr", "1e30", err, sizeof err) == 0, "lr = 1e30 (the bound, as a float) is fine: %s", err);
    // A value longer than its field is refused naming the key and the limit, never cut.
    char *longv = malloc(3000);
    memset(longv, 'x', 2999);
    longv[2999] = 0;
    memcpy(longv, "/tmp/", 5);
    lmp_config_defaults(&c);
    T_CHECK(lmp_config_set(&c, "data", "train", longv, err, sizeof err) == -1 && strstr(err, "[data] train") &&
            strstr(err, "1023"), "long value: '%s'", err);
    char *set = malloc(3100);
    snprintf(set, 3100, "data.train=%s", longv);
    expect_load_error("long --set value", NULL, set, "[data] train", "longer than 1023");
    // A path of exactly 1023 characters is kept whole, from --set and from a file.
    longv[1023] = 0;
    snprintf(set, 3100, "data.train=%s", longv);
    const char *sets[1] = {set};
    lmp_config_load(&c, NULL, sets, 1);
    T_CHECK(!strcmp(c.data.train, longv), "1023-character --set value kept whole");
    char *ini = malloc(3200);
    snprintf(ini, 3200, "[data]\n; a comment\ntrain = %s ; trailing comment\n[train]\nsteps = 5\n", longv);
    lmp_config_load(&c, write_ini("long.ini", ini), NULL, 0);
    T_CHECK(!strcmp(c.data.train, longv) && c.train.steps == 5, "long INI line: value '%.20s...', steps %d",
            c.data.train, c.train.steps);
    // An over-long line names the real line; a bad line after a long one too.
    longv[1023] = 'x';
    snprintf(ini, 3200, "[data]\ntrain = %s\n", longv);
    expect_load_error("over-long INI value", write_ini("long2.ini", ini), NULL, "long2.ini:2:", "longer than 1023");
    snprintf(ini, 3200, "[data]\n# %s\nnonsense\n", longv);
    expect_load_error("bad line after a long comment", write_ini("long3.ini", ini), NULL, "long3.ini:3:", "not an INI line");
    free(ini);
    free(set);
    free(longv);
    // A directory as the config file.
    expect_load_error("config is a directory", dir, NULL, dir, "is a directory");
}

int main(void) {
    dir = t_tmpdir();
    lmp_config c;
    lmp_config_defaults(&c);
    T_CHECK(c.adapter.method == LMP_METHOD_LORA && c.adapter.r == 8 && c.adapter.alpha == 16.0f, "adapter defaults");
    T_CHECK(c.adapter.targets == LMP_T_C_ATTN && c.adapter.n_layers == 0, "target defaults");
    T_CHECK(c.train.lr == 2e-4f && c.train.beta2 == 0.999f && c.train.grad_accum == 1 && c.parallel.tp == 1 &&
            c.train.recompute == LMP_RECOMPUTE_NONE, "train defaults");

    const char *ok = write_ini("ok.ini",
        "[model]\npath = some/dir\n[adapter]\nmethod = none\nr = 4\nalpha = 32.5\ndropout = 0.1\n"
        "targets = q, v ,mlp.c_proj\nlayers = 0-2, 5\nrslora = yes\ninit = gaussian\nseed = 77\n"
        "[train]\nsteps = 10\nlr = 1e-3\nschedule = linear\nwarmup_steps = 3\nrecompute = Block\n[data]\ntrain = a.bin\n[parallel]\ntp = 2\n");
    const char *sets[2] = {"train.steps=20", "adapter.r = 16"};
    lmp_config_load(&c, ok, sets, 2);
    T_CHECK(!strcmp(c.model.path, "some/dir") && c.adapter.method == LMP_METHOD_NONE, "strings/enums from file");
    T_CHECK(c.adapter.r == 16 && c.train.steps == 20, "--set overrides the file (r %d, steps %d)", c.adapter.r, c.train.steps);
    T_CHECK(c.adapter.alpha == 32.5f && c.adapter.dropout == 0.1f && c.train.lr == 1e-3f, "floats");
    T_CHECK(c.adapter.targets == (LMP_T_Q | LMP_T_V | LMP_T_MLP_PROJ), "targets %d", c.adapter.targets);
    T_CHECK(c.adapter.n_layers == 4 && c.adapter.layers[0] == 0 && c.adapter.layers[2] == 2 && c.adapter.layers[3] == 5, "layers");
    T_CHECK(c.adapter.rslora == 1 && c.adapter.init == LMP_INIT_GAUSSIAN && c.adapter.seed == 77, "bool/init/u64");
    T_CHECK(c.train.schedule == LMP_SCHED_LINEAR && c.parallel.tp == 2, "schedule/tp");
    T_CHECK(c.train.recompute == LMP_RECOMPUTE_BLOCK, "recompute %d", (int)c.train.recompute);
    // The Llama family's targets by PEFT's names, and all-linear (resolved by the model).
    const char *llama_sets[1] = {"adapter.targets = q_proj, k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"};
    lmp_config_load(&c, ok, llama_sets, 1);
    T_CHECK(c.adapter.targets == (LMP_T_Q_PROJ | LMP_T_K_PROJ | LMP_T_V_PROJ | LMP_T_O_PROJ | LMP_T_GATE_PROJ |
                                  LMP_T_UP_PROJ | LMP_T_DOWN_PROJ) &&
            !strcmp(c.adapter.targets_str, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
            "llama targets %d (%s)", c.adapter.targets, c.adapter.targets_str);
    llama_sets[0] = "adapter.targets=all-linear";
    lmp_config_load(&c, ok, llama_sets, 1);
    T_CHECK(c.adapter.targets == LMP_T_ALL_LINEAR && !strcmp(c.adapter.targets_str, "all-linear"), "all-linear");
    lmp_config_load(&c, ok, sets, 2);

    // dump -> load gives the identical struct
    char *text = lmp_config_dump(&c);
    const char *again = write_ini("dump.ini", text);
    lmp_config d;
    memset(&d, 0, sizeof d);
    lmp_config_load(&d, again, NULL, 0);
    T_CHECK(!memcmp(&c, &d, sizeof c), "dump/load round trip differs");
    free(text);
    // Methods combine as a set (bits), the bottleneck keys read and dump back.
    const char *bn = write_ini("bn.ini", "[adapter]\nmethod = parallel, lora\nsize = 16\nact = relu\n"
                                        "init_scale = 0.01\nsublayers = mlp,attn\nscale = 2\n");
    lmp_config_load(&c, bn, NULL, 0);
    T_CHECK(c.adapter.method == (LMP_METHOD_LORA | LMP_METHOD_PARALLEL) && c.adapter.size == 16 && c.adapter.relu == 1 &&
            c.adapter.init_scale == 0.01f && c.adapter.sublayers == 3 && c.adapter.scale == 2.0f, "bottleneck keys");
    text = lmp_config_dump(&c);
    T_CHECK(strstr(text, "method = lora,parallel\n") && strstr(text, "sublayers = attn,mlp\n") &&
            strstr(text, "act = relu\n"), "bottleneck keys dumped: %s", text);
    memset(&d, 0, sizeof d);
    lmp_config_load(&d, write_ini("bn2.ini", text), NULL, 0);
    T_CHECK(!memcmp(&c, &d, sizeof c), "bottleneck dump/load round trip differs");
    free(text);
    lmp_config_defaults(&c);
    T_CHECK(c.adapter.size == 64 && c.adapter.relu == 0 && c.adapter.init_scale == 1e-3f && c.adapter.sublayers == 0 &&
            c.adapter.scale == 4.0f, "bottleneck defaults");

    char err[512];
    bad_value bad[] = {
        {"train", "lr", "abc", "positive number"}, {"train", "lr", "0", "positive"}, {"train", "steps", "1.5", "integer"},
        {"train", "steps", "-3", "positive"}, {"adapter", "dropout", "1", "[0, 1)"}, {"adapter", "method", "vera", "comma list of lora, houlsby"},
        {"adapter", "method", "houlsby,parallel", "do not combine"}, {"adapter", "method", "lora,lora", "twice"},
        {"adapter", "method", "", "empty"}, {"adapter", "act", "tanh", "gelu or relu"},
        {"adapter", "sublayers", "attn,ffn", "comma list of attn, mlp"}, {"adapter", "size", "0", "positive"},
        {"adapter", "init_scale", "0", "positive"}, {"adapter", "scale", "-1", "non-negative"},
        {"adapter", "rslora", "maybe", "true or false"}, {"adapter", "targets", "c_attn,q", "overlaps"},
        {"adapter", "targets", "wq", "unknown target"},
        {"model", "path", "/data/a ;b", "cannot be written back"}, {"model", "path", ";b", "cannot be written back"},
        {"data", "train", "a\vb", "control character"}, {"adapter", "layers", "1,1", "twice"}, {"adapter", "layers", "-2", "layer"},
        {"train", "schedule", "step", "cosine"}, {"train", "recompute", "full", "none, attn (kept for old configs"},
        {"train", "learning_rate", "1", "known keys"}, {"optim", "lr", "1", "unknown section"},
    };
    expect_refused(bad, sizeof bad / sizeof bad[0]);
    lmp_config_defaults(&c);
    c.train.warmup_steps = c.train.steps + 1;
    T_CHECK(lmp_config_validate(&c, err, sizeof err) == -1 && strstr(err, "warmup_steps"), "warmup > steps");

    // dying paths: every message names file and line, or the --set
    expect_load_error("unknown key", write_ini("k.ini", "[train]\nsteps = 3\nlearning_rate = 1\n"), NULL, "k.ini:3", "learning_rate");
    expect_load_error("bad value", write_ini("v.ini", "[train]\n\nlr = fast\n"), NULL, "v.ini:3", "[train] lr");
    expect_load_error("outside section", write_ini("o.ini", "lr = 1\n"), NULL, "o.ini:1", "outside");
    expect_load_error("missing file", "/nonexistent/run.ini", NULL, "/nonexistent/run.ini", "cannot open");
    expect_load_error("bad --set", NULL, "train.lr", "--set train.lr", "section.key=value");
    expect_load_error("bad --set value", NULL, "train.batch_size=0", "--set", "batch_size");
    check_hostile_values();
    check_text_and_diff();
    return t_finish();
}
