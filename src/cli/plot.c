// plot.c: `lorampi plot METRICS.jsonl [MORE.jsonl ...] --out PNG`: training curves of runs
// through analysis/plot_runs.py (python3-matplotlib), run without a shell.
#include "cli/cli.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lmp_cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    char **av = lmp_calloc(((size_t)argc + 4) * sizeof(char *));
    int n = 2;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] == '-') { free(av); return lmp_usage_error("plot: unknown option %s", argv[i]); }
        else av[n++] = argv[i];
    }
    if (!out || n == 2) { free(av); return lmp_usage_error("%s", "plot: give METRICS.jsonl files and --out PNG"); }
    if (lmp_world_rank() != 0) { free(av); return 0; }
    for (int i = 2; i < n; i++)
        if (access(av[i], R_OK) != 0) lmp_die("plot: cannot read %s: %s", av[i], strerror(errno));
    const char *script = getenv("LORAMPI_PLOT_RUNS_SCRIPT");
    av[0] = "/usr/bin/python3";
    av[1] = (char *)(script ? script : LMP_SOURCE_DIR "/analysis/plot_runs.py");
    // plot_runs.py OUT.png FILES...: the output first
    memmove(av + 3, av + 2, (size_t)(n - 2) * sizeof(char *));
    av[2] = (char *)out;
    av[n + 1] = NULL;
    char err[512];
    int rc = lmp_run_program(av, err, sizeof err);
    free(av);
    if (rc < 0) lmp_die("plot: %s", err);
    if (rc != 0) return LMP_EXIT_ERROR;  // plot_runs.py printed the reason
    lmp_log("plot: wrote %s\n", out);
    return 0;
}
