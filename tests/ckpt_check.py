#!/usr/bin/python3
"""h5py side of tests/t_ckpt.sh: reads lorampi checkpoints the way a user would.

  ckpt_check.py peft CKPT PEFT_DIR ALPHA   adapters in CKPT == PEFT export (bitwise), layout
  ckpt_check.py flip CKPT DATASET          flips one byte inside DATASET's first chunk
  ckpt_check.py same A B                   every dataset of A equals B's (bitwise)
"""
import json
import struct
import sys

import h5py
import numpy as np


def read_safetensors(path):
    """Minimal safetensors reader (8-byte header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return out


def check_peft(ckpt, peft_dir, alpha):
    st = read_safetensors(peft_dir + "/adapter_model.safetensors")
    cfg = json.load(open(peft_dir + "/adapter_config.json"))
    with h5py.File(ckpt, "r") as f:
        assert f.attrs["format"] == "lorampi-checkpoint", f.attrs["format"]
        assert f["optim"].attrs["t"] == f.attrs["step"]
        mods = list(f["adapter"].keys())
        assert len(mods) * 2 == len(st), (len(mods), len(st))
        for mod in mods:
            g = f["adapter"][mod]
            A, B = g["lora_A"], g["lora_B"]
            r = g.attrs["r"]
            assert A.shape[0] == r and B.shape[1] == r, (mod, A.shape, B.shape, r)
            assert A.fletcher32 and B.fletcher32 and A.chunks, mod
            assert abs(g.attrs["scaling"] - alpha / r) < 1e-12, (mod, g.attrs["scaling"])
            pa = st["base_model.model.%s.lora_A.weight" % mod]
            pb = st["base_model.model.%s.lora_B.weight" % mod]
            assert pa.shape == A.shape and pb.shape == B.shape, mod
            assert np.array_equal(A[()], pa) and np.array_equal(B[()], pb), mod
            assert np.any(B[()] != 0), mod + ": B never trained"
            for kind in ("m", "v"):
                assert f["optim"][kind]["adapter"][mod]["lora_A"].shape == A.shape
        assert cfg["r"] == f["adapter"].attrs["r"]
    print("peft ok: %d modules equal" % len(mods))


def flip(ckpt, dataset):
    with h5py.File(ckpt, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    pos = info.byte_offset + info.size // 2
    with open(ckpt, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0x10]))
    print("flipped byte %d of %s (inside %s)" % (pos, ckpt, dataset))


def same(a, b):
    names = []
    with h5py.File(a, "r") as fa:
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        with h5py.File(b, "r") as fb:
            for n in names:
                assert np.array_equal(fa[n][()], fb[n][()]), n
    print("same: %d datasets equal" % len(names))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "peft":
        check_peft(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif cmd == "flip":
        flip(sys.argv[2], sys.argv[3])
    elif cmd == "same":
        same(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
