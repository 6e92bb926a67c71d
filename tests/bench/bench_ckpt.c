// bench_ckpt: checkpoint write and read time and file size for a GPT-2 124M-shaped model
// (random weights), LoRA r=8 on all targets vs full weights, under tp = number of ranks;
// next to a plain write+fsync of the same number of bytes by one process (the disk's bound)
// and the base-weight checksum a resume computes.
// Usage: mpirun -n P bench_ckpt DIR [reps]   (run by tests/bench/bench_ckpt.sh)
#include "io/ckpt_hdf5.h"
#include "model/model.h"
#include "core/util.h"

#include <fcntl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Seconds to write n bytes with write(2) and fsync them: what the file system allows.
static double posix_write(const char *dir, size_t n) {
    char path[LMP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/posix.bin", dir);
    char *buf = lmp_calloc(n);
    memset(buf, 1, n);
    double t0 = lmp_now();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    LMP_CHECK(fd >= 0, "cannot create %s", path);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, n - off);
        LMP_CHECK(w > 0, "write %s failed", path);
        off += (size_t)w;
    }
    LMP_CHECK(fsync(fd) == 0 && close(fd) == 0, "fsync %s failed", path);
    double dt = lmp_now() - t0;
    unlink(path);
    free(buf);
    return dt;
}

static void run_mode(lmp_comm *c, const char *dir, int full, int reps) {
    lmp_config cfg;
    lmp_config_load(&cfg, NULL, NULL, 0);
    char err[256];
    LMP_CHECK(lmp_config_set(&cfg, "adapter", "targets", "all", err, sizeof err) == 0, "%s", err);
    LMP_CHECK(lmp_config_set(&cfg, "adapter", "method", full ? "none" : "lora", err, sizeof err) == 0, "%s", err);
    cfg.parallel.tp = c->tp_size;
    lmp_model_config mc = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257, .n_ctx = 1024, .ln_eps = 1e-5f};
    lmp_model_opts o = {.full_finetune = full, .targets = full ? 0 : cfg.adapter.targets,
                        .ad = {.r = 8, .alpha = 16}};
    lmp_model m;
    lmp_model_build(&m, &mc, &o, c);
    lmp_model_init_base(&m, 1);
    lmp_model_init_adapters(&m, 0, 2);
    // Moments as after training: not zero (zeros would flatter nothing, but be honest).
    for (size_t i = 0; i < m.reg.n_train; i++) {
        m.reg.m_mem[i] = 1e-3f * (float)(i % 101);
        m.reg.v_mem[i] = 1e-6f * (float)(i % 89);
    }
    double t0 = lmp_now();
    uint64_t sum = lmp_base_checksum(&m.reg, c);
    double t_sum = lmp_now() - t0;
    lmp_ckpt_meta meta = {1, 1e-4f, sum, 8, 1000, "bench"};
    double best_w = 1e30, best_r = 1e30;
    int64_t size = 0;
    char path[LMP_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/ckpt-%08d.h5", dir, 1);
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(c->world);
        t0 = lmp_now();
        size = lmp_ckpt_save(dir, 1, &m.reg, c, &cfg, &meta);
        double dt = lmp_now() - t0;
        if (dt < best_w) best_w = dt;
        MPI_Barrier(c->world);
        t0 = lmp_now();
        int tp, dp;
        lmp_ckpt_load(path, &m.reg, c, &cfg, sum, &tp, &dp);
        dt = lmp_now() - t0;
        if (dt < best_r) best_r = dt;
    }
    double t_posix = c->rank == 0 ? posix_write(dir, (size_t)size) : 0;
    if (c->rank == 0) {
        printf("| %-14s | %d | %8.1f | %7.2f | %6.0f | %7.2f | %6.0f | %9.2f | %8.2f |\n",
               full ? "full weights" : "LoRA r=8, all", c->size, size / 1e6, best_w,
               size / 1e6 / best_w, best_r, size / 1e6 / best_r, t_posix, t_sum);
        fflush(stdout);
    }
    unlink(path);
    lmp_model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 2) lmp_die("usage: bench_ckpt DIR [reps]");
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    lmp_comm c;
    lmp_comm_init(&c, MPI_COMM_WORLD, lmp_world_size());
    if (c.rank == 0) lmp_mkdir_p(argv[1]);
    MPI_Barrier(MPI_COMM_WORLD);
    run_mode(&c, argv[1], 0, reps);
    run_mode(&c, argv[1], 1, reps);
    lmp_comm_free(&c);
    MPI_Finalize();
    return 0;
}
