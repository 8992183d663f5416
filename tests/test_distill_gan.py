"""GAN-based distillation (quant-kd-spec §4.6, facts 30-31): discriminator, labels, the generator's gradient path, and
a smoke run in which both the discriminators and the student learn."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from _engine_cfgs import tiny_cfg
from torch import nn
from yolocomp.data import synthetic
from yolocomp.distill import make
from yolocomp.distill.gan import Discriminator, GANDistiller, gan_labels
from yolocomp.engine.callbacks import TrainState
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import train
from yolocomp.errors import InputError
from yolocomp.models import Darknet

H = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)


def test_discriminator_layout():                                  # fact 30
    d = Discriminator(75)
    convs = [m for m in d.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (75, 256, (1, 1), (0, 0)), (256, 512, (1, 1), (0, 0)), (512, 256, (1, 1), (0, 0)),
        (256, 128, (1, 1), (0, 0)), (128, 64, (1, 1), (0, 0))]
    assert all(m.momentum == 0.1 for m in d.features if isinstance(m, nn.BatchNorm2d))
    assert all(m.negative_slope == 0.1 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    assert d.pool.output_size == 7
    assert [(m.in_features, m.out_features) for m in d.classifier if isinstance(m, nn.Linear)] == [
        (3136, 1024), (1024, 128), (128, 1)]
    assert Discriminator(75, kernel_size=3).features[0].padding == (1, 1)
    assert d(torch.rand(3, 75, 5, 5)).shape == (3,)                  # one logit per image, any map size


def test_labels_are_smoothed_and_sometimes_flipped():             # fact 31
    g = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(2000):
        real, fake = gan_labels(4, g)
        if real.min() < 0.5:
            flips += 1
            real, fake = fake, real
        assert 0.7 <= float(real.min()) and float(real.max()) <= 1.0
        assert 0.0 <= float(fake.min()) and float(fake.max()) <= 0.3
    assert 60 <= flips <= 140                                       # p = 0.05 of 2000
    real, fake = gan_labels(4, g, (1.0, 1.0), (0.0, 0.0), 0.0)       # kd_gan.py: hard labels, no flipping
    assert real.tolist() == [1.0] * 4 and fake.tolist() == [0.0] * 4


def _state(model: Darknet) -> TrainState:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for g in opt.param_groups:
        g["initial_lr"] = 0.01
    return TrainState(model, model, None, opt, None, H, torch.device("cpu"), {"img_size": 64})


@pytest.mark.parametrize("detach", [False, True])
def test_generator_gradient_reaches_student_unless_detached(detach):   # fact 31: the seed detaches
    torch.manual_seed(0)
    teacher, student = Darknet.from_cfg(tiny_cfg(width=8)), Darknet.from_cfg(tiny_cfg(width=4))
    cb = GANDistiller(teacher, second_stage=1, detach_generator=detach)
    state = _state(student)
    cb.on_train_start(state)
    cb.on_epoch_start(state)
    assert state.extra["det_loss_gain"] == 0.05
    imgs = torch.rand(4, 3, 64, 64)
    state.extra["imgs"] = imgs
    out = student.train()(imgs)
    g_loss = cb.extra_loss(state, out, torch.zeros(0, 6))
    d_grads = [p.grad.clone() for p in cb.discriminators.parameters()]     # from the discriminator loss
    assert all(g is not None for g in d_grads)
    g_loss.backward()
    student_grad = sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None)
    d_moved = any(not torch.equal(p.grad, g) for p, g in zip(cb.discriminators.parameters(), d_grads))
    assert (student_grad > 0) is (not detach)
    assert d_moved is detach
    state.epoch = 1
    cb.on_epoch_start(state)
    assert state.extra["det_loss_gain"] == 1.0 and cb.extra_loss(state, out, torch.zeros(0, 6)) is None


def test_channel_mismatch_is_refused():
    teacher, student = Darknet.from_cfg(tiny_cfg(width=8)), Darknet.from_cfg(tiny_cfg(width=4))
    cb = GANDistiller(teacher, feature_pairs=[(4, 4)])
    with pytest.raises(InputError, match="channel"):
        cb.on_train_start(_state(student))


@pytest.mark.slow
def test_gan_smoke_run_trains_discriminators_and_student(tmp_path):
    torch.manual_seed(0)
    teacher, student = Darknet.from_cfg(tiny_cfg(width=8)), Darknet.from_cfg(tiny_cfg(width=4))
    s0 = copy.deepcopy(student.state_dict())
    cb = make("gan", teacher, second_stage=1, seed=0)
    d0 = {}
    orig = cb.on_train_start

    def start(state):               # the discriminators exist from on_train_start on: snapshot them there
        orig(state)
        d0.update(copy.deepcopy(cb.discriminators.state_dict()))
    cb.on_train_start = start
    res = train(student, synthetic.embedded("smoke"), 1, 8, 64, tmp_path, hyp=H, callbacks=[cb], progress=False)
    row = pd.read_csv(tmp_path / "results.csv").iloc[-1]
    assert torch.isfinite(torch.tensor([row.d_loss, row.g_loss, row.total])).all()
    d1 = cb.discriminators.state_dict()
    assert any(not torch.equal(d0[k], d1[k]) for k in d0 if k.endswith("weight"))
    s1 = res.model.state_dict()
    assert any(not torch.equal(s0[k], s1[k]) for k in s0 if k.endswith("weight"))
