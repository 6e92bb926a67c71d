// testutil.h: a minimal test harness. Each failed check is printed with file and line;
// t_finish prints "N passed, N failed" and returns the exit code.
#ifndef LMP_TESTUTIL_H
#define LMP_TESTUTIL_H
#include <stddef.h>
#include <stdint.h>

extern int t_passed, t_failed;
void t_check_at(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define T_CHECK(cond, ...) t_check_at(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
// |a-b| <= atol + rtol*|b|
int t_close(double a, double b, double rtol, double atol);
// Largest relative difference max|a-b| / max(max|b|, tiny) over n elements.
double t_max_rel_diff(const float *a, const float *b, size_t n);
// Prints the summary line and returns 0 if nothing failed, 1 otherwise.
int t_finish(void);
// A fresh empty temporary directory (mkdtemp under $TMPDIR or /tmp); static storage.
const char *t_tmpdir(void);
// Writes bytes to a file.
void t_write_file(const char *path, const void *data, size_t n);
// Runs fn(arg) in a forked child and checks that it exits non-zero with w1 and w2 (w2 may
// be NULL) in its stderr.
void t_expect_death(const char *what, void (*fn)(const char *), const char *arg, const char *w1,
                    const char *w2);

#endif
