#!/usr/bin/python3
"""python side of tests/t_merge.sh: safetensors files of merged models.

  merge_check.py same A B             every tensor of A equals B's bit for bit, same names,
                                      same order of data; prints the tensor count
  merge_check.py rounded F32 LOW DT   every tensor of LOW has dtype DT (BF16 or F16) and holds
                                      F32's values rounded to nearest even, bit for bit
  merge_check.py differs A B NAME     tensor NAME differs between A and B (the merge did act)
"""
import json
import struct
import sys

import numpy as np


def read(path):
    """name -> (dtype, shape, raw bytes), in data order."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[a:b])
    return out


def bf16_rne(x):
    """float32 array -> uint16 bits of bfloat16, round to nearest even (no NaN in weights)."""
    u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main():
    cmd = sys.argv[1]
    if cmd == "same":
        a, b = read(sys.argv[2]), read(sys.argv[3])
        assert list(a) == list(b), (list(a)[:4], list(b)[:4])
        for name in a:
            assert a[name] == b[name], name
        print(len(a))
    elif cmd == "rounded":
        full, low, dt = read(sys.argv[2]), read(sys.argv[3]), sys.argv[4]
        assert list(full) == list(low)
        for name, (d, shape, raw) in low.items():
            assert d == dt and shape == full[name][1], (name, d, shape)
            x = np.frombuffer(full[name][2], dtype="<f4")
            want = bf16_rne(x) if dt == "BF16" else x.astype(np.float16).view(np.uint16)
            got = np.frombuffer(raw, dtype="<u2")
            assert np.array_equal(want, got), (name, int((want != got).sum()))
        print(len(low))
    elif cmd == "differs":
        a, b = read(sys.argv[2]), read(sys.argv[3])
        assert a[sys.argv[4]][2] != b[sys.argv[4]][2], sys.argv[4]
    else:
        sys.exit("unknown command " + cmd)


main()
