"""Figures of the quantization notebooks (matplotlib; each returns its Figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from .layers import conv_units
from .select import backbone_end, select_layers


def selection_table(model, qlayers: list[int], heads: bool = False) -> pd.DataFrame:
    """What ``--qlayers q`` selects on ``model`` for each q: the layer indices, how many conv units they hold and
    their share of all conv weights (where the parameters are).  ``backbone_end`` is the graph's bound."""
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    rows = []
    for q in qlayers:
        layers = select_layers(model, q, heads)
        units = [u for i in layers for _, u in conv_units(model.layers[i])]
        share = sum(u.conv.weight.numel() for u in units) / total if total else 0.0
        rows.append({"qlayers": q, "backbone_end": backbone_end(model), "layers": " ".join(map(str, layers)),
                     "quantized_convs": len(units), "weight_share": share})
    return pd.DataFrame(rows)


def accuracy_figure(df: pd.DataFrame, x: str, y: str = "ap50", hue: str | list[str] = "method",
                    title: str | None = None):
    """``y`` against ``x`` with one line per ``hue`` value (or combination of values); the ``baseline`` row
    (method) as a dashed line."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    base = df[df["method"] == "baseline"]
    rest = df[df["method"] != "baseline"]
    for name, g in rest.groupby(hue, sort=False):
        g = g.sort_values(x)
        label = " ".join(map(str, name)) if isinstance(name, tuple) else str(name)
        ax.plot(g[x].astype(str) if g[x].dtype == object else g[x], g[y], marker="o", label=label)
    if len(base):
        ax.axhline(float(base[y].iloc[0]), ls="--", color="grey", label="float baseline")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def int8_figure(df: pd.DataFrame):
    """Three panels over the int8 table's rows: AP50, stored size (MiB) and batch-1 latency (ms), one bar per row
    labelled ``method / setting / runtime precision``."""
    labels = [f"{r.method} / {r.setting}\n{r.runtime} {r.precision}" for r in df.itertuples()]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(df) + 1.5), sharey=True)
    colours = ["tab:blue" if r == "onnxruntime" else "tab:orange" for r in df["runtime"]]
    for ax, col, name in zip(axes, ("ap50", "storage_mib", "latency_ms"), ("AP50", "stored MiB", "latency ms")):
        ax.barh(range(len(df)), df[col], color=colours)
        ax.set_title(name, fontsize=9)
        ax.invert_yaxis()
    axes[0].set_yticks(range(len(df)), labels, fontsize=7)
    fig.tight_layout()
    return fig
