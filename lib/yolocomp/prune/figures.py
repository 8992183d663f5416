"""Figures of the pruning notebooks: BN |γ| before and after sparsity training, accuracy against size and measured
speed-up per pruning method, and an EagleEye search's candidates.  Each function returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from torch import nn

from ..errors import InputError
from .sparsity import gamma_abs

_STAGES = (("ap50_masked", "masked", ":", "x"), ("ap50_pruned", "pruned", "--", "o"),
           ("ap50_finetuned", "fine-tuned", "-", "s"))


def gamma_comparison_figure(models: dict[str, nn.Module], layers: Sequence[int], bins: int = 60):
    """Histograms of BN |γ| over the same ``layers`` of several models (e.g. ``{"baseline": m0, "sparse": m1}``),
    overlaid on shared bins (log-spaced when the values span more than a factor 20); exact zeros are counted in
    the legend.  The L1 of sparsity training
    should move most channels to the left while a minority keeps its scale."""
    if not models:
        raise InputError(None, "gamma_comparison_figure: no models")
    import matplotlib.pyplot as plt

    gs = {k: gamma_abs(m, layers).double().numpy() for k, m in models.items()}
    pos = np.concatenate([g[g > 0] for g in gs.values()])
    lo = float(pos.min()) if pos.size else 1e-8
    hi = max(float(max(g.max() for g in gs.values())), lo * 1.01)
    log = hi / lo > 20          # a log axis only when the values span decades (after sparsity training)
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    edges[0], edges[-1] = lo, hi
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, g in gs.items():
        zeros = int((g == 0).sum())
        label = f"{k} (median {np.median(g):.3g}" + (f", {zeros} zeros)" if zeros else ")")
        ax.hist(g, bins=edges, histtype="step", linewidth=1.6, label=label)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("|γ|" + (" (log scale)" if log else ""))
    ax.set_ylabel("channels")
    n = len(next(iter(gs.values())))
    ax.set_title(f"BN |γ| of {len(layers)} prunable layers ({n} channels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def tradeoff_figure(table: pd.DataFrame, x: str = "params_ratio"):
    """Two panels from a :func:`yolocomp.prune.experiment.pruning_table`: AP50 of the masked, compact (before
    training) and fine-tuned models against ``x`` per method, with the baseline's AP50 dashed; and the measured
    speed-up against the conv MACs ratio (dotted: no speed-up)."""
    if table.empty:
        raise InputError(None, "tradeoff_figure: the table is empty")
    import matplotlib.pyplot as plt

    fig, (ax, sp) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("tab10")
    for k, (method, t) in enumerate(table.groupby("method", sort=False)):
        t = t.sort_values(x)
        for col, label, style, marker in _STAGES:
            ax.plot(t[x], t[col], linestyle=style, marker=marker, color=colours(k), markersize=5,
                    label=f"{method} {label}")
        sp.plot(t["macs_ratio"], t["speedup"], marker="o", color=colours(k), label=method)
    if "baseline_ap50" in table:
        ax.axhline(float(table["baseline_ap50"].iloc[0]), color="k", linestyle="--", linewidth=0.8,
                   label="baseline")
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel("AP50 (circles: search score)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("accuracy: masked → pruned → fine-tuned")
    sp.axhline(1.0, color="k", linestyle=":", linewidth=0.8)
    sp.set_xlabel("macs ratio (conv)")
    sp.set_ylabel("speed-up (measured, batch 1)")
    sp.legend(fontsize=7)
    sp.set_title("CPU speed-up against the baseline")
    fig.tight_layout()
    return fig


def candidates_figure(history: pd.DataFrame, matched: dict[str, tuple[float, float]] | None = None):
    """An EagleEye search: every evaluated candidate's score (the search's own AP50: conf 0.1, on the scoring
    images, after adaptive BN) against its conv MACs ratio, the winner circled; ``matched``: models evaluated
    otherwise, marked as stars, ``{label: (macs_ratio, ap50)}``."""
    if history.empty:
        raise InputError(None, "candidates_figure: no candidates")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.scatter(history["macs_ratio"], history["score"], s=18, color="tab:blue", label="candidates")
    best = history.loc[history["score"].idxmax()]
    ax.scatter([best["macs_ratio"]], [best["score"]], s=120, facecolors="none", edgecolors="tab:red",
               label="winner")
    for k, (label, (mr, ap)) in enumerate((matched or {}).items()):
        ax.scatter([mr], [ap], marker="*", s=120, color=plt.get_cmap("tab10")(k + 2), label=label)
    ax.set_xlabel("macs ratio (conv)")
    ax.set_ylabel("AP50 (circles: search score)")
    ax.set_title(f"EagleEye: {len(history)} sub-nets within the MACs budget")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
