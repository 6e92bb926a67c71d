// merged.c: W0 + ΔW written by every rank's shard into one model file (merged.h).
#include "run/merged.h"
#include "run/merge_methods.h"
#include "core/util.h"
#include "io/hf_dir.h"
#include "io/llmc.h"
#include "io/model_io.h"
#include "io/pfile.h"
#include "io/slices.h"
#include "io/st_parallel.h"
#include "model/model_config.h"

#include <stdlib.h>
#include <string.h>

// The tensors written: every base entry, named and ordered for the file.
typedef struct {
    int n;
    lmp_param **p;                      // registry entries, in file order
    lmp_st_out *t;                      // names (into names) and global shapes, same order
    char (*names)[LMP_NAME_MAX + 16];
} tensor_list;

typedef struct { uint64_t key; int i; } order_key;
static int by_key(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : x->i - y->i;
}

// Base entries of r in registry order (lmp_hf_save_weights's names and order), or, for an
// HF input model, under the input's names ("transformer." or not) in the input's data order
// (sharded: file after file).
static void list_tensors(lmp_registry *r, const char *model_path, tensor_list *l) {
    l->p = lmp_calloc((size_t)(r->n + 1) * sizeof *l->p);
    l->t = lmp_calloc((size_t)(r->n + 1) * sizeof *l->t);
    l->names = lmp_calloc((size_t)(r->n + 1) * sizeof *l->names);
    order_key *ord = lmp_calloc((size_t)(r->n + 1) * sizeof *ord);
    int hf = model_path && model_path[0] && lmp_is_dir(model_path) && lmp_hf_has_weights(model_path), n = 0;
    lmp_hf_files in;
    if (hf) lmp_hf_open(&in, model_path);
    for (int i = 0; i < r->n; i++) {
        if (r->p[i].role != LMP_ROLE_BASE) continue;
        const lmp_st_file *f = NULL;
        const lmp_st_tensor *t = hf ? lmp_hf_find(&in, r->p[i].name, &f) : NULL;
        lmp_fmt(l->names[n], sizeof l->names[n], "%s", t ? t->name : r->p[i].name);
        uint64_t file = t ? (uint64_t)(f - in.f) : 0;
        ord[n] = (order_key){t ? file << 44 | t->begin : (uint64_t)i, n};
        l->p[n++] = &r->p[i];
    }
    if (hf) lmp_hf_close(&in);
    qsort(ord, (size_t)n, sizeof *ord, by_key);
    lmp_param **p = lmp_calloc((size_t)(n + 1) * sizeof *p);
    for (int k = 0; k < n; k++) {
        const lmp_param *q = l->p[ord[k].i];
        p[k] = l->p[ord[k].i];
        l->t[k] = (lmp_st_out){l->names[ord[k].i], q->ndim, {q->shape[0], q->ndim > 1 ? q->shape[1] : 0}, NULL};
    }
    free(l->p);
    free(ord);
    l->p = p;
    l->n = n;
}

static void free_tensors(tensor_list *l) {
    free(l->p);
    free(l->t);
    free(l->names);
}

// llm.c pads the vocabulary to a multiple of 128 rows (50257 -> 50304); an llm.c input
// keeps its own padding.
static int padded_vocab(const char *model_path, int V) {
    if (model_path && model_path[0] && !lmp_is_dir(model_path)) {
        int hdr[256];
        uint64_t size;
        lmp_llmc_read_header(model_path, hdr, &size);
        return hdr[7];
    }
    return (V + 127) / 128 * 128;
}

// The file's layout, the same on every rank.
static void layout(const char *dir, lmp_session *s, const lmp_merged_opts *o, tensor_list *l,
                   lmp_pfile *f) {
    char path[4096];
    int llmc = o->format == LMP_MERGED_LLMC;
    if (llmc && strcmp(s->model.arch.family, "gpt2"))
        lmp_die_all("merge: the llm.c format holds GPT-2 models only; this one is %s (use --format hf)",
                    s->model.arch.family);
    if (llmc && o->dtype != LMP_DT_F32)
        lmp_die_all("merge: llm.c model files are written as fp32 (version 3); use --dtype f32 or --format hf");
    list_tensors(&s->model.reg, llmc ? NULL : o->model_path, l);
    lmp_pfile_init(f, lmp_path_join(path, sizeof path, dir, llmc ? "model.bin" : "model.safetensors"), o->dtype);
    if (!llmc) { lmp_st_layout(f, l->t, l->n, "{\"format\": \"pt\"}"); return; }
    const lmp_model_config *mc = &s->mc;
    int hdr[8] = {0, 0, mc->n_ctx, mc->vocab_size, mc->n_layer, mc->n_head, mc->n_embd,
                  padded_vocab(o->model_path, mc->vocab_size)};
    lmp_llmc_layout(f, hdr, l->t, l->n);
}

// buf (p's local slice) += ΔW of record rec, element by element (merged.h): A (r, in) and
// B (out, r) whole on every rank. Conv1D (in, out): global row i of p is ΔW's input i,
// global column j its output j - out_offset. nn.Linear (out, in) (the Llama family): global
// row i is output i - out_offset, column j input j.
static void add_delta(const lmp_param *p, float *buf, const lmp_adapter_rec *rec,
                      const float *A, const float *B) {
    int64_t rows = p->local_shape[0], cols = p->local_shape[1], r = rec->r;
    int oi = !*lmp_hf_prefix(p->name);
    int64_t *rmap = lmp_malloc((size_t)(rows + cols) * sizeof *rmap), *cmap = rmap + rows;
    for (int64_t i = 0; i < rows; i++) rmap[i] = p->split_dim == 0 ? lmp_param_split_pos(p, i) : i;
    for (int64_t j = 0; j < cols; j++) cmap[j] = p->split_dim == 1 ? lmp_param_split_pos(p, j) : j;
    float *a = lmp_malloc((size_t)r * sizeof *a);
    for (int64_t i = 0; i < rows; i++) {
        int64_t oi_o = rmap[i] - rec->out_offset;
        if (oi && (oi_o < 0 || oi_o >= rec->out)) continue;
        if (!oi) for (int64_t k = 0; k < r; k++) a[k] = A[k * rec->in + rmap[i]];
        float *w = buf + i * cols;
        for (int64_t j = 0; j < cols; j++) {
            int64_t o = oi ? oi_o : cmap[j] - rec->out_offset, in = oi ? cmap[j] : rmap[i];
            if (o < 0 || o >= rec->out) continue;
            const float *b = B + o * r;
            float d = 0.0f;
            for (int64_t k = 0; k < r; k++) d += b[k] * (oi ? A[k * rec->in + in] : a[k]);
            d *= rec->scale;
            // W0 + 0 would turn a -0.0 weight into +0.0: a zero update leaves W0's bits.
            if (d != 0.0f) w[j] += d;
        }
    }
    free(a);
    free(rmap);
}

// p's local slice with every adapter on it merged, into buf (p->numel floats); IA³ and
// DoRA (norms: DoRA's row norms per record) in merge_methods.c.
static void merge_param(const lmp_registry *r, const lmp_param *p, float *buf, float **norms) {
    lmp_param_get_f32(p, buf);  // a bf16 base widened: the merge is computed in fp32
    for (int k = 0; k < r->n_rec; k++) {
        const lmp_adapter_rec *rec = &r->rec[k];
        if (lmp_merge_method(r, rec, p, buf, norms[k])) continue;
        if (strcmp(rec->base, p->name)) continue;
        if (strcmp(rec->method, "lora") || p->ndim != 2)
            lmp_die_all("merge: adapter %s (method %s) has no merged form", rec->name, rec->method);
        add_delta(p, buf, rec, lmp_rec_tensor(r, rec, 0)->data, lmp_rec_tensor(r, rec, 1)->data);
    }
}

typedef struct { lmp_pfile *f; int k; char *err; size_t errn; } put_ctx;
static void put_block(void *ctx, int64_t r0, int64_t nr, int64_t c0, int64_t nc, void *src, int64_t ldd,
                      int bf16) {
    put_ctx *x = ctx;
    LMP_CHECK(!bf16, "internal: merged blocks are fp32");
    if (!x->err[0]) lmp_pfile_put(x->f, x->k, r0, nr, c0, nc, src, ldd, x->err, x->errn);
}

// This rank's shards of every tensor, merged and written (tensors held whole: tp rank 0
// only). Returns the seconds spent merging.
static double write_shards(lmp_pfile *f, const lmp_registry *r, const tensor_list *l, int tp_rank,
                           float **norms, char *err, size_t errn) {
    double t_merge = 0;
    if (lmp_pfile_open(f, err, errn)) return 0;
    for (int k = 0; k < l->n && !err[0]; k++) {
        const lmp_param *p = l->p[k];
        if (p->split_dim < 0 && tp_rank != 0) continue;
        lmp_param view = *p;  // the entry with the merged values as its local data (fp32)
        view.h = NULL;
        view.data = lmp_malloc(p->numel * sizeof(float) + 4);
        double t0 = lmp_now();
        merge_param(r, p, view.data, norms);
        t_merge += lmp_now() - t0;
        put_ctx x = {f, k, err, errn};
        lmp_for_each_block(&view, put_block, &x);
        free(view.data);
    }
    char cerr[4200] = "";
    if (lmp_pfile_close(f, cerr, sizeof cerr) && !err[0]) lmp_fmt(err, errn, "%s", cerr);
    return t_merge;
}

double lmp_merged_save(const char *dir, lmp_session *s, const lmp_merged_opts *o) {
    lmp_comm *c = &s->comm;
    char err[8192] = "";
    tensor_list l;
    lmp_pfile f;
    layout(dir, s, o, &l, &f);
    if (c->rank == 0 && lmp_mkdir_p_err(dir, err, sizeof err) == 0) lmp_pfile_create(&f, err, sizeof err);
    lmp_die_if_any(c, err);
    double t_merge = 0;
    float **norms = lmp_merge_norms(&s->model);  // DoRA's (a collective over tp)
    if (c->dp_rank == 0) t_merge = write_shards(&f, &s->model.reg, &l, c->tp_rank, norms, err, sizeof err);
    lmp_merge_norms_free(&s->model, norms);
    // Every rank learns of an error anywhere before rank 0 renames: a failed write removes
    // the temporary file and nothing appears under the final name.
    double bad = err[0] != 0;
    lmp_allreduce_d(c, &bad, 1, MPI_MAX, c->world);
    if (bad && c->rank == 0) lmp_pfile_abort(&f);
    lmp_die_if_any(c, err);
    if (c->rank == 0) {
        char cpath[4096];
        static const char *DT[] = {[LMP_DT_F32] = "float32", [LMP_DT_F16] = "float16", [LMP_DT_BF16] = "bfloat16"};
        if (o->format == LMP_MERGED_HF && s->mc.family == LMP_FAMILY_LLAMA)
            lmp_llama_write_config(dir, &s->mc, o->model_path && lmp_is_dir(o->model_path) ? o->model_path : NULL, DT[o->dtype]);
        else if (o->format == LMP_MERGED_HF)
            lmp_model_write_config(lmp_path_join(cpath, sizeof cpath, dir, "config.json"), &s->mc);
        if (lmp_pfile_commit(&f, err, sizeof err)) lmp_pfile_abort(&f);
    }
    lmp_die_if_any(c, err);
    lmp_pfile_free(&f);
    free_tensors(&l);
    return t_merge;
}
