#!/usr/bin/python3
"""Independent numpy side of tests/t_analyze.sh: recomputes what `lorampi analyze` reports
from the checkpoint (h5py) and the base model (a minimal safetensors reader), with numpy's
dense SVD, and compares.

  analysis_check.py spectrum CKPT OUT.h5
  analysis_check.py similarity CKPT1 CKPT2 OUT.h5 A|dw-left
  analysis_check.py vs-base CKPT MODEL_DIR OUT.h5
  analysis_check.py same A.csv B.csv TOL      numbers of two CSV files equal within TOL (relative)
  analysis_check.py png FILE...               files are PNG images
  analysis_check.py edit CKPT OUT KIND        a broken copy: KIND = checksum | r0
  analysis_check.py strip MODEL_DIR OUT_DIR   the model without its attn.c_attn weights
"""
import json
import os
import shutil
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ckpt_check import read_safetensors  # noqa: E402


def adapters(path):
    out = {}
    with h5py.File(path, "r") as f:
        for name, g in f["adapter"].items():
            A = g["lora_A"][()].astype(np.float64)
            B = g["lora_B"][()].astype(np.float64)
            out[name] = (A, B, float(g.attrs["scaling"]))
    return out


def figures(s):
    e = np.cumsum(s ** 2)
    p = s / s.sum()
    p = p[p > 0]
    return {"fro": np.sqrt(e[-1]), "sigma1": s[0], "n90": int(np.argmax(e >= 0.9 * e[-1]) + 1),
            "n99": int(np.argmax(e >= 0.99 * e[-1]) + 1), "stable_rank": e[-1] / s[0] ** 2,
            "entropy_rank": float(np.exp(-(p * np.log(p)).sum()))}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


def check_spectrum(ckpt, out):
    bad = 0
    with h5py.File(out, "r") as f:
        for name, (A, B, sc) in adapters(ckpt).items():
            s = np.linalg.svd(sc * B @ A, compute_uv=False)[: A.shape[0]]
            got = f[name]["singular_values"][()]
            if got.ndim == 2:
                got = got[-1]
            err = np.max(np.abs(got - s) / s[0])
            fig = figures(s)
            for k, v in fig.items():
                if (isinstance(v, int) and f[name].attrs[k] != v) or rel(f[name].attrs[k], v) > 1e-9:
                    print("spectrum %s: %s = %r, numpy %r" % (name, k, f[name].attrs[k], v))
                    bad += 1
            if err > 1e-10:
                print("spectrum %s: singular values off by %g" % (name, err))
                bad += 1
    return bad


def basis(A, B, sc, kind):
    if kind == "A":
        return np.linalg.svd(A, full_matrices=False)[2].T
    u, s, vt = np.linalg.svd(sc * B @ A, full_matrices=False)
    r = A.shape[0]
    return u[:, :r] if kind == "dw-left" else vt[:r].T


def check_similarity(c1, c2, out, kind):
    a, b = adapters(c1), adapters(c2)
    bad = 0
    with h5py.File(out, "r") as f:
        for name in a:
            U1, U2 = basis(*a[name], kind), basis(*b[name], kind)
            g = (U1.T @ U2) ** 2
            r1, r2 = g.shape
            phi = np.array([[g[:i, :j].sum() / min(i, j) for j in range(1, r2 + 1)] for i in range(1, r1 + 1)])
            err = np.max(np.abs(f[name]["phi"][()] - phi))
            if err > 1e-9:
                print("similarity %s: phi off by %g" % (name, err))
                bad += 1
            bad += check_random_phi(f[name], U1.shape[0], r1, r2, name == next(iter(a)))
    return bad


def check_random_phi(g, n, r1, r2, simulate):
    """phi_random must be what random subspaces give: checked by drawing them (simulate, once
    per file: 300 pairs of uniformly random orthonormal bases, mean phi within 4 standard
    errors), and then element by element against that expectation."""
    bad = 0
    if g.attrs["n"] != n:
        print("similarity: n = %g, the vectors have %d rows" % (g.attrs["n"], n))
        bad += 1
    got = g["phi_random"][()]
    if simulate:
        rng = np.random.default_rng(5)
        draws = []
        for _ in range(300):
            q1 = np.linalg.qr(rng.standard_normal((n, r1)))[0]
            q2 = np.linalg.qr(rng.standard_normal((n, r2)))[0]
            c = np.cumsum(np.cumsum((q1.T @ q2) ** 2, 0), 1)
            draws.append(c / np.minimum.outer(np.arange(1, r1 + 1), np.arange(1, r2 + 1)))
        mean, se = np.mean(draws, 0), np.std(draws, 0) / np.sqrt(len(draws))
        if np.any(np.abs(got - mean) > 4 * se + 1e-12):
            print("similarity: phi_random is not the mean phi of random subspaces (max diff %g)"
                  % np.max(np.abs(got - mean)))
            bad += 1
    want = np.maximum.outer(np.arange(1, r1 + 1), np.arange(1, r2 + 1)) / n
    if np.max(np.abs(got - want)) > 1e-12:
        print("similarity: phi_random off by %g" % np.max(np.abs(got - want)))
        bad += 1
    return bad


def safetensors(path):
    """{name: float64 array} of an F32 safetensors file (ckpt_check's reader)."""
    return {k: v.astype(np.float64) for k, v in read_safetensors(path).items()}


def check_vs_base(ckpt, model, out):
    W_all = safetensors(model + "/model.safetensors")
    bad = 0
    with h5py.File(out, "r") as f:
        for name, (A, B, sc) in adapters(ckpt).items():
            # GPT-2's q, k, v are column blocks of c_attn's (C, 3C) Conv1D weight (HF's
            # split order), read here from the name, independently of lorampi's records.
            base, blk = name, None
            if name[-2:] in (".q", ".k", ".v"):
                base, blk = name[:-2], "qkv".index(name[-1])
            key = base.replace("transformer.", "") + ".weight"
            W = (W_all.get(key) if key in W_all else W_all["transformer." + key]).T  # (out, in)
            if blk is not None:
                C = W.shape[1]
                W = W[blk * C:(blk + 1) * C]
            dW = sc * B @ A
            r = A.shape[0]
            u, s, vt = np.linalg.svd(dW, full_matrices=False)
            U, V = u[:, :r], vt[:r].T
            uw, sw, vwt = np.linalg.svd(W, full_matrices=False)
            want = {"w_fro": np.linalg.norm(W), "dw_fro": np.linalg.norm(dW),
                    "proj_dw": np.linalg.norm(U.T @ W @ V), "proj_w": np.sqrt((sw[:r] ** 2).sum())}
            want["amplification"] = want["dw_fro"] / want["proj_dw"]
            for k, v in want.items():
                if rel(f[name].attrs[k], v) > 1e-8:
                    print("vs-base %s: %s = %r, numpy %r" % (name, k, f[name].attrs[k], v))
                    bad += 1
            if not f[name].attrs["proj_random"] < want["proj_w"]:
                print("vs-base %s: random projection %g not below W's own %g" % (name, f[name].attrs["proj_random"], want["proj_w"]))
                bad += 1
            if np.max(np.abs(f[name]["w_singular_values"][()] - sw[:r]) / sw[0]) > 1e-10:
                print("vs-base %s: singular values of W differ" % name)
                bad += 1
    return bad


def same_csv(a, b, tol):
    la, lb = open(a).read().split("\n"), open(b).read().split("\n")
    if len(la) != len(lb):
        print("%s and %s: %d vs %d lines" % (a, b, len(la), len(lb)))
        return 1
    bad = 0
    for x, y in zip(la, lb):
        for p, q in zip(x.split(","), y.split(",")):
            try:
                fp, fq = float(p), float(q)
            except ValueError:
                bad += p != q
                continue
            if abs(fp - fq) > tol * max(abs(fq), 1e-300) and abs(fp - fq) > 1e-300:
                bad += 1
    if bad:
        print("%s and %s: %d values differ beyond %g" % (a, b, bad, tol))
    return bad


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "spectrum":
        bad = check_spectrum(*args)
    elif cmd == "similarity":
        bad = check_similarity(*args)
    elif cmd == "vs-base":
        bad = check_vs_base(*args)
    elif cmd == "same":
        bad = same_csv(args[0], args[1], float(args[2]))
    elif cmd == "png":
        bad = sum(open(p, "rb").read(8) != b"\x89PNG\r\n\x1a\n" for p in args)
    elif cmd == "edit":
        shutil.copy(args[0], args[1])
        with h5py.File(args[1], "r+") as f:
            if args[2] == "checksum":
                f.attrs["base_checksum"] = np.uint64(12345)
            else:
                g = f["adapter"][sorted(f["adapter"].keys())[0]]
                n_in, n_out = g["lora_A"].shape[1], g["lora_B"].shape[0]
                del g["lora_A"], g["lora_B"]
                g["lora_A"] = np.zeros((0, n_in), np.float32)
                g["lora_B"] = np.zeros((n_out, 0), np.float32)
        bad = 0
    elif cmd == "strip":
        shutil.copytree(args[0], args[1], dirs_exist_ok=True)
        tensors = safetensors(args[0] + "/model.safetensors")
        keep = {k: v for k, v in tensors.items() if "attn.c_attn.weight" not in k}
        meta, blob, off = {}, b"", 0
        for k, v in keep.items():
            raw = v.astype("<f4").tobytes()
            meta[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
            blob += raw
            off += len(raw)
        h = json.dumps(meta).encode()
        h += b" " * ((8 - len(h) % 8) % 8)
        with open(args[1] + "/model.safetensors", "wb") as fh:
            fh.write(struct.pack("<Q", len(h)) + h + blob)
        bad = 0
    else:
        sys.exit("unknown command " + cmd)
    print("%s: %s" % (cmd, "ok" if not bad else "%d problems" % bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
