"""Exact resume: a run killed after epoch 1 of 3 and resumed ends with the same bytes as an uninterrupted run."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.callbacks import Callback
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import train
from yolocomp.models import Darknet
from yolocomp.seed import set_all

H = hyp("default", lr0=0.02, warmup_iters=4, warmup_epochs=1, conf_thres=0.1, nominal_batch=16)


class Kill(Callback):
    """Raises when epoch ``at`` starts, i.e. after the checkpoint of the epoch before it was written."""

    def __init__(self, at: int):
        self.at = at

    def on_epoch_start(self, s):
        if s.epoch == self.at:
            raise KeyboardInterrupt


def test_resume_is_bit_exact(tmp_path):
    torch.set_num_threads(2)
    data = synthetic.embedded("smoke")
    kw = {"hyp": H, "eval_every": 0, "multi_scale": True, "progress": False, "seed": 3}
    full = train(tiny_cfg(), data, 3, 8, 64, tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(), data, 3, 8, 64, tmp_path / "cut", callbacks=[Kill(1)], **kw)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 0
    resumed = train(tiny_cfg(), data, 3, 8, 64, tmp_path / "cut", resume=True, **{**kw, "hyp": None})

    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for key in ("raw_model", "model"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert (a["step"], a["ni"], a["ema_updates"]) == (b["step"], b["ni"], b["ema_updates"])
    assert a["ni"] == 9 and 4 < a["step"] < 9          # accumulation 1 -> 2 over the warm-up, flush per epoch
    ma, mb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(ma[i]["momentum_buffer"], mb[i]["momentum_buffer"]) for i in ma)
    set_all(3)                                          # the weights moved, so the equality above means something
    assert not torch.equal(a["raw_model"]["layers.0.conv.weight"], Darknet.from_cfg(tiny_cfg()).layers[0].conv.weight)
    pd.testing.assert_frame_equal(full.history.drop(columns="time_s"), resumed.history.drop(columns="time_s"))
    assert list(pd.read_csv(tmp_path / "cut" / "results.csv").epoch) == [0, 1, 2]
