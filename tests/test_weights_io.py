"""Darknet .weights files and checkpoints: sizes, exact round trips, partial backbone files, errors."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import torch
from yolocomp.errors import WeightsError
from yolocomp.models import (
    Darknet,
    darknet_weights_size,
    load_checkpoint,
    load_darknet_weights,
    save_checkpoint,
    save_darknet_weights,
)

CFG = files("yolocomp.models") / "cfg"


def cfg(name: str) -> str:
    return str(CFG / f"{name}.cfg")


def randomize(m: Darknet, seed: int) -> Darknet:
    """Random weights and BN statistics, so a round trip that dropped or reordered any tensor would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in m.layers:
            for t in layer.darknet_tensors():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + (0.5 if t.dim() == 1 else -0.1))
    return m.eval()


@pytest.mark.parametrize("name,size", [("yolov3", 248_007_048), ("yolov3-tiny", 35_434_956),
                                       ("yolov4", 257_717_640), ("yolov4-tiny", 24_251_276),
                                       ("enet-coco", 19_233_100)])
def test_weights_file_sizes(name, size):
    with torch.device("meta"):
        assert darknet_weights_size(Darknet.from_cfg(cfg(name))) == size


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    src = randomize(Darknet.from_cfg(cfg("yolov3-tiny")), 0)
    path = tmp_path_factory.mktemp("w") / "tiny.weights"
    n = save_darknet_weights(src, path, seen=123456789012)
    return src, path, n


def test_round_trip_identical_outputs(tiny_pair):
    src, path, n = tiny_pair
    assert n == path.stat().st_size == 35_434_956
    head = np.fromfile(path, "<i4", 3)
    assert head.tolist() == [0, 2, 5] and int(np.fromfile(path, "<u8", 1, offset=12)[0]) == 123456789012
    dst = Darknet.from_cfg(cfg("yolov3-tiny")).eval()
    info = load_darknet_weights(dst, path)
    assert (info.layers_loaded, info.total_layers, info.partial, info.seen) == (23, 24, False, 123456789012)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    # first floats are layer 0's BN beta
    first = np.fromfile(path, "<f4", 16, offset=20)
    assert np.array_equal(first, src.layers[0].bn.bias.detach().numpy())


def test_truncated_mid_layer(tiny_pair, tmp_path):
    _, path, _ = tiny_pair
    bad = tmp_path / "cut.weights"
    bad.write_bytes(path.read_bytes()[:20 + 4 * 100])        # layer 0 needs 16*4 + 432 = 496 floats
    with pytest.raises(WeightsError) as ei:
        load_darknet_weights(Darknet.from_cfg(cfg("yolov3-tiny")), bad)
    msg = str(ei.value)
    assert msg.startswith(f"{bad}:") and "inside layer 0 (convolutional)" in msg and "needs 496 floats" in msg
    assert "100 remain" in msg


def test_leftover_bytes(tiny_pair, tmp_path):
    _, path, _ = tiny_pair
    bad = tmp_path / "long.weights"
    bad.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.raises(WeightsError, match=r"long\.weights: 8 bytes left over after the last layer \(expected "
                                           r"35434956 bytes in all, file has 35434964\)"):
        load_darknet_weights(Darknet.from_cfg(cfg("yolov3-tiny")), bad)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(WeightsError, match="not a whole number of float32"):
        load_darknet_weights(Darknet.from_cfg(cfg("yolov3-tiny")), odd)


def test_old_16_byte_header(tiny_pair, tmp_path):
    src, path, _ = tiny_pair
    old = tmp_path / "old.weights"
    body = path.read_bytes()[20:]
    old.write_bytes(np.array([0, 1, 0, 777], "<i4").tobytes() + body)
    dst = Darknet.from_cfg(cfg("yolov3-tiny"))
    info = load_darknet_weights(dst, old)
    assert (info.minor, info.seen) == (1, 777)
    assert torch.equal(dst.layers[22].conv.weight, src.layers[22].conv.weight)


def test_darknet53_conv74_partial(tmp_path):
    src = randomize(Darknet.from_cfg(cfg("yolov3")), 1)
    path = tmp_path / "darknet53.conv.74"
    assert save_darknet_weights(src, path, cutoff=75) == 162_482_580 == path.stat().st_size
    dst = Darknet.from_cfg(cfg("yolov3"))
    untouched = dst.layers[75].conv.weight.clone()
    with pytest.warns(UserWarning, match="partial weights file, filled layers 0..73 of 107"):
        info = load_darknet_weights(dst, path)
    assert (info.layers_loaded, info.partial) == (74, True)
    assert torch.equal(dst.layers[73].bn.running_var, src.layers[73].bn.running_var)
    assert torch.equal(dst.layers[0].conv.weight, src.layers[0].conv.weight)
    assert torch.equal(dst.layers[75].conv.weight, untouched)


def test_checkpoint_round_trip(tiny_pair, tmp_path):
    src, _, _ = tiny_pair
    path = tmp_path / "ck" / "tiny.pt"
    save_checkpoint(src, path, epoch=3, map50=0.25, note="x")
    model, meta = load_checkpoint(path)
    assert meta == {"epoch": 3, "map50": 0.25, "note": "x"}
    assert model.to_cfg() == src.to_cfg()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    assert not list(path.parent.glob("*.tmp"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: cannot load checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
