"""EagleEye: random L1-ranked sub-nets, the MACs budget, adaptive BN, selection by score (pruning-spec §10, §19
facts 14, 21, 23)."""

from __future__ import annotations

import pytest
import torch
from yolocomp.bench.cost import macs_conv
from yolocomp.data import synthetic
from yolocomp.data.dataset import DetectionDataset, collate
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.engine.hyp import hyp
from yolocomp.engine.loss import YoloLoss
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.models.zoo import CFG_DIR
from yolocomp.prune.eagleeye import (
    MacsCounter,
    adaptive_bn,
    eagleeye,
    filter_l1,
    nearest_multiple,
    random_masks,
)
from yolocomp.prune.graph import analyze
from yolocomp.prune.surgery import check_masks, compact


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return Darknet.from_cfg(CFG_DIR / "yolov3-tiny.cfg", classes=6).eval()


@pytest.fixture(scope="module")
def smoke():
    data = synthetic.embedded("smoke")
    train = DetectionDataset(read_yolo(data, "train"), 64, augment=False)
    val = DetectionDataset(read_yolo(data, "valid"), 64, augment=False)
    abn = torch.utils.data.DataLoader(train, batch_size=8, shuffle=False, collate_fn=collate)
    return abn, collate([val[i] for i in range(len(val))])


@pytest.mark.parametrize("pool", ["normal", "slim"])
def test_random_masks_keep_top_l1_filters(tiny, pool):
    g = analyze(tiny)
    masks = random_masks(tiny, g, torch.Generator().manual_seed(3), pool)
    replay = torch.Generator().manual_seed(3)
    assert sorted(masks) == g.convs
    for i in g.prunable:                                  # yolov3-tiny has no groups: both pools are g.prunable
        r = float(torch.rand((), generator=replay, dtype=torch.float64))
        c = tiny.layers[i].out_channels
        assert int(masks[i].sum()) == max(int(c * (1 - r)), 1)
        l1 = filter_l1(tiny, i)
        if not bool(masks[i].all()):
            assert float(l1[masks[i]].min()) >= float(l1[~masks[i]].max())
    assert all(bool(masks[i].all()) for i in set(g.convs) - set(g.prunable))
    check_masks(tiny, masks, g)
    again = random_masks(tiny, g, torch.Generator().manual_seed(3), pool)
    assert all(torch.equal(masks[i], again[i]) for i in masks)


def test_slim_pool_merges_shortcut_groups_by_union():
    m = Darknet.from_cfg(CFG_DIR / "yolov3.cfg")
    g = analyze(m)
    masks = random_masks(m, g, torch.Generator().manual_seed(0), "slim")
    assert [grp[0] for grp in g.shortcut_groups] == [1, 5, 12, 37, 62]
    replay, pre = torch.Generator().manual_seed(0), {}
    for i in sorted(g.prunable):
        c = m.layers[i].out_channels
        n = max(int(c * (1 - float(torch.rand((), generator=replay, dtype=torch.float64)))), 1)
        pre[i] = torch.zeros(c, dtype=torch.bool)
        pre[i][torch.argsort(filter_l1(m, i), descending=True, stable=True)[:n]] = True
    for grp in g.shortcut_groups:
        union = torch.stack([pre[i] for i in grp]).any(0)
        assert all(torch.equal(masks[i], union) for i in grp)
    assert all(torch.equal(masks[i], pre[i]) for i in g.prunable if not any(i in grp for grp in g.shortcut_groups))
    check_masks(m, masks, g)
    normal = random_masks(m, g, torch.Generator().manual_seed(0), "normal")
    assert all(bool(normal[i].all()) for grp in g.shortcut_groups for i in grp)
    assert sum(not bool(normal[i].all()) for i in normal) > 30          # 42 layers in the normal pool


def test_regular_widths_are_multiples_of_base():
    # spec fact 9: nearest multiple of 8 (ties up), clipped to C, 8 instead of 0
    cases = {(3, 64): 8, (0, 64): 8, (4, 64): 8, (11, 64): 8, (12, 64): 16, (60, 64): 64, (19, 20): 16,
             (20, 20): 20, (2, 4): 4}
    assert {k: nearest_multiple(n, 8, c) for k, (n, c) in zip(cases, cases)} == cases
    m = Darknet.from_cfg(CFG_DIR / "yolov3.cfg")
    g = analyze(m)
    masks = random_masks(m, g, torch.Generator().manual_seed(5), "regular")
    counts = [int(masks[i].sum()) for i in g.prunable]
    assert all(n % 8 == 0 and n > 0 for n in counts) and sum(counts) < 0.8 * 25920
    for grp in g.shortcut_groups:
        assert all(torch.equal(masks[grp[0]], masks[i]) for i in grp)
    check_masks(m, masks, g)


def test_macs_counter_matches_the_compact_model(tiny):
    g = analyze(tiny)
    counter = MacsCounter(tiny, (96, 128))
    assert counter.full == macs_conv(tiny, (96, 128))
    gen = torch.Generator().manual_seed(1)
    for pool in ("normal", "slim"):
        masks = random_masks(tiny, g, gen, pool)
        n = counter(masks)
        assert n == macs_conv(compact(tiny, masks), (96, 128))
        assert 0 < n < counter.full


def test_adaptive_bn_is_a_reset_cumulative_average(tiny):
    import copy
    m = copy.deepcopy(tiny)
    bn = m.layers[0].bn
    with torch.no_grad():
        bn.running_mean.fill_(100.0)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(4, 3, 64, 64, generator=gen) for _ in range(3)]
    feats = [m.layers[0].conv(x).detach() for x in batches]
    adaptive_bn(m, [(x, None) for x in batches], steps=None)
    want_mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    want_var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, want_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, want_var, rtol=1e-4, atol=1e-6)
    assert int(bn.num_batches_tracked) == 3 and bn.momentum == 0.03 and not m.training
    adaptive_bn(m, batches, steps=1)                    # steps limits the batches
    torch.testing.assert_close(bn.running_mean, feats[0].mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="no batches"):
        adaptive_bn(m, [])


def _neg_loss(images: torch.Tensor, targets: torch.Tensor):
    h = hyp("default")

    def score(model: Darknet) -> float:
        heads = []
        hooks = [y.register_forward_hook(lambda mod, i, o: heads.append(o)) for y in model.yolo_layers]
        with torch.no_grad():
            model.eval()(images)
        for hk in hooks:
            hk.remove()
        loss, _ = YoloLoss(model, h)(heads, targets, tuple(images.shape[2:]))
        return -float(loss)

    return score


def test_eagleeye_picks_the_best_candidate_under_the_budget(tiny, smoke):
    abn, (images, targets, _) = smoke
    score = _neg_loss(images, targets)
    res = eagleeye(tiny, score, abn, candidates=3, percent=0.7, delta=0.1, pool="slim", img_size=64,
                   abn_steps=2, seed=0)
    assert [h["candidate"] for h in res.history] == [0, 1, 2]
    assert all(abs(h["macs_ratio"] - 0.3) <= 0.1 for h in res.history)
    assert res.history[-1]["draws"] >= 3
    best = max(res.history, key=lambda h: h["score"])
    assert res.score == best["score"] and res.macs_ratio == best["macs_ratio"]
    check_masks(tiny, res.masks)
    for i, mk in res.masks.items():
        assert res.model.layers[i].out_channels == int(mk.sum())
    assert macs_conv(res.model, 64) / macs_conv(tiny, 64) == pytest.approx(res.macs_ratio)
    assert score(res.model) == pytest.approx(res.score)        # the returned model is the scored one
    assert not res.model.training
    scores = [h["score"] for h in res.history]
    assert len(set(scores)) == 3                               # distinct sub-nets, distinct scores
    with pytest.raises(InputError, match="budget"):
        eagleeye(tiny, score, abn, candidates=1, percent=0.999, delta=0.0, img_size=64, max_draws=20)
