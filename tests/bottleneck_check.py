#!/usr/bin/python3
"""h5py/numpy side of tests/t_methods.sh (bottleneck adapters: houlsby, parallel).

  bottleneck_check.py export CKPT DIR METHOD SIZE   DIR (lorampi's bottleneck format) holds
        every bottleneck of CKPT, bitwise, with the documented names, shapes and config keys
  bottleneck_check.py lora CKPT DIR                 DIR is a PEFT LoRA directory holding every
        LoRA module of CKPT (a combination's DIR/lora), bitwise
  bottleneck_check.py spectrum CKPT OUT.h5          OUT's singular values of every bottleneck's
        down, up and up_down (= scale * up @ down) equal numpy's SVD (1e-10 of sigma1)
"""
import json
import sys

import h5py
import numpy as np

from ckpt_check import read_safetensors

LEAVES = ("down.weight", "down.bias", "up.weight", "up.bias")


def bottlenecks(f, method):
    return [m for m in f["adapter"] if f["adapter"][m].attrs["method"] == method]


def check_export(ckpt, d, method, size):
    st = read_safetensors(d + "/adapter_model.safetensors")
    cfg = json.load(open(d + "/adapter_config.json"))
    with h5py.File(ckpt, "r") as f:
        mods = bottlenecks(f, method)
        assert mods and len(st) == 4 * len(mods), (len(mods), sorted(st))
        C = f["adapter"][mods[0]].attrs["in"]
        shapes = {"down.weight": (size, C), "down.bias": (size,), "up.weight": (C, size), "up.bias": (C,)}
        for mod in mods:
            g = f["adapter"][mod]
            assert g.attrs["r"] == size and g.attrs["layer"] >= 0, mod
            for leaf in LEAVES:
                t = st["%s.%s" % (mod, leaf)]
                assert t.shape == shapes[leaf], (mod, leaf, t.shape)
                assert np.array_equal(t, g[leaf][()]), (mod, leaf)
            assert np.any(g["up.weight"][()] != 0), mod + ": up never trained"
        assert cfg["format"] == "lorampi-bottleneck" and cfg["format_version"] == 1, cfg
        assert cfg["method"] == method and cfg["size"] == size and cfg["hidden_size"] == C, cfg
        assert sorted(cfg["modules"]) == sorted(mods), (cfg["modules"], mods)
        assert cfg["act"] in ("gelu_tanh", "relu") and cfg["scale"] > 0 and cfg["init_scale"] > 0, cfg
        subs = sorted({f["adapter"][m].attrs["target"] for m in mods})
        assert cfg["sublayers"] == subs, (cfg["sublayers"], subs)
    print("export ok: %d %s modules" % (len(mods), method))


def check_lora(ckpt, d):
    st = read_safetensors(d + "/adapter_model.safetensors")
    cfg = json.load(open(d + "/adapter_config.json"))
    assert cfg["peft_type"] == "LORA", cfg
    with h5py.File(ckpt, "r") as f:
        mods = bottlenecks(f, "lora")
        assert mods and len(st) == 2 * len(mods), (len(mods), sorted(st))
        for mod in mods:
            for leaf in ("lora_A", "lora_B"):
                t = st["base_model.model.%s.%s.weight" % (mod, leaf)]
                assert np.array_equal(t, f["adapter"][mod][leaf][()]), (mod, leaf)
    print("lora ok: %d modules" % len(mods))


def check_spectrum(ckpt, out):
    n = 0
    with h5py.File(ckpt, "r") as f, h5py.File(out, "r") as o:
        for method in ("houlsby", "parallel"):
            for mod in bottlenecks(f, method):
                g = f["adapter"][mod]
                D = g["down.weight"][()].astype(np.float64)
                U = g["up.weight"][()].astype(np.float64)
                for leaf, M in (("down", D), ("up", U), ("up_down", g.attrs["scaling"] * U @ D)):
                    sv = np.linalg.svd(M, compute_uv=False)[: D.shape[0]]
                    got = o["%s.%s" % (mod, leaf)]["singular_values"][()]
                    assert np.abs(got - sv).max() <= 1e-10 * sv[0], (mod, leaf, got, sv)
                    n += 1
    assert n > 0, "no bottleneck in " + ckpt
    print("spectrum ok: %d matrices" % n)


if __name__ == "__main__":
    if sys.argv[1] == "export":
        check_export(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif sys.argv[1] == "lora":
        check_lora(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "spectrum":
        check_spectrum(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + sys.argv[1])
