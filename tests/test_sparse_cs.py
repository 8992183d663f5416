"""Continuous Sparsification: the soft mask tends to the ticket mask as the temperature grows, the seed's
constants (s0 = -0.1, scale 2.1052, τ = 200^(1/99)), mask resetting between rounds, the mask optimizer kept out of
the trainer's, and a final model with exactly the reported number of non-zero weights (pruning-spec §13, §19 fact 19)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import train
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.registry import PRUNERS
from yolocomp.sparse import costs, cs
from yolocomp.sparse import masks as M

H = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)


def _model(seed: int = 0) -> Darknet:
    torch.manual_seed(seed)
    return Darknet.from_cfg(tiny_cfg()).eval()


def _conv(s0: float = -0.1) -> cs.SoftMaskConv2d:
    torch.manual_seed(0)
    c = cs.SoftMaskConv2d(torch.nn.Conv2d(4, 6, 3, padding=1), s0)
    with torch.no_grad():
        c.score.copy_(torch.randn_like(c.score) * 0.3)
        c.score[c.score.abs() < 1e-3] = 0.01    # keep the scores away from the discontinuity at 0
    return c


def test_soft_mask_tends_to_the_hard_mask_as_temperature_grows():
    c = _conv()
    hard = (c.score > 0).float()
    errors = []
    for beta in (1, 10, 100, 1e3, 1e5):
        c.beta = beta
        errors.append(float((c.mask().detach() * cs.sigmoid(c.s0) - hard).abs().max()))
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.4
    assert errors[-1] < 1e-6                        # a 0/1 mask once the 1/σ(s0) scale is taken out
    c.ticket = True
    assert torch.equal(c.mask() * cs.sigmoid(c.s0), hard)


def test_seed_constants():
    assert 1 / cs.sigmoid(-0.1) == pytest.approx(2.1052, abs=1e-4)          # the ticket keeps this scale
    tau = cs.temperature(200, 100, 1)
    assert tau == pytest.approx(1.054976, abs=1e-6)
    assert cs.temperature(200, 100, 0) == 1 and cs.temperature(200, 100, 99) == pytest.approx(200)
    with pytest.raises(InputError, match="anneal='batch'"):
        cs.temperature(200, 1, 0)
    assert cs.method_label(1) == "CS 1 iteration" and cs.method_label(3) == "CS 3 iterations"
    assert PRUNERS.names(kind="unstructured", family="cs") == ["cs"]


def test_softened_model_starts_as_the_original_and_keeps_heads_plain():
    model = _model()
    soft = cs.soften(model)
    assert set(cs.soft_convs(soft)) == {f"layers.{i}.conv" for i in range(5)}
    assert type(soft.layers[5].conv) is torch.nn.Conv2d
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(soft.eval()(x), model(x), rtol=1e-5, atol=1e-5)   # m = 1 at β = 1, s = s0
    assert all(float(m.score.min()) == float(m.score.max()) == pytest.approx(-0.1) for m in cs.soft_convs(soft).values())


def test_reset_between_rounds_is_min_with_s0():
    c = _conv()
    before = c.score.detach().clone()
    model = torch.nn.Sequential(c)
    cs.reset_scores(model)
    assert torch.equal(c.score, torch.minimum(before, torch.tensor(-0.1)))


def test_harden_folds_the_ticket_into_plain_weights():
    soft = cs.soften(_model())
    with torch.no_grad():
        for m in cs.soft_convs(soft).values():
            m.score.copy_(torch.randn_like(m.score))
    cs.set_ticket(soft)
    plain = cs.harden(soft)
    assert not cs.soft_convs(plain)
    kept, total = cs.remaining(soft)
    assert M.counts(M.masks_of(plain)) == (kept, total)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(x), soft.eval()(x), rtol=0, atol=0)
    M.remove(plain)
    Darknet.from_cfg(tiny_cfg()).load_state_dict(plain.state_dict())   # plain cfg + weights again


def test_l1_term_and_mask_optimizer_follow_the_spec():
    soft = cs.soften(_model())
    cb = cs.CSCallback(lam=1e-3, mask_lr=0.1)
    cs.freeze_scores(soft)
    opt = torch.optim.SGD([p for p in soft.parameters() if p.requires_grad], lr=0.01)
    for g in opt.param_groups:
        g["initial_lr"] = 0.02
    opt.add_param_group({"params": [], "initial_lr": 0.02, "lr": 0.01})   # groups 0 and 1 as the trainer's
    state = SimpleNamespace(raw_model=soft, ema=None, optimizer=opt, ni=0, epoch=0, world_size=1,
                            args={"epochs": 3}, scaler=torch.amp.GradScaler("cpu", enabled=False))
    cb.on_train_start(state)
    cb.on_epoch_start(state)
    n = sum(m.score.numel() for m in cs.soft_convs(soft).values())
    term = cb.extra_loss(state, None, None)
    assert float(term) == pytest.approx(1e-3 * n, rel=1e-5)            # λ·Σm with m = 1 everywhere
    term.backward()
    before = [m.score.detach().clone() for m in cs.soft_convs(soft).values()]
    cb.after_backward(state)
    assert cb.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.01 / 0.02)   # the weights' schedule
    # gradient of λ·σ(s)/σ(s0) at s = s0: λ·(1 - σ(s0)); first nesterov step moves by lr·(1 + momentum)·grad
    step = 0.05 * 1.9 * 1e-3 * (1 - cs.sigmoid(-0.1))
    for b, m in zip(before, cs.soft_convs(soft).values()):
        torch.testing.assert_close(b - m.score.detach(), torch.full_like(b, step), rtol=1e-4, atol=1e-9)
    state.epoch = 2
    cb.on_epoch_start(state)
    assert cs.soft_convs(soft)["layers.0.conv"].beta == pytest.approx(200)


def test_scores_left_in_the_trainer_optimizer_are_refused():
    soft = cs.soften(_model())
    opt = torch.optim.SGD(list(soft.parameters()), lr=0.01)
    state = SimpleNamespace(raw_model=soft, ema=None, optimizer=opt, world_size=1)
    with pytest.raises(InputError, match="freeze_scores"):
        cs.CSCallback().on_train_start(state)


@pytest.mark.slow
def test_search_and_ticket_end_with_exactly_the_reported_non_zero_weights(tmp_path):
    torch.set_num_threads(2)
    data = synthetic.embedded("smoke")
    model = _model(seed=5).train()

    def fn(m, callbacks, r):
        return train(m, data, 1, 8, 64, tmp_path / f"r{r}", hyp=H, callbacks=callbacks, seed=r, progress=False)

    # a strong push (λ, mask lr) so that one short round prunes something
    final, rounds, _ = cs.continuous_sparsification(model, fn, rounds=1, s0=0.05, lam=2e-3, mask_lr=5.0,
                                                    anneal="batch", reset_epoch=0)
    kept, total = rounds[-1].kept, rounds[-1].total
    assert 0 < kept < total
    masks = M.masks_of(final)
    assert M.counts(masks) == (kept, total)
    nz = sum(int(torch.count_nonzero(final.get_submodule(n).weight)) for n in masks)
    assert nz == kept
    heads = sum(int(torch.count_nonzero(p)) for n, p in final.named_parameters() if not n.startswith(tuple(masks)))
    assert costs.count_nonzero(final) == kept + heads
    assert not any(p.requires_grad is False for p in model.parameters())    # the input model is untouched
