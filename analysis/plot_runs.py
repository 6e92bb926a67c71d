#!/usr/bin/python3
"""Training curves of one or more runs from their metrics files (JSON Lines written by
`lorampi train`, [log] metrics): training and validation loss, learning rate, gradient norm
and tokens/s against the step, the runs overlaid with their names. Run by `lorampi plot`.

  plot_runs.py OUT.png METRICS.jsonl [MORE.jsonl ...]

A malformed line is an error naming the file and line (exit 1).
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_s")


def read_run(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                o = json.loads(line)
                rows.append({k: float(o[k]) for k in FIELDS} | {"val_loss": float(o["val_loss"]) if "val_loss" in o else None})
            except (ValueError, KeyError, TypeError) as e:
                raise SystemExit("lorampi plot: error: %s:%d: not a metrics line (%s: %s)" % (path, n, type(e).__name__, e))
    if not rows:
        raise SystemExit("lorampi plot: error: %s holds no metrics lines" % path)
    return rows


def names(paths):
    """Each run's name: its file name without .jsonl, with the folder when two would clash."""
    base = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), b) if base.count(b) > 1 else b
            for p, b in zip(paths, base)]


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out, paths = sys.argv[1], sys.argv[2:]
    runs = [read_run(p) for p in paths]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    for rows, name in zip(runs, names(paths)):
        step = [r["step"] for r in rows]
        line, = ax[0, 0].plot(step, [r["loss"] for r in rows], lw=1, label=name + " train")
        val = [(r["step"], r["val_loss"]) for r in rows if r["val_loss"] is not None]
        if val:
            ax[0, 0].plot(*zip(*val), "o--", color=line.get_color(), ms=3, lw=1, label=name + " val")
        ax[0, 1].plot(step, [r["lr"] for r in rows], lw=1, label=name)
        ax[1, 0].plot(step, [r["grad_norm"] for r in rows], lw=1, label=name)
        ax[1, 1].plot(step, [r["tokens_per_s"] for r in rows], lw=1, label=name)
    for a, title in zip(ax.flat, ("loss (nats/token)", "learning rate", "gradient norm (before clipping)", "tokens/s")):
        a.set_title(title)
        a.set_xlabel("step")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
