"""Figures of the sparse-pruning notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def _lines(runs: pd.DataFrame) -> pd.DataFrame:
    """Each method's rows with the dense baseline prepended (its first point); CS search rounds are their own line."""
    base = runs[runs["method"] == "baseline"]
    parts = []
    for method in [m for m in dict.fromkeys(runs["method"]) if m != "baseline"]:
        d = runs[runs["method"] == method]
        for stage in dict.fromkeys(d["stage"]):
            label = method if stage != "search" else f"{method}, search (soft masks)"
            parts.append(pd.concat([base, d[d["stage"] == stage]]).assign(line=label))
    return pd.concat(parts, ignore_index=True) if parts else base.assign(line="baseline")


def ap_vs_remaining(runs: pd.DataFrame, metric: str = "ap50"):
    """``metric`` against the fraction of prunable weights kept (log x axis, dense = 1 on the left), one panel per
    dataset, one line per method through its rounds (mean over seeds, band ±1 sd); every line starts at the dense
    baseline.  CS search rounds (soft masks, before any ticket training) are separate dashed lines.

    runs: per-seed rows with columns dataset, method, stage, seed, weights_remaining and ``metric``
    (:func:`yolocomp.sparse.experiment.lth_runs` / ``cs_runs``)."""
    data = _lines(runs)
    datasets = list(dict.fromkeys(data["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        d = data[data["dataset"] == dataset]
        dashes = {line: (4, 2) if "search" in line else "" for line in d["line"].unique()}
        sns.lineplot(data=d, x="weights_remaining", y=metric, hue="line", style="line", dashes=dashes,
                     markers=True, errorbar="sd", ax=ax)
        ax.set(xscale="log", xlabel="fraction of prunable weights kept", ylabel=metric, title=dataset)
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=None)
    fig.tight_layout()
    return fig


def layer_kept(layers: pd.DataFrame):
    """Share of weights kept per prunable layer (x: layers in model order, labelled with their size), one bar per
    method (:func:`yolocomp.sparse.experiment.layer_table`)."""
    order = list(dict.fromkeys(layers["layer"]))
    sizes = layers.drop_duplicates("layer").set_index("layer")["weights"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(order)), 3.8))
    sns.barplot(data=layers, x="layer", y="kept", hue="method", order=order, ax=ax)
    ax.set_xticks(range(len(order)), [f"{name.split('.')[1]}\n{sizes[name] / 1e3:.0f}k" for name in order],
                  fontsize=7)
    ax.set(xlabel="layer (index, weights)", ylabel="share of weights kept", yscale="log")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
