// model_io.c: safetensors, HF GPT-2 directories, llm.c model and token files.
// Every number read from a file is checked against the file before it is used.
#include "io/model_io.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define LMP_PATH_MAX_IO 1024

// ---------------------------------------------------------------------------------------
// low-level file helpers

static uint64_t file_size(int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) lmp_die("cannot stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

static void pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path) {
    char *p = buf;
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k <= 0) lmp_die("%s: read of %zu bytes at offset %llu failed (truncated file?)", path, n,
                            (unsigned long long)off);
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}


// ---------------------------------------------------------------------------------------
// safetensors

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else {  // subnormal: renormalise
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static int dtype_size(lmp_dtype d) { return d == LMP_DT_F32 ? 4 : d == LMP_DT_OTHER ? 0 : 2; }

void lmp_st_open(lmp_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) lmp_die("cannot open %s: %s", path, strerror(errno));
    f->file_size = file_size(f->fd, path);
    if (f->file_size < 8) lmp_die("%s: %llu bytes, too short for a safetensors header", path, (unsigned long long)f->file_size);
    uint64_t hlen;
    pread_all(f->fd, &hlen, 8, 0, path);
    if (hlen == 0 || hlen > f->file_size - 8)
        lmp_die("%s: header length %llu exceeds the file (%llu bytes): not safetensors, or truncated", path,
                (unsigned long long)hlen, (unsigned long long)f->file_size);
    char *h = lmp_malloc(hlen + 1);
    pread_all(f->fd, h, hlen, 8, path);
    h[hlen] = 0;
    json_error_t je;
    json_t *root = json_loadb(h, hlen, 0, &je);
    free(h);
    if (!root || !json_is_object(root))
        lmp_die("%s: header is not a JSON object (%s, line %d column %d)", path, root ? "not an object" : je.text, je.line, je.column);
    uint64_t data0 = 8 + hlen, dsize = f->file_size - data0;
    f->t = lmp_calloc(json_object_size(root) * sizeof(lmp_st_tensor) + 1);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (!strcmp(name, "__metadata__")) continue;
        lmp_st_tensor *t = &f->t[f->n];
        if (strlen(name) >= LMP_NAME_MAX) lmp_die("%s: tensor name too long: %.60s...", path, name);
        strcpy(t->name, name);
        json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *of = json_object_get(v, "data_offsets");
        if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) || json_array_size(of) != 2)
            lmp_die("%s: tensor %s lacks dtype, shape or data_offsets", path, name);
        const char *d = json_string_value(dt);
        t->dtype = !strcmp(d, "F32") ? LMP_DT_F32 : !strcmp(d, "F16") ? LMP_DT_F16 : !strcmp(d, "BF16") ? LMP_DT_BF16 : LMP_DT_OTHER;
        if (json_array_size(sh) > 8) lmp_die("%s: tensor %s has %zu dims", path, name, json_array_size(sh));
        t->ndim = (int)json_array_size(sh);
        uint64_t numel = 1;
        for (int i = 0; i < t->ndim; i++) {
            json_t *x = json_array_get(sh, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0) lmp_die("%s: tensor %s has a bad shape", path, name);
            t->shape[i] = json_integer_value(x);
            numel *= (uint64_t)t->shape[i];
        }
        json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > dsize)
            lmp_die("%s: tensor %s has data_offsets outside the file's %llu data bytes (truncated?)", path, name,
                    (unsigned long long)dsize);
        t->begin = data0 + (uint64_t)json_integer_value(b);
        t->end = data0 + (uint64_t)json_integer_value(e);
        if (t->dtype != LMP_DT_OTHER && t->end - t->begin != numel * (uint64_t)dtype_size(t->dtype))
            lmp_die("%s: tensor %s holds %llu bytes, its shape and dtype need %llu", path, name,
                    (unsigned long long)(t->end - t->begin), (unsigned long long)(numel * dtype_size(t->dtype)));
        f->n++;
    }
    json_decref(root);
    for (int i = 0; i < f->n; i++)  // no two tensors share bytes
        for (int j = i + 1; j < f->n; j++)
            if (f->t[i].begin < f->t[j].end && f->t[j].begin < f->t[i].end && f->t[i].end > f->t[i].begin &&
                f->t[j].end > f->t[j].begin)
                lmp_die("%s: tensors %s and %s overlap", path, f->t[i].name, f->t[j].name);
}

void lmp_st_close(lmp_st_file *f) {
    if (f->fd >= 0) close(f->fd);
    free(f->t);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

const lmp_st_tensor *lmp_st_find(const lmp_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

void lmp_st_read_block(const lmp_st_file *f, const lmp_st_tensor *t, int64_t r0, int64_t nr,
                       int64_t c0, int64_t nc, float *dst) {
    if (t->dtype == LMP_DT_OTHER) lmp_die("%s: tensor %s has an unsupported dtype (F32, F16, BF16 are)", f->path, t->name);
    int64_t cols = t->ndim == 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : 1);
    int es = dtype_size(t->dtype);
    void *buf = lmp_malloc((size_t)nc * es);
    for (int64_t r = 0; r < nr; r++) {
        uint64_t off = t->begin + ((uint64_t)(r0 + r) * cols + (uint64_t)c0) * es;
        float *d = dst + r * nc;
        if (es == 4) { pread_all(f->fd, d, (size_t)nc * 4, off, f->path); continue; }
        pread_all(f->fd, buf, (size_t)nc * es, off, f->path);
        const uint16_t *h = buf;
        for (int64_t j = 0; j < nc; j++) d[j] = t->dtype == LMP_DT_F16 ? half_to_float(h[j]) : bf16_to_float(h[j]);
    }
    free(buf);
}

void lmp_st_write(const char *path, const lmp_st_out *t, int n, const char *metadata_json) {
    json_t *h = json_object();
    uint64_t off = 0;
    if (metadata_json) {
        json_error_t je;
        json_t *md = json_loads(metadata_json, 0, &je);
        LMP_CHECK(md, "internal: bad safetensors metadata (%s)", je.text);
        json_object_set_new(h, "__metadata__", md);
    }
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) { json_array_append_new(shape, json_integer(t[i].shape[d])); numel *= (uint64_t)t[i].shape[d]; }
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                                    "data_offsets", (json_int_t)off, (json_int_t)(off + 4 * numel)));
        off += 4 * numel;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    char tmp[LMP_PATH_MAX_IO + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) lmp_die("cannot write %s: %s", tmp, strerror(errno));
    uint64_t hl = padded;
    int ok = fwrite(&hl, 8, 1, f) == 1 && fwrite(js, 1, jl, f) == jl;
    for (size_t i = jl; i < padded; i++) ok = ok && fputc(' ', f) != EOF;
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        ok = fwrite(t[i].data, 4, numel, f) == numel;
    }
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    free(js);
    if (!ok || rename(tmp, path) != 0) lmp_die("cannot write %s: %s", path, strerror(errno));
}

// ---------------------------------------------------------------------------------------
// model config

static int json_int_key(json_t *o, const char *key, const char *path, int required, int def) {
    json_t *v = json_object_get(o, key);
    if (!v) {
        if (required) lmp_die("%s: missing key \"%s\" (an integer)", path, key);
        return def;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        lmp_die("%s: key \"%s\" must be a positive integer", path, key);
    return (int)json_integer_value(v);
}

#define LLMC_MODEL_MAGIC 20240326
#define LLMC_TOKENS_MAGIC 20240520

static void read_llmc_header(const char *path, int *hdr, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open model %s: %s", path, strerror(errno));
    *size = file_size(fd, path);
    if (*size < 1024) lmp_die("%s: %llu bytes, too short for an llm.c model header (1024)", path, (unsigned long long)*size);
    pread_all(fd, hdr, 1024, 0, path);
    close(fd);
    if (hdr[0] != LLMC_MODEL_MAGIC)
        lmp_die("%s: bad magic %d, expected %d: not an llm.c model file", path, hdr[0], LLMC_MODEL_MAGIC);
    if (hdr[1] != 3) lmp_die("%s: llm.c version %d; only fp32 files (version 3) are supported", path, hdr[1]);
}

void lmp_model_read_config(const char *path, lmp_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (is_dir(path)) {
        char cp[LMP_PATH_MAX_IO + 16];
        snprintf(cp, sizeof cp, "%s/config.json", path);
        json_error_t je;
        json_t *o = json_load_file(cp, 0, &je);
        if (!o) lmp_die("%s: %s (line %d, column %d)", cp, je.text, je.line, je.column);
        if (!json_is_object(o)) lmp_die("%s: not a JSON object", cp);
        cfg->n_layer = json_int_key(o, "n_layer", cp, 1, 0);
        cfg->n_head = json_int_key(o, "n_head", cp, 1, 0);
        cfg->n_embd = json_int_key(o, "n_embd", cp, 1, 0);
        cfg->vocab_size = json_int_key(o, "vocab_size", cp, 1, 0);
        cfg->n_ctx = json_int_key(o, "n_positions", cp, 0, json_int_key(o, "n_ctx", cp, 0, 0));
        if (!cfg->n_ctx) lmp_die("%s: missing key \"n_positions\" (an integer)", cp);
        json_t *eps = json_object_get(o, "layer_norm_epsilon");
        cfg->ln_eps = eps ? (float)json_number_value(eps) : 1e-5f;
        if (eps && (!json_is_number(eps) || !(cfg->ln_eps > 0))) lmp_die("%s: layer_norm_epsilon must be a positive number", cp);
        json_t *act = json_object_get(o, "activation_function");
        if (act && (!json_is_string(act) || strcmp(json_string_value(act), "gelu_new")))
            lmp_die("%s: activation_function must be \"gelu_new\" (GPT-2's tanh GELU)", cp);
        json_decref(o);
        if (cfg->n_embd % cfg->n_head) lmp_die("%s: n_embd %d is not a multiple of n_head %d", cp, cfg->n_embd, cfg->n_head);
        return;
    }
    int hdr[256];
    uint64_t size;
    read_llmc_header(path, hdr, &size);
    cfg->n_ctx = hdr[2];
    cfg->vocab_size = hdr[3];
    cfg->n_layer = hdr[4];
    cfg->n_head = hdr[5];
    cfg->n_embd = hdr[6];
    cfg->ln_eps = 1e-5f;
    if (cfg->n_ctx <= 0 || cfg->vocab_size <= 0 || cfg->n_layer <= 0 || cfg->n_head <= 0 || cfg->n_embd <= 0 ||
        hdr[7] < hdr[3] || cfg->n_embd % cfg->n_head)
        lmp_die("%s: inconsistent llm.c header (maxT %d, V %d, L %d, NH %d, C %d, Vp %d)", path, hdr[2], hdr[3], hdr[4],
                hdr[5], hdr[6], hdr[7]);
}

// ---------------------------------------------------------------------------------------
// loading: each entry's local slice

// Calls fn(src_r0, src_nr, src_c0, src_nc, dst) for the blocks of the global (rows, cols)
// matrix that make up this rank's local slice of p (2-D view; 1-D tensors are one row).
typedef void (*block_fn)(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst, int64_t ldd);

static void for_each_block(const lmp_param *p, block_fn fn, void *ctx) {
    int64_t rows = p->ndim == 2 ? p->shape[0] : 1, cols = p->ndim == 2 ? p->shape[1] : p->shape[0];
    int sd = p->split_dim < 0 ? -1 : (p->ndim == 2 ? p->split_dim : 1);
    int64_t lcols = p->ndim == 2 ? p->local_shape[1] : p->local_shape[0];
    if (sd < 0) { fn(ctx, 0, rows, 0, cols, p->data, cols); return; }
    int64_t w = 0;  // local position of block g along the split dim
    for (int g = 0; g < p->groups; g++) {
        int64_t a = lmp_param_group_start(p, g) + p->goff[g], n = p->glen[g];
        if (n == 0) continue;
        if (sd == 0) fn(ctx, a, n, 0, cols, p->data + (size_t)w * lcols, lcols);
        else fn(ctx, 0, rows, a, n, p->data + w, lcols);
        w += n;
    }
}

typedef struct { const lmp_st_file *f; const lmp_st_tensor *t; } st_ctx;

static void st_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst, int64_t ldd) {
    st_ctx *x = ctx;
    if (ldd == nc) { lmp_st_read_block(x->f, x->t, r0, nr, c0, nc, dst); return; }
    for (int64_t r = 0; r < nr; r++) lmp_st_read_block(x->f, x->t, r0 + r, 1, c0, nc, dst + r * ldd);
}

static void load_hf(const char *dir, lmp_registry *reg) {
    char path[LMP_PATH_MAX_IO + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lmp_st_file f;
    lmp_st_open(&f, path);
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        char pre[LMP_NAME_MAX + 16];
        snprintf(pre, sizeof pre, "transformer.%s", p->name);
        const lmp_st_tensor *t = lmp_st_find(&f, p->name);
        if (!t) t = lmp_st_find(&f, pre);
        if (!t) lmp_die("%s: missing tensor %s (or %s)", path, p->name, pre);
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char a[64] = "", b[64] = "";
            for (int d = 0; d < t->ndim; d++) snprintf(a + strlen(a), sizeof a - strlen(a), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            for (int d = 0; d < p->ndim; d++) snprintf(b + strlen(b), sizeof b - strlen(b), "%s%lld", d ? ", " : "", (long long)p->shape[d]);
            lmp_die("%s: tensor %s has shape (%s), the model config needs (%s)", path, t->name, a, b);
        }
        st_ctx x = {&f, t};
        for_each_block(p, st_block, &x);
    }
    lmp_st_close(&f);
}

// llm.c: tensors in a fixed order, linear weights (out, in) stored transposed to ours.
typedef struct { int fd; const char *path; uint64_t off; int64_t in, out; int transposed; } llmc_ctx;

static void llmc_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, float *dst, int64_t ldd) {
    llmc_ctx *x = ctx;
    if (!x->transposed) {  // same layout: row r of ours is row r in the file (cols = x->out)
        for (int64_t r = 0; r < nr; r++)
            pread_all(x->fd, dst + r * ldd, (size_t)nc * 4, x->off + ((uint64_t)(r0 + r) * x->out + c0) * 4, x->path);
        return;
    }
    // ours (in, out)[r][c] = file (out, in)[c][r]: read file rows c0..c0+nc, columns r0..r0+nr
    float *buf = lmp_malloc((size_t)nr * 4);
    for (int64_t c = 0; c < nc; c++) {
        pread_all(x->fd, buf, (size_t)nr * 4, x->off + ((uint64_t)(c0 + c) * x->in + r0) * 4, x->path);
        for (int64_t r = 0; r < nr; r++) dst[r * ldd + c] = buf[r];
    }
    free(buf);
}

static void load_llmc(const char *path, lmp_registry *reg) {
    int hdr[256];
    uint64_t size;
    read_llmc_header(path, hdr, &size);
    int64_t maxT = hdr[2], L = hdr[4], C = hdr[6], Vp = hdr[7];
    // sizes of the 16 tensors in file order
    int64_t sz[16] = {Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                      L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
    uint64_t start[16], total = 0;
    for (int i = 0; i < 16; i++) { start[i] = 1024 + 4 * total; total += (uint64_t)sz[i]; }
    if (size != 1024 + 4 * total)
        lmp_die("%s: %llu bytes, an llm.c model of this header has %llu (truncated or not fp32)", path,
                (unsigned long long)size, (unsigned long long)(1024 + 4 * total));
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open %s: %s", path, strerror(errno));
    for (int i = 0; i < reg->n; i++) {
        lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        int layer = -1, idx = -1, tr = 0;
        int64_t in = 0, out = 0;
        char leaf[LMP_NAME_MAX] = "";
        if (sscanf(p->name, "h.%d.%127s", &layer, leaf) != 2) { layer = 0; snprintf(leaf, sizeof leaf, "%s", p->name); }
        static const struct { const char *name; int idx, tr, in_m, out_m; } map[] = {
            {"wte.weight", 0, 0, 0, 0}, {"wpe.weight", 1, 0, 0, 0}, {"ln_1.weight", 2, 0, 0, 1},
            {"ln_1.bias", 3, 0, 0, 1}, {"attn.c_attn.weight", 4, 1, 1, 3}, {"attn.c_attn.bias", 5, 0, 0, 3},
            {"attn.c_proj.weight", 6, 1, 1, 1}, {"attn.c_proj.bias", 7, 0, 0, 1}, {"ln_2.weight", 8, 0, 0, 1},
            {"ln_2.bias", 9, 0, 0, 1}, {"mlp.c_fc.weight", 10, 1, 1, 4}, {"mlp.c_fc.bias", 11, 0, 0, 4},
            {"mlp.c_proj.weight", 12, 1, 4, 1}, {"mlp.c_proj.bias", 13, 0, 0, 1}, {"ln_f.weight", 14, 0, 0, 1},
            {"ln_f.bias", 15, 0, 0, 1}};
        for (size_t k = 0; k < sizeof map / sizeof map[0]; k++)
            if (!strcmp(leaf, map[k].name)) { idx = map[k].idx; tr = map[k].tr; in = map[k].in_m * C; out = map[k].out_m * C; }
        if (idx < 0) lmp_die("%s: no llm.c tensor for %s", path, p->name);
        uint64_t off = start[idx];
        if (idx >= 2 && idx <= 13) off += (uint64_t)layer * (uint64_t)(sz[idx] / L) * 4;
        if (!tr) out = p->ndim == 2 ? p->shape[1] : p->shape[0];  // row length of ours = file's
        llmc_ctx x = {fd, path, off, in, out, tr};
        for_each_block(p, llmc_block, &x);  // wte: rows beyond V (padding) are never read
    }
    close(fd);
}

void lmp_model_load(const char *path, lmp_registry *reg) {
    if (is_dir(path)) load_hf(path, reg);
    else load_llmc(path, reg);
}

void lmp_model_save_hf(const char *dir, const lmp_model_config *cfg, const lmp_registry *reg) {
    lmp_mkdir_p(dir);
    lmp_st_out *t = lmp_malloc((size_t)reg->n * sizeof *t);
    int n = 0;
    for (int i = 0; i < reg->n; i++) {
        const lmp_param *p = &reg->p[i];
        if (p->role != LMP_ROLE_BASE) continue;
        if (p->split_dim >= 0) lmp_die("saving %s as an HF model needs the whole tensor (tp = 1)", p->name);
        t[n++] = (lmp_st_out){p->name, p->ndim, {p->shape[0], p->ndim > 1 ? p->shape[1] : 0}, p->data};
    }
    char path[LMP_PATH_MAX_IO + 32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lmp_st_write(path, t, n, "{\"format\": \"pt\"}");
    free(t);
    json_t *c = json_pack("{s:s, s:[s], s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:f, s:f, s:f, s:f, s:i, s:i}",
                          "model_type", "gpt2", "architectures", "GPT2LMHeadModel", "n_layer", cfg->n_layer,
                          "n_head", cfg->n_head, "n_embd", cfg->n_embd, "vocab_size", cfg->vocab_size,
                          "n_positions", cfg->n_ctx, "n_ctx", cfg->n_ctx, "layer_norm_epsilon", (double)cfg->ln_eps,
                          "activation_function", "gelu_new", "resid_pdrop", 0.1, "embd_pdrop", 0.1,
                          "attn_pdrop", 0.1, "initializer_range", 0.02, "bos_token_id", cfg->vocab_size - 1,
                          "eos_token_id", cfg->vocab_size - 1);
    LMP_CHECK(c, "cannot build config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (json_dump_file(c, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) lmp_die("cannot write %s", path);
    json_decref(c);
}

// ---------------------------------------------------------------------------------------
// token files

// Opens a token file and checks its header against its size; returns the fd, the token
// count and whether a mask follows the tokens.
static int open_tokens(const char *path, size_t *count, int *has_mask, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) lmp_die("cannot open token file %s: %s", path, strerror(errno));
    *size = file_size(fd, path);
    int hdr[256];
    if (*size < 1024) lmp_die("%s: %llu bytes, too short for an llm.c token header (1024)", path, (unsigned long long)*size);
    pread_all(fd, hdr, 1024, 0, path);
    if (hdr[0] != LLMC_TOKENS_MAGIC) lmp_die("%s: bad magic %d, expected %d: not an llm.c token file", path, hdr[0], LLMC_TOKENS_MAGIC);
    if (hdr[1] != 1 && hdr[1] != 2)
        lmp_die("%s: token file version %d, expected 1 (llm.c) or 2 (lorampi, with loss mask)", path, hdr[1]);
    uint64_t per = hdr[1] == 2 ? 3 : 2;  // bytes per token
    if (hdr[2] < 0 || *size != 1024 + per * (uint64_t)hdr[2])
        lmp_die("%s: header says %d tokens (%llu bytes), the file has %llu bytes (truncated?)", path, hdr[2],
                (unsigned long long)(1024 + per * (uint64_t)hdr[2]), (unsigned long long)*size);
    *count = (size_t)hdr[2];
    *has_mask = hdr[1] == 2;
    return fd;
}

static void check_mask(const char *path, const uint8_t *mask, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1) lmp_die("%s: loss mask value %u at token %zu (expected 0 or 1)", path, mask[i], i);
}

uint16_t *lmp_tokens_read(const char *path, size_t *count, uint8_t **mask) {
    int has_mask;
    uint64_t size;
    int fd = open_tokens(path, count, &has_mask, &size);
    uint16_t *tok = lmp_malloc(*count * 2 + 2);
    if (*count) pread_all(fd, tok, *count * 2, 1024, path);
    if (mask) *mask = NULL;
    if (mask && has_mask) {
        *mask = lmp_malloc(*count + 1);
        if (*count) pread_all(fd, *mask, *count, 1024 + 2 * (uint64_t)*count, path);
        check_mask(path, *mask, *count);
    }
    close(fd);
    return tok;
}

const uint16_t *lmp_tokens_map(const char *path, size_t *count, const uint8_t **mask, void **map,
                               size_t *map_len) {
    int has_mask;
    uint64_t size;
    int fd = open_tokens(path, count, &has_mask, &size);
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) lmp_die("cannot map token file %s: %s", path, strerror(errno));
    close(fd);
    const uint16_t *tok = (const uint16_t *)((const char *)m + 1024);
    *mask = has_mask ? (const uint8_t *)(tok + *count) : NULL;
    if (*mask) check_mask(path, *mask, *count);
    *map = m;
    *map_len = (size_t)size;
    return tok;
}

void lmp_tokens_write(const char *path, const uint16_t *tok, const uint8_t *mask, size_t count) {
    if (count > 0x7fffffff) lmp_die("%s: %zu tokens exceed the llm.c format's limit", path, count);
    int hdr[256] = {LLMC_TOKENS_MAGIC, mask ? 2 : 1, (int)count};
    FILE *f = fopen(path, "wb");
    if (!f) lmp_die("cannot write %s: %s", path, strerror(errno));
    int ok = fwrite(hdr, 4, 256, f) == 256 && fwrite(tok, 2, count, f) == count &&
             (!mask || fwrite(mask, 1, count, f) == count);
    if ((fclose(f) != 0) || !ok) lmp_die("cannot write %s: %s", path, strerror(errno));
}
