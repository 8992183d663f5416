"""Hyperparameter presets (training-recipe §2.3, §3, §11) and accumulation (§3.3, §12)."""

import dataclasses

import pytest
from yolocomp.engine.hyp import PRESETS, Hyp, accumulate_steps, hyp
from yolocomp.errors import InputError


def test_default_is_uly_v8_recipe():
    h = hyp()
    assert h == hyp("uly-v8")
    assert (h.giou, h.obj, h.cls, h.cls_nc_scale, h.cls_pw, h.obj_pw, h.iou_t) == (3.54, 64.3, 37.4, True, 1, 1, 0.20)
    assert (h.lr0, h.momentum, h.weight_decay, h.lrf, h.lr_schedule) == (0.01, 0.937, 5e-4, 0.05, "cosine")
    assert (h.warmup_epochs, h.warmup_iters, h.warmup_bias_lr, h.warmup_momentum) == (3.0, 500, 0.1, 0.9)
    assert (h.box_loss, h.gr_schedule, h.fl_gamma, h.label_smoothing, h.bias_init) == ("giou", "burn-in", 0, 0, "uly")
    assert (h.hsv_h, h.hsv_s, h.hsv_v, h.fliplr, h.degrees) == (0.0138, 0.678, 0.36, 0.5, 0.0)
    assert h.ema and h.nominal_batch == 64 and h.accumulate is None and h.obj_balance == ()


def test_seed_presets():
    tan = hyp("tan")
    assert (tan.giou, tan.obj, tan.cls, tan.cls_pw, tan.obj_pw, tan.iou_t) == (1.582, 21.35, 27.76, 1.446, 3.941, 0.2635)
    assert (tan.lr0, tan.momentum, tan.weight_decay, tan.accumulate) == (0.002324, 0.97, 4.569e-4, 2)
    assert not tan.cls_nc_scale and tan.gr_schedule == "fixed" and tan.gr == 0 and tan.param_groups == 2
    andrey = hyp("andrey")
    assert (andrey.iou_t, andrey.weight_decay, andrey.lrf, andrey.accumulate, andrey.patience) == (0.225, 4.84e-4, -4, 8, 75)
    assert (andrey.degrees, andrey.translate, andrey.scale, andrey.shear) == (1.98, 0.05, 0.05, 0.641)
    assert andrey.gr_schedule == "epoch-cosine" and not andrey.shuffle and not andrey.cls_nc_scale
    spurs = hyp("spurs")
    assert not spurs.ema and spurs.giou == 3.54 and spurs.cls_nc_scale
    v9 = hyp("uly-v9")
    assert (v9.box_loss, v9.assign, v9.anchor_t, v9.giou, v9.obj, v9.cls) == ("ciou", "wh-ratio", 4.0, 0.05, 1.0, 0.5)
    assert v9.obj_balance == (4.0, 1.0, 0.4, 0.1) and v9.loss_scale == "bs" and v9.lrf == 0.2
    assert (v9.warmup_iters, v9.warmup_momentum, v9.gr) == (1000, 0.8, 1.0)
    assert set(PRESETS) == {"default", "uly-v8", "spurs", "tan", "andrey", "uly-v9"}


def test_overrides_and_errors():
    h = hyp("tan", lr0=0.005, fl_gamma=1.5)
    assert h.lr0 == 0.005 and h.fl_gamma == 1.5 and h.giou == 1.582
    with pytest.raises(InputError, match=r"unknown hyperparameter\(s\) lr_0.*valid: .*lr0"):
        hyp(lr_0=0.1)
    with pytest.raises(InputError, match="unknown hyp preset 'v7'"):
        hyp("v7")
    with pytest.raises(InputError, match="box_loss='diou' is not one of giou, ciou"):
        hyp(box_loss="diou")
    with pytest.raises(InputError, match="iou_t must be > 0"):
        hyp(iou_t=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.lr0 = 1.0


def test_accumulate_matches_recipe_table():
    h = Hyp()
    got = {bs: accumulate_steps(h, bs) for bs in (8, 16, 20, 24, 32, 52, 64, 96, 128)}
    assert got == {8: 8, 16: 4, 20: 3, 24: 3, 32: 2, 52: 1, 64: 1, 96: 1, 128: 1}
    assert accumulate_steps(hyp("tan"), 20) == 2 and accumulate_steps(hyp("andrey"), 8) == 8
