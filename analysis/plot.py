#!/usr/bin/python3
"""PNG plots of a `lorampi analyze` result file (Debian's python3-matplotlib + python3-h5py).

Usage: analysis/plot.py OUT.h5   -> OUT.png (and OUT_steps.png for spectrum --run)
lorampi analyze calls it after writing OUT.h5 unless --no-plot.
"""
import math
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MAX_PANELS = 16


def short(name):
    return name.replace("transformer.", "")


def pick(names):
    """At most MAX_PANELS modules, spread evenly over the sorted list."""
    if len(names) <= MAX_PANELS:
        return names
    idx = np.linspace(0, len(names) - 1, MAX_PANELS).round().astype(int)
    return [names[i] for i in sorted(set(idx))]


def grid(n):
    cols = min(4, n)
    return math.ceil(n / cols), cols


def spectrum(f, out):
    names = sorted(f.keys())
    fig, ax = plt.subplots(figsize=(8, 5))
    for name in pick(names):
        sv = f[name]["singular_values"][()]
        if sv.ndim == 2:
            sv = sv[-1]
        ax.plot(np.arange(1, len(sv) + 1), sv / sv[0], marker=".", label=short(name))
    ax.set_xlabel("direction i")
    ax.set_ylabel("sigma_i / sigma_1 of dW = scale B A")
    ax.set_yscale("log")
    ax.set_title("Singular values of dW (normalised)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=120)
    if "steps" in f[names[0]]:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name in pick(names):
            g = f[name]
            ax.plot(g["steps"][()], g["figures"][()][:, 5], marker=".", label=short(name))
        ax.set_xlabel("step")
        ax.set_ylabel("entropy effective rank")
        ax.set_title("Effective rank of dW over training")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out + "_steps.png", dpi=120)


def similarity(f, out):
    # Each module's measured phi beside the expectation for random subspaces of the same
    # sizes (phi_random = max(i, j) / n), as the LoRA paper compares them; constrained layout
    # keeps axis labels clear of the next row's titles.
    names = pick(sorted(f.keys()))
    panels = [(n, k) for n in names for k in ("phi", "phi_random") if k in f[n]]
    rows, cols = grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.9 * rows), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, key) in zip(axes.flat, panels):
        phi = f[name][key][()]
        im = ax.imshow(phi, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="upper",
                       extent=(0.5, phi.shape[1] + 0.5, phi.shape[0] + 0.5, 0.5))
        title = short(name) if key == "phi" else "random, n = %d" % f[name].attrs["n"]
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("j", fontsize=7, labelpad=1)
        ax.set_ylabel("i", fontsize=7, labelpad=1)
        ax.tick_params(labelsize=6)
    fig.colorbar(im, ax=axes, shrink=0.6, label="phi(i, j)")
    fig.suptitle("Subspace similarity phi(i, j) (%s vectors), each beside random subspaces"
                 % f.attrs["vectors"])
    fig.savefig(out + ".png", dpi=120)


def vs_base(f, out):
    names = sorted(f.keys())
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(names)), 5))
    for k, (key, label) in enumerate([("proj_dw", "U, V from dW"), ("proj_w", "U, V from W"),
                                      ("proj_random", "random U, V")]):
        ax.bar(x + (k - 1) * 0.27, [f[n].attrs[key] for n in names], 0.27, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([short(n) for n in names], rotation=90, fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("||U^T W V||_F (top r directions)")
    ax.set_title("dW against W; amplification ||dW||_F / ||U^T W V||_F: median %.2f"
                 % np.median([f[n].attrs["amplification"] for n in names]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=120)


def main():
    path = sys.argv[1]
    out = os.path.splitext(path)[0]
    with h5py.File(path, "r") as f:
        kind = f.attrs["analysis"]
        {"spectrum": spectrum, "similarity": similarity, "vs-base": vs_base}[kind](f, out)
    print("plot: %s.png" % out)


if __name__ == "__main__":
    main()
