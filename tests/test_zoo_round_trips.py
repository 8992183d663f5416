"""Every registered zoo model survives the three round trips the compression ops rely on, bit for bit:
.weights file -> fresh model, cfg text -> model -> cfg text, checkpoint -> model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from yolocomp.models import (
    Darknet,
    load_checkpoint,
    load_darknet_weights,
    save_checkpoint,
    save_darknet_weights,
    zoo,
)
from yolocomp.registry import MODELS


def _random_model(name: str) -> Darknet:
    torch.manual_seed(0)
    m = zoo.build(name).eval()
    for mod in m.modules():     # non-trivial BN statistics, so a swapped or dropped tensor shows in the output
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.1, 0.1)
    return m


@pytest.mark.parametrize("name", MODELS.names())
def test_weights_cfg_and_checkpoint_round_trips(name, tmp_path):
    model = _random_model(name)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        want = model(x)

        text = model.to_cfg()
        rebuilt = Darknet.from_cfg(text).eval()
        assert rebuilt.to_cfg() == text
        assert not torch.equal(rebuilt(x), want)            # a fresh init differs, so equality below means loading
        assert not load_darknet_weights(rebuilt, save_darknet_weights_to(model, tmp_path)).partial
        assert torch.equal(rebuilt(x), want)

        save_checkpoint(model, tmp_path / "m.pt", origin=name)
        loaded, meta = load_checkpoint(tmp_path / "m.pt")
        assert meta == {"origin": name}
        assert torch.equal(loaded.eval()(x), want)


def save_darknet_weights_to(model: Darknet, folder) -> object:
    path = folder / "m.weights"
    save_darknet_weights(model, path)
    return path
