#include "testutil.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

const char *t_tmpdir(void) {
    static char dir[512];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/lmptest.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    return dir;
}

void t_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) { perror(path); exit(1); }
    fclose(f);
}

void t_expect_death(const char *what, void (*fn)(const char *), const char *arg, const char *w1,
                    const char *w2) {
    char log[600];
    snprintf(log, sizeof log, "%s/death.log", t_tmpdir());
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
