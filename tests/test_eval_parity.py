"""faster-coco-eval gives the same COCOeval numbers as pycocotools (ecosystem §2.4)."""

import numpy as np
from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.eval import coco_eval, evaluate_predictions, gt_document, results_records


def generated_pair(n_images=50, classes=3, seed=0):
    """Random ground truth (some difficult) and jittered, partly duplicated or spurious detections."""
    rng = np.random.default_rng(seed)
    recs, preds = [], []
    for i in range(n_images):
        w, h = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        n = int(rng.integers(0, 8))
        xy = rng.uniform(0, [w - 10, h - 10], (n, 2))
        wh = rng.uniform(4, 200, (n, 2))
        boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
        labels = rng.integers(0, classes, n)
        recs.append(ImageRecord(f"im{i}.jpg", w, h, boxes, labels, rng.random(n) < 0.1, image_id=100 + i))
        keep = rng.random(n) < 0.8
        jitter = rng.normal(0, 0.1, (n, 4)) * np.repeat(wh, 2, 1)[:, [0, 2, 1, 3]]
        pb = np.clip((boxes + jitter)[keep], 0, [w, h, w, h])
        pl = np.where(rng.random(n) < 0.1, rng.integers(0, classes, n), labels)[keep]
        m = int(rng.integers(0, 4))   # spurious boxes
        sxy = rng.uniform(0, [w - 10, h - 10], (m, 2))
        spur = np.concatenate([sxy, np.minimum(sxy + rng.uniform(4, 100, (m, 2)), [w, h])], 1)
        pb, pl = np.concatenate([pb, spur]), np.concatenate([pl, rng.integers(0, classes, m)])
        preds.append({"image_id": 100 + i, "boxes": pb, "scores": rng.random(len(pl)), "labels": pl})
    return DetectionSet("gen", [f"c{k}" for k in range(classes)], recs), preds


def test_backends_identical_stats_and_precision():
    ds, preds = generated_pair()
    gt, dt = gt_document(ds), results_records(preds, ds)
    ids = [r.image_id for r in ds.images]
    s1, p1, c1 = coco_eval(gt, dt, ids, "pycocotools")
    s2, p2, c2 = coco_eval(gt, dt, ids, "faster-coco-eval")
    assert 0.1 < s1[0] < 0.9 and len(dt) > 100   # a non-trivial case (AP 0.153)
    assert np.array_equal(s1, s2)
    # precision agrees to the last bit except a few entries 1 ulp apart (2.2e-16, C++ vs numpy summation)
    assert np.allclose(p1, p2, rtol=0, atol=1e-15) and c1 == c2


def test_backends_agree_on_subset_and_empty():
    ds, preds = generated_pair(n_images=20, seed=1)
    ids = [r.image_id for r in ds.images[:10]]   # imgIds restricts the evaluation: other images are no misses
    gt, dt = gt_document(ds), [r for r in results_records(preds, ds) if r["image_id"] in ids]
    s1, _, _ = coco_eval(gt, dt, ids, "pycocotools")
    s2, _, _ = coco_eval(gt, dt, ids, "faster-coco-eval")
    assert np.allclose(s1, s2, rtol=0, atol=1e-15)   # here some stats differ by 1 ulp (summation order)
    full, _, _ = coco_eval(gt, dt, [r.image_id for r in ds.images], "pycocotools")
    assert full[8] < s1[8]   # AR100 drops once the unpredicted images' objects count
    a = evaluate_predictions([], ds, backend="faster-coco-eval")
    b = evaluate_predictions([], ds, backend="pycocotools")
    assert a["stats"] == b["stats"] and a["ap"] == 0.0
