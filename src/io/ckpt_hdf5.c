// ckpt_hdf5.c: parallel HDF5 checkpoints (layout in ckpt_hdf5.h and README).
#include "io/ckpt_hdf5.h"
#include "io/h5attr.h"
#include "core/rng.h"
#include "core/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_ELEMS (1 << 20)   // ~4 MB chunks: one Fletcher32 sum each, cheap to re-read

// ---------------------------------------------------------------------------------------
// Names and selections

// Dataset path (relative to the file root or to /optim/m, /optim/v) of a registry entry:
// "h.0.attn.c_attn.lora_A" -> "adapter/transformer.h.0.attn.c_attn/lora_A",
// "h.0.ln_1.weight"        -> "params/transformer.h.0.ln_1.weight".
static void tensor_path(const lmp_param *p, char *out, size_t n) {
    if (p->role == LMP_ROLE_ADAPTER) {
        const char *dot = strrchr(p->name, '.');
        snprintf(out, n, "adapter/transformer.%.*s/%s", (int)(dot - p->name), p->name, dot + 1);
    } else {
        snprintf(out, n, "params/transformer.%s", p->name);
    }
}

// Selects this rank's part of p in the file dataspace: the whole tensor, or its slice as the
// union of one block per group along split_dim, whose row-major order is exactly the local
// buffer's (blocks in group order).
static void select_local(hid_t fs, const lmp_param *p) {
    if (p->split_dim < 0) {
        LMP_CHECK_H5(H5Sselect_all(fs));
        return;
    }
    LMP_CHECK_H5(H5Sselect_none(fs));
    for (int g = 0; g < p->groups; g++) {
        if (p->glen[g] == 0) continue;
        hsize_t start[2] = {0, 0}, count[2] = {1, 1};
        for (int d = 0; d < p->ndim; d++) count[d] = (hsize_t)p->shape[d];
        int d = p->split_dim;
        start[d] = (hsize_t)(lmp_param_group_start(p, g) + p->goff[g]);
        count[d] = (hsize_t)p->glen[g];
        LMP_CHECK_H5(H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL));
    }
}

// ---------------------------------------------------------------------------------------
// Base-weight checksum

// Wrapping sum of hash(name, global index, bits) over p's local elements. The global index
// comes from per-row and per-column maps (the split dim's map jumps between q|k|v blocks).
static uint64_t sum_elements(const lmp_param *p) {
    int nd = p->ndim;
    int64_t rows = nd == 2 ? p->local_shape[0] : 1, cols = p->local_shape[nd - 1];
    int64_t gcols = p->shape[nd - 1];
    int64_t *rmap = lmp_malloc((size_t)rows * sizeof *rmap), *cmap = lmp_malloc((size_t)cols * sizeof *cmap);
    for (int64_t i = 0; i < rows; i++) rmap[i] = i;
    for (int64_t j = 0; j < cols; j++) cmap[j] = j;
    if (p->split_dim >= 0) {
        int64_t *map = p->split_dim == nd - 1 ? cmap : rmap, n = p->split_dim == nd - 1 ? cols : rows;
        for (int64_t w = 0; w < n; w++) map[w] = lmp_param_split_pos(p, w);
    }
    uint64_t h = lmp_hash_str(p->name), s = 0;
    const float *x = p->data;
    // A sum modulo 2^64 is exact and order-free, so the OpenMP reduction is deterministic.
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            uint32_t bits;
            memcpy(&bits, &x[i * cols + j], sizeof bits);
            uint64_t gi = (uint64_t)(rmap[i] * gcols + cmap[j]);
            s += lmp_mix64(h ^ (gi * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)bits << 17));
        }
    free(rmap);
    free(cmap);
    return s;
}

uint64_t lmp_base_checksum(const lmp_registry *r, lmp_comm *c) {
    uint64_t sum = 0;
    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        // Count every global element once: replicas along dp and tp do not contribute.
        if (p->role != LMP_ROLE_BASE || c->dp_rank != 0 || (p->split_dim < 0 && c->tp_rank != 0))
            continue;
        sum += sum_elements(p);
    }
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_UINT64_T, MPI_SUM, c->world));
    return sum;
}

// ---------------------------------------------------------------------------------------
// Writing

// Chunks of about CHUNK_ELEMS, as equal as possible (an edge chunk is stored whole), that
// tile each rank's shard along the split dim: then every chunk has one writer and parallel
// HDF5 need not ship chunk data between ranks before filtering. All ranks must pass the
// same chunk shape, so the shard extent is computed from the layout, not from glen (which
// differs by one row between ranks for an uneven vocabulary split): the largest width
// dividing every block's shard (blocks of unequal widths under grouped-query attention).
static hsize_t gcd_h(hsize_t a, hsize_t b) { return b ? gcd_h(b, a % b) : a; }

static void chunk_dims(const lmp_param *p, int tp, hsize_t *chunk) {
    int nd = p->ndim;
    hsize_t ext[2] = {1, 1};
    for (int d = 0; d < nd; d++) ext[d] = (hsize_t)p->shape[d];
    if (p->split_dim >= 0) {
        hsize_t shard = 0;
        for (int g = 0; g < p->groups; g++) shard = gcd_h(shard, (hsize_t)(p->gsize[g] / tp));
        ext[p->split_dim] = shard > 0 ? shard : 1;
    }
    hsize_t n = (ext[nd - 1] + CHUNK_ELEMS - 1) / CHUNK_ELEMS;
    chunk[nd - 1] = (ext[nd - 1] + n - 1) / n;
    if (nd == 2) {
        n = (ext[0] * chunk[1] + CHUNK_ELEMS - 1) / CHUNK_ELEMS;
        chunk[0] = (ext[0] + n - 1) / n;
    }
}

// One chunked, Fletcher32-checked float32 dataset with p's global shape. Owners write their
// part (replicated tensors: rank 0 only; sharded: every tp rank of dp replica 0); the others
// take part in the collective call with an empty selection.
static void write_dataset(hid_t file, hid_t lcpl, hid_t dxpl, const char *path,
                          const lmp_param *p, const float *buf, int owner, int tp) {
    hsize_t dims[2] = {1, 1}, chunk[2] = {1, 1}, mdims[2] = {1, 1};
    for (int d = 0; d < p->ndim; d++) {
        dims[d] = (hsize_t)p->shape[d];
        mdims[d] = (hsize_t)p->local_shape[d];
    }
    chunk_dims(p, tp, chunk);
    hid_t fs = H5Screate_simple(p->ndim, dims, NULL), ms = H5Screate_simple(p->ndim, mdims, NULL);
    LMP_CHECK_H5(fs);
    LMP_CHECK_H5(ms);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    LMP_CHECK_H5(dcpl);
    LMP_CHECK_H5(H5Pset_chunk(dcpl, p->ndim, chunk));
    LMP_CHECK_H5(H5Pset_fletcher32(dcpl));
    LMP_CHECK_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
    hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, fs, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) lmp_die("checkpoint: cannot create dataset /%s", path);
    if (owner) {
        select_local(fs, p);
    } else {
        LMP_CHECK_H5(H5Sselect_none(fs));
        LMP_CHECK_H5(H5Sselect_none(ms));
    }
    LMP_CHECK_H5(H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf));
    LMP_CHECK_H5(H5Dclose(ds));
    LMP_CHECK_H5(H5Pclose(dcpl));
    LMP_CHECK_H5(H5Sclose(fs));
    LMP_CHECK_H5(H5Sclose(ms));
}

// The base model as the user knows it: its path, or how it was initialised.
static const char *base_desc(const lmp_config *cfg, char *buf, size_t n) {
    if (cfg->model.path[0]) snprintf(buf, n, "%s", cfg->model.path);
    else snprintf(buf, n, "random init from [train] seed = %llu", cfg->train.seed);
    return buf;
}

static const char *SCHED_NAMES[] = {"cosine", "linear", "constant"};

static void write_attrs(hid_t file, const lmp_comm *c, const lmp_config *cfg,
                        const lmp_ckpt_meta *meta) {
    char *text = lmp_config_dump(cfg);
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    lmp_h5_put_str(file, "format", LMP_CKPT_FORMAT);
    lmp_h5_put_i64(file, "format_version", LMP_CKPT_FORMAT_VERSION);
    lmp_h5_put_str(file, "lorampi_version", LMP_VERSION);
    lmp_h5_put_str(file, "created", when);
    lmp_h5_put_i64(file, "step", meta->step);
    lmp_h5_put_i64(file, "tp", c->tp_size);
    lmp_h5_put_i64(file, "dp", c->dp_size);
    lmp_h5_put_str(file, "config", text);
    char base[LMP_PATH_MAX + 64];
    lmp_h5_put_str(file, "base_model", base_desc(cfg, base, sizeof base));
    lmp_h5_put_u64(file, "base_checksum", meta->base_checksum);
    free(text);

    hid_t g = H5Gopen2(file, "optim", H5P_DEFAULT);
    LMP_CHECK_H5(g);
    lmp_h5_put_i64(g, "t", meta->step);
    lmp_h5_put_f64(g, "lr", meta->lr);
    lmp_h5_put_f64(g, "lr_peak", cfg->train.lr);
    lmp_h5_put_str(g, "schedule", SCHED_NAMES[cfg->train.schedule]);
    lmp_h5_put_i64(g, "warmup_steps", cfg->train.warmup_steps);
    lmp_h5_put_i64(g, "total_steps", cfg->train.steps);
    lmp_h5_put_f64(g, "min_lr_ratio", cfg->train.min_lr_ratio);
    lmp_h5_put_f64(g, "beta1", cfg->train.beta1);
    lmp_h5_put_f64(g, "beta2", cfg->train.beta2);
    lmp_h5_put_f64(g, "eps", cfg->train.eps);
    lmp_h5_put_f64(g, "weight_decay", cfg->train.weight_decay);
    LMP_CHECK_H5(H5Gclose(g));

    // Every random draw is a pure function of (seed, stream, counter), so seeds and the
    // counters below are the whole RNG and data-loader state.
    g = H5Gcreate2(file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    LMP_CHECK_H5(g);
    lmp_h5_put_str(g, "rng", "counter-based SplitMix64: draw = f(seed, stream, index)");
    lmp_h5_put_u64(g, "train_seed", cfg->train.seed);
    lmp_h5_put_u64(g, "adapter_seed", cfg->adapter.seed);
    lmp_h5_put_i64(g, "next_micro_step", meta->step * cfg->train.grad_accum);
    int64_t next = meta->step * meta->seq_per_step;
    lmp_h5_put_i64(g, "next_sequence", next);
    lmp_h5_put_i64(g, "sequences_per_epoch", meta->n_windows);
    lmp_h5_put_i64(g, "epoch", meta->n_windows ? next / meta->n_windows : 0);
    LMP_CHECK_H5(H5Gclose(g));
}

// Attributes of /adapter and of each /adapter/<module> group (PEFT's names where they exist).
static void write_adapter_attrs(hid_t file, const lmp_registry *r, const lmp_config *cfg) {
    if (H5Lexists(file, "adapter", H5P_DEFAULT) <= 0) return;
    hid_t g = H5Gopen2(file, "adapter", H5P_DEFAULT);
    LMP_CHECK_H5(g);
    lmp_h5_put_str(g, "peft_type", "LORA");
    lmp_h5_put_i64(g, "r", cfg->adapter.r);
    lmp_h5_put_f64(g, "lora_alpha", cfg->adapter.alpha);
    lmp_h5_put_f64(g, "lora_dropout", cfg->adapter.dropout);
    lmp_h5_put_i64(g, "use_rslora", cfg->adapter.rslora);
    lmp_h5_put_str(g, "target_modules", cfg->adapter.targets_str);
    lmp_h5_put_str(g, "layers", cfg->adapter.layers_str);
    LMP_CHECK_H5(H5Gclose(g));
    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        if (p->role != LMP_ROLE_ADAPTER || strcmp(strrchr(p->name, '.'), ".lora_A")) continue;
        char path[LMP_NAME_MAX + 32];
        tensor_path(p, path, sizeof path);
        *strrchr(path, '/') = 0;
        hid_t mg = H5Gopen2(file, path, H5P_DEFAULT);
        LMP_CHECK_H5(mg);
        double rr = (double)p->shape[0];
        lmp_h5_put_i64(mg, "r", p->shape[0]);
        lmp_h5_put_f64(mg, "lora_alpha", cfg->adapter.alpha);
        lmp_h5_put_f64(mg, "scaling", cfg->adapter.rslora ? cfg->adapter.alpha / sqrt(rr)
                                                    : cfg->adapter.alpha / rr);
        LMP_CHECK_H5(H5Gclose(mg));
    }
}

static void fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) lmp_die("cannot open %s to sync it: %s", path, strerror(errno));
    if (fsync(fd) != 0) lmp_die("cannot sync %s: %s", path, strerror(errno));
    close(fd);
}

// Step of "ckpt-<digits>.h5" (tmp = 0) or "ckpt-<digits>.h5.tmp" (tmp = 1), else -1.
static long long ckpt_step_of(const char *name, int tmp) {
    long long step;
    int end = 0;
    if (sscanf(name, "ckpt-%lld.h5%n", &step, &end) != 1 || step < 0) return -1;
    if (!isdigit((unsigned char)name[5])) return -1;  // sscanf would accept a sign or space
    return strcmp(name + end, tmp ? ".tmp" : "") ? -1 : step;
}

static int cmp_entry(const void *a, const void *b) {
    long long x = ((const lmp_ckpt_entry *)a)->step, y = ((const lmp_ckpt_entry *)b)->step;
    return x < y ? -1 : x > y;
}

lmp_ckpt_entry *lmp_ckpt_list(const char *dir, int *n) {
    lmp_ckpt_entry *list = NULL;
    int cap = 0;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s = ckpt_step_of(e->d_name, 0);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            list = realloc(list, (size_t)cap * sizeof *list);
            LMP_CHECK(list, "out of memory");
        }
        list[*n].step = s;
        snprintf(list[*n].name, sizeof list[*n].name, "%s", e->d_name);
        (*n)++;
    }
    closedir(d);
    qsort(list, (size_t)*n, sizeof *list, cmp_entry);
    return list;
}

// Rank 0, after a new checkpoint is in place: delete all but the newest `keep` and any
// temporary left by a crash.
static void apply_retention(const char *dir, int keep) {
    char path[LMP_PATH_MAX + 300];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (ckpt_step_of(e->d_name, 1) >= 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) == 0) lmp_log("checkpoint: removed %s (left by an interrupted write)\n", path);
        }
    if (d) closedir(d);
    int n;
    lmp_ckpt_entry *list = lmp_ckpt_list(dir, &n);
    for (int i = 0; keep > 0 && i < n - keep; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
        if (unlink(path) != 0)
            lmp_warn("checkpoint: cannot remove old %s: %s", path, strerror(errno));
    }
    free(list);
}

static hid_t mpio_fapl(lmp_comm *c) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    LMP_CHECK_H5(fapl);
    LMP_CHECK_H5(H5Pset_fapl_mpio(fapl, c->world, MPI_INFO_NULL));
    // 1.8+ object headers and superblock carry checksums of the metadata themselves.
    LMP_CHECK_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST));
    LMP_CHECK_H5(H5Pset_coll_metadata_write(fapl, 1));
    return fapl;
}

int64_t lmp_ckpt_save(const char *dir, int keep, const lmp_registry *r, lmp_comm *c,
                      const lmp_config *cfg, const lmp_ckpt_meta *meta) {
    double t0 = lmp_now();
    if (c->rank == 0) lmp_mkdir_p(dir);
    char final[LMP_PATH_MAX + 64], tmp[LMP_PATH_MAX + 80];
    snprintf(final, sizeof final, "%s/ckpt-%08lld.h5", dir, (long long)meta->step);
    snprintf(tmp, sizeof tmp, "%s.tmp", final);
    LMP_CHECK_MPI(MPI_Barrier(c->world));

    hid_t fapl = mpio_fapl(c);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) lmp_die("checkpoint: cannot create %s (is [checkpoint] dir writable?)", tmp);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dxpl = H5Pcreate(H5P_DATASET_XFER);
    LMP_CHECK_H5(lcpl);
    LMP_CHECK_H5(dxpl);
    LMP_CHECK_H5(H5Pset_create_intermediate_group(lcpl, 1));
    // Collective I/O: required for filtered (Fletcher32) datasets in parallel HDF5.
    LMP_CHECK_H5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
    hid_t g = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    LMP_CHECK_H5(g);
    LMP_CHECK_H5(H5Gclose(g));

    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        int owner = c->dp_rank == 0 && (p->split_dim >= 0 || c->tp_rank == 0);
        char path[LMP_NAME_MAX + 64], opath[LMP_NAME_MAX + 80];
        tensor_path(p, path, sizeof path);
        write_dataset(file, lcpl, dxpl, path, p, p->data, owner, c->tp_size);
        snprintf(opath, sizeof opath, "optim/m/%s", path);
        write_dataset(file, lcpl, dxpl, opath, p, p->m, owner, c->tp_size);
        snprintf(opath, sizeof opath, "optim/v/%s", path);
        write_dataset(file, lcpl, dxpl, opath, p, p->v, owner, c->tp_size);
    }
    write_adapter_attrs(file, r, cfg);
    write_attrs(file, c, cfg, meta);

    // Test hook, "STEP:SECONDS": widen the window between "data written" and "file
    // complete" of checkpoint STEP so that a test can kill a rank inside it.
    const char *delay = getenv("LORAMPI_TEST_CKPT_DELAY");
    long long dstep;
    double dsec;
    if (delay && sscanf(delay, "%lld:%lf", &dstep, &dsec) == 2 && dstep == meta->step) {
        lmp_log("checkpoint: test delay of %.0f s before closing %s\n", dsec, tmp);
        struct timespec ts = {(time_t)dsec, (long)((dsec - (double)(time_t)dsec) * 1e9)};
        nanosleep(&ts, NULL);
    }

    LMP_CHECK_H5(H5Pclose(lcpl));
    LMP_CHECK_H5(H5Pclose(dxpl));
    LMP_CHECK_H5(H5Pclose(fapl));
    LMP_CHECK_H5(H5Fclose(file));
    LMP_CHECK_MPI(MPI_Barrier(c->world));

    int64_t size = 0;
    if (c->rank == 0) {
        fsync_path(tmp, 0);
        if (rename(tmp, final) != 0) lmp_die("checkpoint: cannot rename %s to %s: %s", tmp, final, strerror(errno));
        fsync_path(dir, 1);
        struct stat st;
        if (stat(final, &st) == 0) size = st.st_size;
        apply_retention(dir, keep);
    }
    LMP_CHECK_MPI(MPI_Bcast(&size, 1, MPI_INT64_T, 0, c->world));
    lmp_log("checkpoint: wrote %s (%.1f MB) in %.2f s\n", final, size / 1e6, lmp_now() - t0);
    return size;
}

// ---------------------------------------------------------------------------------------
// Finding and reading

int lmp_ckpt_find_latest(const char *dir, char *path, size_t n, lmp_comm *c) {
    char best_name[256] = "";
    if (c->rank == 0) {
        int k;
        lmp_ckpt_entry *list = lmp_ckpt_list(dir, &k);
        if (k) snprintf(best_name, sizeof best_name, "%s", list[k - 1].name);
        free(list);
    }
    LMP_CHECK_MPI(MPI_Bcast(best_name, sizeof best_name, MPI_CHAR, 0, c->world));
    if (!best_name[0]) return 0;
    snprintf(path, n, "%s/%s", dir, best_name);
    return 1;
}

// Value of `key` in [section] of INI text written by lmp_config_dump; 0 if found.
static int ini_get(const char *ini, const char *section, const char *key, char *out, size_t n) {
    char cur[64] = "";
    for (const char *line = ini; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char buf[LMP_PATH_MAX + 128];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (buf[0] == '[') {
            snprintf(cur, sizeof cur, "%.*s", (int)strcspn(buf + 1, "]"), buf + 1);
        } else {
            char *eq = strstr(buf, " = ");
            if (eq && !strcmp(cur, section)) {
                *eq = 0;
                if (!strcmp(buf, key)) {
                    snprintf(out, n, "%s", eq + 3);
                    return 0;
                }
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    return -1;
}

// Compares the checkpoint's configuration with this run's. Keys that decide which tensors
// exist or what they mean must match (error in err); other changes are listed in warn.
static void compare_config(const char *path, const char *old, const lmp_config *cfg,
                           char *err, size_t errn, char *warn, size_t warnn) {
    static const char *MUST[] = {"adapter.method", "adapter.r", "adapter.alpha", "adapter.targets",
                                 "adapter.layers", "adapter.rslora"};
    char *now = lmp_config_dump(cfg), cur[64] = "";
    size_t wl = 0;
    warn[0] = 0;
    for (const char *line = now; line && *line;) {
        const char *nl = strchr(line, '\n');
        char buf[LMP_PATH_MAX + 128], was[LMP_PATH_MAX + 32];
        snprintf(buf, sizeof buf, "%.*s", (int)(nl ? nl - line : (long)strlen(line)), line);
        line = nl ? nl + 1 : NULL;
        if (buf[0] == '[') {
            snprintf(cur, sizeof cur, "%.*s", (int)strcspn(buf + 1, "]"), buf + 1);
            continue;
        }
        char *eq = strstr(buf, " = ");
        if (!eq) continue;
        *eq = 0;
        const char *key = buf, *val = eq + 3;
        if (!strcmp(cur, "parallel") || !strcmp(cur, "checkpoint") || !strcmp(cur, "log")) continue;
        if (ini_get(old, cur, key, was, sizeof was) || !strcmp(was, val)) continue;
        char full[LMP_PATH_MAX + 200];
        snprintf(full, sizeof full, "%s.%s", cur, key);
        int must = 0;
        for (size_t i = 0; i < sizeof MUST / sizeof MUST[0]; i++) must |= !strcmp(full, MUST[i]);
        if (must && !err[0]) {
            snprintf(err, errn, "checkpoint %.1000s has [%s] %.64s = %.200s, this run has %.64s = "
                     "%.200s: its adapter does not fit this run (start fresh with --no-resume "
                     "or another [checkpoint] dir)", path, cur, key, was, key, val);
        } else if (!must && wl + 1 < warnn) {
            wl += (size_t)snprintf(warn + wl, warnn - wl, "%s[%s] %.64s %.200s -> %.200s", wl ? ", " : "",
                                   cur, key, was, val);
            if (wl >= warnn) wl = warnn - 1;
        }
    }
    free(now);
}

// Reads this rank's part of p from dataset `dpath` into buf; 0, or -1 with a message.
static int read_dataset(hid_t file, const char *fname, const char *dpath, const lmp_param *p,
                        float *buf, char *err, size_t errn) {
    hid_t ds = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(err, errn, "checkpoint %s has no dataset /%s, which this run trains (other "
                 "targets, layers or method?)", fname, dpath);
        return -1;
    }
    hid_t fs = H5Dget_space(ds);
    hsize_t dims[4] = {0};
    int nd = fs < 0 ? -1 : H5Sget_simple_extent_ndims(fs);
    int same = nd == p->ndim;
    if (nd >= 1 && nd <= 4) H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int d = 0; same && d < nd; d++) same = dims[d] == (hsize_t)p->shape[d];
    int rc = 0;
    if (!same) {
        snprintf(err, errn, "checkpoint %s: dataset /%s has shape (%llu, %llu)[%d dims], this "
                 "run expects (%lld, %lld)[%d dims]", fname, dpath, (unsigned long long)dims[0],
                 (unsigned long long)dims[1], nd, (long long)p->shape[0],
                 (long long)(p->ndim > 1 ? p->shape[1] : 0), p->ndim);
        rc = -1;
    } else {
        hsize_t mdims[2];
        for (int d = 0; d < p->ndim; d++) mdims[d] = (hsize_t)p->local_shape[d];
        hid_t ms = H5Screate_simple(p->ndim, mdims, NULL);
        select_local(fs, p);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0) {
            snprintf(err, errn, "checkpoint %s: cannot read dataset /%s: its Fletcher32 checksum "
                     "does not match or its data is cut off (the file is corrupt or truncated; "
                     "resume from an older checkpoint with --resume PATH)", fname, dpath);
            rc = -1;
        }
        H5Sclose(ms);
    }
    H5Sclose(fs);
    H5Dclose(ds);
    return rc;
}

int64_t lmp_ckpt_load(const char *path, lmp_registry *r, lmp_comm *c, const lmp_config *cfg,
                      uint64_t base_checksum, int *tp, int *dp) {
    char err[2048] = "";
    struct stat st;
    if (stat(path, &st) != 0) lmp_die_all("checkpoint %s: %s", path, strerror(errno));
    // HDF5 would print its error stack on every rank; lorampi reports one message instead.
    H5E_auto2_t old_fn;
    void *old_data;
    H5Eget_auto2(H5E_DEFAULT, &old_fn, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    // Reading needs no coordination: each rank opens the file on its own (POSIX driver) and
    // reads its slices, so a rank that hits a bad chunk cannot leave the others waiting in a
    // collective call, and no MPI-IO layer sits between HDF5 and the page cache.
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        snprintf(err, sizeof err, "cannot open checkpoint %s: not an HDF5 file, or truncated or "
                 "corrupt (its metadata fails to read); resume from an older one with --resume "
                 "PATH or start fresh with --no-resume", path);
    lmp_die_if_any(c, err);

    char *format, *config, *base_model;
    lmp_h5_get_str(file, "format", &format);
    lmp_h5_get_str(file, "config", &config);
    lmp_h5_get_str(file, "base_model", &base_model);
    int64_t step = -1, t = 0, d = 0;
    uint64_t sum = 0;
    if (!format || strcmp(format, LMP_CKPT_FORMAT) || !config || !base_model ||
        lmp_h5_get_i64(file, "step", &step) || lmp_h5_get_i64(file, "tp", &t) ||
        lmp_h5_get_i64(file, "dp", &d) || lmp_h5_get(file, "base_checksum", H5T_NATIVE_UINT64, &sum))
        snprintf(err, sizeof err, "%s is not a lorampi checkpoint, or its attributes are "
                 "corrupt (expected the root attributes format = \"%s\", step, tp, dp, config, "
                 "base_model, base_checksum)", path, LMP_CKPT_FORMAT);
    lmp_die_if_any(c, err);
    char base[LMP_PATH_MAX + 64];
    if (sum != base_checksum)
        lmp_die_all("checkpoint %s was trained on other base weights: its base checksum "
                    "%016llx (base model: %s) differs from this run's %016llx (base model: %s); "
                    "start fresh with --no-resume or point [model] path at the right model",
                    path, (unsigned long long)sum, base_model, (unsigned long long)base_checksum,
                    base_desc(cfg, base, sizeof base));
    if (step > cfg->train.steps)
        lmp_die_all("checkpoint %s is at step %lld, beyond [train] steps = %d", path,
                    (long long)step, cfg->train.steps);
    char warn[2048];
    compare_config(path, config, cfg, err, sizeof err, warn, sizeof warn);
    lmp_die_if_any(c, err);

    for (int k = 0; k < r->n && !err[0]; k++) {
        lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        char dpath[LMP_NAME_MAX + 64], opath[LMP_NAME_MAX + 80];
        tensor_path(p, dpath, sizeof dpath);
        if (read_dataset(file, path, dpath, p, p->data, err, sizeof err)) break;
        snprintf(opath, sizeof opath, "optim/m/%s", dpath);
        if (read_dataset(file, path, opath, p, p->m, err, sizeof err)) break;
        snprintf(opath, sizeof opath, "optim/v/%s", dpath);
        read_dataset(file, path, opath, p, p->v, err, sizeof err);
    }
    H5Fclose(file);
    H5Eset_auto2(H5E_DEFAULT, old_fn, old_data);
    lmp_die_if_any(c, err);
    if (warn[0]) lmp_warn("resuming with changed settings: %s", warn);
    free(format);
    free(config);
    free(base_model);
    *tp = (int)t;
    *dp = (int)d;
    return step;
}
