#!/usr/bin/python3
"""h5py/numpy side of tests/t_prefix.sh: prefix tuning's files read the way a user would.

  prefix_check.py export CKPT DIR HEADS   DIR (PEFT prefix tuning) == the checkpoint's prefixes:
                                          prompt_embeddings (p, L 2 kv) is layer l's (p, 2 kv)
                                          at columns [2 l kv, 2 (l+1) kv), bitwise; the config
                                          fields PEFT writes, with num_attention_heads = HEADS
  prefix_check.py spectrum CKPT SPEC      analyze spectrum's singular values of each prefix
                                          matrix == numpy's (1e-5 relative)
  prefix_check.py export-proj CKPT DIR HEADS H
                                          prefix_projection: DIR's prompt_embeddings == the MLP
                                          tanh(E W1^T + b1) W2^T + b2 computed here in float64
                                          from the checkpoint's prefix_encoder tensors (1e-5
                                          relative); config fields with prefix_projection true,
                                          encoder_hidden_size = H
  prefix_check.py spectrum-proj CKPT SPEC the MLP's two matrices' singular values == numpy's
"""
import json
import struct
import sys

import h5py
import numpy as np

FIELDS = ["auto_mapping", "base_model_name_or_path", "encoder_hidden_size", "inference_mode", "init_weights",
          "modules_to_save", "num_attention_heads", "num_layers", "num_transformer_submodules",
          "num_virtual_tokens", "peft_type", "peft_version", "prefix_projection", "revision", "task_type",
          "token_dim"]


def prefixes(ckpt):
    with h5py.File(ckpt, "r") as f:
        text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
        mods = sorted((int(g.attrs["layer"]), name) for name, g in f["adapter"].items()
                      if text(g.attrs["method"]) == "prefix")
        return [(name, f["adapter"][name]["prompt_embeddings"][()]) for _, name in mods]


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32).reshape(v["shape"])
            for k, v in h.items()}


def check_export(ckpt, d, heads):
    ps = prefixes(ckpt)
    st = read_safetensors(d + "/adapter_model.safetensors")
    assert list(st) == ["prompt_embeddings"], list(st)
    want = np.concatenate([p for _, p in ps], axis=1)
    got = st["prompt_embeddings"]
    assert got.shape == want.shape and np.array_equal(got, want), (got.shape, want.shape)
    c = json.load(open(d + "/adapter_config.json"))
    assert sorted(c) == FIELDS, sorted(set(c) ^ set(FIELDS))
    p, w = want.shape
    kv = w // (2 * len(ps))
    assert (c["peft_type"], c["num_virtual_tokens"], c["num_layers"], c["token_dim"], c["num_attention_heads"],
            c["prefix_projection"], c["num_transformer_submodules"]) == ("PREFIX_TUNING", p, len(ps), kv, heads, False, 1), c
    print("export: prompt_embeddings %s = the %d layers' prefixes; config %s" % (got.shape, len(ps), c))


def check_spectrum(ckpt, spec):
    worst = 0.0
    with h5py.File(spec, "r") as s:
        for name, p in prefixes(ckpt):
            sv = np.linalg.svd(p.astype(np.float64), compute_uv=False)
            got = s[name]["singular_values"][()].ravel()[:len(sv)]
            worst = max(worst, float(np.max(np.abs(got - sv)) / sv[0]))
    print("spectrum of the prefixes vs numpy: worst relative difference %.2e" % worst)
    assert worst < 1e-5


def encoder(ckpt):
    with h5py.File(ckpt, "r") as f:
        g = f["adapter"]["transformer.prefix_encoder"]
        assert g.attrs["method"] in ("prefix_encoder", b"prefix_encoder"), dict(g.attrs)
        return {k: g[k][()] for k in g}


def check_export_proj(ckpt, d, heads, hidden):
    e = encoder(ckpt)
    f64 = lambda k: e[k].astype(np.float64)
    h = np.tanh(f64("embedding") @ f64("transform.0.weight").T + f64("transform.0.bias"))
    want = h @ f64("transform.2.weight").T + f64("transform.2.bias")
    st = read_safetensors(d + "/adapter_model.safetensors")
    assert list(st) == ["prompt_embeddings"], list(st)
    got = st["prompt_embeddings"]
    assert got.shape == want.shape, (got.shape, want.shape)
    rel = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    assert rel < 1e-5, rel
    c = json.load(open(d + "/adapter_config.json"))
    assert sorted(c) == FIELDS, sorted(set(c) ^ set(FIELDS))
    p, w = want.shape
    kv = e["embedding"].shape[1]
    assert e["transform.0.weight"].shape == (hidden, kv), e["transform.0.weight"].shape
    assert (c["peft_type"], c["num_virtual_tokens"], c["num_layers"] * 2 * kv, c["token_dim"], c["num_attention_heads"],
            c["prefix_projection"], c["encoder_hidden_size"]) == ("PREFIX_TUNING", p, w, kv, heads, True, hidden), c
    print("export-proj: prompt_embeddings %s = numpy's MLP output within %.2e; config %s" % (got.shape, rel, c))


def check_spectrum_proj(ckpt, spec):
    e = encoder(ckpt)
    worst = 0.0
    with h5py.File(spec, "r") as s:
        names = sorted(s)
        assert names == ["transformer.prefix_encoder.transform.0", "transformer.prefix_encoder.transform.2"], names
        for leaf in ("transform.0", "transform.2"):
            sv = np.linalg.svd(e[leaf + ".weight"].astype(np.float64), compute_uv=False)
            got = s["transformer.prefix_encoder." + leaf]["singular_values"][()].ravel()[:len(sv)]
            worst = max(worst, float(np.max(np.abs(got - sv)) / sv[0]))
    print("spectrum of the MLP's matrices vs numpy: worst relative difference %.2e" % worst)
    assert worst < 1e-5


if __name__ == "__main__":
    if sys.argv[1] == "export":
        check_export(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "export-proj":
        check_export_proj(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "spectrum-proj":
        check_spectrum_proj(sys.argv[2], sys.argv[3])
    else:
        check_spectrum(sys.argv[2], sys.argv[3])
