"""The COCO json boundary: ground truth and results documents (``xywh``), and COCOeval with either backend.

``difficult`` objects (VOC) must count neither as TP nor as FN. pycocotools has exactly one way to say that: a
ground-truth box with ``iscrowd=1`` is ignored (its own ``ignore`` key is overwritten from ``iscrowd`` in
``COCOeval._prepare``). Detections that fall on such a box are ignored too, so they are not FP. The difference
from VOC is the overlap used against it, intersection / detection area instead of IoU, which is slightly more
lenient.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from yolocomp.data.canonical import DetectionSet

STAT_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")   # order of COCOeval.stats
BACKENDS = ("pycocotools", "faster-coco-eval")


def category_ids(ds: DetectionSet) -> list[int]:
    """json category id of each label: the set's own (COCO sources) else label + 1."""
    return list(ds.category_ids) if ds.category_ids is not None else list(range(1, len(ds.names) + 1))


def source_json(ds: DetectionSet) -> Path | None:
    """The set's own COCO json when it can serve as ground truth as is: read from COCO (so it keeps crowd
    regions the set dropped) and without our non-standard ``difficult`` key. None otherwise."""
    src = ds.source
    if ds.category_ids is None or src is None or Path(src).suffix != ".json" or not Path(src).is_file():
        return None
    doc = json.loads(Path(src).read_text(encoding="utf-8"))
    return None if any(a.get("difficult") for a in doc.get("annotations", [])) else Path(src)


def gt_document(ds: DetectionSet) -> dict:
    """COCO ground truth of ``ds``: bbox xywh pixels, area = w * h, ``difficult`` objects as ``iscrowd=1``
    (ignored, see module doc); image ids = ``ImageRecord.image_id``, annotation ids from 1."""
    cats = category_ids(ds)
    images, anns = [], []
    for r in ds.images:
        images.append({"id": int(r.image_id), "file_name": r.file.name, "width": int(r.width),
                       "height": int(r.height)})
        xywh = np.concatenate([r.boxes[:, :2], r.boxes[:, 2:] - r.boxes[:, :2]], 1)
        for b, c, d in zip(xywh.tolist(), r.labels.tolist(), r.difficult.tolist()):
            anns.append({"id": len(anns) + 1, "image_id": int(r.image_id), "category_id": cats[c], "bbox": b,
                         "area": b[2] * b[3], "iscrowd": int(d)})
    return {"info": {"description": ds.name}, "images": images, "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in zip(cats, ds.names)]}


def results_records(predictions: list[dict], ds: DetectionSet) -> list[dict]:
    """COCO results list ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]`` from per-image
    predictions (xyxy original pixels); bbox rounded to 3 decimals and score to 5, as the seeds write it."""
    cats = np.asarray(category_ids(ds))
    out = []
    for p in predictions:
        b = np.asarray(p["boxes"], np.float64).reshape(-1, 4)
        xywh = np.round(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1), 3).tolist()
        scores = np.round(np.asarray(p["scores"], np.float64), 5).tolist()
        for box, s, c in zip(xywh, scores, cats[np.asarray(p["labels"], np.int64)].tolist()):
            out.append({"image_id": int(p["image_id"]), "category_id": c, "bbox": box, "score": s})
    return out


def coco_eval(gt: dict | Path, records: list[dict], img_ids: list[int], backend: str = "pycocotools"
              ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Run COCOeval (bbox) on the images ``img_ids`` only.

    gt: a ground-truth document or json path; records: a results list (not modified). Returns ``(stats (12,),
    precision (T=10, R=101, K, A=4, M=3), category ids in K order)``; -1 marks "no ground truth". Prints nothing.
    """
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
        kwargs = {}
    elif backend == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as Eval
        kwargs = {"print_function": lambda *a, **k: None}
    else:
        raise ValueError(f"unknown COCO eval backend {backend!r}; choose one of {BACKENDS}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(Path(gt).read_text(encoding="utf-8")) if isinstance(gt, Path) else \
            json.loads(json.dumps(gt))   # COCOeval writes 'ignore' into the gt dicts: work on a copy
        coco_gt.createIndex()
        if records:
            coco_dt = coco_gt.loadRes([dict(r) for r in records])
        else:   # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
                               "annotations": []}
            coco_dt.createIndex()
        e = Eval(coco_gt, coco_dt, "bbox", **kwargs)
        e.params.imgIds = sorted(int(i) for i in img_ids)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.asarray(e.stats[:12], np.float64), np.asarray(e.eval["precision"]), list(e.params.catIds)


def per_class_ap(precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ap (K,), ap50 (K,))`` per category from COCOeval's precision array (area all, 100 detections);
    -1 for a category without ground truth."""
    p = precision[:, :, :, 0, -1]   # (T, R, K)
    valid = p > -1
    ap = np.where(valid.any((0, 1)), np.where(valid, p, 0).sum((0, 1)) / np.maximum(valid.sum((0, 1)), 1), -1)
    p50 = p[0]
    ap50 = np.where((p50 > -1).any(0), np.where(p50 > -1, p50, 0).sum(0) / np.maximum((p50 > -1).sum(0), 1), -1)
    return ap, ap50
