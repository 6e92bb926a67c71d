// main.c: the lorampi command line. One binary, one cmd_* per subcommand.
#include "analysis/analysis.h"
#include "cli/cli.h"
#include "data/bpe.h"
#include "data/chat.h"
#include "core/config.h"
#include "data/dataset.h"
#include "run/eval.h"
#include "run/export.h"
#include "run/generate.h"
#include "run/init_from.h"
#include "run/merge.h"
#include "run/plan.h"
#include "run/train.h"
#include "core/util.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: lorampi <command> [options]\n"
    "\n"
    "commands:\n"
    "  train CONFIG.ini [--set section.key=value ...] [--resume CKPT | --no-resume] [--stop-at N]\n"
    "        fine-tune (LoRA) or train (method = none) a GPT-2 model; run under mpirun/srun.\n"
    "        With [checkpoint] dir set it resumes from the newest checkpoint there; --stop-at N\n"
    "        writes a checkpoint and stops after step N\n"
    "  plan CONFIG.ini --ranks N [--set section.key=value ...]\n"
    "        memory per rank and communication per step of a layout, without training\n"
    "  tokenize (--tokenizer DIR | --vocab DIR | --bytes) --out PREFIX [--val-fraction F]\n"
    "           [--format text|alpaca] [--chat-format auto|llama3|chatml] [--doc-delimiter LINE]\n"
    "           [--template FILE] [--train-on-inputs] [--max-tokens N] [--overlong truncate|drop]\n"
    "           FILE...\n"
    "        turn text files (one document per file, or split at lines equal to LINE),\n"
    "        Alpaca-style instruction data or chat data ({\"messages\": [...]}, .json array /\n"
    "        .jsonl) into token files PREFIX_train.bin and PREFIX_val.bin, with a Hugging Face\n"
    "        tokenizer (--tokenizer DIR: tokenizer.json [+ tokenizer_config.json]), GPT-2 BPE\n"
    "        (--vocab DIR: vocab.json + merges.txt or encoder.json + vocab.bpe) or one token\n"
    "        per byte; vocabularies above 65536 ids are written with uint32 tokens\n"
    "  generate CONFIG.ini (--tokenizer DIR | --vocab DIR | --bytes) [--prompt TEXT] [--chat]\n"
    "           [--tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--no-cache]\n"
    "           [--resume CKPT | --no-resume] [--set section.key=value ...]\n"
    "        continue a prompt with the model of CONFIG and its newest checkpoint (the adapter);\n"
    "        --tokenizer/--vocab: tokenizer.json or GPT-2's files; BOS first when the tokenizer\n"
    "        adds one, stop at EOS (and generation_config.json's eos_token_id); --chat: the\n"
    "        prompt as a user turn in the tokenizer's chat format (llama3, ChatML);\n"
    "        --temperature 0 is greedy; --top-k 0: no top-k cut; --top-p: nucleus sampling;\n"
    "        keys and values are cached (--no-cache recomputes the window for every token)\n"
    "  eval CONFIG.ini [--data FILE] [--batches N] [--resume CKPT | --no-resume] [--set ...]\n"
    "        loss (masked tokens excluded), perplexity and token count of the model and the\n"
    "        checkpoint training would resume from, on [data] val or FILE; run under mpirun\n"
    "  export CKPT --out DIR [--force]\n"
    "        the adapter of a checkpoint as a PEFT directory (adapter_config.json +\n"
    "        adapter_model.safetensors), from any layout\n"
    "  merge CKPT --out DIR [--model PATH] [--format hf|llmc] [--dtype f32|bf16|f16] [--force]\n"
    "        the checkpoint's model with its adapter merged (W0 + scale*B*A) as an HF directory\n"
    "        (config.json + model.safetensors; the default unless the model is an llm.c file)\n"
    "        or an llm.c DIR/model.bin (fp32); --model: read W0 from PATH instead of the path\n"
    "        the checkpoint's config names; under mpirun each rank merges and writes its shard\n"
    "  plot METRICS.jsonl [MORE.jsonl ...] --out PNG\n"
    "        training and validation loss, learning rate, gradient norm and tokens/s against\n"
    "        the step, the runs overlaid with their names\n"
    "  analyze spectrum (CKPT | --run DIR) --out OUT.h5 [--full-svd]\n"
    "  analyze similarity CKPT1 CKPT2 --out OUT.h5 [--vectors A|dw-left|dw-right] [--module M]\n"
    "  analyze vs-base CKPT --model HF_DIR --out OUT.h5 [--full-svd]\n"
    "        what the adapters learned (LoRA paper, Section 7): singular values and effective\n"
    "        rank of dW = scale*B*A, subspace similarity between adapters, dW against W;\n"
    "        writes OUT.h5, OUT.csv and PNG plots; run under mpirun (ScaLAPACK for W)\n"
    "\n"
    "options:\n"
    "  --help       this text\n"
    "  --version    the version\n"
    "\n"
    "Every configuration key, its default and the file formats: README.md.\n";

int lmp_usage_error(const char *fmt, const char *arg) {
    if (lmp_world_rank() == 0) {
        fprintf(stderr, "lorampi: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n(lorampi --help lists the commands)\n");
    }
    return LMP_EXIT_USAGE;
}

static int parse_count(const char *opt, const char *v, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < 1 || x > 2000000000) return lmp_usage_error("%s: expected a positive integer", opt);
    *out = (int)x;
    return 0;
}

// Parses "CONFIG [--set s.k=v ...]" plus plan's --ranks N (ranks != NULL) or train's
// --resume PATH, --no-resume, --stop-at N (topts != NULL).
// sets: room for argc pointers (owned by the caller, so an error return leaks nothing).
static int config_args(int argc, char **argv, const char **sets, lmp_config *cfg, int *ranks,
                       lmp_train_opts *topts) {
    const char *path = NULL;
    int n_set = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) return lmp_usage_error("%s needs section.key=value", "--set");
            sets[n_set++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[n_set++] = argv[i] + 6;
        } else if (ranks && !strcmp(argv[i], "--ranks") && i + 1 < argc) {
            if (parse_count("--ranks", argv[++i], ranks)) return LMP_EXIT_USAGE;
        } else if (topts && !strcmp(argv[i], "--resume") && i + 1 < argc) {
            topts->resume = argv[++i];
        } else if (topts && !strcmp(argv[i], "--no-resume")) {
            topts->no_resume = 1;
        } else if (topts && !strcmp(argv[i], "--stop-at") && i + 1 < argc) {
            if (parse_count("--stop-at", argv[++i], &topts->stop_at)) return LMP_EXIT_USAGE;
        } else if (argv[i][0] == '-') {
            return lmp_usage_error("unknown option %s", argv[i]);
        } else if (!path) {
            path = argv[i];
        } else {
            return lmp_usage_error("more than one config file (%s)", argv[i]);
        }
    }
    if (!path) return lmp_usage_error("%s", "give a config file, e.g. lorampi train run.ini");
    if (topts && topts->resume && topts->no_resume) return lmp_usage_error("%s", "--resume and --no-resume exclude each other");
    if (ranks && !*ranks) return lmp_usage_error("%s", "plan: give --ranks N");
    lmp_config_load(cfg, path, sets, n_set);
    lmp_init_from_apply(cfg);  // a PEFT adapter's config replaces [adapter] keys (init_from.h)
    return 0;
}

static int parse_config_args(int argc, char **argv, lmp_config *cfg, int *ranks,
                             lmp_train_opts *topts) {
    const char **sets = lmp_malloc((size_t)argc * sizeof(char *));
    int rc = config_args(argc, argv, sets, cfg, ranks, topts);
    free(sets);
    return rc;
}

static int cmd_plan(int argc, char **argv) {
    lmp_config cfg;
    int ranks = 0;
    int rc = parse_config_args(argc, argv, &cfg, &ranks, NULL);
    if (rc) return rc;
    lmp_plan_t p;
    lmp_plan_compute(&cfg, ranks, &p);
    lmp_plan_print(&cfg, &p);
    return 0;
}

static int cmd_train(int argc, char **argv) {
    lmp_config cfg;
    lmp_train_opts topts = {NULL, 0, 0};
    int rc = parse_config_args(argc, argv, &cfg, NULL, &topts);
    if (rc) return rc;
    lmp_train_result res;
    lmp_train(&cfg, &topts, &res);
    if (res.steps == res.start_step) {
        lmp_log("done: nothing to train (at step %d of %d)\n", res.steps, cfg.train.steps);
        return 0;
    }
    lmp_log("%s: %d steps (%d to %d), train loss %.4f -> %.4f", res.stopped ? "stopped" : "done",
            res.steps - res.start_step, res.start_step + 1, res.steps, res.first_loss, res.last_loss);
    if (!isnan(res.first_val) && !isnan(res.last_val))
        lmp_log(", val loss %.4f -> %.4f", res.first_val, res.last_val);
    else if (!isnan(res.last_val))
        lmp_log(", val loss %.4f", res.last_val);
    lmp_log(", %.0f tokens/s\n", res.tokens_per_s);
    return res.stopped == 2 ? LMP_EXIT_REQUEUE : 0;
}

// files: room for argc pointers (owned by the caller, so an error return leaks nothing).
static int tokenize(int argc, char **argv, char **files) {
    const char *out = NULL, *vocab = NULL, *hf = NULL;
    double val_frac = 0.1;
    int bytes = 0, nfiles = 0;
    lmp_dataset_opts o = {LMP_FMT_AUTO, NULL, NULL, 0, 0, 0, 0};
    for (int i = 0; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--bytes")) bytes = 1;
        else if (!strcmp(argv[i], "--vocab") && more) vocab = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && more) hf = argv[++i];
        else if (!strcmp(argv[i], "--chat-format") && more) {
            if ((o.chat_format = lmp_chat_format_parse(argv[++i])) < 0)
                return lmp_usage_error("--chat-format %s: expected auto, llama3 or chatml", argv[i]);
        } else if (!strcmp(argv[i], "--out") && more) out = argv[++i];
        else if (!strcmp(argv[i], "--val-fraction") && more) {
            char *end;
            val_frac = strtod(argv[++i], &end);
            if (*end || !(val_frac >= 0 && val_frac < 1))
                return lmp_usage_error("--val-fraction %s: expected a number in [0, 1)", argv[i]);
        } else if (!strcmp(argv[i], "--format") && more) {
            i++;
            if (!strcmp(argv[i], "text")) o.format = LMP_FMT_TEXT;
            else if (!strcmp(argv[i], "alpaca")) o.format = LMP_FMT_ALPACA;
            else return lmp_usage_error("--format %s: expected text or alpaca", argv[i]);
        } else if (!strcmp(argv[i], "--doc-delimiter") && more) o.delimiter = argv[++i];
        else if (!strcmp(argv[i], "--template") && more) o.template_path = argv[++i];
        else if (!strcmp(argv[i], "--train-on-inputs")) o.train_on_inputs = 1;
        else if (!strcmp(argv[i], "--max-tokens") && more) {
            if (parse_count("--max-tokens", argv[++i], &o.max_tokens)) return LMP_EXIT_USAGE;
        } else if (!strcmp(argv[i], "--overlong") && more) {
            i++;
            if (!strcmp(argv[i], "drop")) o.drop_long = 1;
            else if (strcmp(argv[i], "truncate")) return lmp_usage_error("--overlong %s: expected truncate or drop", argv[i]);
        } else if (argv[i][0] == '-') return lmp_usage_error("tokenize: unknown option or missing value: %s", argv[i]);
        else files[nfiles++] = argv[i];
    }
    if (bytes + (vocab != NULL) + (hf != NULL) != 1)
        return lmp_usage_error("%s", "tokenize: give either --vocab DIR (GPT-2 BPE), --tokenizer DIR (tokenizer.json) or --bytes");
    if (!out || !nfiles) return lmp_usage_error("%s", "tokenize: give --out PREFIX and input files");
    if (lmp_world_rank() != 0) return 0;
    double t0 = lmp_now();
    lmp_bpe *b = hf ? lmp_tokenizer_load(hf) : vocab ? lmp_bpe_load(vocab) : NULL;
    double t1 = lmp_now();
    lmp_token_stream st = {0};
    for (int f = 0; f < nfiles; f++) lmp_stream_add_file(&st, b, files[f], &o);
    double dt = lmp_now() - t1;
    printf("tokenized %d file%s, %.2f MB, in %.2f s (%.1f MB/s; vocabulary loaded in %.2f s): "
           "%zu documents or examples, %zu tokens\n", nfiles, nfiles > 1 ? "s" : "",
           st.bytes_in / 1e6, dt, st.bytes_in / 1e6 / (dt > 0 ? dt : 1e-9), t1 - t0, st.n_docs, st.tok.n);
    if (st.n_truncated || st.n_dropped)
        printf("examples longer than --max-tokens %d: %zu truncated, %zu dropped\n", o.max_tokens,
               st.n_truncated, st.n_dropped);
    if (st.n_bad_utf8) printf("invalid UTF-8 sequences replaced by U+FFFD: %zu\n", st.n_bad_utf8);
    lmp_stream_write(&st, out, val_frac);
    lmp_stream_free(&st);
    lmp_bpe_free(b);
    return 0;
}

static int cmd_tokenize(int argc, char **argv) {
    char **files = lmp_malloc((size_t)argc * sizeof(char *));
    int rc = tokenize(argc, argv, files);
    free(files);
    return rc;
}

static int parse_float(const char *opt, const char *v, float *out) {
    char *end;
    *out = strtof(v, &end);
    if (*end || end == v || !isfinite(*out)) return lmp_usage_error("%s: expected a number", opt);
    return 0;
}

// rest: room for argc pointers (owned by the caller, so an error return leaks nothing).
static int generate(int argc, char **argv, char **rest) {
    lmp_gen_opts g = {.prompt = "", .tokens = 100, .temperature = 0.8f, .top_k = 40, .top_p = 1.0f,
                      .seed = 1};
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        int more = i + 1 < argc;
        if ((!strcmp(argv[i], "--vocab") || !strcmp(argv[i], "--tokenizer")) && more) {
            g.tokenizer_first = argv[i][2] == 't';
            g.vocab = argv[++i];
        }
        else if (!strcmp(argv[i], "--bytes")) g.bytes = 1;
        else if (!strcmp(argv[i], "--chat")) g.chat = 1;
        else if (!strcmp(argv[i], "--prompt") && more) g.prompt = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && more) { if (parse_count("--tokens", argv[++i], &g.tokens)) return LMP_EXIT_USAGE; }
        else if (!strcmp(argv[i], "--temperature") && more) { if (parse_float("--temperature", argv[++i], &g.temperature)) return LMP_EXIT_USAGE; }
        else if (!strcmp(argv[i], "--top-k") && more) {
            char *end;
            long k = strtol(argv[++i], &end, 10);
            if (*end || k < 0) return lmp_usage_error("--top-k %s: expected a non-negative integer", argv[i]);
            g.top_k = (int)k;
        } else if (!strcmp(argv[i], "--top-p") && more) {
            if (parse_float("--top-p", argv[++i], &g.top_p)) return LMP_EXIT_USAGE;
            if (!(g.top_p > 0 && g.top_p <= 1)) return lmp_usage_error("--top-p %s: expected a number in (0, 1]", argv[i]);
        } else if (!strcmp(argv[i], "--no-cache")) g.no_cache = 1;
        else if (!strcmp(argv[i], "--seed") && more) g.seed = strtoull(argv[++i], NULL, 10);
        else rest[nrest++] = argv[i];
    }
    if (!g.bytes == !g.vocab)
        return lmp_usage_error("%s", "generate: give either --tokenizer DIR (tokenizer.json or GPT-2 BPE; --vocab DIR the same) or --bytes");
    lmp_config cfg;
    lmp_train_opts topts = {NULL, 0, 0};
    int rc = parse_config_args(nrest, rest, &cfg, NULL, &topts);
    if (rc) return rc;
    return lmp_generate(&cfg, &topts, &g);
}

static int cmd_generate(int argc, char **argv) {
    char **rest = lmp_malloc(((size_t)argc + 1) * sizeof(char *));
    int rc = generate(argc, argv, rest);
    free(rest);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    lmp_eval_opts e = {NULL, 0};
    char **rest = lmp_malloc(((size_t)argc + 1) * sizeof(char *));
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) e.data = argv[++i];
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            if (parse_count("--batches", argv[++i], &e.batches)) { free(rest); return LMP_EXIT_USAGE; }
        } else rest[nrest++] = argv[i];
    }
    lmp_config cfg;
    lmp_train_opts topts = {NULL, 0, 0};
    int rc = parse_config_args(nrest, rest, &cfg, NULL, &topts);
    free(rest);
    if (rc) return rc;
    return lmp_eval(&cfg, &topts, &e);
}

static int cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--force")) force = 1;
        else if (argv[i][0] == '-') return lmp_usage_error("export: unknown option %s", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else return lmp_usage_error("export: more than one checkpoint (%s)", argv[i]);
    }
    if (!ckpt || !out) return lmp_usage_error("%s", "export: give CKPT and --out DIR");
    return lmp_export(ckpt, out, force);
}

static int cmd_merge(int argc, char **argv) {
    lmp_merge_args a = {.format = -1, .dtype = LMP_DT_F32};
    for (int i = 0; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--out") && more) a.out = argv[++i];
        else if (!strcmp(argv[i], "--model") && more) a.model = argv[++i];
        else if (!strcmp(argv[i], "--force")) a.force = 1;
        else if (!strcmp(argv[i], "--format") && more) {
            i++;
            if (!strcmp(argv[i], "hf")) a.format = LMP_MERGED_HF;
            else if (!strcmp(argv[i], "llmc")) a.format = LMP_MERGED_LLMC;
            else return lmp_usage_error("merge: --format %s: expected hf or llmc", argv[i]);
        } else if (!strcmp(argv[i], "--dtype") && more) {
            i++;
            if (!strcmp(argv[i], "f32")) a.dtype = LMP_DT_F32;
            else if (!strcmp(argv[i], "bf16")) a.dtype = LMP_DT_BF16;
            else if (!strcmp(argv[i], "f16")) a.dtype = LMP_DT_F16;
            else return lmp_usage_error("merge: --dtype %s: expected f32, bf16 or f16", argv[i]);
        } else if (argv[i][0] == '-') return lmp_usage_error("merge: unknown option or missing value: %s", argv[i]);
        else if (!a.ckpt) a.ckpt = argv[i];
        else return lmp_usage_error("merge: more than one checkpoint (%s)", argv[i]);
    }
    if (!a.ckpt || !a.out) return lmp_usage_error("%s", "merge: give CKPT and --out DIR");
    return lmp_merge(&a);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? LMP_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lorampi %s\n", LMP_VERSION);
        return 0;
    }
    LMP_CHECK_MPI(MPI_Init(&argc, &argv));
    // Failed MPI calls return their code to LMP_CHECK_MPI, which names the call and MPI's
    // message, instead of MPI's default handler aborting without saying where.
    LMP_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    int rc;
    if (!strcmp(argv[1], "train")) rc = cmd_train(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "plan")) rc = cmd_plan(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "tokenize")) rc = cmd_tokenize(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "analyze")) rc = lmp_analyze_main(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "generate")) rc = cmd_generate(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "plot")) rc = lmp_cmd_plot(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "export")) rc = cmd_export(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "merge")) rc = cmd_merge(argc - 2, argv + 2);
    else if (!strcmp(argv[1], "eval")) rc = cmd_eval(argc - 2, argv + 2);
    else rc = lmp_usage_error("unknown command '%s'", argv[1]);
    LMP_CHECK_MPI(MPI_Finalize());
    return rc;
}
