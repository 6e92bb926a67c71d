// prof.c: per-phase timers (prof.h).
#include "core/prof.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>

int lmp_prof_on;

#define PROF_DEPTH 16
static const char *NAMES[LMP_PROF_N] = {"other", "embedding", "norms", "linear GEMMs",
                                        "adapters", "attention", "elementwise", "LM head GEMMs",
                                        "cross-entropy", "communication", "optimizer"};
static double acc[LMP_PROF_N];
static long calls[LMP_PROF_N];
static int stack[PROF_DEPTH], depth, my_rank;
static double last;

// Charges the time since the last switch to the innermost open phase.
static void charge(void) {
    double now = lmp_now();
    if (depth > 0) acc[stack[depth - 1]] += now - last;
    last = now;
}

void lmp_prof_push(lmp_prof_phase p) {
    charge();
    if (depth < PROF_DEPTH) stack[depth] = p;
    depth++;
    calls[p]++;
}

void lmp_prof_pop(void) {
    charge();
    if (depth > 0) depth--;
}

static void report(void) {
    double total = 0.0;
    for (int p = 0; p < LMP_PROF_N; p++) total += acc[p];
    if (total <= 0.0) return;
    fprintf(stderr, "lorampi profile, rank %d: %.3f s in steps\n", my_rank, total);
    for (int p = 0; p < LMP_PROF_N; p++)
        fprintf(stderr, "  rank %d %-15s %9.3f s %5.1f%% %8ld calls\n", my_rank, NAMES[p], acc[p],
                100.0 * acc[p] / total, calls[p]);
}

void lmp_prof_init(int rank) {
    const char *e = getenv("LORAMPI_PROFILE");
    my_rank = rank;
    if (lmp_prof_on || !e || !*e || e[0] == '0') return;
    lmp_prof_on = 1;
    atexit(report);
}
