"""Prediction-versus-ground-truth figure for the evaluation notebooks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from yolocomp.data.canonical import DetectionSet
from yolocomp.viz import draw_boxes


def predictions_vs_truth(ds: DetectionSet, predictions: list[dict], n: int = 8, names: list[str] | None = None,
                         min_score: float = 0.25):
    """Figure with two panels per image for the first ``n`` images of ``ds``: ground truth (left), predictions
    with score >= ``min_score`` (right; mAP runs keep scores down to 0.001, which would bury the image).

    predictions: per-image dicts as :func:`yolocomp.eval.predict` returns (xyxy original-image pixels), matched
    to images by ``image_id``. Returns the matplotlib Figure.
    """
    names = list(names) if names is not None else ds.names
    by_id = {int(p["image_id"]): p for p in predictions}
    recs = ds.images[:n]
    fig, axes = plt.subplots(len(recs), 2, figsize=(7, 3 * len(recs)), squeeze=False)
    for (left, right), r in zip(axes, recs):
        with Image.open(r.file) as im:
            im = im.convert("RGB")
        draw_boxes(left, im, r.boxes, r.labels, names)
        left.set_title(f"{r.file.name}: truth ({len(r.labels)})", fontsize=8)
        p = by_id.get(int(r.image_id), {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)})
        keep = np.asarray(p["scores"]) >= min_score
        draw_boxes(right, im, np.asarray(p["boxes"])[keep], np.asarray(p["labels"])[keep], names,
                   scores=np.asarray(p["scores"])[keep])
        right.set_title(f"predicted ({int(keep.sum())}, score >= {min_score:g})", fontsize=8)
    fig.tight_layout()
    return fig
