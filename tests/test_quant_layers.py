"""Quantized convs and conv-BN folding: acceptance facts 16-18 and 20 of quant-kd-spec §8, plus the model-level
plumbing (state-dict names, stripping, dequantized export copy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from yolocomp.engine.optim import lr_factor
from yolocomp.models import zoo
from yolocomp.models.layers_darknet import ConvLayer, MaxPoolLayer, UpsampleLayer
from yolocomp.quant import dequantized, quantize_model, set_schedule, spurs_quant_hyp, training_forwards
from yolocomp.quant.fake import AffineFakeQuant, Pow2FakeQuant
from yolocomp.quant.layers import FoldedQConv2d, QConv2d, QuantAct, packed_mib, strip_quantizers

torch.manual_seed(0)


# the fake-quant graphs are many small ops: on a shared 2-core machine one thread is several times faster
pytestmark = pytest.mark.usefixtures("one_thread")


def _unit(bias: bool = False) -> ConvLayer:
    u = ConvLayer(4, 6, 3, 1, 1, 1, batch_normalize=not bias, activation="leaky")
    if not bias:
        with torch.no_grad():
            u.bn.running_mean.uniform_(-0.5, 0.5)
            u.bn.running_var.uniform_(0.5, 2.0)
            u.bn.weight.uniform_(0.5, 1.5)
            u.bn.bias.uniform_(-0.3, 0.3)
    return u.eval()


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("yolov3-tiny", 2).eval()


def test_fact16_fold_formula_and_bypass_equivalence():
    u = _unit()
    x = torch.randn(2, 4, 8, 8)
    ref = u(x)
    folded = FoldedQConv2d(u.conv, u.bn)
    folded.eval()
    w, b = folded.folded()
    s = u.bn.weight / torch.sqrt(u.bn.running_var + 1e-5)
    assert torch.allclose(w, u.conv.weight * s.view(-1, 1, 1, 1))
    assert torch.allclose(b, u.bn.bias - u.bn.running_mean * s)
    assert torch.allclose(u.act(folded(x)), ref, atol=1e-5)
    bypass = FoldedQConv2d(u.conv, u.bn, wq=AffineFakeQuant(32, symmetric=True, channels=6),
                           aq_in=AffineFakeQuant(32), aq_out=AffineFakeQuant(32)).eval()
    assert torch.allclose(u.act(bypass(x)), ref, atol=1e-5)
    hb = _unit(bias=True)
    assert torch.allclose(hb.act(FoldedQConv2d(hb.conv, None).eval()(x)), hb(x), atol=1e-6)


def test_fact16_whole_model_fold_bypassed(tiny):
    x = torch.rand(1, 3, 64, 64)
    q = quantize_model(tiny, "qat8", bits=32).eval()
    assert torch.allclose(q(x), tiny(x), atol=1e-4)
    assert torch.allclose(dequantized(q)(x), tiny(x), atol=1e-4)
    assert torch.allclose(dequantized(tiny)(x), tiny(x), atol=1e-4)


def test_fact17_batch_stats_then_running_momentum_001_unbiased():
    u = _unit()
    f = FoldedQConv2d(u.conv, u.bn).train()
    r_mean, r_var = u.bn.running_mean.clone(), u.bn.running_var.clone()
    x = torch.randn(4, 4, 8, 8)
    y = f(x)
    y0 = u.conv(x)
    mu, var = y0.mean((0, 2, 3)), y0.var((0, 2, 3), unbiased=True)
    assert torch.allclose(f.bn.running_mean, 0.99 * r_mean + 0.01 * mu, atol=1e-6)
    assert torch.allclose(f.bn.running_var, 0.99 * r_var + 0.01 * var, atol=1e-5)
    s = u.bn.weight / torch.sqrt(var + 1e-5)
    want = (y0 - mu.view(1, -1, 1, 1)) * s.view(1, -1, 1, 1) + u.bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, want, atol=1e-5)           # folded with the batch statistics
    f.bn_freeze_step.fill_(int(f.step))                 # from now on the running statistics
    run = f.bn.running_mean.clone()
    y2 = f(x)
    assert torch.equal(f.bn.running_mean, run)
    s2 = u.bn.weight / torch.sqrt(f.bn.running_var + 1e-5)
    want2 = (y0 - run.view(1, -1, 1, 1)) * s2.view(1, -1, 1, 1) + u.bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(y2, want2, atol=1e-5)


def test_corrected_fold_equals_batch_stat_fold_without_quantizers():
    u = _unit()
    x = torch.randn(4, 4, 8, 8)
    a = FoldedQConv2d(u.conv, _copy_bn(u.bn)).train()
    b = FoldedQConv2d(u.conv, _copy_bn(u.bn), mode="correct").train()
    assert torch.allclose(a(x), b(x), atol=1e-4)
    assert torch.allclose(a.bn.running_var, b.bn.running_var, atol=1e-5)
    assert torch.allclose(a.bn.running_mean, b.bn.running_mean, atol=1e-6)
    a.eval()
    b.eval()
    assert torch.allclose(a(x), b(x), atol=1e-5)


def _copy_bn(bn):
    import copy

    return copy.deepcopy(bn)


def test_fact17_schedule_steps(tiny):
    steps = training_forwards(800, 16, 3)
    assert steps == 150
    q = quantize_model(tiny, "pow2", total_steps=steps)
    folds = [m for m in q.modules() if isinstance(m, FoldedQConv2d)]
    acts = [m.aq for m in q.modules() if isinstance(m, QuantAct)]
    assert folds and all(int(m.bn_freeze_step) == 135 for m in folds)
    assert all(int(m.wq.freeze_step) == 15 for m in folds) and all(int(a.freeze_step) == 15 for a in acts)
    set_schedule(q, None)
    assert all(int(m.bn_freeze_step) == -1 for m in folds)


def test_ranges_freeze_after_their_step():
    q = Pow2FakeQuant(8, "ema").train()
    q.freeze_step.fill_(2)
    q(torch.full((4,), 1.0))
    q(torch.full((4,), 3.0))
    frozen = q.tracker.max_val.item()
    q(torch.full((4,), 100.0))
    assert q.tracker.max_val.item() == frozen == pytest.approx(1.2)


def test_fact18_pow2_block_outputs_on_grid(tiny):
    q = quantize_model(tiny, "pow2").train()
    x = torch.rand(2, 3, 64, 64)
    for _ in range(2):
        q(x)
    q.eval()
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, i=i: seen.__setitem__(i, o)) for i, m in enumerate(q.layers)]
    q(x)
    for h in hooks:
        h.remove()
    convs = [i for i, m in enumerate(q.layers) if isinstance(m, ConvLayer)]
    assert {i for i in convs if q.layers[i + 1].section_type == "yolo"} <= set(q.quant_spec["layers"])

    def on_grid(t: torch.Tensor, s: float) -> bool:
        k = t / s
        return torch.equal(k, k.round()) and k.min() >= -128 and k.max() <= 127

    for i in convs:
        assert on_grid(seen[i], q.layers[i].act.aq.scale().item()), i
    for i, m in enumerate(q.layers):
        if isinstance(m, (MaxPoolLayer, UpsampleLayer)):
            src = m.inputs[0]
            assert on_grid(seen[i], q.layers[src].act.aq.scale().item()), i


def test_fact20_spurs_quantized_optimizer():
    h = spurs_quant_hyp()
    assert (h.optimizer, h.lr0, h.lr_schedule, h.lr_gamma, h.warmup) == ("adam", 5e-5, "multistep", 0.3, "none")
    for epochs in range(1, 301):
        for e in range(epochs):
            passed = sum(e >= m for m in (epochs // 5, epochs // 2, int(epochs // 1.25)))
            assert lr_factor(h.lr_schedule, e, epochs, h.lrf, h.lr_milestones, h.lr_gamma) == pytest.approx(
                0.3 ** passed)


def test_era_a_schemes_keep_float_names_and_strip_back(tiny):
    for scheme in ("bnn", "bwn", "dorefa"):
        q = quantize_model(tiny, scheme)
        assert set(q.state_dict()) == set(tiny.state_dict())
        assert any(isinstance(m, QConv2d) for m in q.modules())
        back = strip_quantizers(q)
        assert not any(isinstance(m, QConv2d) for m in back.modules())
        back.load_state_dict(tiny.state_dict())
        x = torch.rand(1, 3, 64, 64)
        assert torch.allclose(back.eval()(x), tiny(x))


def test_only_selected_layers_change(tiny):
    q = quantize_model(tiny, "bwn", qlayers=8)
    assert q.quant_spec["layers"] == [8, 10, 12]
    for i, m in enumerate(q.layers):
        if isinstance(m, ConvLayer):
            assert isinstance(m.conv, QConv2d) == (i in (8, 10, 12))
    assert tiny.layers[8].conv.__class__ is nn.Conv2d           # the original is untouched (a copy is returned)


def test_packed_size(tiny):
    fp = packed_mib(tiny)
    assert packed_mib(quantize_model(tiny, "qat8")) == pytest.approx(fp / 4, rel=0.02)
    assert packed_mib(quantize_model(tiny, "bnn", heads=True)) < fp / 25


def test_quantized_model_trains_and_backprops(tiny):
    for scheme in ("qat8", "pow2", "dorefa"):
        q = quantize_model(tiny, scheme, total_steps=4).train()
        out = q(torch.rand(2, 3, 64, 64))
        sum(o.square().mean() for o in out).backward()
        grads = [p.grad for p in q.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), scheme
