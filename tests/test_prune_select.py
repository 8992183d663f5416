"""Channel selection (pruning-spec.md §2-§4) on hand-made models with known γ, and the dependency graph's sets on
zoo models (§3, §19 facts 3-8)."""

import pytest
import torch
from yolocomp.models import Darknet, zoo
from yolocomp.prune import select
from yolocomp.prune.graph import analyze

# convs 0, 1, 2, 3, 5 have BN; shortcut 4 adds conv 3 to conv 1; conv 6 (no BN) feeds the head.
TINY = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
batch_normalize=1
filters=24
size=1
stride=1
pad=1
activation=leaky

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,4, 8,8, 16,16
classes=1
num=3
"""


def tiny_model(seed: int = 0) -> Darknet:
    """TINY with distinct γ: a random permutation of 1..N (scaled) spread over all BN channels."""
    m = Darknet.from_cfg(TINY)
    bns = [m.layers[i].bn for i in (0, 1, 2, 3, 5)]
    n = sum(b.num_features for b in bns)
    vals = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)).float() + 1) / n
    k = 0
    for b in bns:
        b.weight.data = vals[k:k + b.num_features].clone()
        k += b.num_features
    return m


def removed(masks, layers):
    return sum(int((~masks[i]).sum()) for i in layers)


def test_tiny_graph():
    g = analyze(tiny_model())
    assert g.convs == [0, 1, 2, 3, 5]
    assert g.prunable == [0, 1, 2, 3, 5]
    assert g.shortcut_groups == [[1, 3]]
    assert g.before_shortcut == [3]
    assert g.coupled == []
    assert g.consumers[1] == [2, 4] and g.consumers[3] == [4] and g.consumers[4] == [5]
    assert select.normal_pool(g) == [0, 2, 5]


def test_normal_prunes_exactly_int_np_with_ge():
    m = tiny_model()
    g = analyze(m)
    pool = select.normal_pool(g)                                      # 16 + 16 + 24 = 56 channels
    for p in (0.1, 0.25, 0.3):
        masks = select.normal(m, g, p)
        assert removed(masks, pool) == int(56 * p)                    # fact 4, `>=`
        assert removed(masks, [1, 3]) == 0                            # shortcut members are skipped
        thr = select.global_threshold(select.gammas(m, pool), p)
        for i in pool:
            assert torch.equal(masks[i], m.layers[i].bn.weight.detach().abs() >= thr)


def test_highest_threshold_rule_and_error_names_limit():
    m = tiny_model()
    g = analyze(m)
    pool = select.normal_pool(g)
    m.layers[2].bn.weight.data *= 0.01                                # layer 2 becomes the weakest layer
    gs = select.gammas(m, pool)
    highest = min(float(v.max()) for v in gs.values())
    assert highest == pytest.approx(float(gs[2].max()))
    limit = select.percent_limit(gs)
    assert limit == pytest.approx(15 / 56)                            # layer 2's 16 channels are the 16 smallest
    masks = select.normal(m, g, limit)                                # fact 5: thr <= highest_thre empties nothing
    assert all(bool(masks[i].any()) for i in pool)
    assert int(masks[2].sum()) == 1
    with pytest.raises(ValueError, match=r"layer\(s\) \[2\].*largest usable percent for this model is 0\.2679"):
        select.normal(m, g, 0.3)
    with pytest.raises(ValueError, match="percent must be in"):
        select.normal(m, g, 1.0)


def test_percent_limit_with_tied_maxima():
    gs = {0: torch.tensor([0.1, 0.5]), 1: torch.tensor([0.5, 0.2]), 2: torch.tensor([0.9, 0.3])}
    # sorted 0.1 0.2 0.3 0.5 0.5 0.9: highest_thre 0.5 first reached at index 3, last at 4
    assert select.percent_limit(gs) == pytest.approx(4 / 6)


def test_regular_multiple_of_8_and_never_empty():
    m = tiny_model(1)
    g = analyze(m)
    pool = select.normal_pool(g)
    for p in (0.2, 0.5, 0.9):
        masks = select.regular(m, g, p)
        thr = select.global_threshold(select.gammas(m, pool), p)
        for i in pool:
            g_i = m.layers[i].bn.weight.detach().abs()
            n = int((g_i >= thr).sum())
            want = min(max(-(-n // 8) * 8, 8), len(g_i))
            assert int(masks[i].sum()) == want
            assert want % 8 == 0
            if not bool(masks[i].all()):
                assert float(g_i[masks[i]].min()) > float(g_i[~masks[i]].max())   # the top channels are kept
    masks = select.regular(m, g, 0.9, multiple=32)
    assert [int(masks[i].sum()) for i in pool] == [16, 16, 24]        # clipped to C, never wrapped around


def test_shortcut_group_members_take_root_mask():
    m = tiny_model(2)
    g = analyze(m)
    masks = select.shortcut(m, g, 0.4)
    assert torch.equal(masks[3], masks[1])                            # fact 7: root is layer 1
    pool = [0, 1, 2, 5]                                               # TAN pool: the tail (3) is not thresholded
    assert removed(masks, pool) == int(88 * 0.4)
    thr = select.global_threshold(select.gammas(m, pool), 0.4)
    assert torch.equal(masks[1], m.layers[1].bn.weight.detach().abs() >= thr)


def test_slim_gt_min_keep_and_or_merge():
    m = tiny_model(3)
    g = analyze(m)
    m.layers[3].bn.weight.data = m.layers[1].bn.weight.data.clone()    # identical group γ: the OR changes nothing
    masks = select.slim(m, g, 0.3, layer_keep=0.0)
    assert removed(masks, g.prunable) == int(120 * 0.3) + 1           # fact 4, `>`
    # per-layer minimum: with a high percent every layer keeps max(int(C*layer_keep), 1) of its top channels
    m = tiny_model(4)
    masks = select.slim(m, g, 0.99, layer_keep=0.25)
    for i in (0, 2, 5):
        c = m.layers[i].out_channels
        assert int(masks[i].sum()) == max(int(c * 0.25), 1)
        top = torch.topk(m.layers[i].bn.weight.detach().abs(), int(masks[i].sum())).indices
        assert bool(masks[i][top].all())
    # merge = OR of the pre-merge masks (fact 6)
    pre = {i: m.layers[i].bn.weight.detach().abs() for i in (1, 3)}
    masks = select.slim(m, g, 0.5, layer_keep=0.0)
    thr = select.global_threshold(select.gammas(m, g.prunable), 0.5)
    assert torch.equal(masks[1], (pre[1] > thr) | (pre[3] > thr))
    assert torch.equal(masks[1], masks[3])


def _sets(name):
    m = zoo.build(name)
    g = analyze(m)
    ch = lambda ids: sum(m.layers[i].out_channels for i in ids)
    normal = select.normal_pool(g)
    return m, g, (len(normal), ch(normal)), (len(g.prunable), ch(g.prunable))


def test_yolov3_sets_match_spec():
    m, g, normal, slim = _sets("yolov3")
    assert len(g.convs) == 72 and normal == (42, 13376) and slim == (70, 25920)          # fact 3
    assert [i for i in g.convs if i not in g.prunable] == [84, 96]
    assert g.before_shortcut == [3, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48, 51, 54, 57, 60, 64, 67,
                                 70, 73]
    assert sum(m.layers[i].out_channels for i in g.before_shortcut) == 10560
    assert g.shortcut_groups == [[1, 3], [5, 7, 10], [12, 14, 17, 20, 23, 26, 29, 32, 35],
                                 [37, 39, 42, 45, 48, 51, 54, 57, 60], [62, 64, 67, 70, 73]]      # fact 6
    assert g.coupled == []


@pytest.mark.parametrize("name,normal,slim,excluded", [
    ("yolov3-tiny", (10, 3056), (10, 3056), [18]),
    ("yolov4-tiny", (15, 2528), (15, 2528), [2, 10, 18, 32]),
    ("yolov4", (76, 25920), (104, 32256), [107, 117, 127]),
    ("yolov3-spp", (42, 13376), (70, 25920), [77, 91, 103]),
    ("yolov3-mobilenetv3", (19, 9088), (35, 10312), None),
])
def test_zoo_sets_match_spec_table(name, normal, slim, excluded):
    _, g, got_normal, got_slim = _sets(name)
    assert got_normal == normal and got_slim == slim
    if excluded is not None:
        assert [i for i in g.convs if i not in g.prunable] == excluded


def test_yolov4_and_mobilenet_groups():
    m, g, _, _ = _sets("yolov4")
    assert [(gr[0], len(gr), m.layers[gr[0]].out_channels) for gr in g.shortcut_groups] == [
        (4, 2, 64), (14, 3, 64), (27, 9, 128), (58, 9, 256), (89, 5, 512)]
    m, g, _, _ = _sets("yolov3-mobilenetv3")
    assert [m.layers[gr[0]].out_channels for gr in g.shortcut_groups] == [16, 24, 40, 80, 112, 160]


def test_fully_protected_model_raises_clearly():
    m = zoo.build("yolov3-mobile")                                    # every conv sits inside [mobile] blocks
    g = analyze(m)
    assert g.prunable == []
    with pytest.raises(ValueError, match="pool of prunable layers is empty"):
        select.slim(m, g, 0.5)
