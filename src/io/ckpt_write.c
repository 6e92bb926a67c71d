// ckpt_write.c: writing a checkpoint with parallel HDF5, atomically (see ckpt_hdf5.h).
#include "io/ckpt_hdf5.h"
#include "io/ckpt_layout.h"
#include "io/ckpt_read.h"
#include "io/h5attr.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_ELEMS (1 << 20)   // ~4 MB chunks: one Fletcher32 sum each, cheap to re-read

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
        LMP_CHECK_H5(lmp_ckpt_select_local(fs, p));
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
    lmp_h5_put_str(file, "base_model", lmp_ckpt_base_desc(cfg, base, sizeof base));
    lmp_h5_put_u64(file, "base_checksum", meta->base_checksum);
    lmp_h5_put_str(file, "lineage", meta->lineage);
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

// Attributes of one adapted module's group, from its record: where it sits and what it is,
// so that readers (the analysis, PEFT tools) need not parse the module's name.
static void write_module_attrs(hid_t file, const lmp_adapter_rec *rec) {
    char path[LMP_NAME_MAX + 32];
    lmp_fmt(path, sizeof path, "adapter/%s%s", lmp_hf_prefix(rec->name), rec->name);
    // A record whose tensors are all derived (prefix projection's prefixes: the MLP's output)
    // has no dataset to create its group: the group holds its attributes alone.
    htri_t has = H5Lexists(file, path, H5P_DEFAULT);
    LMP_CHECK_H5(has);
    hid_t mg = has ? H5Gopen2(file, path, H5P_DEFAULT) : H5Gcreate2(file, path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (mg < 0) lmp_die("checkpoint: no group /%s for adapter record %s", path, rec->name);
    lmp_h5_put_str(mg, "method", rec->method);
    lmp_h5_put_i64(mg, "layer", rec->layer);
    lmp_h5_put_str(mg, "target", rec->target);
    lmp_h5_put_i64(mg, "slice", rec->slice);
    lmp_h5_put_str(mg, "module", rec->module);
    lmp_h5_put_str(mg, "site", rec->site);
    lmp_h5_put_str(mg, "base_weight", rec->base);
    lmp_h5_put_i64(mg, "base_in", rec->base_in);
    lmp_h5_put_i64(mg, "base_out", rec->base_out);
    lmp_h5_put_i64(mg, "out_offset", rec->out_offset);
    lmp_h5_put_i64(mg, "in", rec->in);
    lmp_h5_put_i64(mg, "out", rec->out);
    lmp_h5_put_i64(mg, "r", rec->r);
    lmp_h5_put_f64(mg, "lora_alpha", rec->alpha);
    lmp_h5_put_f64(mg, "scaling", rec->scale);  // the float the forward pass multiplies by
    LMP_CHECK_H5(H5Gclose(mg));
}

// Attributes of /adapter (PEFT's names where they exist) and of each module's group.
static void write_adapter_attrs(hid_t file, const lmp_registry *r, const lmp_config *cfg) {
    if (r->n_rec == 0) return;
    hid_t g = H5Gopen2(file, "adapter", H5P_DEFAULT);
    LMP_CHECK_H5(g);
    char methods[64];  // PEFT's type where the methods are LoRA alone; the [adapter] method list
    lmp_config_methods(cfg->adapter.method, methods, sizeof methods);
    int m = cfg->adapter.method;  // DoRA is PEFT's LORA with use_dora
    lmp_h5_put_str(g, "peft_type", m == LMP_METHOD_LORA || m == LMP_METHOD_DORA ? "LORA" : m == LMP_METHOD_IA3 ? "IA3" : "");
    lmp_h5_put_str(g, "method", methods);
    lmp_h5_put_i64(g, "r", cfg->adapter.r);
    lmp_h5_put_f64(g, "lora_alpha", cfg->adapter.alpha);
    lmp_h5_put_f64(g, "lora_dropout", cfg->adapter.dropout);
    lmp_h5_put_i64(g, "use_rslora", cfg->adapter.rslora);
    lmp_h5_put_str(g, "target_modules", cfg->adapter.targets_str);
    lmp_h5_put_str(g, "layers", cfg->adapter.layers_str);
    LMP_CHECK_H5(H5Gclose(g));
    for (int k = 0; k < r->n_rec; k++) write_module_attrs(file, &r->rec[k]);
}

static void fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) lmp_die("cannot open %s to sync it: %s", path, strerror(errno));
    if (fsync(fd) != 0) lmp_die("cannot sync %s: %s", path, strerror(errno));
    close(fd);
}

// The checkpoint being written, for the error path (write_failed).
static struct {
    char dir[LMP_PATH_MAX], tmp[LMP_PATH_MAX + 80];
    hid_t file;
    int ranks;
} cur = {.file = -1};

// Why a write in dir failed, from errno right after the failing call, else from the free
// space left (HDF5 and MPI-IO do not always keep errno); "" when neither tells.
static const char *write_cause(const char *dir, int err, char *buf, size_t n) {
    struct statvfs fs;
    int vfs = statvfs(dir, &fs) == 0;
    unsigned long long avail = vfs ? (unsigned long long)fs.f_bavail * fs.f_frsize : 0;
    if (err == ENOSPC || (vfs && (avail < (1u << 20) || fs.f_favail == 0)))
        snprintf(buf, n, "disk full: %llu KB left on the file system of %s", avail >> 10, dir);
    else if (err == EDQUOT) snprintf(buf, n, "disk quota exceeded on %s", dir);
    else if (err == EACCES || err == EPERM) snprintf(buf, n, "permission denied in %s", dir);
    else if (err == EROFS) snprintf(buf, n, "%s is on a read-only file system", dir);
    else if (err == EIO) snprintf(buf, n, "I/O error on the file system of %s", dir);
    else buf[0] = 0;
    return buf;
}

// lmp_die's hook while a checkpoint is written: names the cause, removes the partial file
// (every failing rank tries; the first wins) and, on one rank, closes the file so that
// HDF5's exit handler has nothing left to flush. With more ranks the file stays open: its
// close is collective and the peers are elsewhere; MPI_Abort ends them all.
static void write_failed(char *msg, size_t n) {
    int err = errno;
    char cause[LMP_PATH_MAX + 96];
    write_cause(cur.dir, err, cause, sizeof cause);
    if (cur.ranks == 1 && cur.file >= 0) H5Fclose(cur.file);
    cur.file = -1;
    int gone = unlink(cur.tmp) == 0 || errno == ENOENT;
    size_t k = strlen(msg);
    snprintf(msg + k, n - k, "%s%s; %s %s; older checkpoints are untouched", cause[0] ? ": " : "", cause,
             gone ? "removed the partial" : "could not remove the partial", cur.tmp);
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

// Every trainable tensor and its AdamW moments, at the paths of ckpt_layout.h.
static void write_tensors(hid_t file, hid_t lcpl, hid_t dxpl, const lmp_registry *r, const lmp_comm *c) {
    for (int k = 0; k < r->n; k++) {
        const lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        int owner = c->dp_rank == 0 && (p->split_dim >= 0 || c->tp_rank == 0);
        char path[LMP_NAME_MAX + 64], opath[LMP_NAME_MAX + 80];
        lmp_ckpt_tensor_path(r, p, path, sizeof path);
        write_dataset(file, lcpl, dxpl, path, p, p->data, owner, c->tp_size);
        write_dataset(file, lcpl, dxpl, lmp_fmt(opath, sizeof opath, "optim/m/%s", path), p, p->m, owner, c->tp_size);
        write_dataset(file, lcpl, dxpl, lmp_fmt(opath, sizeof opath, "optim/v/%s", path), p, p->v, owner, c->tp_size);
    }
}

// Reads back this rank's own part of every tensor it wrote and compares it bit for bit:
// MPI-IO (Open MPI's OMPIO) can lose a collective write on a full disk without returning an
// error to HDF5, leaving holes that read as zeros, which Fletcher32 accepts. 0, or -1 with err.
static int verify_tensors(const char *tmp, const lmp_registry *r, const lmp_comm *c, char *err, size_t errn) {
    lmp_ckpt_reader rd;
    if (lmp_ckpt_open(&rd, tmp, err, errn)) return -1;
    int rc = 0;
    for (int k = 0; k < r->n && !rc; k++) {
        const lmp_param *p = &r->p[k];
        if (!p->trainable || c->dp_rank != 0 || (p->split_dim < 0 && c->tp_rank != 0)) continue;
        size_t len = p->numel;
        float *buf = lmp_malloc(len * sizeof(float));
        const float *mem[3] = {p->data, p->m, p->v};
        char path[LMP_NAME_MAX + 64], dpath[LMP_NAME_MAX + 80];
        lmp_ckpt_tensor_path(r, p, path, sizeof path);
        for (int w = 0; w < 3 && !rc; w++) {
            lmp_fmt(dpath, sizeof dpath, "%s%s", w == 0 ? "" : w == 1 ? "optim/m/" : "optim/v/", path);
            rc = lmp_ckpt_read_local(&rd, dpath, p, buf, err, errn);
            if (!rc && memcmp(buf, mem[w], len * sizeof(float)))
                rc = -1, snprintf(err, errn, "checkpoint: %s: dataset /%s reads back other values than "
                                  "were written (a write lost without an error)", tmp, dpath);
        }
        free(buf);
    }
    char cerr[LMP_PATH_MAX + 64];
    if (lmp_ckpt_close(&rd, cerr, sizeof cerr) && !rc) rc = -1, snprintf(err, errn, "%s", cerr);
    return rc;
}

// After every rank closed the file: verifies it; on a failure anywhere, rank 0 removes it and
// every rank exits with the message of the lowest failing rank, its cause named.
static void verify_or_die(const char *dir, const char *tmp, const lmp_registry *r, lmp_comm *c) {
    char why[LMP_PATH_MAX + 512] = "", err[2 * LMP_PATH_MAX + 1024] = "", cause[LMP_PATH_MAX + 96];
    if (verify_tensors(tmp, r, c, why, sizeof why))
        snprintf(err, sizeof err, "checkpoint: writing %s failed, it does not read back: %s%s%s", tmp,
                 why, write_cause(dir, 0, cause, sizeof cause)[0] ? ": " : "", cause);
    int bad = err[0] != 0;
    LMP_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, c->world));
    if (!bad) return;
    int gone = c->rank != 0 || unlink(tmp) == 0 || errno == ENOENT;
    if (c->rank == 0 && !gone) lmp_warn("checkpoint: cannot remove %s: %s", tmp, strerror(errno));
    if (err[0]) {
        size_t k = strlen(err);
        snprintf(err + k, sizeof err - k, "; removed the partial %s; older checkpoints are untouched", tmp);
    }
    lmp_set_die_hook(NULL);
    lmp_die_if_any(c, err);
}

// Test hook, "STEP:SECONDS": widen the window between "data written" and "file complete" of
// checkpoint STEP so that a test can kill a rank inside it.
static void test_delay(int64_t step, const char *tmp) {
    const char *delay = getenv("LORAMPI_TEST_CKPT_DELAY");
    long long dstep;
    double dsec;
    if (delay && sscanf(delay, "%lld:%lf", &dstep, &dsec) == 2 && dstep == step) {
        lmp_log("checkpoint: test delay of %.0f s before closing %s\n", dsec, tmp);
        struct timespec ts = {(time_t)dsec, (long)((dsec - (double)(time_t)dsec) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

// Writes the whole file tmp, collectively; on any error write_failed (lmp_die's hook) names
// the cause and removes tmp.
static void write_file(const char *tmp, const lmp_registry *r, lmp_comm *c, const lmp_config *cfg,
                       const lmp_ckpt_meta *meta) {
    hid_t fapl = mpio_fapl(c);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) lmp_die("checkpoint: cannot create %s", tmp);
    cur.file = file;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dxpl = H5Pcreate(H5P_DATASET_XFER);
    LMP_CHECK_H5(lcpl);
    LMP_CHECK_H5(dxpl);
    LMP_CHECK_H5(H5Pset_create_intermediate_group(lcpl, 1));
    // Collective I/O: required for filtered (Fletcher32) datasets in parallel HDF5.
    LMP_CHECK_H5(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE));
    hid_t g = H5Gcreate2(file, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    LMP_CHECK_H5(g);
    LMP_CHECK_H5(H5Gclose(g));
    write_tensors(file, lcpl, dxpl, r, c);
    write_adapter_attrs(file, r, cfg);
    write_attrs(file, c, cfg, meta);
    test_delay(meta->step, tmp);
    LMP_CHECK_H5(H5Pclose(lcpl));
    LMP_CHECK_H5(H5Pclose(dxpl));
    LMP_CHECK_H5(H5Pclose(fapl));
    cur.file = -1;  // closed or failed: either way no longer ours to close
    if (H5Fclose(file) < 0) lmp_die("checkpoint: cannot complete %s (HDF5 failed to flush and close it)", tmp);
}

int64_t lmp_ckpt_save(const char *dir, int keep, const lmp_registry *r, lmp_comm *c,
                      const lmp_config *cfg, const lmp_ckpt_meta *meta) {
    double t0 = lmp_now();
    if (c->rank == 0) lmp_mkdir_p(dir);
    char final[LMP_PATH_MAX + 64], tmp[LMP_PATH_MAX + 80];
    char name[64];
    lmp_path_join(final, sizeof final, dir, lmp_fmt(name, sizeof name, "ckpt-%08lld.h5", (long long)meta->step));
    lmp_fmt(tmp, sizeof tmp, "%s.tmp", final);
    // A temporary of the same name (a crash's, or not a file at all: a FIFO would block the
    // create) goes first.
    if (c->rank == 0 && unlink(tmp) != 0 && errno != ENOENT)
        lmp_die("checkpoint: cannot remove the stale %s: %s", tmp, strerror(errno));
    LMP_CHECK_MPI(MPI_Barrier(c->world));

    lmp_fmt(cur.dir, sizeof cur.dir, "%s", dir);
    lmp_fmt(cur.tmp, sizeof cur.tmp, "%s", tmp);
    cur.ranks = c->size;
    lmp_set_die_hook(write_failed);
    // One message naming the cause (write_failed) instead of HDF5's stack on every rank.
    H5E_auto2_t efn;
    void *edata;
    LMP_CHECK_H5(H5Eget_auto2(H5E_DEFAULT, &efn, &edata));
    LMP_CHECK_H5(H5Eset_auto2(H5E_DEFAULT, NULL, NULL));
    write_file(tmp, r, c, cfg, meta);
    LMP_CHECK_MPI(MPI_Barrier(c->world));
    verify_or_die(dir, tmp, r, c);

    int64_t size = 0;
    if (c->rank == 0) {
        fsync_path(tmp, 0);
        if (rename(tmp, final) != 0) lmp_die("checkpoint: cannot rename %s to %s: %s", tmp, final, strerror(errno));
        lmp_set_die_hook(NULL);  // the file is in place: nothing partial to remove
        fsync_path(dir, 1);
        struct stat st;
        if (stat(final, &st) == 0) size = st.st_size;
        lmp_ckpt_apply_retention(dir, keep, meta->lineage);
    }
    lmp_set_die_hook(NULL);
    LMP_CHECK_H5(H5Eset_auto2(H5E_DEFAULT, efn, edata));
    LMP_CHECK_MPI(MPI_Bcast(&size, 1, MPI_INT64_T, 0, c->world));
    lmp_log("checkpoint: wrote %s (%.1f MB) in %.2f s\n", final, size / 1e6, lmp_now() - t0);
    return size;
}
