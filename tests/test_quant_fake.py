"""Quantizer grids, rounding and straight-through gradients: acceptance facts 1-15 of quant-kd-spec §8."""

from __future__ import annotations

import math

import pytest
import torch
from yolocomp.quant.fake import (
    AffineFakeQuant,
    BinaryAct,
    BinaryWeight,
    Pow2FakeQuant,
    RangeTracker,
    TPSQFakeQuant,
    VoteFakeQuant,
    cos_ptq_candidates,
    cos_search,
    dorefa_act,
    dorefa_weight,
    fake_quant,
    nnie_fake_quant,
)
from yolocomp.quant.ste import binarize, pow2_nearest, round_away, round_even, ste_round

torch.manual_seed(0)


# the fake-quant graphs are many small ops: on a shared 2-core machine one thread is several times faster
pytestmark = pytest.mark.usefixtures("one_thread")


def _set_range(q, lo, hi):
    q.tracker.min_val.fill_(lo)
    q.tracker.max_val.fill_(hi)
    q.tracker.updates.fill_(1)
    q.eval()
    return q


def test_fact1_bnn_binarizer_set_and_zero():
    w = torch.randn(64, 32, 3, 3)
    assert set(BinaryWeight("01")(w).unique().tolist()) == {0.0, 1.0}
    assert set(BinaryWeight("pm1")(w).unique().tolist()) == {-1.0, 1.0}
    assert binarize(torch.tensor(0.0), 0.0).item() == 1.0
    assert binarize(torch.tensor(-1e-9), 0.0).item() == 0.0
    assert binarize(torch.tensor(-1e-9)).item() == -1.0   # BinaryNet sign, sign(0) = +1
    assert binarize(torch.tensor(0.0)).item() == 1.0


def test_fact2_bwn_alpha_and_kernel():
    w = torch.tensor([[-0.5, 0.25], [0.75, -1.0]])
    out = BinaryWeight("01", "tensor")(w)
    assert torch.equal(out, torch.tensor([[0.0, 0.625], [0.625, 0.0]]))
    xnor = BinaryWeight("pm1", "tensor")(w)
    assert torch.equal(xnor, torch.tensor([[-0.625, 0.625], [0.625, -0.625]]))
    per_ch = BinaryWeight("pm1", "channel")(torch.tensor([[[[-0.5]], [[0.25]]], [[[0.75]], [[-1.0]]]]))
    assert per_ch.flatten().tolist() == [-0.375, 0.375, 0.875, -0.875]


@pytest.mark.parametrize("module", [BinaryWeight("01"), BinaryWeight("pm1"), BinaryAct()])
def test_fact3_binarizer_ste_window(module):
    w = torch.tensor([-2.0, -1.0, -0.999, -0.5, 0.0, 0.5, 0.999, 1.0, 3.0], requires_grad=True)
    module(w).backward(torch.ones(9))
    assert w.grad.tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0]


def test_bwn_alpha_receives_gradient():
    w = torch.tensor([0.5, -0.25], requires_grad=True)
    BinaryWeight("01", "tensor")(w).sum().backward()
    # d/dw of mean|w|·1[w>=0] summed: α-term sign(w)/2 · Σb = ±0.5, plus STE of the binarizer α·1
    assert w.grad.tolist() == pytest.approx([0.375 + 0.5, 0.375 - 0.5])


@pytest.mark.parametrize("k", [2, 3, 4, 8])
def test_fact4_dorefa_weight_grid(k):
    w = torch.randn(32, 16, 3, 3)
    q = dorefa_weight(w, k)
    n = 2 ** k - 1
    idx = (q + 1) * n / 2
    assert torch.allclose(idx, idx.round(), atol=1e-4) and idx.min() >= -1e-4 and idx.max() <= n + 1e-4
    assert q.unique().numel() <= 2 ** k
    top = torch.tanh(w).abs().argmax()
    assert abs(q.flatten()[top].item()) == 1.0
    if k == 2:
        assert sorted(round(v, 6) for v in q.unique().tolist()) == [-1.0, round(-1 / 3, 6), round(1 / 3, 6), 1.0]


def test_fact5_dorefa_activation_grid_and_values():
    x = torch.linspace(-5, 20, 10001)
    a = dorefa_act(x, 3)
    assert torch.allclose(a * 7, (a * 7).round()) and a.min() == 0 and a.max() == 1
    assert (a[x <= 0] == 0).all() and (a[x >= 10] == 1).all()
    assert dorefa_act(torch.tensor(5.0), 8).item() == pytest.approx(128 / 255)
    img = torch.rand(1, 3, 64, 64)
    img[0, 0, 0, 0], img[0, 0, 0, 1] = 0.0, 1.0
    assert dorefa_act(img, 8).unique().numel() == 27


def test_dorefa_ste_and_clamp_gradient():
    x = torch.tensor([-1.0, 3.3, 5.0, 12.0], requires_grad=True)
    dorefa_act(x, 4).sum().backward()
    assert x.grad.tolist() == pytest.approx([0.0, 0.1, 0.1, 0.0])


def test_fact6_halo_32_bit_still_normalises_and_1_bit_is_sign_mean():
    w = torch.randn(8, 4, 3, 3)
    q32 = dorefa_weight(w, 32)
    assert not torch.allclose(q32, w)
    t = torch.tanh(w)
    assert torch.allclose(q32, t / t.abs().max(), atol=1e-6)
    assert torch.equal(dorefa_weight(w, 1), torch.sign(w) * w.abs().mean())


def test_fact7_micronet_asymmetric_quantizer():
    q = _set_range(AffineFakeQuant(8), -1.3, 2.7)
    scale, zp = q.qparams()
    assert 1 / scale.item() == pytest.approx(255 / 4)          # the seed's s = 255/4
    assert zp.item() == 83                                     # the seed's zp = round(-1.3 s) = -83
    assert q(torch.tensor(0.0)).item() == 0.0
    x = torch.linspace(-1.3, 2.7, 5000)
    assert q(x).unique().numel() == 256


def test_affine_symmetric_per_channel_weights_match_onnxruntime_rule():
    w = torch.randn(4, 3, 3, 3)
    q = AffineFakeQuant(8, symmetric=True, channels=4, tracker="global")
    out = q(w)
    scale = w.abs().amax((1, 2, 3)) / 127
    k = out / scale.view(-1, 1, 1, 1)
    assert torch.allclose(k, k.round(), atol=1e-3) and k.abs().max() <= 127 + 1e-3


def test_affine_ste_passes_inside_range_only():
    q = _set_range(AffineFakeQuant(8), -1.0, 1.0)
    x = torch.tensor([-2.0, -0.5, 0.3, 0.99, 1.5], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("symmetric,channels", [(False, None), (True, 4), (True, None)])
def test_fused_affine_kernel_equals_the_explicit_one(symmetric, channels):
    q = AffineFakeQuant(8, symmetric=symmetric, channels=channels, tracker="minmax")
    w = torch.randn(4, 3, 5, 5) * 2
    q(w)                                                       # observe
    q.eval()
    x = (torch.randn(4, 3, 5, 5) * 3).requires_grad_()
    scale, zp = q.qparams()
    view = (lambda t: t.view(-1, 1, 1, 1)) if channels else (lambda t: t)
    ref = fake_quant(x, view(scale), view(zp), q.qmin, q.qmax, "even")
    fused = q(x)
    # the kernel multiplies by 1/scale where fake_quant divides: an input within an ulp of a rounding boundary
    # may land one step apart, nothing else
    differ = (fused - ref).abs() > 1e-6
    assert differ.float().mean() < 0.01 and ((fused - ref).abs() <= view(scale) * 1.0001).all()
    g_ref, = torch.autograd.grad(ref.sum(), x)
    g_fused, = torch.autograd.grad(fused.sum(), x)
    assert (g_ref != g_fused).float().mean() < 0.01


def test_fact8_global_range_tracker_is_not_cumulative():
    t = RangeTracker("global")
    t.update(torch.tensor([-3.0, 5.0]))
    t.update(torch.tensor([1.0, 2.0]))
    assert (t.min_val.item(), t.max_val.item()) == (0.0, 2.0)
    t.update(torch.tensor([-1.0, -0.5]))
    assert (t.min_val.item(), t.max_val.item()) == (-1.0, 0.0)


def test_fact9_averaged_range_tracker():
    t = RangeTracker("ema", momentum=0.1)
    t.update(torch.tensor([-2.0, 4.0]))
    assert (t.min_val.item(), t.max_val.item()) == (-2.0, 4.0)
    t.update(torch.tensor([0.0, 14.0]))
    assert t.min_val.item() == pytest.approx(-1.8) and t.max_val.item() == pytest.approx(5.0)


def test_minmax_and_percentile_trackers():
    t = RangeTracker("minmax")
    for b in (torch.tensor([-1.0, 2.0]), torch.tensor([-3.0, 1.0])):
        t.update(b)
    assert (t.min_val.item(), t.max_val.item()) == (-3.0, 2.0)
    p = RangeTracker("percentile", percentile=99.0)
    x = torch.linspace(0, 1, 10001)
    p.update(x)
    assert p.max_val.item() == pytest.approx(0.99, abs=1e-3) and p.min_val.item() == pytest.approx(0.01, abs=1e-3)


@pytest.mark.parametrize("v,want", [(5, 4), (6, 4), (6.0001, 8), (3, 2), (3.0001, 4), (0.75, 0.5), (0.76, 1),
                                    (1, 1)])
def test_fact10_pow2_nearest(v, want):
    assert pow2_nearest(torch.tensor(float(v))).item() == want


def test_fact11_pow2_8bit_grid_and_saturation():
    q = _set_range(Pow2FakeQuant(8, "ema"), -5.0, 5.0)
    assert q.scale().item() == 2.0 ** -5
    assert q(torch.tensor(3.99)).item() == 3.96875
    assert q(torch.tensor(-5.0)).item() == -4.0
    x = torch.linspace(-6, 6, 20001)
    k = q(x) / 2.0 ** -5
    assert torch.equal(k, k.round()) and k.min() == -128 and k.max() == 127 and k.unique().numel() == 256
    with pytest.raises(ValueError):
        Pow2FakeQuant(1)
    assert torch.equal(Pow2FakeQuant(32)(x), x)


def test_fact12_half_away_rounding():
    q = _set_range(Pow2FakeQuant(8, "ema"), -4.0, 4.0)     # scale 2^-5
    assert q(torch.tensor(2.0 ** -6)).item() == 2.0 ** -5
    assert q(torch.tensor(-(2.0 ** -6))).item() == -(2.0 ** -5)
    assert torch.round(torch.tensor(0.5)).item() == 0.0
    assert round_away(torch.tensor([0.5, -0.5, 2.5])).tolist() == [1.0, -1.0, 3.0]
    assert round_even(torch.tensor([0.5, 1.5, 2.5])).tolist() == [0.0, 2.0, 2.0]
    x = torch.tensor([0.5, 1.5], requires_grad=True)
    ste_round(x, "away").sum().backward()
    assert x.grad.tolist() == [1.0, 1.0]


def test_fact13_tpsq():
    q = TPSQFakeQuant(8, init=4.0)
    out = q(torch.tensor([4.0, 1.0, -10.0]))
    assert out.tolist() == [3.96875, 1.0, -3.96875]
    x = torch.linspace(-8, 8, 4001)
    k = q(x) * 128 / 4
    assert torch.allclose(k, k.round()) and k.abs().max() == 127 and k.round().unique().numel() == 255
    q3 = TPSQFakeQuant(8, init=3.0)
    q3(torch.randn(10))
    assert q3.scale.item() == 2.0   # pow2_nearest(3) = 2, written back into S
    s = q3.scale.item()
    assert s == 2 ** round(math.log2(s))
    warm = TPSQFakeQuant(8, warmup=True)
    warm(torch.randn(1000) * 3)
    assert warm.scale.item() == 2 ** round(math.log2(warm.scale.item())) and bool(warm.warmed)


def test_fact14_cos_ptq_candidates_and_vote():
    conv = cos_ptq_candidates(8)
    assert conv == [2.0 ** e for e in range(-5, 10)] and len(conv) == 15
    assert cos_ptq_candidates(8, "shortcut") == [2.0 ** e for e in range(8)]
    q = VoteFakeQuant(8)
    q.votes[3] = 2
    q.votes[6] = 2
    assert q.chosen() == 3                        # tie -> the smallest exponent
    q.votes[6] = 3
    assert q.chosen() == 6
    x = torch.randn(4096)
    i = cos_search(x, conv)
    assert conv[i] >= x.abs().max() / 4          # a sensible range: not one that clips almost everything
    fresh = VoteFakeQuant(8)
    fresh.calibrating = True
    for _ in range(3):
        fresh(x)
    assert int(fresh.votes.sum()) == 3 and fresh.chosen() == i


def test_fact15_nnie_log_grid():
    x = torch.randn(5000) * 3
    y = nnie_fake_quant(x)
    z = torch.round(16 * torch.log2(x.abs().max())) - 127
    nz = y[y != 0]
    k = 16 * torch.log2(nz.abs()) - z
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert k.max() <= 127 + 1e-3 and k[nz > 0].min() >= -1e-3 and k[nz < 0].min() >= 1 - 1e-3
    assert (torch.sign(y[y != 0]) == torch.sign(x[y != 0])).all()
