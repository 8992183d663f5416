"""Target assignment and YOLO loss (training-recipe §1, §2, §2.4, §12)."""

import math
from pathlib import Path

import pytest
import torch
import yolocomp
from yolocomp.engine.hyp import hyp
from yolocomp.engine.loss import (
    YoloLoss,
    _assign_last_wins,
    class_bias_prior,
    init_head_biases,
    objectness_ratio,
)
from yolocomp.engine.targets import build_targets
from yolocomp.errors import InputError
from yolocomp.models import Darknet

CFG = Path(yolocomp.__file__).parent / "models" / "cfg"
ANCHORS = torch.tensor([[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]])   # yolov3 stride-8 head, pixels


def tgt(*rows):
    return torch.tensor(rows, dtype=torch.float32).view(-1, 6)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Darknet.from_cfg(CFG / "yolov3-tiny.cfg", classes=2)


# ---------------------------------------------------------------- assignment (§1)

def test_all_anchors_above_iou_t_match():
    # 20x20 box: shape IoUs 130/400 = 0.325, 320/560 = 0.5714, 400/759 = 0.5270 -> all three anchors > 0.20
    t = tgt([0, 1, 10, 25, 30, 45])
    ht = build_targets(t, ANCHORS, (8, 8), (64, 64), iou_t=0.20)
    assert ht.a.tolist() == [0, 1, 2] and ht.b.tolist() == [0, 0, 0] and ht.cls.tolist() == [1, 1, 1]
    assert build_targets(t, ANCHORS, (8, 8), (64, 64), iou_t=0.55).a.tolist() == [1]
    assert build_targets(t, ANCHORS, (8, 8), (64, 64), iou_t=0.2635).a.tolist() == [0, 1, 2]


def test_iou_t_is_strict_and_small_targets_get_no_positive():
    square = torch.tensor([[10.0, 10.0]])
    # 10x2 box vs 10x10 anchor: IoU exactly 20/100 = 0.2 -> not a positive at iou_t 0.2
    assert len(build_targets(tgt([0, 0, 20, 20, 30, 22]), square, (8, 8), (64, 64), iou_t=0.2)) == 0
    assert len(build_targets(tgt([0, 0, 20, 20, 30, 22]), square, (8, 8), (64, 64), iou_t=0.19)) == 1
    # 1x1 box: best IoU 1/130 -> only negatives
    assert len(build_targets(tgt([0, 0, 20, 20, 21, 21]), ANCHORS, (8, 8), (64, 64))) == 0


def test_centre_cell_box_target_and_clamp():
    # centre (20.5, 35.2) px, size 16x30, stride 8 -> cell (gi 2, gj 4), offsets (0.5625, 0.4), wh (2, 3.75)
    t = tgt([1, 0, 12.5, 20.2, 28.5, 50.2])
    ht = build_targets(t, ANCHORS, (8, 8), (64, 64), iou_t=0.5)
    assert ht.a.tolist() == [1] and (ht.gi.item(), ht.gj.item(), ht.b.item()) == (2, 4, 1)
    assert torch.allclose(ht.tbox, torch.tensor([[0.5625, 0.4, 2.0, 3.75]]), atol=1e-5)
    assert torch.allclose(ht.anchors, torch.tensor([[2.0, 3.75]]))
    # centre exactly on the far edge (x = 64): clamped into the last column, offset 1.0 (ULY v8)
    edge = build_targets(tgt([0, 0, 48, 20, 80, 40]), torch.tensor([[32.0, 20.0]]), (8, 8), (64, 64))
    assert (edge.gi.item(), edge.gj.item()) == (7, 3) and edge.tbox[0, 0].item() == 1.0


def test_non_square_input_uses_per_axis_stride():
    # input 64 high x 128 wide, grid 2x4 -> stride 32 on both axes; centre (100, 40) -> cell (3, 1)
    ht = build_targets(tgt([0, 0, 84, 24, 116, 56]), torch.tensor([[32.0, 32.0]]), (2, 4), (64, 128))
    assert (ht.gi.item(), ht.gj.item()) == (3, 1)
    assert torch.allclose(ht.tbox, torch.tensor([[100 / 32 - 3, 40 / 32 - 1, 1.0, 1.0]]))


def test_v9_ratio_rule():
    square = torch.tensor([[10.0, 10.0]])
    assert len(build_targets(tgt([0, 0, 10, 10, 50, 20]), square, (8, 8), (64, 64), anchor_t=4.0)) == 0   # ratio 4
    assert len(build_targets(tgt([0, 0, 10, 10, 49, 20]), square, (8, 8), (64, 64), anchor_t=4.0)) == 1


def test_duplicate_cells_last_write_wins():
    tobj = torch.zeros(1, 2, 2, 2)
    idx = [torch.tensor(v) for v in ([0, 0, 0], [1, 0, 1], [1, 0, 1], [0, 1, 0])]
    _assign_last_wins(tobj, tuple(idx), torch.tensor([0.3, 0.5, 0.7]))
    assert tobj[0, 1, 1, 0].item() == pytest.approx(0.7) and tobj[0, 0, 0, 1].item() == pytest.approx(0.5)
    assert tobj.sum().item() == pytest.approx(1.2)


# ---------------------------------------------------------------- loss (§2)

def _giou_xywh(p, t):
    """§2.1 GIoU of two (x, y, w, h) boxes, written from the formula."""
    px1, py1, px2, py2 = p[0] - p[2] / 2, p[1] - p[3] / 2, p[0] + p[2] / 2, p[1] + p[3] / 2
    tx1, ty1, tx2, ty2 = t[0] - t[2] / 2, t[1] - t[3] / 2, t[0] + t[2] / 2, t[1] + t[3] / 2
    inter = max(min(px2, tx2) - max(px1, tx1), 0) * max(min(py2, ty2) - max(py1, ty1), 0)
    union = (p[2] * p[3] + 1e-16) + t[2] * t[3] - inter
    c = (max(px2, tx2) - min(px1, tx1)) * (max(py2, ty2) - min(py1, ty1)) + 1e-16
    return inter / union - (c - union) / c


def sp(z):
    """softplus: BCE(z, 0) = sp(z), BCE(z, 1) = sp(-z)."""
    return math.log1p(math.exp(z))


def _raw_outputs(model, n, img, obj_logit=0.0):
    outs = []
    for head in model.yolo_layers:
        g = img // (32 if head.anchors[0, 0] > 60 else 16)     # yolov3-tiny: big anchors on the stride-32 head
        o = torch.zeros(n, head.num_anchors, g, g, 5 + model.classes)
        o[..., 4] = obj_logit
        outs.append(o)
    return outs


TARGETS = tgt([0, 0, 4, 6, 30, 40], [1, 1, 20, 10, 62, 58], [1, 0, 40, 40, 52, 50])


def test_loss_value_matches_formulas(tiny):
    """Zero box/class logits, obj logit −2, g_r 0.7: every term recomputed from §2.1–2.2 by hand."""
    outs = _raw_outputs(tiny, 2, 64, obj_logit=-2.0)
    crit = YoloLoss(tiny, hyp())
    crit.gr = 0.7
    total, items = crit(outs, TARGETS, (64, 64))
    box = obj = cls = 0.0
    n_pos = 0
    for head, o in zip(tiny.yolo_layers, outs):
        ht = build_targets(TARGETS, head.anchors, o.shape[2:4], (64, 64))
        n_pos += len(ht)
        cells = o[..., 0].numel()
        gious = [_giou_xywh([0.5, 0.5, *ht.anchors[k].tolist()], ht.tbox[k].tolist()) for k in range(len(ht))]
        taus = {}
        for k, g in enumerate(gious):
            taus[(ht.b[k].item(), ht.a[k].item(), ht.gj[k].item(), ht.gi[k].item())] = 0.3 + 0.7 * max(g, 0)
        pos = sum(tau * sp(2.0) + (1 - tau) * sp(-2.0) for tau in taus.values())
        obj += (pos + (cells - len(taus)) * sp(-2.0)) / cells
        if gious:
            box += sum(1 - g for g in gious) / len(gious)
            cls += math.log(2)
    assert n_pos >= 3
    assert items["box"] == pytest.approx(3.54 * box, rel=1e-5)
    assert items["obj"] == pytest.approx(64.3 * obj, rel=1e-5)
    assert items["cls"] == pytest.approx(37.4 * 2 / 80 * cls, rel=1e-5)
    assert items["total"] == pytest.approx(items["box"] + items["obj"] + items["cls"], rel=1e-6)
    assert total.item() == pytest.approx(items["total"] * 2 / 64, rel=1e-6)      # × bs/64 (§2.2)
    v9_total, v9_items = YoloLoss(tiny, hyp("uly-v9"))(outs, TARGETS, (64, 64))
    assert v9_total.item() == pytest.approx(v9_items["total"] * 2, rel=1e-6)     # v9: × bs (§10)


def test_tan_objectness_target_is_one_and_pos_weight(tiny):
    outs = _raw_outputs(tiny, 2, 64, obj_logit=-2.0)
    _, items = YoloLoss(tiny, hyp("tan", obj_pw=1.0))(outs, TARGETS, (64, 64))
    obj = 0.0
    for head, o in zip(tiny.yolo_layers, outs):
        ht = build_targets(TARGETS, head.anchors, o.shape[2:4], (64, 64), iou_t=0.2635)
        n_cells = len({(ht.b[k].item(), ht.a[k].item(), ht.gj[k].item(), ht.gi[k].item()) for k in range(len(ht))})
        obj += (n_cells * sp(2.0) + (o[..., 0].numel() - n_cells) * sp(-2.0)) / o[..., 0].numel()
    assert items["obj"] == pytest.approx(21.35 * obj, rel=1e-5)
    _, pw = YoloLoss(tiny, hyp("tan"))(outs, TARGETS, (64, 64))      # obj_pw 3.941 weighs the positives more
    assert pw["obj"] > items["obj"]


def _perfect(model, targets, img, anchor_t):
    outs = _raw_outputs(model, 2, img, obj_logit=8.0)
    for head, o in zip(model.yolo_layers, outs):
        ht = build_targets(targets, head.anchors, o.shape[2:4], (img, img), anchor_t=anchor_t)
        s = head.scale_x_y
        xy = (ht.tbox[:, :2] + (s - 1) / 2) / s
        o[ht.b, ht.a, ht.gj, ht.gi, :2] = torch.log(xy / (1 - xy))
        o[ht.b, ht.a, ht.gj, ht.gi, 2:4] = torch.log(ht.tbox[:, 2:] / ht.anchors)
    return outs


@pytest.mark.parametrize("cfg,preset", [("yolov3-tiny.cfg", "default"), ("yolov4-tiny.cfg", "uly-v9")])
def test_perfect_prediction_has_zero_box_loss(cfg, preset):
    model = Darknet.from_cfg(CFG / cfg, classes=2)
    targets = tgt([0, 0, 4, 6, 30, 40], [1, 1, 20, 10, 62, 58])
    anchor_t = 4.0 if preset == "uly-v9" else None
    outs = _perfect(model, targets, 64, anchor_t)
    _, items = YoloLoss(model, hyp(preset))(outs, targets, (64, 64))
    assert items["box"] < 1e-5 and items["obj"] > 0
    n_pos = 0
    # the loss's box parametrisation is the model's decode (scale_x_y included): decoded positives == targets
    for head, o in zip(model.yolo_layers, outs):
        ht = build_targets(targets, head.anchors, o.shape[2:4], (64, 64), anchor_t=anchor_t)
        dec = head.decode(o, (64, 64)).view(o.shape)[ht.b, ht.a, ht.gj, ht.gi, :4]
        want = targets[ht.target_index, 2:]
        n_pos += len(ht)
        got = torch.cat([dec[:, :2] - dec[:, 2:] / 2, dec[:, :2] + dec[:, 2:] / 2], 1)
        assert torch.allclose(got, want, atol=1e-3)
    assert n_pos >= 2


def test_single_class_has_no_class_loss_and_empty_targets_work():
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg", classes=1)
    outs = _raw_outputs(model, 2, 64)
    _, items = YoloLoss(model, hyp())(outs, tgt([0, 0, 4, 6, 30, 40]), (64, 64))
    assert items["cls"] == 0.0 and items["box"] > 0
    _, items = YoloLoss(model, hyp())(outs, torch.zeros(0, 6), (64, 64))
    assert items["box"] == 0 and items["cls"] == 0 and items["obj"] == pytest.approx(2 * 64.3 * math.log(2), rel=1e-6)


def test_focal_and_label_smoothing(tiny):
    crit = YoloLoss(tiny, hyp(fl_gamma=2.0))
    z, y = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    # TF form: BCE · α_t · (1 − p_t)^γ with p_t = 0.5: log2·0.25·0.25 and log2·0.75·0.25
    assert crit._bce(z, y, 1.0).tolist() == pytest.approx([math.log(2) / 16, math.log(2) * 3 / 16])
    exp = YoloLoss(tiny, hyp(fl_gamma=2.0, focal_style="exp"))
    assert exp._bce(z, y, 1.0).tolist() == pytest.approx([math.log(2) * (1.000001 - 0.5) ** 2] * 2)
    outs = _raw_outputs(tiny, 2, 64)
    for o in outs:
        o[..., 5] = 3.0
    _, plain = YoloLoss(tiny, hyp())(outs, TARGETS, (64, 64))
    _, smooth = YoloLoss(tiny, hyp(label_smoothing=0.2))(outs, TARGETS, (64, 64))
    assert smooth["cls"] != pytest.approx(plain["cls"]) and smooth["box"] == plain["box"]


def test_bad_inputs_raise(tiny):
    outs = _raw_outputs(tiny, 2, 64)
    crit = YoloLoss(tiny, hyp())
    with pytest.raises(InputError, match=r"targets must be \(M, 6\)"):
        crit(outs, torch.zeros(3, 5), (64, 64))
    with pytest.raises(InputError, match="class 2 out of range for a 2-class model"):
        crit(outs, tgt([0, 2, 1, 1, 9, 9]), (64, 64))
    with pytest.raises(InputError, match="batch index 2 >= batch size 2"):
        crit(outs, tgt([2, 0, 1, 1, 9, 9]), (64, 64))
    with pytest.raises(InputError, match="x2 >= x1"):
        crit(outs, tgt([0, 0, 9, 1, 1, 9]), (64, 64))
    with pytest.raises(InputError, match="train-mode output"):
        crit(torch.zeros(2, 10, 7), TARGETS, (64, 64))


def test_training_steps_decrease_loss_with_finite_gradients():
    torch.manual_seed(0)
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg", classes=2)
    init_head_biases(model)
    model.train()
    crit = YoloLoss(model, hyp())
    crit.gr = 1.0
    x = torch.rand(2, 3, 64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(12):
        total, items = crit(model(x), TARGETS, (64, 64))
        opt.zero_grad()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        history.append(items["total"])
    assert history[-1] < 0.7 * history[0], history


# ---------------------------------------------------------------- §2.3 g_r and §2.4 bias init (§12 facts)

def test_objectness_ratio_schedules():
    andrey = hyp("andrey")
    got = [objectness_ratio(andrey, e, 300, 0, 1) for e in (0, 37, 75, 112, 150, 299)]
    assert got == pytest.approx([0, 0.143, 0.5, 0.85, 1.0, 1.0], abs=5e-4)
    assert objectness_ratio(hyp(), 0, 300, 250, 500) == 0.5 and objectness_ratio(hyp(), 3, 300, 900, 500) == 1.0
    assert objectness_ratio(hyp("tan"), 5, 300, 9999, 500) == 0.0


def test_class_bias_prior_facts():
    assert [round(class_bias_prior(nc, "uly"), 3) for nc in (1, 12, 20, 80)] == [4.094, -2.910, -3.456, -4.880]
    assert [round(class_bias_prior(nc, "andrey"), 3) for nc in (1, 12, 20, 80)] == [4.605, -2.399, -2.945, -4.370]


@pytest.mark.parametrize("style,obj_mean,cls_mean", [("tan", -4.0, -3.6), ("andrey", -4.5, math.log(1 / 19.01))])
def test_init_head_biases_mean_styles(style, obj_mean, cls_mean):
    torch.manual_seed(0)
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg", classes=20)
    init_head_biases(model, style)
    for li in model.yolo_indices:
        b = model.layers[li - 1].conv.bias.view(3, 25)
        assert b[:, 4].mean().item() == pytest.approx(obj_mean, abs=1e-5)
        assert b[:, 5:].mean().item() == pytest.approx(cls_mean, abs=1e-5)


def test_init_head_biases_uly_adds_to_default_init():
    torch.manual_seed(0)
    model = Darknet.from_cfg(CFG / "yolov3-tiny.cfg", classes=20)
    before = [model.layers[li - 1].conv.bias.detach().clone().view(3, 25) for li in model.yolo_indices]
    init_head_biases(model, "uly", heads=[1])
    after = [model.layers[li - 1].conv.bias.detach().view(3, 25) for li in model.yolo_indices]
    assert torch.equal(after[0], before[0])                       # head 0 left alone (e.g. loaded from weights)
    diff = after[1] - before[1]
    assert torch.allclose(diff[:, 4], torch.full((3,), -4.5))
    assert torch.allclose(diff[:, 5:], torch.full((3, 20), -3.456), atol=5e-4)
    assert torch.allclose(diff[:, :4], torch.zeros(3, 4))
