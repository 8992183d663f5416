"""Figures the notebooks show: image grids with boxes, class and box-size histograms.

Plotting lives here so that notebook cells stay one call long; every function returns the matplotlib Figure.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from PIL import Image

from .data.canonical import DetectionSet


def draw_boxes(ax, image, boxes: np.ndarray, labels: np.ndarray, names: list[str], scores=None) -> None:
    """Draw ``boxes`` (n, 4) xyxy pixels with their class names (and scores) on ``image`` (PIL or HxWx3 array)."""
    ax.imshow(image)
    colors = sns.color_palette("tab10", max(len(names), 1))
    for k, (b, c) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(labels).reshape(-1))):
        col = colors[int(c) % len(colors)]
        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, lw=1.2, color=col))
        text = names[int(c)] + ("" if scores is None else f" {float(scores[k]):.2f}")
        ax.text(b[0], b[1], text, fontsize=6, color="white", va="bottom",
                bbox={"facecolor": col, "alpha": 0.7, "pad": 0.5, "lw": 0})
    ax.set_axis_off()


def image_grid(ds: DetectionSet, n: int = 12, cols: int = 4, seed: int = 0, title: str | None = None):
    """A grid of ``n`` images of ``ds`` drawn with their ground-truth boxes (a seeded random choice)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    rows = int(np.ceil(len(idx) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, idx):
        r = ds.images[int(i)]
        with Image.open(r.file) as im:
            draw_boxes(ax, im.convert("RGB"), r.boxes, r.labels, ds.names)
        ax.set_title(r.file.name, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def box_table(ds: DetectionSet) -> pd.DataFrame:
    """One row per object: class name, width, height and size (sqrt of area), all in pixels."""
    rows = [(ds.names[int(c)], b[2] - b[0], b[3] - b[1]) for r in ds.images for b, c in zip(r.boxes, r.labels)]
    df = pd.DataFrame(rows, columns=["class", "w", "h"])
    df["size"] = np.sqrt(df.w * df.h)
    return df


def class_and_size_histograms(sets: dict[str, DetectionSet]):
    """Objects per class and the distribution of box sizes (log scale), one hue per named set."""
    df = pd.concat([box_table(ds).assign(set=name) for name, ds in sets.items()], ignore_index=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    sns.countplot(data=df, x="class", hue="set", ax=a)
    a.set_title("objects per class")
    sns.histplot(data=df, x="size", hue="set", log_scale=True, element="step", ax=b)
    b.set_xlabel("box size sqrt(w*h) [px]")
    b.axvspan(8, 16, color="grey", alpha=0.15)
    b.set_title("box sizes (grey: 8-16 px, VisDrone-like tiny)")
    fig.tight_layout()
    return fig


def params_vs_macs(df: pd.DataFrame, x: str = "macs_conv", y: str = "params", hue: str = "origin"):
    """Scatter of ``y`` against ``x`` (log-log), one labelled point per model (rows of ``df``; first row per model)."""
    d = df.drop_duplicates("model")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.scatterplot(data=d, x=x, y=y, hue=hue, s=50, ax=ax)
    for _, r in d.iterrows():
        ax.annotate(r["model"], (r[x], r[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlabel=f"{x} per image", ylabel=y)
    fig.tight_layout()
    return fig


def training_curves(history: pd.DataFrame, metrics: tuple[str, ...] = ("total", "ap50")):
    """Per-epoch curves of the trainer's ``results.csv`` rows (columns epoch, model, seed and ``metrics``):
    one panel per metric, one line per model (mean over seeds, band = min..max)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.5), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        d = history.dropna(subset=[m])
        sns.lineplot(data=d, x="epoch", y=m, hue="model", errorbar=("pi", 100), ax=ax)
        ax.set_title(m)
    fig.tight_layout()
    return fig
