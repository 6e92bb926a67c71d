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
// A fresh empty temporary directory in the process's /tmp/lmptest.XXXXXX (mkdtemp, under
// $TMPDIR if set); the string stays valid for the next 15 calls. The root is removed with
// its contents when the process exits, unless a check failed or LMP_KEEP_TMP=1: then it is
// kept and its path printed on stderr.
const char *t_tmpdir(void);
// Writes bytes to a file.
void t_write_file(const char *path, const void *data, size_t n);
// The bytes of a hex string ("41c3a9" -> "Aé"), malloc'ed with a terminating 0; *n = their count.
unsigned char *t_from_hex(const char *hex, size_t *n);
// After MPI_Init: this rank's number; with another world size than want, rank 0 says so
// and every rank finalises and exits 1 (the MPI tests are written for 4 ranks).
int t_mpi_ranks(int want);
// Runs fn(arg) in a forked child and checks that it exits non-zero with w1 and w2 (w2 may
// be NULL) in its stderr.
void t_expect_death(const char *what, void (*fn)(const char *), const char *arg, const char *w1,
                    const char *w2);

// ---- Whole-model checks on one rank (test_grad_model, test_grad_ia3dora, test_grad_prefix) ----
#include "core/rng.h"
#include "model/model.h"

// The tiny models: GPT-2 (2 layers, 2 heads, C = 8, V = 13, n_ctx = 8), and a Llama-family
// model with every component (RMSNorm, RoPE llama3, GQA 2 over 1, biases on q/k/v, o_proj
// and the MLP, q/k norm, gated SiLU, untied head) of the same sizes.
extern const lmp_model_config t_gpt2_cfg, t_llama_cfg;
// Their batch: B x T tokens and targets from the counter RNG, position 3 masked, the others
// weighted 1 / (N - 1).
enum { T_B = 2, T_T = 5, T_N = T_B * T_T };
typedef struct {
    int tokens[T_N], targets[T_N];
    float scale[T_N];
} t_batch;
void t_batch_init(t_batch *b);
// The loss of the batch (forward only), as a double for central differences.
double t_loss(lmp_model *m, const t_batch *b, const lmp_rng_ctx *rc);
// Sets tensors to N(0, 0.3^2) from the counter RNG (seed, tensor index, element): with
// T_BASE the base weight matrices (names with "weight"; not LayerNorm's "ln_", nor with
// T_KEEP_NORMS any "norm"), with T_ADAPTERS every adapter tensor. GPT-2's init (std 0.02)
// leaves the gradients too small to carry signal in finite differences.
enum { T_BASE = 1, T_ADAPTERS = 2, T_KEEP_NORMS = 4 };
void t_scramble(lmp_model *m, uint64_t seed, int which);
// The analytic gradient of the batch's loss into every trainable tensor's grad.
void t_grad(lmp_model *m, const t_batch *b, const lmp_rng_ctx *rc);
// Checks every element of every trainable tensor's grad (t_grad's, left as it is) against
// central differences of t_loss (h = 1e-3 max(1, |w|)). Tolerance per tensor: fp32 forward ->
// max |fd - grad| <= 2e-2 max |grad| + floor (floor: an absolute allowance for tensors whose
// gradient is near the differences' noise, ~1e-5); also no all-zero gradient. Returns the
// number of tensors checked (0 fails).
int t_fd_check(lmp_model *m, const char *what, const t_batch *b, const lmp_rng_ctx *rc, double floor);
// t_grad, then t_fd_check.
int t_check_grads(lmp_model *m, const char *what, const t_batch *b, const lmp_rng_ctx *rc, double floor);
// Logits of a and b on tokens (rows: the models' batch, the same B x T): 1 when equal bit for
// bit; *maxd = max |a - b| and *maxl = max |a| unless NULL.
int t_same_logits(lmp_model *a, lmp_model *b, const int *tokens, double *maxd, double *maxl);
// Generation with the key/value cache: prefill of tokens[0..1], then one decode step per
// token up to TT; returns the largest relative difference of each position's logits from a
// full forward of the TT tokens (which sets the batch to 1 x TT).
double t_cache_vs_full(lmp_model *m, const int *tokens, int TT);

#endif
