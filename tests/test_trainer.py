"""Training loop: outputs and loss trend, checkpoint contents, bad weights/data, callback order, AMP on GPU."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.engine.callbacks import Callback
from yolocomp.engine.hyp import hyp
from yolocomp.engine.trainer import load_weights, train
from yolocomp.errors import InputError, WeightsError
from yolocomp.models import Darknet
from yolocomp.models.checkpoint import load_checkpoint

# lr high and warm-up short so two epochs of 3 batches move the loss; conf 0.1 keeps evaluation fast
H = hyp("default", lr0=0.02, warmup_iters=2, warmup_epochs=0.5, conf_thres=0.1, nominal_batch=8)


@pytest.fixture(scope="module")
def data():
    return synthetic.embedded("smoke")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("run")
    return train(tiny_cfg(), data, 2, 8, 64, out, hyp=H, progress=False), out


def test_outputs_and_loss_decreases(run):
    res, out = run
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "results.csv"}
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.epoch) == [0, 1]
    assert {"lr", "box", "obj", "cls", "total", "ap50", "ap", "fitness"} <= set(csv.columns)
    assert csv.total[1] < csv.total[0]
    assert res.history.total.tolist() == pytest.approx(csv.total.tolist())
    assert 0.0 <= csv.ap50[1] <= 1.0


def test_checkpoint_is_plain_and_rebuilds_the_ema_model(run):
    res, out = run
    ck = torch.load(out / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["step"] == 6 and ck["ni"] == 6 and ck["ema_updates"] == 6
    assert set(ck["rng"]) >= {"torch", "numpy", "python"}
    model, meta = load_checkpoint(out / "last.pt")
    assert meta["epoch"] == 1
    for k, v in res.ema_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_truncated_and_wrong_architecture_checkpoints(run, tmp_path):
    _, out = run
    blob = (out / "last.pt").read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match="cut.pt: cannot load checkpoint"):
        load_weights(Darknet.from_cfg(tiny_cfg()), bad)
    other = Darknet.from_cfg(tiny_cfg(width=16))
    with pytest.raises(WeightsError, match=r"last.pt: weights do not match the model architecture: \d+ tensors"):
        load_weights(other, out / "last.pt")
    # another class count only skips the head conv (and says which heads to re-initialise)
    with pytest.warns(UserWarning, match="head convs"):
        assert load_weights(Darknet.from_cfg(tiny_cfg(), classes=3), out / "last.pt") == [0]


def test_class_count_mismatch_names_data_and_cfg(data, tmp_path):
    with pytest.raises(InputError, match=r"embedded.data: the data has 6 classes but the model .* has 3"):
        train(Darknet.from_cfg(tiny_cfg(), classes=3), data, 1, 8, 64, tmp_path, hyp=H, progress=False)


def test_resume_without_checkpoint_is_clear(data, tmp_path):
    with pytest.raises(InputError, match="no last.pt"):
        train(tiny_cfg(), data, 1, 8, 64, tmp_path, hyp=H, resume=True, progress=False)


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_start(self, s):
        self.events.append("train_start")

    def on_epoch_start(self, s):
        self.events.append(f"epoch_start{s.epoch}")

    def extra_loss(self, s, outputs, targets):
        self.events.append("extra_loss")
        return outputs[0].sum() * 0.0

    def after_backward(self, s):
        grads = [p.grad for p in s.raw_model.parameters() if p.grad is not None]
        self.events.append(f"after_backward{s.accumulated}" if grads else "no-grads")

    def after_optimizer_step(self, s):
        self.events.append("step")

    def on_epoch_end(self, s, metrics):
        self.events.append(f"epoch_end{metrics['epoch']}")

    def on_train_end(self, s):
        self.events.append("train_end")


def test_callbacks_fire_in_order(data, tmp_path):
    rec = Recorder()
    h = H.replace(warmup="none", accumulate=2)      # 3 batches: steps after batches 2 and 3 (epoch end flushes)
    train(tiny_cfg(), data, 1, 8, 64, tmp_path, hyp=h, callbacks=[rec], progress=False)
    assert rec.events == ["train_start", "epoch_start0", "extra_loss", "extra_loss", "after_backward2", "step",
                          "extra_loss", "after_backward1", "step", "epoch_end0", "train_end"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_on_gpu(data, tmp_path):
    res = train(tiny_cfg(), data, 1, 8, 64, tmp_path, hyp=H, device="cuda", progress=False)
    assert res.history.total.notna().all()
    assert next(res.model.parameters()).device.type == "cuda"
