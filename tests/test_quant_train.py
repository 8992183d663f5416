"""BNN and BWN train (the loss decreases over a smoke run) and evaluate on every quantizable zoo model; a quantized
run goes through the trainer, its checkpoint reloads, and the training CLI's ``--quantized --qlayers`` works."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from _engine_cfgs import tiny_cfg
from yolocomp.data import synthetic
from yolocomp.data.dataset import DetectionDataset, collate
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.engine.hyp import hyp
from yolocomp.engine.loss import YoloLoss
from yolocomp.engine.train_cli import cli_train
from yolocomp.engine.trainer import train
from yolocomp.eval import evaluate
from yolocomp.models import Darknet, zoo
from yolocomp.quant import quantizable_layers, quantize_model
from yolocomp.quant.layers import QConv2d
from yolocomp.registry import MODELS, QUANTIZERS

H = hyp("default", conf_thres=0.1, warmup_iters=1, warmup_epochs=0.1, nominal_batch=4)


# the fake-quant graphs are many small ops: on a shared 2-core machine one thread is several times faster
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return synthetic.embedded("smoke")


@pytest.fixture(scope="module")
def batch(data):
    ds = DetectionDataset(read_yolo(data, "train"), 64, augment=False)
    return collate([ds[i] for i in range(2)])


@pytest.fixture(scope="module")
def val1(data):
    ds = read_yolo(data, "valid")
    return dataclasses.replace(ds, images=ds.images[:1])


BINARY = QUANTIZERS.names(kind="binary")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_binary_schemes_train_and_evaluate_on_every_zoo_model(name, batch, val1):
    images, targets, _ = batch
    assert BINARY == ["bnn", "bwn"]
    model = zoo.build(name, 6)
    assert quantizable_layers(model)
    for scheme in BINARY:
        torch.manual_seed(0)
        q = quantize_model(model, scheme).train()
        assert q.quant_spec["layers"], f"{name}: nothing quantized by {scheme}"
        loss_fn = YoloLoss(q, H)
        opt = torch.optim.SGD([p for p in q.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        losses = []
        for _ in range(2):    # one update, then the loss again
            loss, _ = loss_fn(q(images), targets, (64, 64))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert losses[-1] < losses[0], f"{name} {scheme}: {losses}"
        m = evaluate(q, val1, 64, batch_size=1, conf_thres=0.1)
        assert 0.0 <= m["ap50"] <= 1.0 or m["ap50"] == -1.0


@pytest.mark.slow
def test_quantized_model_through_the_trainer_and_back(data, tmp_path):
    base = Darknet.from_cfg(tiny_cfg())
    q = quantize_model(base, "qat8", total_steps=6)
    res = train(q, data, 1, 4, 64, tmp_path, hyp=H, progress=False)
    assert res.history.total.notna().all() and "ap50" in res.metrics
    ck = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=True)
    again = quantize_model(Darknet.from_cfg(tiny_cfg()), "qat8")
    again.load_state_dict(ck["state_dict"])                 # the quantized structure rebuilds from the spec
    assert int(again.layers[0].conv.step) == 6 and int(again.layers[0].conv.bn_freeze_step) == 5
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(again.eval()(x), res.ema_model.eval()(x), atol=1e-5)


@pytest.mark.slow
def test_train_cli_quantized_flags(data, tmp_path, capsys):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(tiny_cfg())
    out = tmp_path / "run"
    res = cli_train(["--cfg", str(cfg), "--data", str(data), "--epochs", "1", "--batch-size", "4", "--img-size",
                     "64", "--out", str(out), "--quiet", "--quantized", "1", "--qlayers", "2",
                     "--quant-set", "levels=01", "--hyp-set", "conf_thres=0.1"])
    assert "done:" in capsys.readouterr().out
    spec = res.model.quant_spec
    assert (spec["scheme"], spec["qlayers"], spec["levels"], spec["layers"]) == ("bwn", 2, "01", [2, 3, 4])
    assert [isinstance(m.conv, QConv2d) for m in res.model.layers[:5]] == [False, False, True, True, True]
    assert json.loads(json.dumps(spec))
