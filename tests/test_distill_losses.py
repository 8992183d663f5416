"""Distillation losses against quant-kd-spec §8 acceptance facts 21-25, 27 and 29 (pure functions, no training)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from yolocomp.distill import losses
from yolocomp.distill.classical import classical_terms, pseudo_labels
from yolocomp.distill.masks import fine_grained_mask
from yolocomp.distill.strategies import DEFAULT_WEIGHTS, STRATEGIES, KDBatch, KDOptions
from yolocomp.engine.targets import HeadTargets
from yolocomp.errors import InputError
from yolocomp.registry import DISTILLERS

NC = 3


def _maps(seed: int, n: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, h, h, 5 + NC, generator=g) for h in (4, 8)]


def _pos(b, a, gj, gi, tbox=None, anchors=None) -> HeadTargets:
    n = len(b)
    t = lambda v: torch.tensor(v, dtype=torch.long)
    return HeadTargets(t(b), t(a), t(gj), t(gi), torch.full((n, 4), 0.5) if tbox is None else tbox,
                       torch.ones(n, 2) if anchors is None else anchors, torch.zeros(n, dtype=torch.long),
                       torch.arange(n))


def _positives() -> list[HeadTargets]:
    return [_pos([0, 1], [0, 2], [1, 3], [2, 0]), _pos([1], [1], [5], [6])]


def _batch(student, teacher, feats=((), ())) -> KDBatch:
    return KDBatch(student, teacher, _positives(), (64, 64), list(feats[0]), list(feats[1]))


def test_every_kdstr_is_zero_for_identical_outputs():        # fact 21 (and its analogue for 2-5)
    s = _maps(0)
    f = [torch.rand(2, 6, 8, 8)]
    for name, fn in STRATEGIES.items():
        loss, _ = fn(_batch(s, [p.clone() for p in s], (f, [x.clone() for x in f])), KDOptions())
        assert float(loss) == pytest.approx(0.0, abs=1e-6), name


def test_kdstr1_is_hinton_kl_over_all_channels():            # fact 21
    s, t = _maps(0), _maps(1)
    loss, _ = STRATEGIES["KDstr1"](_batch(s, t), KDOptions())
    rows_s = torch.cat([p.reshape(-1, 5 + NC) for p in s])
    rows_t = torch.cat([p.reshape(-1, 5 + NC) for p in t])
    kl = F.kl_div(F.log_softmax(rows_s / 3, 1), F.softmax(rows_t / 3, 1), reduction="sum")
    assert float(loss) == pytest.approx(0.001 * 9 / 2 * float(kl), rel=1e-5)
    assert DEFAULT_WEIGHTS["KDstr1"] == {"out": 1e-3}


def test_halo_mean_reduction_divides_by_every_element():     # fact 27
    s, t = _maps(0), _maps(1)
    total = losses.output_kl(s, t, 3.0, "sum")
    mean = losses.output_kl(s, t, 3.0, "mean")
    n_rows = sum(p[..., 0].numel() for p in s)
    assert float(mean) == pytest.approx(float(total) / (n_rows * (5 + NC)), rel=1e-6)
    with pytest.raises(InputError, match="reduction"):
        losses.output_kl(s, t, 3.0, "batchmean")


def test_output_kd_needs_matching_heads():                   # SPURS issue #25
    s, t = _maps(0), _maps(1)
    with pytest.raises(InputError, match="match"):
        losses.output_kl(s, t[:1])


def test_bounded_regression_on_given_numbers():               # fact 22
    y = torch.zeros(2, 4)
    r_s = torch.tensor([[math.sqrt(0.5), 0, 0, 0], [math.sqrt(0.1), 0, 0, 0]])
    r_t = torch.tensor([[math.sqrt(0.2), 0, 0, 0], [math.sqrt(0.2), 0, 0, 0]])
    loss, ratio = losses.bounded_regression(r_s, r_t, y, margin=0.0)
    assert float(loss) == pytest.approx(0.5)                 # 0.5 > 0.2 counts, 0.1 < 0.2 does not
    assert float(ratio) == pytest.approx(0.5)
    one, _ = losses.bounded_regression(r_s[1:], r_t[1:], y[1:])
    assert float(one) == 0.0
    assert DEFAULT_WEIGHTS["KDstr2"] == {"cls": 1e-4, "box": 1e-3}


def test_kdstr2_class_term_is_kl_over_obj_and_classes_of_all_cells():   # fact 22
    s, t = _maps(0), _maps(1)
    t_box_equal = [tt.clone() for tt in t]
    for p, q in zip(t_box_equal, s):
        p[..., :4] = q[..., :4]                               # teacher boxes = student boxes: box term 0
    loss, logs = STRATEGIES["KDstr2"](_batch(s, t_box_equal), KDOptions())
    kl = sum(F.kl_div(F.log_softmax(a[..., 4:].reshape(-1, 1 + NC) / 3, 1),
                      F.softmax(b[..., 4:].reshape(-1, 1 + NC) / 3, 1), reduction="sum") for a, b in zip(s, t))
    assert logs["kd_box"] == 0.0
    assert float(loss) == pytest.approx(1e-4 * 9 / 2 * float(kl), rel=1e-5)


def test_kdstr3_box_term_ignores_ground_truth():              # fact 23
    s, t = _maps(0), _maps(1)
    a = _batch(s, t)
    b = _batch(s, t)
    for pos in b.positives:
        pos.tbox = torch.rand_like(pos.tbox) * 10
    la, logs = STRATEGIES["KDstr3"](a, KDOptions())
    lb, _ = STRATEGIES["KDstr3"](b, KDOptions())
    assert float(la) == float(lb)
    r_s = torch.cat([losses.decode_at(p, pos) for p, pos in zip(s, a.positives)])
    r_t = torch.cat([losses.decode_at(p, pos) for p, pos in zip(t, a.positives)])
    assert logs["kd_box"] == pytest.approx(float((r_s - r_t).pow(2).sum()), rel=1e-6)


def test_kdstr4_attention_term_weights_and_channel_invariance():   # fact 24
    g = torch.Generator().manual_seed(0)
    fs, ft = torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 7, 8, 8, generator=g)
    term = losses.attention_kl(fs, ft)
    a_s, a_t = fs.abs().sum(1).flatten(1), ft.abs().sum(1).flatten(1)
    expected = 9 / 2 * F.kl_div(F.log_softmax(a_s / 3, 1), F.softmax(a_t / 3, 1), reduction="sum")
    assert float(term) == pytest.approx(float(expected), rel=1e-5)
    shuffled = torch.cat([fs[:, torch.randperm(5, generator=g)], torch.zeros(2, 4, 8, 8)], 1)
    assert float(losses.attention_kl(shuffled, ft)) == pytest.approx(float(term), rel=1e-6)
    assert DEFAULT_WEIGHTS["KDstr4"] == DEFAULT_WEIGHTS["KDstr5"] == {"cls": 1e-3, "box": 1e-3, "feat": 1e-3}
    with pytest.raises(InputError, match="size"):
        losses.attention_kl(fs, ft[:, :, :4])


def test_kdstr5_mask_multiplies_before_softmax():             # KDstr 5: masked cells become logit 0
    g = torch.Generator().manual_seed(0)
    fs, ft = 10 * torch.rand(1, 3, 4, 4, generator=g), 10 * torch.rand(1, 3, 4, 4, generator=g)
    mask = torch.zeros(1, 4, 4)
    mask[0, 1, 2] = 1
    masked = losses.attention_kl(fs, ft, mask=mask)
    a_s = torch.zeros(1, 16)
    a_t = torch.zeros(1, 16)
    a_s[0, 6], a_t[0, 6] = fs.sum(1)[0, 1, 2], ft.sum(1)[0, 1, 2]
    expected = 9 * F.kl_div(F.log_softmax(a_s / 3, 1), F.softmax(a_t / 3, 1), reduction="sum")
    assert float(masked) == pytest.approx(float(expected), rel=1e-5)


def _mask(positives, strides, hw, stride, mode):
    return {tuple(c) for c in fine_grained_mask(positives, strides, hw, stride, 1, mode)[0].nonzero().tolist()}


def test_fine_grained_mask_cells():                            # fact 25
    lvl0, none = _pos([0], [0], [3], [5]), _pos([], [], [], [])
    strides = [32.0, 16.0, 8.0]                                 # 13, 26, 52 at 416 px
    assert _mask([lvl0, none, none], strides, (52, 52), 8.0, "diagonal") == {(12, 20), (13, 21), (14, 22), (15, 23)}
    assert _mask([lvl0, none, none], strides, (52, 52), 8.0, "full") == {
        (r, c) for r in range(12, 16) for c in range(20, 24)}
    lvl1 = _pos([0], [1], [7], [9])
    assert _mask([none, lvl1, none], strides, (52, 52), 8.0, "diagonal") == {(14, 18), (15, 19)}
    lvl2 = _pos([0], [2], [30], [11])
    assert _mask([none, none, lvl2], strides, (52, 52), 8.0, "diagonal") == {(30, 11)}
    assert _mask([none, none, lvl2], strides, (26, 26), 16.0, "diagonal") == set()     # finer level skipped
    with pytest.raises(InputError, match="mode"):
        fine_grained_mask([lvl0], [32.0], (52, 52), 8.0, 1, "square")


def test_classical_class_weights_and_bounded_box():          # fact 29
    hard, soft = torch.tensor(2.0), torch.tensor(5.0)
    g_cls = 1.5
    extra, logs = classical_terms(torch.tensor(0.3), 0.2, hard, soft, None, g_box=1.0, g_cls=g_cls)
    # detection loss g·hard + extra = 0.7·g·hard + 0.3·g·soft, plus ν·box where the student is worse (0.3 > 0.2)
    assert float(g_cls * hard + extra - 0.5 * 0.3) == pytest.approx(0.7 * g_cls * 2.0 + 0.3 * g_cls * 5.0)
    better, _ = classical_terms(torch.tensor(0.1), 0.2, hard, hard, None, g_box=1.0, g_cls=g_cls)
    assert float(better) == 0.0 and logs["kd_box"] == pytest.approx(0.3)
    # within the margin m = 1e-5 the student still counts as worse
    tie, _ = classical_terms(torch.tensor(0.2), 0.2, hard, hard, None, g_box=1.0, g_cls=g_cls)
    assert float(tie) == pytest.approx(0.5 * 0.2)


def test_pseudo_labels_are_clipped_teacher_detections():
    dec = torch.zeros(2, 3, 5 + NC)
    dec[0, 0, :4] = torch.tensor([10.0, 10.0, 30.0, 30.0])     # cx cy w h, reaches x = -5
    dec[0, 0, 4], dec[0, 0, 5 + 2] = 0.9, 0.9
    dec[1, 1, :4] = torch.tensor([40.0, 40.0, 8.0, 8.0])
    dec[1, 1, 4], dec[1, 1, 5] = 0.05, 1.0                       # below conf 0.1
    labels = pseudo_labels(dec, (64, 64))
    assert labels.tolist() == [[0.0, 2.0, 0.0, 0.0, 25.0, 25.0]]


def test_every_distiller_is_registered_with_its_source():
    assert DISTILLERS.names() == ["KDstr1", "KDstr2", "KDstr3", "KDstr4", "KDstr5", "hint", "gan"]
    for e in DISTILLERS:
        assert e.meta["origin"] in ("SPURS", "ANDREY") and e.meta["spec"].startswith("quant-kd-spec §4.")
        assert callable(e.obj)
