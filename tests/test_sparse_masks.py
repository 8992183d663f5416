"""Weight masks: masked weights are exactly zero after every optimizer step and in the model the trainer evaluates,
they travel with the checkpoint, and removing them leaves plain weights (pruning-spec §12.1-12.2)."""

from __future__ import annotations

import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine import trainer
from yolocomp.engine.callbacks import Callback, CallbackList, TrainState
from yolocomp.engine.ema import ModelEMA
from yolocomp.engine.hyp import hyp
from yolocomp.errors import InputError
from yolocomp.models import Darknet
from yolocomp.sparse import imp
from yolocomp.sparse import masks as M

H = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)


def _masked_values(model) -> list[torch.Tensor]:
    return [m.weight[~getattr(m, M.MASK)] for m in model.modules() if isinstance(getattr(m, M.MASK, None),
                                                                             torch.Tensor)]


def _all_zero(model) -> bool:
    vals = _masked_values(model)
    return bool(vals) and all(bool((v == 0).all()) for v in vals)


class Spy(Callback):
    """Records, after every optimizer step (after the mask hook), whether the masked weights are zero."""

    def __init__(self):
        self.steps, self.epochs = [], []

    def after_optimizer_step(self, state):
        self.steps.append(_all_zero(state.raw_model))

    def on_epoch_end(self, state, metrics):
        self.epochs.append(_all_zero(state.ema.ema))


@pytest.fixture(scope="module")
def data():
    return synthetic.embedded("smoke")


def _pruned_model(seed: int = 0) -> Darknet:
    torch.manual_seed(seed)
    model = Darknet.from_cfg(tiny_cfg())
    imp.prune(model, 0.6, "global")
    return model


def test_prunable_excludes_only_the_head_convs():
    model = Darknet.from_cfg(tiny_cfg())
    names = list(M.prunable(model))
    assert names == [f"layers.{i}.conv" for i in range(5)]          # layer 5 feeds the [yolo]: kept dense
    assert "layers.5.conv" in M.prunable(model, exclude_heads=False)
    assert M.head_convs(model) == {"layers.5.conv"}


@pytest.mark.slow
def test_masked_weights_are_zero_after_every_step_and_at_evaluation(data, tmp_path, monkeypatch):
    torch.set_num_threads(2)
    model = _pruned_model()
    # un-zero the masked weights on purpose: the callback has to zero them, the trainer's EMA copy included
    with torch.no_grad():
        for m in M.masks_of(model):
            model.get_submodule(m).weight.add_(0.5)
    evaluated = []
    real = trainer._evaluate

    def checked(m, *args, **kwargs):
        evaluated.append(_all_zero(m))
        return real(m, *args, **kwargs)

    monkeypatch.setattr(trainer, "_evaluate", checked)
    spy = Spy()
    res = trainer.train(model, data, 1, 8, 64, tmp_path, hyp=H, callbacks=[M.MaskCallback(), spy], progress=False)
    assert len(spy.steps) == 3 and all(spy.steps)
    assert evaluated == [True] and spy.epochs == [True]
    assert _all_zero(res.model) and _all_zero(res.ema_model)
    # the masks travel with the checkpoint and come back attached
    back, _ = M.load_masked(tmp_path / "last.pt")
    assert set(M.masks_of(back)) == set(M.masks_of(model))
    for name, mask in M.masks_of(model).items():
        assert torch.equal(M.masks_of(back)[name], mask)
    assert _all_zero(back)


@pytest.mark.parametrize("with_callback", [True, False])
def test_trainer_step_keeps_raw_and_ema_masked_only_with_the_callback(with_callback):
    """One optimizer step through the trainer's own ``_step`` (hooks, then the EMA update): with the callback the
    raw and the EMA weights stay exactly zero; without it weight decay and momentum move them."""
    model = _pruned_model()
    with torch.no_grad():   # as after a rewind: masked entries hold values until the callback zeroes them
        for m in M.masks_of(model):
            model.get_submodule(m).weight.add_(0.5)
    ema = ModelEMA(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    state = TrainState(model, model, ema, opt, torch.amp.GradScaler("cpu", enabled=False), None,
                       torch.device("cpu"), {"epochs": 1})
    cbs = CallbackList([M.MaskCallback()] if with_callback else [])
    cbs.fire("on_train_start", state)
    model.train()
    for _ in range(2):
        out = model(torch.rand(2, 3, 64, 64))
        sum((o ** 2).mean() for o in out).backward()
        trainer._step(state, cbs)
    assert _all_zero(model) is with_callback and _all_zero(ema.ema) is with_callback


def test_remove_gives_plain_weights():
    model = _pruned_model()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(M.MASK)}
    masks = M.remove(model)
    assert masks and not M.masks_of(model)
    plain = Darknet.from_cfg(tiny_cfg())
    plain.load_state_dict(model.state_dict())          # strict: no mask keys left
    for k, v in plain.state_dict().items():
        assert torch.equal(v, before[k]), k
    kept, total = M.counts(masks)
    zeros = sum(int((plain.get_submodule(n).weight == 0).sum()) for n in masks)
    assert zeros == total - kept


def test_zeros_are_positive_zero():
    model = Darknet.from_cfg(tiny_cfg())
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(-1.0)
    M.attach(model, {"layers.0.conv": torch.zeros_like(model.layers[0].conv.weight, dtype=torch.bool)})
    w = model.layers[0].conv.weight
    assert bool((w == 0).all()) and not bool(torch.signbit(w).any())


def test_attach_rejects_bad_masks():
    model = Darknet.from_cfg(tiny_cfg())
    with pytest.raises(InputError, match="no weighted module"):
        M.attach(model, {"layers.99.conv": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(InputError, match="shape"):
        M.attach(model, {"layers.0.conv": torch.ones(3, 3, dtype=torch.bool)})
