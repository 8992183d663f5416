"""Layer pruning of residual blocks and layer + channel pruning (pruning-spec §7, §8, §19 facts 15-17)."""

from __future__ import annotations

import copy

import pytest
import torch
from yolocomp.bench.cost import count_params
from yolocomp.errors import InputError
from yolocomp.models import Darknet, parse_cfg
from yolocomp.models.layers_darknet import ConvLayer
from yolocomp.models.zoo import CFG_DIR
from yolocomp.prune.layers import (
    block_candidates,
    layer_channel_prune,
    layer_prune,
    rank_blocks,
    remove_layers,
)

YOLOV3_BLOCKS = [3, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48, 51, 54, 57, 60, 64, 67, 70, 73]


@pytest.fixture(scope="module")
def v3():
    torch.manual_seed(0)
    m = Darknet.from_cfg(CFG_DIR / "yolov3.cfg")
    with torch.no_grad():
        for layer in m.layers:
            if isinstance(layer, ConvLayer) and layer.bn is not None:
                layer.bn.weight.uniform_(0.5, 1.5)
                layer.bn.bias.normal_(0, 0.1)
                layer.bn.running_mean.normal_(0, 0.1)
                layer.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _heads(model: Darknet, x: torch.Tensor) -> list[torch.Tensor]:
    """Eval-mode raw output maps of the convs feeding the [yolo] layers (the decoded output exponentiates)."""
    got = []
    hooks = [model.layers[i - 1].register_forward_hook(lambda m, i, o: got.append(o)) for i in model.yolo_indices]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return got


def _set_gamma(model: Darknet, blocks, gamma: float, beta: float | None) -> None:
    with torch.no_grad():
        for t in blocks:
            model.layers[t].bn.weight.fill_(gamma)
            if beta is not None:
                model.layers[t].bn.bias.fill_(beta)


def test_candidates_and_counts(v3):
    assert block_candidates(v3) == YOLOV3_BLOCKS
    assert block_candidates(Darknet.from_cfg(CFG_DIR / "yolov4.cfg")).__len__() == 23
    tiny = Darknet.from_cfg(CFG_DIR / "yolov3-tiny.cfg")
    assert block_candidates(tiny) == []
    with pytest.raises(InputError, match="0 removable"):
        layer_prune(tiny, 1)
    with pytest.raises(InputError, match="23 removable"):
        layer_prune(v3, 24)


def test_default_yolov3_eight_blocks_layer_and_param_counts():
    m = Darknet.from_cfg(CFG_DIR / "yolov3.cfg")       # default init: every γ = 1, ties keep layer order
    r = layer_prune(m, 8, compensate=False)
    assert len(m.layers) == 107 and len(r.model.layers) == 83            # 107 − 3·8 (spec §7.3)
    assert r.blocks == [3, 7, 10, 14, 17, 20, 23, 26]
    assert r.removed == sorted(i for t in r.blocks for i in (t - 1, t, t + 1))
    # a block of width C holds 5C² + 3C parameters: widths 64, 128 ×2, 256 ×5
    removed = sum(5 * c * c + 3 * c for c in [64, 128, 128, 256, 256, 256, 256, 256])
    assert removed == 1_827_520
    assert count_params(m) == 61_949_149 and count_params(r.model) == 61_949_149 - removed
    assert len(r.removed) == 24
    assert len(layer_prune(m, 23, compensate=False).model.layers) == 107 - 3 * 23


def test_ranking_by_mean_abs_gamma(v3):
    m = copy.deepcopy(v3)
    with torch.no_grad():
        m.layers[45].bn.weight.mul_(0.01)
        m.layers[14].bn.weight.copy_(-m.layers[14].bn.weight * 0.02)       # negative γ: |γ| counts
        m.layers[70].bn.weight.mul_(0.03)
    ranked = rank_blocks(m)
    assert [t for t, _ in ranked[:3]] == [45, 14, 70]
    assert ranked[1][1] == pytest.approx(float(v3.layers[14].bn.weight.detach().abs().mean()) * 0.02, rel=1e-6)
    assert layer_prune(m, 3, compensate=False).blocks == [45, 14, 70]


def test_zero_branch_blocks_removed_without_changing_outputs(v3):
    blocks = [10, 35, 60, 73]            # 36 and 61 are route targets, 73 the last block
    m = copy.deepcopy(v3)
    _set_gamma(m, blocks, 0.0, 0.0)      # conv t outputs leaky(0) = 0: the residual branch adds nothing
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    want = _heads(m, x)
    for compensate in (False, True):
        r = layer_prune(m, 4, compensate)
        assert sorted(r.blocks) == blocks and len(r.model.layers) == 95
        for a, b in zip(want, _heads(r.model, x)):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # surviving layers carry their weights over (fact 17)
    assert torch.equal(r.model.layers[r.index_map[75]].conv.weight, m.layers[75].conv.weight)
    assert torch.equal(r.model.layers[r.index_map[105]].conv.bias, m.layers[105].conv.bias)


def test_compensation_reproduces_the_gamma_masked_model(v3):
    # last-stage blocks: every later conv that absorbs their constant is 1×1, so the fold is exact (spec §5.4)
    blocks = [64, 70]
    m = copy.deepcopy(v3)
    with torch.no_grad():
        for t in blocks:
            m.layers[t].bn.weight.mul_(1e-3)
            m.layers[t].bn.bias.normal_(0, 2.0)
    masked = copy.deepcopy(m)
    with torch.no_grad():
        for t in blocks:
            masked.layers[t - 1].bn.weight.zero_()
            masked.layers[t].bn.weight.zero_()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    want = _heads(masked, x)
    comp = layer_prune(m, 2, compensate=True)
    assert comp.blocks == blocks
    for a, b in zip(want, _heads(comp.model, x)):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    err_comp = max(float((a - b).abs().max()) for a, b in zip(want, _heads(comp.model, x)))
    plain = layer_prune(m, 2, compensate=False)
    err_plain = max(float((a - b).abs().max()) for a, b in zip(want, _heads(plain.model, x)))
    assert err_plain > 1e-3 and err_plain > 1000 * err_comp
    assert torch.equal(m.layers[75].bn.running_mean, v3.layers[75].bn.running_mean)    # input not modified


def _spec_reindex(refs: list[int], j: int, removed: list[int]) -> list[int]:
    """TAN's route rule (spec §7.6, fact 16) on the cfg's own ``layers=`` values of route j."""
    out = []
    for k, a in enumerate(refs):
        if a >= 0:
            out.append(a - sum(p <= a for p in removed))
        elif k == 1:
            out.append(a + sum(j + a < p < j for p in removed))
        else:
            out.append(a)                        # a0 = −1, single negative and SPP refs are left alone
    return out


@pytest.mark.parametrize("name, blocks, routes", [
    ("yolov3", [3, 26, 35, 57, 60, 73], 4),
    ("yolov4", [6, 29, 47, 50, 63, 81, 100], 21),
])
def test_route_reindex_matches_spec_formula(name, blocks, routes):
    model = Darknet.from_cfg(CFG_DIR / f"{name}.cfg")
    assert set(blocks) <= set(block_candidates(model))
    removed = sorted(i for t in blocks for i in (t - 1, t, t + 1))
    new, index_map = remove_layers(model, removed)
    assert len(new.layers) == len(model.layers) - 3 * len(blocks)
    sections = parse_cfg((CFG_DIR / f"{name}.cfg").read_text())
    checked = 0
    for j in range(len(model.layers)):
        sec = sections[j + 1]
        if sec.type != "route":
            continue
        nj = index_map[j]
        want = [a if a >= 0 else nj + a for a in _spec_reindex(sec.ints("layers"), j, removed)]
        assert new.layers[nj].inputs == want, (j, sec.options["layers"])
        checked += 1
    assert checked == routes


def test_layer_channel_prune_ranks_surviving_channels(v3):
    masks, r = layer_channel_prune(v3, n=5, percent=0.5, layer_keep=0.01)
    assert len(r.model.layers) == 107 - 15
    for t, score in r.scores.items():
        g = v3.layers[t].bn.weight.detach().abs()[masks[t]]
        assert score == pytest.approx(float(g.mean()), rel=1e-5)
    assert [t for t, _ in sorted(r.scores.items(), key=lambda ts: ts[1])[:5]] == r.blocks
    for old, new in r.index_map.items():
        if isinstance(v3.layers[old], ConvLayer) and old in masks:
            assert r.model.layers[new].out_channels == int(masks[old].sum())
    pruned = sum(int((~mk).sum()) for mk in masks.values())
    assert 0 < pruned <= int(25920 * 0.5) + 1      # `>` prunes int(N·p)+1 before the union merge gives some back
