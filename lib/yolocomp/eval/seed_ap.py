"""The seeds' own AP50 (training-recipe §6.3-6.4) and PASCAL VOC07 11-point AP (ecosystem §2.2).

Both match at IoU 0.5 in original-image pixels. The seeds match in letterboxed space, but letterboxing is a uniform
scale plus shift, so IoUs agree except for boxes the seeds clip to the padded canvas and we clip to the image.

* seed style: greedy in score order, each prediction tries only its best-IoU same-class target, TP if IoU > 0.5 and
  that target is still free. The seeds have no notion of ``difficult``: darknet's VOC conversion drops those
  objects from the label files, so here too they are removed from the ground truth (detections on them are FP).
  AP: sentinels (0, 0) and (min(r_last + 0.001, 1), 0), precision envelope, 101-point ``np.interp``, trapezoid rule.
* VOC07: same greedy matching, but a detection whose best target is ``difficult`` is ignored (neither TP nor FP)
  and difficult objects are not counted as positives; AP = mean over t in {0, 0.1, ..., 1} of the maximum
  precision at recall >= t. IoU is continuous (no VOC "+1 pixel").
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from yolocomp.data.canonical import DetectionSet

MATCH_IOU = 0.5
PR_SCORE = 0.1   # ULY/SPURS read P and R off the curves at this score


def match(pred_boxes: np.ndarray, pred_labels: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
          gt_difficult: np.ndarray | None = None, iou_thres: float = MATCH_IOU) -> tuple[np.ndarray, np.ndarray]:
    """Greedy best-target matching of one image's predictions, given in descending score order.

    pred_boxes (k, 4), gt_boxes (n, 4) xyxy pixels; labels (k,), (n,). Returns ``(tp, ignored)`` bool (k,):
    a prediction is TP when its best-IoU same-class target has IoU > ``iou_thres``, is not difficult and no
    earlier prediction took it; ``ignored`` marks predictions whose best target is difficult (VOC rule).
    """
    k = len(pred_boxes)
    tp, ignored = np.zeros(k, bool), np.zeros(k, bool)
    if k == 0 or len(gt_boxes) == 0:
        return tp, ignored
    iou = box_iou(torch.as_tensor(pred_boxes, dtype=torch.float64), torch.as_tensor(gt_boxes, dtype=torch.float64))
    iou = iou.numpy() * (np.asarray(pred_labels)[:, None] == np.asarray(gt_labels)[None, :])
    best = iou.argmax(1)
    hit = iou[np.arange(k), best] > iou_thres
    if gt_difficult is not None:
        ignored = hit & np.asarray(gt_difficult, bool)[best]
        hit &= ~ignored
    # The first (highest-scoring) hit on a target takes it; later hits on it are FP (no fallback to a second target).
    idx = np.flatnonzero(hit)
    _, first = np.unique(best[idx], return_index=True)
    tp[idx[first]] = True
    return tp, ignored


def ap_seedstyle(recall: np.ndarray, precision: np.ndarray) -> float:
    """The seeds' ``compute_ap``: 101-point interpolated envelope integrated with the trapezoid rule
    (a perfect detector scores 0.995). recall, precision: (k,) cumulative curves in score order."""
    if len(recall) == 0:
        return 0.0
    mrec = np.concatenate(([0.0], recall, [min(recall[-1] + 1e-3, 1.0)]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def ap_voc07(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point AP: mean over t in {0, 0.1, ..., 1} of max precision at recall >= t (0 if none)."""
    if len(recall) == 0:
        return 0.0
    envelope = np.flip(np.maximum.accumulate(np.flip(precision)))
    # k / 10 is the double nearest to 0.k (linspace/arange steps give 0.6000000000000001 and miss recall 0.6).
    first = np.searchsorted(recall, np.arange(11) / 10, side="left")   # recall is non-decreasing
    padded = np.append(envelope, 0.0)
    return float(padded[first].mean())


def _curves(tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    tpc = np.cumsum(tp)
    fpc = np.cumsum(~tp)
    return tpc / (n_gt + 1e-16), tpc / (tpc + fpc)


def seed_metrics(predictions: list[dict], ds: DetectionSet) -> dict:
    """Seed-style AP50 / P / R / F1 and VOC07 AP50 over ``ds``.

    predictions: one dict per image (``image_id``, ``boxes`` (k, 4) xyxy original pixels, ``scores``, ``labels``);
    images without an entry have no detections. Classes without ground truth do not enter the means; a class with
    ground truth but no detections scores 0. P and R are read at score 0.1 (ULY/SPURS), F1 is the mean of
    per-class F1s. Returns ``{"ap50_seedstyle", "ap50_voc07", "p_seedstyle", "r_seedstyle", "f1_seedstyle",
    "per_class": {label: {"gt", "ap50_seedstyle", "ap50_voc07"}}}``.
    """
    by_id = {int(p["image_id"]): p for p in predictions}
    rows_seed, rows_voc = [], []   # (score, label, tp) per prediction
    n_gt = np.zeros(len(ds.names), np.int64)   # difficult objects are positives for neither metric
    for r in ds.images:
        easy = ~r.difficult
        n_gt += np.bincount(r.labels[easy], minlength=len(ds.names))
        p = by_id.get(int(r.image_id))
        if p is None or len(p["scores"]) == 0:
            continue
        order = np.argsort(-np.asarray(p["scores"]), kind="stable")
        boxes, scores, labels = (np.asarray(p[k])[order] for k in ("boxes", "scores", "labels"))
        tp, _ = match(boxes, labels, r.boxes[easy], r.labels[easy])
        rows_seed.append(np.stack([scores, labels, tp], 1))
        tp_v, ign = match(boxes, labels, r.boxes, r.labels, r.difficult)
        rows_voc.append(np.stack([scores, labels, tp_v], 1)[~ign])
    seed = np.concatenate(rows_seed) if rows_seed else np.zeros((0, 3))
    voc = np.concatenate(rows_voc) if rows_voc else np.zeros((0, 3))

    per_class, aps, apv, ps, rs, f1s = {}, [], [], [], [], []
    for c in np.flatnonzero(n_gt):
        s = seed[seed[:, 1] == c]
        s = s[np.argsort(-s[:, 0], kind="stable")]
        rec, prec = _curves(s[:, 2].astype(bool), int(n_gt[c]))
        ap = ap_seedstyle(rec, prec)
        # np.interp needs increasing x: the seeds interpolate over -score.
        p_c = float(np.interp(-PR_SCORE, -s[:, 0], prec)) if len(s) else 0.0
        r_c = float(np.interp(-PR_SCORE, -s[:, 0], rec)) if len(s) else 0.0
        v = voc[voc[:, 1] == c]
        v = v[np.argsort(-v[:, 0], kind="stable")]
        av = ap_voc07(*_curves(v[:, 2].astype(bool), int(n_gt[c])))
        per_class[int(c)] = {"gt": int(n_gt[c]), "ap50_seedstyle": ap, "ap50_voc07": av}
        aps.append(ap), apv.append(av), ps.append(p_c), rs.append(r_c)
        f1s.append(2 * p_c * r_c / (p_c + r_c + 1e-16))
    mean = lambda xs: float(np.mean(xs)) if xs else 0.0
    return {"ap50_seedstyle": mean(aps), "ap50_voc07": mean(apv), "p_seedstyle": mean(ps),
            "r_seedstyle": mean(rs), "f1_seedstyle": mean(f1s), "per_class": per_class}
