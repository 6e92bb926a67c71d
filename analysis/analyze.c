// analyze.c: `lorampi analyze spectrum | similarity | vs-base`: the command line, and the
// arithmetic the subcommands share. Adapters come from HDF5 checkpoints (ckpt_modules.c),
// W from the base model; each subcommand (spectrum.c, similarity.c, vs_base.c) writes
// OUT.h5, OUT.csv and plots (output.c). Per-module work that fits one rank (low-rank SVDs,
// φ) is dealt round-robin over the ranks and summed back exactly (one contributor per
// value), so results do not depend on the rank count; distributed SVDs (W, --full-svd) use
// every rank in one ScaLAPACK grid.
#include "analysis/subcommands.h"
#include "core/util.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_an_combine(double *x, size_t n) {
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
}

void lmp_an_dw_svd(const adapter_mod *m, int full, const lmp_grid *g, double *S, double *U, double *V) {
    if (!full) {
        lmp_lowrank_svd(m->B, m->A, m->out, m->in, m->r, m->scale, S, U, V);
        return;
    }
    lmp_dmat d;
    lmp_dmat_alloc(&d, g, m->out, m->in, LMP_AN_NB);
    int lld = d.mloc > 1 ? d.mloc : 1;
    for (int lj = 0; lj < d.nloc; lj++) {
        int gj = lmp_dmat_gcol(&d, g, lj);
        for (int li = 0; li < d.mloc; li++) {
            int gi = lmp_dmat_grow(&d, g, li);
            double v = 0;
            for (int k = 0; k < m->r; k++) v += m->B[(size_t)gi * m->r + k] * m->A[(size_t)k * m->in + gj];
            d.a[(size_t)lj * lld + li] = m->scale * v;
        }
    }
    int mn = m->out < m->in ? m->out : m->in;
    double *all = lmp_malloc((size_t)mn * sizeof(double));
    lmp_pdsvd(g, &d, all, (U || V) ? m->r : 0, U, V);
    memcpy(S, all, (size_t)m->r * sizeof(double));
    free(all);
    lmp_dmat_free(&d);
}

static int usage(const char *msg) {
    if (lmp_world_rank() == 0)
        fprintf(stderr, "lorampi analyze: %s\nusage:\n"
                "  lorampi analyze spectrum (CKPT | --run DIR) --out OUT.h5 [--full-svd] [--no-plot]\n"
                "  lorampi analyze similarity CKPT1 CKPT2 --out OUT.h5 [--vectors A|dw-left|dw-right] [--module NAME] [--no-plot]\n"
                "  lorampi analyze vs-base CKPT --model HF_DIR --out OUT.h5 [--full-svd] [--no-plot]\n", msg);
    return LMP_EXIT_USAGE;
}

typedef struct {
    const char *out, *run, *model, *only, *pos[2];
    int full, no_plot, npos;
    lmp_an_vec vk;
} options;

// The options after the subcommand; NULL, or what is wrong.
static const char *parse_options(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--out") && more) o->out = argv[++i];
        else if (!strcmp(argv[i], "--run") && more) o->run = argv[++i];
        else if (!strcmp(argv[i], "--model") && more) o->model = argv[++i];
        else if (!strcmp(argv[i], "--module") && more) o->only = argv[++i];
        else if (!strcmp(argv[i], "--full-svd")) o->full = 1;
        else if (!strcmp(argv[i], "--no-plot")) o->no_plot = 1;
        else if (!strcmp(argv[i], "--vectors") && more) {
            i++;
            int k = -1;
            for (int v = 0; v < 3; v++) if (!strcmp(argv[i], LMP_AN_VEC_NAMES[v])) k = v;
            if (k < 0) return "--vectors: expected A, dw-left or dw-right";
            o->vk = (lmp_an_vec)k;
        } else if (argv[i][0] == '-') return "unknown option or missing value";
        else if (o->npos < 2) o->pos[o->npos++] = argv[i];
        else return "too many checkpoints";
    }
    return o->out ? NULL : "give --out OUT.h5";
}

int lmp_analyze_main(int argc, char **argv) {
    if (argc < 1) return usage("give a subcommand");
    options o;
    const char *bad = parse_options(argc, argv, &o);
    if (bad) return usage(bad);
    int up = 1;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &up, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (lmp_world_rank() == 0) printf("analyze: %d ranks up\n", up);
    const char *cmd = argv[0];
    if (!strcmp(cmd, "spectrum")) {
        if (!!o.run == !!o.pos[0] || o.npos > 1) return usage("spectrum: give one CKPT or --run DIR");
        return lmp_an_spectrum(o.pos[0], o.run, o.out, o.full, o.no_plot);
    }
    if (!strcmp(cmd, "similarity")) {
        if (o.npos != 2) return usage("similarity: give two checkpoints");
        return lmp_an_similarity(o.pos[0], o.pos[1], o.out, o.vk, o.only, o.no_plot);
    }
    if (!strcmp(cmd, "vs-base")) {
        if (o.npos != 1 || !o.model) return usage("vs-base: give CKPT and --model HF_DIR");
        return lmp_an_vs_base(o.pos[0], o.model, o.out, o.full, o.no_plot);
    }
    return usage("unknown subcommand (spectrum, similarity, vs-base)");
}
