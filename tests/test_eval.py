"""Evaluation: NMS, prediction geometry, COCO metrics against pycocotools, seed-style and VOC07 AP."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.synthetic import embedded
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.eval import ap_seedstyle, ap_voc07, evaluate, evaluate_predictions, match, postprocess, predict
from yolocomp.models import Darknet
from yolocomp.paths import package_dir

TOY = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0], bool)   # ranked TP pattern, 5 ground-truth objects


def curves(tp, n_gt):
    tpc, fpc = np.cumsum(tp), np.cumsum(~tp)
    return tpc / n_gt, tpc / (tpc + fpc)


@pytest.fixture(scope="module")
def smoke():
    return read_yolo(embedded("smoke"), split="valid")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Darknet.from_cfg(package_dir() / "models" / "cfg" / "yolov3-tiny.cfg", classes=6)


def test_seedstyle_ap_toy_and_perfect():
    # Recall 0.2,0.4,0.4,0.6,0.6,0.6,0.8,0.8,0.8,0.8; envelope 1,1,.75,.75,.6,4/7,4/7,.5,.444,.4, sentinel (0.801, 0).
    # np.interp at a repeated recall takes the last envelope value: v(0.4) = 0.75, v(0.6) = 4/7, v(0.8) = 0.4,
    # v(0.81) = 0. Trapezoids on the 0.01 grid: [0, 0.39] 1 -> 0.39; [0.39, 0.40] (1 + .75)/2 * .01;
    # [0.40, 0.59] .75 * .19; [0.59, 0.60] (.75 + 4/7)/2 * .01; [0.60, 0.79] 4/7 * .19; [0.79, 0.80] (4/7 + .4)/2 * .01;
    # [0.80, 0.81] .4/2 * .01 -> 0.6632857 (training-recipe §12: 0.66329).
    expect = 0.39 + 0.00875 + 0.1425 + (0.75 + 4 / 7) / 200 + 4 / 7 * 0.19 + (4 / 7 + 0.4) / 200 + 0.4 / 200
    assert ap_seedstyle(*curves(TOY, 5)) == pytest.approx(expect, abs=1e-12)
    assert ap_seedstyle(*curves(TOY, 5)) == pytest.approx(0.66329, abs=1e-5)
    # Perfect: precision 1 to recall 1, sentinel at min(1.001, 1) = 1 -> last trapezoid (1 + 0)/2 * 0.01 -> 0.995.
    assert ap_seedstyle(*curves(np.ones(5, bool), 5)) == pytest.approx(0.995, abs=1e-12)
    assert ap_seedstyle(np.zeros(0), np.zeros(0)) == 0.0


def test_voc07_toy():
    # Max precision at recall >= t: t = 0..0.4 -> 1 (5 points), 0.5, 0.6 -> 0.75, 0.7, 0.8 -> 4/7, 0.9, 1 -> 0.
    assert ap_voc07(*curves(TOY, 5)) == pytest.approx((5 + 1.5 + 8 / 7) / 11, abs=1e-12)
    assert ap_voc07(*curves(np.ones(5, bool), 5)) == 1.0


def test_match_greedy_best_target_only():
    gt = np.array([[0, 0, 10, 10], [8, 0, 18, 10], [50, 50, 60, 60]], float)
    gl = np.array([0, 0, 1])
    pred = np.array([[0, 0, 10, 10],     # TP on gt0
                     [1, 0, 11, 10],     # best target gt0 (taken) -> FP, although IoU(gt1) = 0.43 anyway
                     [8, 0, 18, 10],     # TP on gt1
                     [50, 50, 60, 60]],  # right box, wrong class -> FP
                    float)
    tp, ign = match(pred, np.array([0, 0, 0, 0]), gt, gl)
    assert tp.tolist() == [True, False, True, False] and not ign.any()
    tp, ign = match(pred, np.array([0, 0, 0, 1]), gt, gl, gt_difficult=np.array([False, False, True]))
    assert tp.tolist() == [True, False, True, False] and ign.tolist() == [False, False, False, True]


def test_postprocess_shapes_order_and_nms():
    # Image 0: two near-identical class-0 boxes (IoU 0.9) and one far box; class scores (1, 0) / (0.1, 0.9).
    p = torch.zeros(2, 4, 7)
    p[0, :, :4] = torch.tensor([[50, 50, 20, 20], [50.5, 50, 20, 20], [150, 150, 30, 30], [10, 10, 1, 1]])
    p[0, :, 4] = torch.tensor([0.9, 0.8, 0.7, 0.9])   # last box is 1 px wide: pre-filtered
    p[0, :, 5] = torch.tensor([1.0, 1.0, 0.1, 1.0])
    p[0, :, 6] = torch.tensor([0.0, 0.0, 0.9, 0.0])
    out = postprocess(p, conf_thres=0.05, iou_thres=0.6)
    assert [o.shape for o in out] == [(3, 6), (0, 6)]
    d = out[0]
    assert torch.all(d[:-1, 4] >= d[1:, 4])
    assert d[:, 4].tolist() == pytest.approx([0.9, 0.7 * 0.9, 0.7 * 0.1])   # duplicate (score 0.8) suppressed
    assert d[:, 5].tolist() == [0, 1, 0]   # multi-label: the far box once per class above conf
    assert d[0, :4].tolist() == [40, 40, 60, 60]
    single = postprocess(p, conf_thres=0.05, iou_thres=0.6, multi_label=False)[0]
    assert single[:, 5].tolist() == [0, 1]
    assert len(postprocess(p, conf_thres=0.05, max_det=1)[0]) == 1


def _perfect(ds):
    return [{"image_id": r.image_id, "boxes": r.boxes, "scores": np.linspace(0.9, 0.5, len(r.labels)),
             "labels": r.labels} for r in ds.images]


def test_perfect_and_empty_predictions(smoke):
    m = evaluate_predictions(_perfect(smoke), smoke)
    assert m["ap"] == 1.0 and m["ap50"] == 1.0 and m["ap50_voc07"] == 1.0
    assert m["ap50_seedstyle"] == pytest.approx(0.995)
    assert all(row["ap"] == 1.0 for row in m["per_class"] if row["gt"])
    e = evaluate_predictions([], smoke)
    assert e["ap"] == 0.0 and e["ap50_seedstyle"] == 0.0 and e["detections"] == 0
    assert e["stats"][5] == -1.0   # no large objects in the smoke set: pycocotools' "no ground truth"


def test_difficult_counts_neither_tp_nor_fn():
    rec = ImageRecord("a.jpg", 100, 100, [[0, 0, 40, 40], [50, 50, 90, 90]], [0, 0], [False, True], image_id=7)
    ds = DetectionSet("d", ["a"], [rec])
    found_easy = [{"image_id": 7, "boxes": [[0, 0, 40, 40]], "scores": [0.9], "labels": [0]}]
    m = evaluate_predictions(found_easy, ds)   # missing the difficult object is no FN
    assert (m["ap50"], m["ap50_voc07"]) == pytest.approx((1.0, 1.0), abs=1e-12)
    both = [{"image_id": 7, "boxes": [[50, 50, 90, 90], [0, 0, 40, 40]], "scores": [0.95, 0.9], "labels": [0, 0]}]
    m = evaluate_predictions(both, ds)   # hitting it first is no FP
    assert (m["ap50"], m["ap50_voc07"]) == pytest.approx((1.0, 1.0), abs=1e-12)
    assert m["per_class"][0]["gt"] == 1


def test_metrics_json_equals_independent_pycocotools(smoke, tiny, tmp_path):
    m = evaluate(tiny, smoke, 64, batch_size=8, out_dir=tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert on_disk["ground_truth"] == str(tmp_path / "gt.json")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        dt = gt.loadRes(str(tmp_path / "predictions.json"))
        e = COCOeval(gt, dt, "bbox")
        e.params.imgIds = [r.image_id for r in smoke.images]
        e.evaluate(), e.accumulate(), e.summarize()
    assert np.array_equal(np.asarray(on_disk["stats"]), e.stats)
    assert on_disk["ap50"] == e.stats[1] and on_disk["ar100"] == e.stats[8]
    assert len(dt.getAnnIds()) == on_disk["detections"] > 0
    anns = json.loads((tmp_path / "gt.json").read_text())["annotations"]
    assert len(anns) == smoke.num_boxes and anns[0]["area"] == anns[0]["bbox"][2] * anns[0]["bbox"][3]


def test_predict_boxes_inside_original_images(smoke, tiny):
    preds = predict(tiny, smoke, 64, batch_size=5)
    assert [p["image_id"] for p in preds] == [r.image_id for r in smoke.images]
    assert sum(len(p["scores"]) for p in preds) > 0
    for p, r in zip(preds, smoke.images):
        b = p["boxes"]
        assert b.shape == (len(p["scores"]), 4) and np.all(b[:, 2:] >= b[:, :2])
        assert b[:, [0, 2]].min() >= 0 and b[:, [0, 2]].max() <= r.width
        assert b[:, [1, 3]].min() >= 0 and b[:, [1, 3]].max() <= r.height
        assert np.all(np.diff(p["scores"]) <= 0) and p["labels"].max() < 6
    assert tiny.training   # built in train mode; predict restores the mode it found
