// safetensors.c: the safetensors reader and writer. Every number read from a file is
// checked against the file before it is used.
#include "io/safetensors.h"
#include "core/bf16.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int dtype_size(lmp_dtype d) { return d == LMP_DT_F32 ? 4 : d == LMP_DT_OTHER ? 0 : 2; }

// One header entry {dtype, shape, data_offsets} into t; data0 is the first data byte and
// dsize the data bytes the file holds.
static void parse_entry(const char *path, const char *name, json_t *v, uint64_t data0, uint64_t dsize,
                        lmp_st_tensor *t) {
    if (strlen(name) >= LMP_NAME_MAX) lmp_die("%s: tensor name too long: %.60s...", path, name);
    strcpy(t->name, name);
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"), *of = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) || json_array_size(of) != 2)
        lmp_die("%s: tensor %s lacks dtype, shape or data_offsets", path, name);
    const char *d = json_string_value(dt);
    t->dtype = !strcmp(d, "F32") ? LMP_DT_F32 : !strcmp(d, "F16") ? LMP_DT_F16 : !strcmp(d, "BF16") ? LMP_DT_BF16 : LMP_DT_OTHER;
    if (json_array_size(sh) > 8) lmp_die("%s: tensor %s has %zu dims", path, name, json_array_size(sh));
    t->ndim = (int)json_array_size(sh);
    // The element count must not wrap: each factor is checked before it multiplies, and a
    // count above the file's data bytes cannot be held (every dtype is >= 1 byte).
    uint64_t numel = 1;
    int zero = 0;
    for (int i = 0; i < t->ndim; i++) {
        json_t *x = json_array_get(sh, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0) lmp_die("%s: tensor %s has a bad shape", path, name);
        t->shape[i] = json_integer_value(x);
        zero |= t->shape[i] == 0;
        if (!zero && (uint64_t)t->shape[i] > dsize)
            lmp_die("%s: tensor %s has a shape dimension of %lld, more than the file's %llu data bytes",
                    path, name, (long long)t->shape[i], (unsigned long long)dsize);
        numel = zero ? 0 : numel * (uint64_t)t->shape[i];
        if (numel > dsize)
            lmp_die("%s: tensor %s has a shape of more elements than the file's %llu data bytes", path,
                    name, (unsigned long long)dsize);
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
}

// The JSON header of an open file (its length checked against the file).
static json_t *read_header(lmp_st_file *f, uint64_t *hlen) {
    if (f->file_size < 8)
        lmp_die("%s: %llu bytes, too short for a safetensors header", f->path, (unsigned long long)f->file_size);
    lmp_pread_all(f->fd, hlen, 8, 0, f->path);
    if (*hlen == 0 || *hlen > f->file_size - 8)
        lmp_die("%s: header length %llu exceeds the file (%llu bytes): not safetensors, or truncated", f->path,
                (unsigned long long)*hlen, (unsigned long long)f->file_size);
    char *h = lmp_malloc(*hlen + 1);
    lmp_pread_all(f->fd, h, *hlen, 8, f->path);
    h[*hlen] = 0;
    json_error_t je;
    // A name given twice would silently take its last entry: refused by the JSON reader.
    json_t *root = json_loadb(h, *hlen, JSON_REJECT_DUPLICATES, &je);
    free(h);
    if (!root && json_error_code(&je) == json_error_duplicate_key) {
        // jansson's text is "duplicate object key near '"name"'": the name, quoted.
        char *near = strstr(je.text, "near '"), *q = strrchr(je.text, '\'');
        if (near && q > near + 6) *q = 0;
        lmp_die("%s: the header names tensor %s twice (line %d column %d): refused, as either "
                "entry could be meant", f->path, near && q > near + 6 ? near + 6 : "(unknown)", je.line, je.column);
    }
    if (!root || !json_is_object(root))
        lmp_die("%s: header is not a JSON object (%s, line %d column %d)", f->path, root ? "not an object" : je.text,
                je.line, je.column);
    return root;
}

void lmp_st_open(lmp_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    lmp_fmt(f->path, sizeof f->path, "%s", path);
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) lmp_die("cannot open %s: %s", path, strerror(errno));
    f->file_size = lmp_fd_size(f->fd, path);
    uint64_t hlen;
    json_t *root = read_header(f, &hlen);
    uint64_t data0 = 8 + hlen, dsize = f->file_size - data0;
    f->t = lmp_calloc(json_object_size(root) * sizeof(lmp_st_tensor) + 1);
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (!strcmp(name, "__metadata__")) continue;
        parse_entry(path, name, v, data0, dsize, &f->t[f->n++]);
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
        if (es == 4) { lmp_pread_all(f->fd, d, (size_t)nc * 4, off, f->path); continue; }
        lmp_pread_all(f->fd, buf, (size_t)nc * es, off, f->path);
        const uint16_t *h = buf;
        for (int64_t j = 0; j < nc; j++) d[j] = t->dtype == LMP_DT_F16 ? half_to_float(h[j]) : lmp_bf16_to_f32(h[j]);
    }
    free(buf);
}

void lmp_st_read_block_bf16(const lmp_st_file *f, const lmp_st_tensor *t, int64_t r0, int64_t nr,
                            int64_t c0, int64_t nc, uint16_t *dst) {
    if (t->dtype == LMP_DT_OTHER) lmp_die("%s: tensor %s has an unsupported dtype (F32, F16, BF16 are)", f->path, t->name);
    int64_t cols = t->ndim == 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : 1);
    int es = dtype_size(t->dtype);
    float *wide = t->dtype == LMP_DT_BF16 ? NULL : lmp_malloc((size_t)nc * sizeof *wide);
    for (int64_t r = 0; r < nr; r++) {
        uint16_t *d = dst + r * nc;
        if (!wide) {
            uint64_t off = t->begin + ((uint64_t)(r0 + r) * cols + (uint64_t)c0) * es;
            lmp_pread_all(f->fd, d, (size_t)nc * es, off, f->path);
            continue;
        }
        lmp_st_read_block(f, t, r0 + r, 1, c0, nc, wide);
        for (int64_t j = 0; j < nc; j++) d[j] = lmp_f32_to_bf16(wide[j]);
    }
    free(wide);
}

char *lmp_st_header(const lmp_st_out *t, int n, lmp_dtype dtype, const char *metadata_json) {
    LMP_CHECK(dtype != LMP_DT_OTHER, "internal: safetensors header of an unknown dtype");
    const char *dname = dtype == LMP_DT_F32 ? "F32" : dtype == LMP_DT_BF16 ? "BF16" : "F16";
    uint64_t es = (uint64_t)dtype_size(dtype);
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
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", dname, "shape", shape,
                                                    "data_offsets", (json_int_t)off, (json_int_t)(off + es * numel)));
        off += es * numel;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    LMP_CHECK(js, "internal: cannot serialise a safetensors header");
    return js;
}

void lmp_st_write(const char *path, const lmp_st_out *t, int n, const char *metadata_json) {
    char *js = lmp_st_header(t, n, LMP_DT_F32, metadata_json);
    size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
    char tmp[4096];
    lmp_fmt(tmp, sizeof tmp, "%s.tmp", path);
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
