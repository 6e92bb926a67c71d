// Model and token file import: HF safetensors (with/without "transformer.", F32/F16/BF16,
// extra buffers), the HF round trip, llm.c .bin (transposed linear weights, padded vocab),
// sliced loading, token shards, and one clear error per malformed file. Files are written
// here by hand, independently of the writer under test.
#include "io/safetensors.h"
#include "testutil.h"
#include "io/model_io.h"
#include "model/model_config.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { L = 2, C = 8, V = 11, VP = 16, MAXT = 6 };

// Value of element (i) of tensor number k: exactly representable in F16 and BF16.
static float val(int k, size_t i) { return (float)((int)((k * 37 + i * 11) % 29) - 14) / 8.0f; }

typedef struct { const char *name; int ndim; int64_t s0, s1; } spec;
static spec SPECS[64];
static int NS;

static void make_specs(void) {
    NS = 0;
    SPECS[NS++] = (spec){"wte.weight", 2, V, C};
    SPECS[NS++] = (spec){"wpe.weight", 2, MAXT, C};
    static char names[L][12][48];
    const char *leaf[12] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                            "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                            "mlp.c_proj.weight", "mlp.c_proj.bias"};
    int64_t d0[12] = {C, C, C, 3 * C, C, C, C, C, C, 4 * C, 4 * C, C}, d1[12] = {0, 0, 3 * C, 0, C, 0, 0, 0, 4 * C, 0, C, 0};
    for (int l = 0; l < L; l++)
        for (int j = 0; j < 12; j++) {
            snprintf(names[l][j], 48, "h.%d.%s", l, leaf[j]);
            SPECS[NS++] = (spec){names[l][j], d1[j] ? 2 : 1, d0[j], d1[j]};
        }
    SPECS[NS++] = (spec){"ln_f.weight", 1, C, 0};
    SPECS[NS++] = (spec){"ln_f.bias", 1, C, 0};
}

static int64_t numel(const spec *s) { return s->ndim == 2 ? s->s0 * s->s1 : s->s0; }

static void registry_whole(lmp_registry *r) {
    lmp_registry_init(r, 64);
    for (int k = 0; k < NS; k++) {
        int64_t sh[2] = {SPECS[k].s0, SPECS[k].s1};
        lmp_registry_add(r, SPECS[k].name, SPECS[k].ndim, sh, -1, 1, 0, 0, LMP_ROLE_BASE, 0, LMP_GRAD_TP_SAME, 0);
    }
    lmp_registry_alloc(r);
}

static uint16_t to_f16(float f) {  // values here are k/8 with |k| <= 14: exact
    uint32_t b; memcpy(&b, &f, 4);
    if (f == 0) return (uint16_t)(b >> 16);
    int e = (int)((b >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(((b >> 16) & 0x8000) | (e << 10) | ((b >> 13) & 0x3ff));
}

// Hand-rolled safetensors: prefix for names, dtype per tensor (0 F32, 1 F16, 2 BF16), an
// extra buffer "h.0.attn.bias".
static void write_st(const char *path, const char *prefix, int mixed) {
    char hdr[16384];
    size_t hl = 0, off = 0;
    hl += snprintf(hdr + hl, sizeof hdr - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int k = 0; k < NS; k++) {
        int dt = mixed ? k % 3 : 0;
        size_t bytes = numel(&SPECS[k]) * (dt ? 2 : 4);
        char shape[64];
        if (SPECS[k].ndim == 2) snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)SPECS[k].s0, (long long)SPECS[k].s1);
        else snprintf(shape, sizeof shape, "[%lld]", (long long)SPECS[k].s0);
        hl += snprintf(hdr + hl, sizeof hdr - hl, ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                       prefix, SPECS[k].name, dt == 0 ? "F32" : dt == 1 ? "F16" : "BF16", shape, off, off + bytes);
        off += bytes;
    }
    hl += snprintf(hdr + hl, sizeof hdr - hl, ",\"%sh.0.attn.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}}", prefix, off, off + 4);
    while (hl % 8) hdr[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    uint64_t h = hl;
    fwrite(&h, 8, 1, f);
    fwrite(hdr, 1, hl, f);
    for (int k = 0; k < NS; k++) {
        int dt = mixed ? k % 3 : 0;
        for (int64_t i = 0; i < numel(&SPECS[k]); i++) {
            float v = val(k, (size_t)i);
            if (dt == 0) fwrite(&v, 4, 1, f);
            else {
                uint32_t b; memcpy(&b, &v, 4);
                uint16_t x = dt == 1 ? to_f16(v) : (uint16_t)(b >> 16);
                fwrite(&x, 2, 1, f);
            }
        }
    }
    float one = 1;
    fwrite(&one, 4, 1, f);
    fclose(f);
}

static void write_config(const char *dir, int drop_key) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"n_layer\": %d, \"n_head\": 2, \"n_embd\": %d, %s \"n_positions\": %d, \"activation_function\": \"gelu_new\"}",
            L, C, drop_key ? "" : "\"vocab_size\": 11,", MAXT);
    fclose(f);
}

static int check_all(lmp_registry *r, const char *what) {
    int bad = 0;
    for (int k = 0; k < NS; k++) {
        lmp_param *p = lmp_registry_find(r, SPECS[k].name);
        for (size_t i = 0; i < p->numel; i++) bad += p->data[i] != val(k, i);
    }
    T_CHECK(bad == 0, "%s: %d elements differ", what, bad);
    return bad;
}

// llm.c .bin by hand: (out, in) linear weights, Vp > V padded rows filled with 99.
static void write_llmc(const char *path, int magic, int cut) {
    FILE *f = fopen(path, "wb");
    int hdr[256] = {magic, 3, MAXT, V, L, 2, C, VP};
    fwrite(hdr, 4, 256, f);
    // file order, with the per-layer tensors stacked over L
    const char *order[16] = {"wte.weight", "wpe.weight", "ln_1.weight", "ln_1.bias", "attn.c_attn.weight",
                             "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                             "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_f.weight", "ln_f.bias"};
    for (int o = 0; o < 16; o++) {
        int per_layer = o >= 2 && o <= 13;
        for (int l = 0; l < (per_layer ? L : 1); l++) {
            char name[64];
            if (per_layer) snprintf(name, sizeof name, "h.%d.%s", l, order[o]); else snprintf(name, sizeof name, "%s", order[o]);
            int k = 0;
            while (strcmp(SPECS[k].name, name)) k++;
            const spec *s = &SPECS[k];
            if (s->ndim == 2 && o != 0 && o != 1) {  // transpose ours (in,out) to (out,in)
                for (int64_t j = 0; j < s->s1; j++)
                    for (int64_t i = 0; i < s->s0; i++) { float v = val(k, (size_t)(i * s->s1 + j)); fwrite(&v, 4, 1, f); }
            } else {
                for (int64_t i = 0; i < numel(s); i++) { float v = val(k, (size_t)i); fwrite(&v, 4, 1, f); }
                if (o == 0) for (int64_t i = 0; i < (VP - V) * C; i++) { float v = 99; fwrite(&v, 4, 1, f); }
            }
        }
    }
    fclose(f);
    if (cut) { struct stat st; stat(path, &st); if (truncate(path, st.st_size - 4) != 0) perror("truncate"); }
}

static void load_into_whole(const char *path) { lmp_registry r; registry_whole(&r); lmp_model_load(path, &r); }
static void read_cfg(const char *path) { lmp_model_config c; lmp_model_read_config(path, &c); }
static void read_tok(const char *path) { size_t n; uint8_t *m; free(lmp_tokens_read(path, &n, &m)); }
static void read_whole(const char *path) { free(lmp_read_file(path, NULL)); }
static void mkdir_p(const char *path) { lmp_mkdir_p(path); }
static void join_long(const char *dir) { char out[16]; lmp_path_join(out, sizeof out, dir, "config.json"); }

// core/util.h's file helpers: a directory is not an empty file, a file is not a directory,
// a path that does not fit dies instead of naming another file.
static void check_file_helpers(const char *d) {
    char p[700], q[800];
    snprintf(p, sizeof p, "%s/a/b//c", d);
    lmp_mkdir_p(p);
    lmp_mkdir_p(p);  // already there: no error
    T_CHECK(lmp_is_dir(p), "mkdir -p made %s", p);
    snprintf(q, sizeof q, "%s/x.txt", p);
    t_write_file(q, "abc", 3);
    size_t len = 0;
    char *s = lmp_read_file(q, &len);
    T_CHECK(len == 3 && !strcmp(s, "abc") && !lmp_is_dir(q), "read_file of a 3-byte file");
    free(s);
    t_expect_death("read_file on a directory", read_whole, p, "is a directory", p);
    t_expect_death("read_file on a missing file", read_whole, "/nonexistent/x", "cannot open", "/nonexistent/x");
    snprintf(q, sizeof q, "%s/x.txt/sub", p);
    t_expect_death("mkdir -p through a file", mkdir_p, q, "not a directory", "x.txt");
    t_expect_death("path join overflow", join_long, d, "path too long", "config.json");
}

static void open_st(const char *path) { lmp_st_file f; lmp_st_open(&f, path); lmp_st_close(&f); }

// Writes a safetensors file with header text j and `data` zero bytes after it.
static void write_raw_st(const char *path, const char *j, size_t data) {
    FILE *f = fopen(path, "wb");
    uint64_t h = strlen(j);
    fwrite(&h, 8, 1, f);
    fwrite(j, 1, h, f);
    for (size_t i = 0; i < data; i++) fputc(0, f);
    fclose(f);
}

// Sizes in config.json, llm.c headers and safetensors headers that disagree with the file,
// or that wrap, or values that do not survive conversion; directories where files belong.
static void check_hostile_model_files(const char *d) {
    char dir[600], p[700], cj[800];
    snprintf(dir, sizeof dir, "%s/hostile", d);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_st(p, "", 0);
    snprintf(cj, sizeof cj, "%s/config.json", dir);
    const char *fmt = "{\"n_layer\": %d, \"n_head\": 2, \"n_embd\": %d, \"vocab_size\": %lld, "
                      "\"n_positions\": %d, \"layer_norm_epsilon\": %s}";
    char text[512];
    snprintf(text, sizeof text, fmt, L, C, 11LL, MAXT, "1e300");
    t_write_file(cj, text, strlen(text));
    t_expect_death("layer_norm_epsilon 1e300", read_cfg, dir, "config.json", "layer_norm_epsilon");
    snprintf(text, sizeof text, fmt, L, C, 11LL, MAXT, "1e-50");
    t_write_file(cj, text, strlen(text));
    t_expect_death("layer_norm_epsilon 1e-50", read_cfg, dir, "config.json", "layer_norm_epsilon");
    snprintf(text, sizeof text, fmt, L, C, 1LL << 30, MAXT, "1e-5");
    t_write_file(cj, text, strlen(text));
    t_expect_death("vocab_size 2^30 for a small file", read_cfg, dir, "wte.weight", "vocab_size 1073741824");
    snprintf(text, sizeof text, fmt, L + 1, C, 11LL, MAXT, "1e-5");
    t_write_file(cj, text, strlen(text));
    t_expect_death("n_layer above the file's", read_cfg, dir, "no tensor h.2.attn.c_attn.weight", "n_layer = 3");
    snprintf(text, sizeof text, fmt, L - 1, C, 11LL, MAXT, "1e-5");
    t_write_file(cj, text, strlen(text));
    t_expect_death("n_layer below the file's", read_cfg, dir, "holds h.1.attn.c_attn.weight", "n_layer = 1");
    snprintf(text, sizeof text, fmt, L, C, 11LL, MAXT, "1e-5");
    t_write_file(cj, text, strlen(text));
    lmp_model_config mc;
    lmp_model_read_config(dir, &mc);
    T_CHECK(mc.vocab_size == 11 && mc.ln_eps == 1e-5f, "well-formed config.json still reads");
    // llm.c: a header whose sizes the file does not hold is refused when read, before loading.
    snprintf(p, sizeof p, "%s/big.bin", d);
    write_llmc(p, 20240326, 0);
    { FILE *f = fopen(p, "r+b"); int v = 1 << 30; fseek(f, 3 * 4, SEEK_SET); fwrite(&v, 4, 1, f);
      fseek(f, 7 * 4, SEEK_SET); fwrite(&v, 4, 1, f); fclose(f); }
    t_expect_death("llm.c vocab 2^30", read_cfg, p, "big.bin", "an llm.c model of this header");
    // safetensors: a duplicated name, a shape product that wraps, a directory.
    snprintf(p, sizeof p, "%s/dup.safetensors", d);
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    t_expect_death("duplicated tensor name", open_st, p, "dup.safetensors", "tensor \"a\" twice");
    snprintf(p, sizeof p, "%s/wrap.safetensors", d);
    write_raw_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0);
    t_expect_death("shape product wraps", open_st, p, "wrap.safetensors", "shape");
    snprintf(p, sizeof p, "%s/stdir.safetensors", d);
    mkdir(p, 0755);
    t_expect_death("safetensors path is a directory", open_st, p, "stdir.safetensors", "is a directory");
    snprintf(p, sizeof p, "%s/tokdir.bin", d);
    mkdir(p, 0755);
    t_expect_death("token file is a directory", read_tok, p, "tokdir.bin", "is a directory");
    snprintf(p, sizeof p, "%s/hostile2", d);
    mkdir(p, 0755);
    snprintf(cj, sizeof cj, "%s/model.safetensors", p);
    mkdir(cj, 0755);
    snprintf(cj, sizeof cj, "%s/config.json", p);
    t_write_file(cj, text, strlen(text));
    t_expect_death("model.safetensors is a directory", load_into_whole, p, "model.safetensors", "is a directory");
}

int main(void) {
    make_specs();
    const char *d = t_tmpdir();
    char dir[600], p[700];
    // HF with prefix, F32
    snprintf(dir, sizeof dir, "%s/hf1", d); mkdir(dir, 0755); write_config(dir, 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir); write_st(p, "transformer.", 0);
    lmp_model_config cfg;
    lmp_model_read_config(dir, &cfg);
    T_CHECK(cfg.n_layer == L && cfg.n_embd == C && cfg.vocab_size == V && cfg.n_ctx == MAXT && cfg.n_head == 2, "HF config values");
    lmp_registry r;
    registry_whole(&r);
    lmp_model_load(dir, &r);
    check_all(&r, "HF prefixed F32");
    // HF without prefix, mixed F16/BF16
    snprintf(dir, sizeof dir, "%s/hf2", d); mkdir(dir, 0755); write_config(dir, 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir); write_st(p, "", 1);
    memset(r.frozen_mem, 0, r.n_frozen * 4);
    lmp_model_load(dir, &r);
    check_all(&r, "HF plain F16/BF16");
    // round trip through the writer
    snprintf(dir, sizeof dir, "%s/rt", d);
    lmp_model_save_hf(dir, &cfg, &r);
    lmp_registry r2;
    registry_whole(&r2);
    lmp_model_load(dir, &r2);
    check_all(&r2, "HF round trip");
    lmp_model_config cfg2;
    lmp_model_read_config(dir, &cfg2);
    T_CHECK(!memcmp(&cfg, &cfg2, sizeof cfg), "config round trip");
    // llm.c
    snprintf(p, sizeof p, "%s/model.bin", d);
    write_llmc(p, 20240326, 0);
    lmp_model_read_config(p, &cfg2);
    T_CHECK(cfg2.vocab_size == V && cfg2.n_layer == L && cfg2.n_embd == C, "llm.c header");
    memset(r2.frozen_mem, 0, r2.n_frozen * 4);
    lmp_model_load(p, &r2);
    check_all(&r2, "llm.c");
    // slices: c_attn weight by q|k|v columns, c_proj by rows, wte by rows; HF and llm.c
    for (int src = 0; src < 2; src++) {
        lmp_registry s;
        lmp_registry_init(&s, 4);
        int64_t sa[2] = {C, 3 * C}, sp[2] = {4 * C, C}, sw[2] = {V, C};
        lmp_param *a = lmp_registry_add(&s, "h.1.attn.c_attn.weight", 2, sa, 1, 3, 2, 3, LMP_ROLE_BASE, 0, 0, 1);
        lmp_param *b = lmp_registry_add(&s, "h.0.mlp.c_proj.weight", 2, sp, 0, 1, 5, 9, LMP_ROLE_BASE, 0, 0, 1);
        lmp_param *w = lmp_registry_add(&s, "wte.weight", 2, sw, 0, 1, 6, 5, LMP_ROLE_BASE, 0, 0, 1);
        lmp_registry_alloc(&s);
        snprintf(dir, sizeof dir, "%s/hf1", d);
        lmp_model_load(src ? p : dir, &s);
        lmp_param *ps[3] = {a, b, w};
        for (int q = 0; q < 3; q++) {
            lmp_param *whole = lmp_registry_find(&r, ps[q]->name);
            int bad = 0;
            for (size_t i = 0; i < ps[q]->numel; i++) bad += ps[q]->data[i] != whole->data[lmp_param_global_index(ps[q], i)];
            T_CHECK(bad == 0, "%s slice of %s: %d elements differ", src ? "llm.c" : "HF", ps[q]->name, bad);
        }
        lmp_registry_free(&s);
    }
    lmp_registry_free(&r);
    lmp_registry_free(&r2);
    // token shards
    uint16_t tok[5] = {1, 2, 65535, 0, 7};
    snprintf(p, sizeof p, "%s/tok.bin", d);
    lmp_tokens_write(p, tok, NULL, 5);
    size_t n;
    uint8_t *mk;
    uint32_t *back = lmp_tokens_read(p, &n, &mk);
    T_CHECK(n == 5 && back[0] == 1 && back[2] == 65535 && back[4] == 7 && !mk, "token round trip (version 1)");
    free(back);
    // version 2: the same header with version 2, tokens, then one mask byte per token
    uint8_t mask[5] = {0, 0, 1, 1, 0};
    lmp_tokens_write(p, tok, mask, 5);
    FILE *tf = fopen(p, "rb");
    unsigned char raw[1024 + 15];
    size_t got = fread(raw, 1, sizeof raw, tf);
    fclose(tf);
    int hdr3[3];
    memcpy(hdr3, raw, sizeof hdr3);
    T_CHECK(got == 1024 + 15 && hdr3[0] == 20240520 && hdr3[1] == 2 && hdr3[2] == 5 &&
            !memcmp(raw + 1024, tok, 10) && !memcmp(raw + 1034, mask, 5), "version 2 layout");
    back = lmp_tokens_read(p, &n, &mk);
    T_CHECK(n == 5 && back[2] == 65535 && back[4] == 7 && mk && !memcmp(mk, mask, 5), "token round trip (version 2)");
    free(back);
    free(mk);
    raw[1024 + 12] = 2;
    snprintf(p, sizeof p, "%s/badmask.bin", d);
    t_write_file(p, raw, sizeof raw);
    t_expect_death("mask value 2", read_tok, p, "badmask.bin", "loss mask value 2");
    snprintf(p, sizeof p, "%s/shortmask.bin", d);
    t_write_file(p, raw, sizeof raw - 1);
    t_expect_death("truncated mask", read_tok, p, "shortmask.bin", "truncated");

    // malformed files
    char bad[700];
    snprintf(bad, sizeof bad, "%s/badmagic.bin", d); write_llmc(bad, 1234, 0);
    t_expect_death("llm.c magic", read_cfg, bad, "badmagic.bin", "magic");
    snprintf(bad, sizeof bad, "%s/trunc.bin", d); write_llmc(bad, 20240326, 1);
    t_expect_death("llm.c truncated", load_into_whole, bad, "trunc.bin", "bytes");
    snprintf(dir, sizeof dir, "%s/hfbad", d); mkdir(dir, 0755); write_config(dir, 1);
    t_expect_death("config missing key", read_cfg, dir, "config.json", "vocab_size");
    write_config(dir, 0);
    snprintf(bad, sizeof bad, "%s/model.safetensors", dir);
    write_st(bad, "", 0);
    { struct stat st; stat(bad, &st); if (truncate(bad, st.st_size - 100) != 0) perror("truncate"); }
    t_expect_death("safetensors truncated", load_into_whole, dir, "model.safetensors", "data_offsets");
    { FILE *f = fopen(bad, "wb"); uint64_t h = 1 << 20; fwrite(&h, 8, 1, f); fwrite("{}      ", 1, 8, f); fclose(f); }
    t_expect_death("header beyond file", load_into_whole, dir, "model.safetensors", "header length");
    { FILE *f = fopen(bad, "wb"); const char *j = "{\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
      uint64_t h = strlen(j); fwrite(&h, 8, 1, f); fwrite(j, 1, h, f); float z[2] = {0, 0}; fwrite(z, 4, 2, f); fclose(f); }
    t_expect_death("wrong shape", load_into_whole, dir, "wte.weight", "shape");
    { FILE *f = fopen(bad, "wb"); const char *j = "{\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}";
      uint64_t h = strlen(j); fwrite(&h, 8, 1, f); fwrite(j, 1, h, f); float z[8] = {0}; fwrite(z, 4, 8, f); fclose(f); }
    t_expect_death("missing tensor", load_into_whole, dir, "missing tensor", "wte.weight");
    snprintf(bad, sizeof bad, "%s/badtok.bin", d);
    { int hdr[256] = {999, 1, 3}; FILE *f = fopen(bad, "wb"); fwrite(hdr, 4, 256, f); fclose(f); }
    t_expect_death("token magic", read_tok, bad, "badtok.bin", "magic");
    { int hdr[256] = {20240520, 1, 30}; FILE *f = fopen(bad, "wb"); fwrite(hdr, 4, 256, f); fwrite(tok, 2, 5, f); fclose(f); }
    t_expect_death("token truncated", read_tok, bad, "badtok.bin", "truncated");
    snprintf(bad, sizeof bad, "%s/short.bin", d);
    t_write_file(bad, "\x40\xd9\x34\x01", 4);
    t_expect_death("llm.c header too short", read_cfg, bad, "short.bin", "too short");
    check_file_helpers(d);
    check_hostile_model_files(d);
    return t_finish();
}
