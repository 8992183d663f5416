"""BN-γ sparsity training: the sets of --prune 0/1/2, the L1 step through the trainer's AMP path, the s schedules,
γ statistics and figures (pruning-spec §1, §3, §19 facts 1-3)."""

from __future__ import annotations

import copy

import matplotlib
import numpy as np
import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.callbacks import CallbackList, TrainState
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import _step, train
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.models.zoo import CFG_DIR
from yolocomp.prune.graph import analyze
from yolocomp.prune.sparsity import BNSparsity, gamma_histogram_figure, gamma_stats, sparsity_set

matplotlib.use("Agg")


def _model(name: str) -> Darknet:
    return Darknet.from_cfg(CFG_DIR / f"{name}.cfg")


# spec §3 table: (layers, channels) of the normal set (mode 0) and the shortcut/slim set (mode 1)
@pytest.mark.parametrize("name, normal, slim", [
    ("yolov3", (42, 13376), (70, 25920)),
    ("yolov3-spp", (42, 13376), (70, 25920)),
    ("yolov3-tiny", (10, 3056), (10, 3056)),
    ("yolov4", (76, 25920), (104, 32256)),
    ("yolov4-tiny", (15, 2528), (15, 2528)),
])
def test_sparsity_sets_match_spec(name, normal, slim):
    m = _model(name)
    g = analyze(m)
    for mode, want in ((0, normal), (1, slim)):
        layers = sparsity_set(g, mode)
        assert (len(layers), sum(m.layers[i].out_channels for i in layers)) == want, (name, mode)


def test_mode2_is_the_conv_before_each_shortcut():
    m = _model("yolov3")
    layers = sparsity_set(analyze(m), 2)
    assert layers == [3, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48, 51, 54, 57, 60, 64, 67, 70, 73]
    assert sum(m.layers[i].out_channels for i in layers) == 10560
    with pytest.raises(InputError, match="mode"):
        sparsity_set(analyze(m), 3)


def _tiny():
    torch.manual_seed(0)
    m = Darknet.from_cfg(tiny_cfg())
    for layer in m.layers:
        if getattr(layer, "bn", None) is not None:
            torch.nn.init.uniform_(layer.bn.weight, -1.0, 1.0)
    return m


def _one_step(model, cb, scaler, lr=0.1, accumulate=1, epoch=0, epochs=10):
    """Backward ``accumulate`` batches through ``scaler`` and take one step with the trainer's own ``_step``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    state = TrainState(model, model, None, opt, scaler, None, torch.device("cpu"), {"epochs": epochs}, epoch=epoch)
    torch.manual_seed(1)
    model.train()
    for _ in range(accumulate):
        out = model(torch.rand(2, 3, 64, 64))
        loss = sum((o.float() ** 2).mean() for o in out) * 1e-3
        scaler.scale(loss).backward()
        state.accumulated += 1
    _step(state, CallbackList([cb] if cb else []))
    return model


def test_l1_step_is_full_strength_with_and_without_grad_scaler():
    base = _tiny()
    g = analyze(base)
    s, lr = 0.01, 0.1
    cb = BNSparsity(g, mode=1, s=s)
    assert cb.layers == g.prunable and len(cb.layers) == 5
    plain = _one_step(copy.deepcopy(base), None, torch.amp.GradScaler("cpu", enabled=False), lr)
    off = _one_step(copy.deepcopy(base), cb, torch.amp.GradScaler("cpu", enabled=False), lr)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, enabled=True)
    on = _one_step(copy.deepcopy(base), cb, scaler, lr)
    assert scaler.is_enabled() and scaler.get_scale() == 2.0 ** 16
    for i in cb.layers:
        sign = torch.sign(base.layers[i].bn.weight.detach())
        delta_off = off.layers[i].bn.weight.detach() - plain.layers[i].bn.weight.detach()
        delta_on = on.layers[i].bn.weight.detach() - plain.layers[i].bn.weight.detach()
        # the L1 moves γ by -lr·s·sign(γ) in both paths; the seeds' scaled-gradient bug would give lr·s/65536
        torch.testing.assert_close(delta_off, -lr * s * sign, atol=1e-6, rtol=0)
        torch.testing.assert_close(delta_on, -lr * s * sign, atol=1e-6, rtol=0)
    # BN of the head-less layers outside the set is untouched; conv weights are untouched
    torch.testing.assert_close(off.layers[0].conv.weight, plain.layers[0].conv.weight)


def test_accumulated_steps_carry_accumulate_times_s():
    base = _tiny()
    cb = BNSparsity(analyze(base), mode=1, s=0.01)
    plain = _one_step(copy.deepcopy(base), None, torch.amp.GradScaler("cpu", enabled=False), accumulate=3)
    pen = _one_step(copy.deepcopy(base), cb, torch.amp.GradScaler("cpu", enabled=False), accumulate=3)
    i = cb.layers[2]
    sign = torch.sign(base.layers[i].bn.weight.detach())
    torch.testing.assert_close(pen.layers[i].bn.weight - plain.layers[i].bn.weight, -0.1 * 3 * 0.01 * sign,
                               atol=1e-6, rtol=0)


def test_sign_of_zero_is_zero():
    m = _tiny()
    cb = BNSparsity(analyze(m), mode=1, s=0.5)
    bn = m.layers[cb.layers[0]].bn
    with torch.no_grad():
        bn.weight[:3] = torch.tensor([0.0, 2.0, -2.0])
    cb.apply(m, 0, 10)
    assert bn.weight.grad[:3].tolist() == [0.0, 0.5, -0.5]


def test_global_decay_schedule():
    cb = BNSparsity(analyze(_tiny()), s=1e-3, schedule="global")
    # s while epoch <= 0.5·E (0-based epochs), 0.01·s after
    assert [cb.s_at(e, 10) for e in range(10)] == [1e-3] * 6 + [1e-5] * 4
    assert cb.s_at(150, 300) == 1e-3 and cb.s_at(151, 300) == pytest.approx(1e-5)
    assert BNSparsity(analyze(_tiny()), s=1e-3).s_at(299, 300) == 1e-3


def test_local_decay_keeps_top_share_at_one_hundredth():
    m = _model("yolov3-tiny")
    g = analyze(m)
    cb = BNSparsity(g, mode=1, s=1e-3, schedule="local")
    bns = [m.layers[i].bn for i in cb.layers]
    n = sum(bn.num_features for bn in bns)
    assert n == 3056
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).double()
    values = (perm + 1) / n * torch.where(perm % 2 == 0, 1.0, -1.0)    # distinct |γ|, mixed signs
    k = 0
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(values[k:k + bn.num_features])
            k += bn.num_features
    early = torch.cat(cb.penalty_grads(bns, 5, 10))
    assert torch.equal(early, 1e-3 * torch.sign(values.float()))
    late = torch.cat(cb.penalty_grads(bns, 6, 10))
    a = values.abs().float()
    t = a.sort().values[int(0.85 * n)]
    want = 1e-3 * torch.sign(values.float()) * (1 - 0.99 * (a >= t).float())
    torch.testing.assert_close(late, want)
    small = late.abs() < 5e-4
    assert int(small.sum()) == n - int(0.85 * n) == 459       # the top ~15% get 0.01·s
    assert late.abs()[small].max() == pytest.approx(1e-5)
    with pytest.raises(InputError, match="mode 1"):
        BNSparsity(g, mode=0, schedule="local")
    with pytest.raises(InputError, match="schedule"):
        BNSparsity(g, schedule="cosine")


def test_gamma_stats_and_figures():
    m = _model("yolov3-tiny")
    cb = BNSparsity(analyze(m), mode=1)
    vals = torch.linspace(0, 1, 3056)
    k = 0
    with torch.no_grad():
        for i in cb.layers:
            bn = m.layers[i].bn
            bn.weight.copy_(vals[k:k + bn.num_features])
            k += bn.num_features
    row = cb.record(m, 0)
    v = vals.double().numpy()
    assert row["epoch"] == 0 and row["s"] == 1e-3 and row["channels"] == 3056
    for q in (1, 5, 25, 50, 75, 95, 99):
        assert row[f"p{q}"] == pytest.approx(float(np.percentile(v, q)), rel=1e-6)
    assert row["below_0.01"] == pytest.approx(float((v < 0.01).mean()))
    assert row == {"epoch": 0, "s": 1e-3, **gamma_stats(m, cb.layers)}
    fig = gamma_histogram_figure(cb.history)
    assert len(fig.axes[0].lines) == 7 and len(fig.axes[1].lines) == 1
    fig2 = gamma_histogram_figure(m, cb.layers)
    assert sum(p.get_height() for p in fig2.axes[0].patches) == 3055     # the one exact zero is off a log axis
    with pytest.raises(InputError, match="empty"):
        gamma_histogram_figure([])


def test_train_with_sparsity_records_each_epoch(tmp_path):
    torch.set_num_threads(2)
    model = Darknet.from_cfg(tiny_cfg())
    cb = BNSparsity(analyze(model), mode=1, s=1e-2, schedule="global", decay_at=0.25)
    h = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)
    train(model, synthetic.embedded("smoke"), 2, 8, 64, tmp_path, hyp=h, progress=False, callbacks=[cb])
    assert [r["epoch"] for r in cb.history] == [0, 1]
    assert [r["s"] for r in cb.history] == [1e-2, pytest.approx(1e-4)]
    assert all(r["channels"] == 8 + 8 + 16 + 16 + 16 for r in cb.history)
