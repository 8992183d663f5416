"""Per-dataset summary rows for the dataset tables (``results/01_datasets/*.csv``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from .canonical import DetectionSet

TINY_PX = 16  # VisDrone-like: objects whose sqrt(area) is under 16 px


def summary_row(ds: DetectionSet, brightness: bool = False, **key) -> dict:
    """``ds.summary()`` plus the share of tiny boxes, objects per image and, optionally, mean image brightness.

    key: leading key columns of the row (e.g. ``dataset="embedded", split="val"``).
    brightness: mean grey level in [0, 1] over all images (reads every image; used to show the low-light variant).
    """
    s = ds.summary()
    s.pop("dataset")
    sizes = np.concatenate([np.sqrt(np.prod(r.boxes[:, 2:] - r.boxes[:, :2], axis=1)) for r in ds.images]
                           or [np.zeros(0)])
    row = {**key, **s,
           "objects_per_image": s["boxes"] / max(len(ds), 1),
           "tiny_share": float((sizes < TINY_PX).mean()) if len(sizes) else float("nan")}
    if brightness:
        row["mean_brightness"] = float(np.mean([_grey_mean(r.file) for r in ds.images]))
    return row


def class_counts(ds: DetectionSet) -> dict[str, int]:
    """Objects per class name, in class order."""
    counts = np.bincount(np.concatenate([r.labels for r in ds.images] or [np.zeros(0, np.int64)]),
                         minlength=len(ds.names))
    return {n: int(c) for n, c in zip(ds.names, counts)}


def summary_table(sets: dict[tuple, DetectionSet], key_names: tuple[str, ...], brightness: bool = False,
                  per_class: bool = False) -> pd.DataFrame:
    """One summary row per set; ``sets`` maps key tuples (named by ``key_names``) to DetectionSets."""
    rows = []
    for key, ds in sets.items():
        row = summary_row(ds, brightness=brightness, **dict(zip(key_names, key)))
        if per_class:
            row.update({f"n_{k}": v for k, v in class_counts(ds).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _grey_mean(path) -> float:
    with Image.open(path) as im:
        return float(np.asarray(im.convert("L"), dtype=np.float32).mean() / 255.0)
