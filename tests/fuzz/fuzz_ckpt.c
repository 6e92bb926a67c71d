// fuzz_ckpt: the checkpoint reader (io/ckpt_read.c, io/h5attr.c) on checkpoints built from the
// input with the HDF5 API. Raw bytes would mostly exercise libhdf5's own parser; here the
// input decides the structure: each root and module attribute is kept, dropped, or replaced
// by another type, dataspace (arrays of any rank, null) or value; each lora_A/lora_B dataset
// gets any dtype, rank and extents (huge ones chunked and never written), or is missing or a
// group; /adapter and its members can be missing, datasets, links or extra groups. Input
// bytes are consumed in order and read as 0 past the end, and 0 always means "as lorampi
// writes it", so a short input is a valid checkpoint. The reader then runs as training's
// resume and the analysis do: open, header, modules, and every module's matrices.
#include "fuzzutil.h"
#include "io/ckpt_read.h"
#include "io/ckpt_layout.h"
#include "core/registry.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_I64, K_U64, K_F64, K_STR } kind;

// A scalar or array attribute of memory type t with n elements (rank nd, dims d; nd < 0: a
// null dataspace, nd 0: scalar) from buf.
static void put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, int nd, const hsize_t *d,
                const void *buf) {
    hid_t s = nd < 0 ? H5Screate(H5S_NULL) : nd == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(nd, d, NULL);
    hid_t a = H5Acreate2(obj, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && nd >= 0) H5Awrite(a, mtype, buf);
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
}

static hid_t vlstr(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// The attribute `name` of kind k with correct value (iv, dv, sv), or what the input says.
static void attr(lmp_fuzz_in *in, hid_t obj, const char *name, kind k, int64_t iv, double dv, const char *sv) {
    uint8_t m = lmp_fuzz_u8(in) % 16;
    hid_t native[4] = {H5T_NATIVE_INT64, H5T_NATIVE_UINT64, H5T_NATIVE_DOUBLE, 0};
    hid_t st = vlstr();
    hid_t t = k == K_STR ? st : native[k];
    char s[300];
    union { int64_t i; uint64_t u; double d; int8_t c; float f; const char *p; char raw[64]; } v[6];
    memset(v, 0, sizeof v);
    if (k == K_F64) v[0].d = dv; else if (k == K_STR) v[0].p = sv; else v[0].i = iv;
    hsize_t d[3] = {1, 1, 1};
    switch (m) {
    case 0: put(obj, name, t, t, 0, d, v); break;
    case 1: break;  // missing
    case 2: v[0].i = (int64_t)lmp_fuzz_u64(in); put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, d, v); break;
    case 3: v[0].u = lmp_fuzz_u64(in); put(obj, name, H5T_STD_U64BE, H5T_NATIVE_UINT64, 0, d, v); break;
    case 4: v[0].u = lmp_fuzz_u64(in); put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, d, v); break;
    case 5: v[0].c = (int8_t)lmp_fuzz_u8(in); put(obj, name, H5T_STD_I8LE, H5T_NATIVE_INT8, 0, d, v); break;
    case 6: { uint32_t b = lmp_fuzz_u32(in); memcpy(&v[0].f, &b, 4);
              put(obj, name, H5T_IEEE_F32BE, H5T_NATIVE_FLOAT, 0, d, v); break; }
    case 7: v[0].p = lmp_fuzz_str(in, s, 255); put(obj, name, st, st, 0, d, v); break;
    case 8: {  // fixed-length string, padding from the input
        hid_t ft = H5Tcopy(H5T_C_S1);
        size_t n = 1 + lmp_fuzz_u8(in) % 63;
        H5Tset_size(ft, n);
        H5Tset_strpad(ft, (H5T_str_t)(lmp_fuzz_u8(in) % 3));
        for (size_t i = 0; i < n; i++) v[0].raw[i] = (char)lmp_fuzz_u8(in);
        put(obj, name, ft, ft, 0, d, v);
        H5Tclose(ft);
        break;
    }
    case 9: case 10: {  // an array of the right type: 1-D of 0..5, or 2-D
        int nd = m == 9 ? 1 : 2;
        d[0] = lmp_fuzz_u8(in) % 6;
        d[1] = 1 + lmp_fuzz_u8(in) % 3;
        if (d[0] * d[1] > 6) d[0] = 1;
        for (int i = 1; i < 6; i++) v[i] = v[0];
        put(obj, name, t, t, nd, d, v);
        break;
    }
    case 11: put(obj, name, t, t, -1, d, v); break;  // null dataspace
    case 12: {  // a compound {int64 a; double b}
        hid_t ct = H5Tcreate(H5T_COMPOUND, 16);
        H5Tinsert(ct, "a", 0, H5T_NATIVE_INT64);
        H5Tinsert(ct, "b", 8, H5T_NATIVE_DOUBLE);
        put(obj, name, ct, ct, 0, d, v);
        H5Tclose(ct);
        break;
    }
    case 13: v[0].u = lmp_fuzz_u64(in); put(obj, name, H5T_STD_B64LE, H5T_STD_B64LE, 0, d, v); break;
    case 14:  // the right type, a value from the input
        if (k == K_STR) v[0].p = lmp_fuzz_str(in, s, 255); else v[0].u = lmp_fuzz_u64(in);
        put(obj, name, t, t, 0, d, v);
        break;
    default: v[0].i = (int64_t)(int8_t)lmp_fuzz_u8(in);  // small integers, negatives included
        put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT64, 0, d, v);
        break;
    }
    H5Tclose(st);
}

// Dataset `name` of g, expected (d0, d1) float32, or what the input says.
static void dataset(lmp_fuzz_in *in, hid_t g, const char *name, hsize_t d0, hsize_t d1) {
    uint8_t m = lmp_fuzz_u8(in) % 8;
    hsize_t d[3] = {d0, d1, 1}, chunk[3] = {1, 1, 1};
    int nd = 2, write = 1;
    hid_t ft = H5T_IEEE_F32LE;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (m == 1) goto done;  // missing
    if (m == 2) { H5Gclose(H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)); goto done; }
    if (m == 3) {  // another dtype (HDF5's type ids are run-time values, hence no table)
        uint8_t t = lmp_fuzz_u8(in) % 6;
        ft = t == 0 ? H5T_IEEE_F64LE : t == 1 ? H5T_STD_I32LE : t == 2 ? H5T_STD_U8LE
           : t == 3 ? H5T_STD_I64BE : t == 4 ? H5T_IEEE_F32BE : H5T_STD_B16LE;
    }
    if (m == 4) {  // any rank up to 3, small extents
        nd = lmp_fuzz_u8(in) % 4;
        for (int i = 0; i < 3; i++) d[i] = lmp_fuzz_u8(in) % 5;
    }
    if (m >= 5) {  // chunked, Fletcher32 as lorampi writes; 6: huge extents never written
        nd = m == 6 ? 1 + lmp_fuzz_u8(in) % 2 : 2;
        for (int i = 0; i < nd; i++) {
            if (m == 6) d[i] = (hsize_t)1 << (lmp_fuzz_u8(in) % 48);
            chunk[i] = d[i] < 16 ? (d[i] ? d[i] : 1) : 16;
        }
        H5Pset_chunk(dcpl, nd, chunk);
        H5Pset_fletcher32(dcpl);
        write = m == 5;
    }
    hid_t s = nd == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(nd, d, NULL);
    hid_t ds = H5Dcreate2(g, name, ft, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= d[i];
    if (ds >= 0 && write && n <= (1 << 16)) {
        float *buf = malloc((n + 1) * sizeof *buf);
        if (!buf) abort();
        for (size_t i = 0; i < n; i++) buf[i] = (float)(int8_t)lmp_fuzz_u8(in) / 8.0f;
        H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        free(buf);
    }
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(s);
done:
    H5Pclose(dcpl);
}

// Module i under /adapter: a LoRA on h.i.attn.c_attn, its record and its two matrices.
static void module(lmp_fuzz_in *in, hid_t ad, int i, hid_t *first) {
    char name[400], s[300], bw[64];
    uint8_t how = lmp_fuzz_u8(in) % 4;
    snprintf(name, sizeof name, "transformer.h.%d.attn.c_attn", i);
    if (how == 1) {  // longer than the reader's name buffer, or close to it
        size_t n = 100 + lmp_fuzz_u8(in);
        memset(name, 'x', n);
        name[n] = 0;
    } else if (how == 2) {
        lmp_fuzz_str(in, s, 255);
        for (char *p = s; *p; p++) if (*p == '/') *p = '_';
        snprintf(name, sizeof name, "%s", s[0] && strcmp(s, ".") ? s : "m");
    }
    hid_t g = H5Gcreate2(ad, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return;
    int64_t C = 4 + 4 * (lmp_fuzz_u8(in) % 3), r = 1 + lmp_fuzz_u8(in) % 4;
    snprintf(bw, sizeof bw, "h.%d.attn.c_attn.weight", i);
    attr(in, g, "method", K_STR, 0, 0, "lora");
    attr(in, g, "target", K_STR, 0, 0, "c_attn");
    attr(in, g, "base_weight", K_STR, 0, 0, bw);
    attr(in, g, "layer", K_I64, i, 0, NULL);
    attr(in, g, "slice", K_I64, -1, 0, NULL);
    attr(in, g, "in", K_I64, C, 0, NULL);
    attr(in, g, "out", K_I64, 3 * C, 0, NULL);
    attr(in, g, "out_offset", K_I64, 0, 0, NULL);
    attr(in, g, "r", K_I64, r, 0, NULL);
    attr(in, g, "lora_alpha", K_F64, 0, 2.0 * (double)r, NULL);
    attr(in, g, "scaling", K_F64, 0, 2.0, NULL);
    dataset(in, g, "lora_A", (hsize_t)r, (hsize_t)C);
    dataset(in, g, "lora_B", (hsize_t)(3 * C), (hsize_t)r);
    // After the datasets, so the committed seeds still drive the fields above as before.
    char mod[64];
    snprintf(mod, sizeof mod, "h.%d.attn.c_attn", i);
    attr(in, g, "module", K_STR, 0, 0, mod);
    attr(in, g, "site", K_STR, 0, 0, "attn.c_attn");
    attr(in, g, "base_in", K_I64, C, 0, NULL);
    attr(in, g, "base_out", K_I64, 3 * C, 0, NULL);
    if (*first < 0) *first = g;
    else H5Gclose(g);
}

// /adapter and the odd members `extras` asks for.
static void adapters(lmp_fuzz_in *in, hid_t f, uint8_t extras) {
    if (extras & 1) return;  // no /adapter: a full fine-tuning checkpoint
    hsize_t one = 1;
    if (extras & 2) {        // /adapter is a dataset
        hid_t s = H5Screate_simple(1, &one, NULL);
        H5Dclose(H5Dcreate2(f, "adapter", H5T_NATIVE_INT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Sclose(s);
        return;
    }
    hid_t ad = H5Gcreate2(f, "adapter", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), first = -1;
    int n = (1 + lmp_fuzz_u8(in)) % 4;
    for (int i = 0; i < n; i++) module(in, ad, i, &first);
    if (extras & 4) {
        hid_t s = H5Screate_simple(1, &one, NULL);
        H5Dclose(H5Dcreate2(ad, "zz_dataset", H5T_NATIVE_INT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        H5Sclose(s);
    }
    if (extras & 8) H5Lcreate_soft("/nowhere", ad, "zz_dangling", H5P_DEFAULT, H5P_DEFAULT);
    if (extras & 16) H5Lcreate_soft("/adapter", ad, "zz_self", H5P_DEFAULT, H5P_DEFAULT);
    if ((extras & 32) && first >= 0) H5Lcreate_hard(first, ".", ad, "zz_hard", H5P_DEFAULT, H5P_DEFAULT);
    if (extras & 64) H5Lcreate_external("/nonexistent/file.h5", "/x", ad, "zz_external", H5P_DEFAULT, H5P_DEFAULT);
    if (first >= 0) H5Gclose(first);
    H5Gclose(ad);
}

static int build(lmp_fuzz_in *in, const char *path) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    attr(in, f, "format", K_STR, 0, 0, LMP_CKPT_FORMAT);
    attr(in, f, "format_version", K_I64, LMP_CKPT_FORMAT_VERSION, 0, NULL);
    attr(in, f, "step", K_I64, 10, 0, NULL);
    attr(in, f, "tp", K_I64, 1, 0, NULL);
    attr(in, f, "dp", K_I64, 1, 0, NULL);
    attr(in, f, "base_checksum", K_U64, 0x1234, 0, NULL);
    attr(in, f, "config", K_STR, 0, 0, "[adapter]\nr = 2\n");
    attr(in, f, "base_model", K_STR, 0, 0, "random init");
    adapters(in, f, lmp_fuzz_u8(in));
    return H5Fclose(f) < 0 ? -1 : 0;
}

static lmp_ckpt_reader rd = {.file = -1};  // static: a die while reading leaves it to be closed

// Matrix `leaf` of module m read whole (as the analysis does) and as a (rows, cols) registry
// entry, whole or one tensor-parallel rank's half along `dim` (as training's resume does).
static void read_tensor(const lmp_ckpt_module *m, const char *leaf, int64_t rows, int64_t cols, int dim) {
    char dpath[LMP_NAME_MAX + 64], err[2048];
    snprintf(dpath, sizeof dpath, "adapter/%s/%s", m->name, leaf);
    double *x;
    int64_t r, c;
    if (lmp_ckpt_read_matrix(&rd, dpath, rows, cols, &x, &r, &c, err, sizeof err) == 0) free(x);
    lmp_ckpt_read_matrix(&rd, dpath, -1, -1, &x, &r, &c, err, sizeof err) == 0 ? free(x) : (void)0;
    if (rows < 1 || cols < 1 || rows * cols > (1 << 16)) return;
    int64_t shape[2] = {rows, cols};
    if (dim >= 0 && shape[dim] % 2) dim = -1;
    static lmp_registry reg;
    lmp_registry_init(&reg, 1);
    int64_t half = dim >= 0 ? shape[dim] / 2 : 0;
    lmp_param *p = lmp_registry_add(&reg, leaf, 2, shape, dim, 1, half, half, LMP_ROLE_ADAPTER, 1,
                                    LMP_GRAD_SHARD, 0);
    lmp_registry_alloc(&reg);
    lmp_ckpt_read_local(&rd, dpath, p, p->data, err, sizeof err);
    lmp_registry_free(&reg);
}

static void read_back(const char *path, int dim) {
    char err[2048];
    if (lmp_ckpt_open(&rd, path, err, sizeof err)) return;
    lmp_ckpt_header h;
    lmp_ckpt_read_header(&rd, &h, err, sizeof err);
    lmp_ckpt_header_free(&h);
    lmp_ckpt_module *mods;
    int n;
    if (lmp_ckpt_modules(&rd, &mods, &n, err, sizeof err) == 0) {
        for (int i = 0; i < n; i++) {
            read_tensor(&mods[i], "lora_A", mods[i].r, mods[i].in, dim);
            read_tensor(&mods[i], "lora_B", mods[i].out, mods[i].r, dim);
        }
        free(mods);
    }
    lmp_ckpt_close(&rd, err, sizeof err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet) {  // the builder's own failures (odd names) are expected; the reader is quiet anyway
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    char path[512];
    lmp_fuzz_path(path, sizeof path, "ckpt-10.h5");
    lmp_fuzz_in in = {data, size};
    int dim = (int)(lmp_fuzz_u8(&in) % 3) - 1;
    if (build(&in, path)) return 0;
    LMP_FUZZ_TRY(read_back(path, dim));
    if (rd.file >= 0) {  // a die inside the reader (out of memory): close what it left
        H5Fclose(rd.file);
        rd.file = -1;
    }
    return 0;
}
