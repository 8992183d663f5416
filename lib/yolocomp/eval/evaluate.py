"""Evaluate a model or a list of predictions on a DetectionSet: COCO metrics, the seeds' AP50, VOC07 AP50.

Files (with ``out_dir``): ``gt.json`` (unless the set's own COCO json is used), ``predictions.json`` (COCO results),
``metrics.json``; each written atomically. Nothing is printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from yolocomp.data.canonical import DetectionSet
from yolocomp.data.writers import atomic_write_text
from yolocomp.errors import InputError
from yolocomp.eval.coco import (
    STAT_NAMES,
    category_ids,
    coco_eval,
    gt_document,
    per_class_ap,
    results_records,
    source_json,
)
from yolocomp.eval.predict import predict
from yolocomp.eval.seed_ap import seed_metrics


def evaluate(model: nn.Module, ds: DetectionSet, img_size: int, batch_size: int = 16, device: str = "cpu",
             out_dir: Path | None = None, conf_thres: float = 0.001, iou_thres: float = 0.6,
             backend: str = "pycocotools") -> dict:
    """:func:`~yolocomp.eval.predict.predict` then :func:`evaluate_predictions`; the settings are recorded in
    the returned dict (and metrics.json) as ``img_size``, ``conf_thres``, ``iou_thres``."""
    preds = predict(model, ds, img_size, batch_size, device, conf_thres, iou_thres)
    return evaluate_predictions(preds, ds, out_dir, backend,
                                settings={"img_size": int(img_size), "conf_thres": conf_thres, "iou_thres": iou_thres})


def evaluate_predictions(predictions: list[dict], ds: DetectionSet, out_dir: Path | None = None,
                         backend: str = "pycocotools", settings: dict | None = None) -> dict:
    """Metrics of per-image predictions on ``ds``.

    predictions: dicts ``{"image_id", "boxes": (k, 4) xyxy original-image pixels, "scores": (k,), "labels": (k,)}``
    (numpy or tensors, any device). Entries may come gathered from several ranks: repeated image ids (a
    DistributedSampler pads with repeats) keep the first; images without an entry have no detections.

    Returns ``{"ap", "ap50", ..., "ar_large"`` (the 12 COCOeval stats, -1 = no ground truth in that bucket),
    ``"stats"`` (the same 12 as a list), ``"ap50_seedstyle"``, ``"ap50_voc07"``, ``"p_seedstyle"``,
    ``"r_seedstyle"``, ``"f1_seedstyle"``, ``"per_class"`` (list of ``{"class", "gt", "ap", "ap50",
    "ap50_seedstyle", "ap50_voc07"}``), ``"images"``, ``"detections"``, ``"backend"``, ``"ground_truth"`` (gt json
    path, or None when nothing was written), plus ``settings``}.
    """
    preds = _normalise(predictions, ds)
    own = source_json(ds)
    gt = own if own is not None else gt_document(ds)
    records = results_records(preds, ds)
    gt_path = own
    if out_dir is not None:
        out_dir = Path(out_dir)
        if own is None:
            gt_path = atomic_write_text(out_dir / "gt.json", json.dumps(gt, separators=(",", ":")))
        atomic_write_text(out_dir / "predictions.json", json.dumps(records, separators=(",", ":")))

    stats, precision, cat_order = coco_eval(gt, records, [r.image_id for r in ds.images], backend)
    seed = seed_metrics(preds, ds)
    ap_k, ap50_k = per_class_ap(precision)
    k_of = {c: k for k, c in enumerate(cat_order)}
    per_class = []
    for label, (name, cid) in enumerate(zip(ds.names, category_ids(ds))):
        k = k_of.get(cid)
        s = seed["per_class"].get(label, {})
        per_class.append({"class": name, "gt": s.get("gt", 0),
                          "ap": float(ap_k[k]) if k is not None else -1.0,
                          "ap50": float(ap50_k[k]) if k is not None else -1.0,
                          "ap50_seedstyle": s.get("ap50_seedstyle"), "ap50_voc07": s.get("ap50_voc07")})
    metrics = {**dict(zip(STAT_NAMES, stats.tolist())), "stats": stats.tolist(),
               **{k: v for k, v in seed.items() if k != "per_class"}, "per_class": per_class,
               "images": len(ds), "detections": len(records), "backend": backend,
               "ground_truth": None if gt_path is None else str(gt_path), **(settings or {})}
    if out_dir is not None:
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1, allow_nan=False))
    return metrics


def _to_np(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype)


def _normalise(predictions: list[dict], ds: DetectionSet) -> list[dict]:
    """numpy arrays, one entry per image id (first wins); InputError for unknown ids, labels or bad shapes."""
    ids = {int(r.image_id) for r in ds.images}
    seen, out = set(), []
    for n, p in enumerate(predictions):
        iid = int(p["image_id"])
        if iid not in ids:
            raise InputError(ds.source, f"predictions[{n}]: image_id {iid} is not an image of {ds.name!r}")
        if iid in seen:
            continue
        seen.add(iid)
        boxes = _to_np(p["boxes"], np.float64).reshape(-1, 4)
        scores, labels = _to_np(p["scores"], np.float64).reshape(-1), _to_np(p["labels"], np.int64).reshape(-1)
        if not (len(boxes) == len(scores) == len(labels)):
            raise InputError(ds.source, f"predictions[{n}]: boxes, scores and labels differ in length")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(ds.names)):
            raise InputError(ds.source, f"predictions[{n}]: label outside 0..{len(ds.names) - 1}")
        if not np.isfinite(boxes).all() or not np.isfinite(scores).all():
            raise InputError(ds.source, f"predictions[{n}]: non-finite box or score")
        out.append({"image_id": iid, "boxes": boxes, "scores": scores, "labels": labels})
    return out
