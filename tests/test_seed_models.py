"""The seed-repository blocks (layers_seed) and the eleven seed-model cfgs: exact parameter counts (from
shared/reference/architectures.md), conv+linear MACs, forward shapes, cfg write-back and .weights tensor coverage."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from yolocomp.errors import CfgError
from yolocomp.models.darknet import Darknet
from yolocomp.models.layers_seed import (
    ChannelAttention,
    DepthwiseLayer,
    ECALayer,
    MobileLayer,
    PEPLayer,
    SELayer,
    ShuffleStage,
    channel_shuffle,
    make_divisible,
)
from yolocomp.models.weights_io import load_darknet_weights, save_darknet_weights
from yolocomp.paths import package_dir

CFG = package_dir() / "models" / "cfg"

# (cfg, classes, expected Σ numel, number of [yolo] heads)
COUNTS = [
    ("yolo-nano", 20, 2_890_527, 3),
    ("yolo-nano", 12, 2_872_743, 3),
    ("yolo-nano-leaky", 20, 2_890_527, 3),
    ("yolov3-mobile", 20, 4_395_985, 3),
    ("yolov3-mobile", 12, 4_390_537, 3),
    ("yolov3-mobile-leaky", 20, 4_395_985, 3),
    ("yolov3-mobilenetv3", 80, 24_209_877, 3),
    ("yolov3tiny-mobilenetv3-small", 80, 3_041_430, 2),
    ("yolov3-ghostnet", 10, 23_495_111, 3),
    ("yolov3-ghostnet", 80, 23_872_061, 3),      # HALO-style (biased) SE with 80 classes, architectures.md §4.4
    ("yolov3-shufflenetv2", 1, 5_077_821, 2),
    ("yolov3-shufflenetv2", 10, 5_098_611, 2),
    ("yolov3-tiny-se", 1, 8_802_036, 2),
    ("yolov3-tiny-cbam", 1, 8_801_046, 2),
    ("yolov3-tiny-eca", 1, 8_669_879, 2),
]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv_linear_macs(model: nn.Module, size: int) -> int:
    """Multiply-adds of Conv2d and Linear layers for one (1, 3, size, size) input."""
    total = 0

    def hook(m, _inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name,classes,expected,heads", COUNTS, ids=[f"{c[0]}-{c[1]}" for c in COUNTS])
def test_param_count_and_forward(name, classes, expected, heads):
    torch.manual_seed(0)
    model = Darknet.from_cfg(CFG / f"{name}.cfg", classes=classes)
    assert n_params(model) == expected
    assert len(model.yolo_layers) == heads
    with torch.no_grad():
        y = model.eval()(torch.rand(1, 3, 64, 64))
    grids = [2, 4, 8][:heads]                      # strides 32, 16, 8 at a 64×64 input
    assert y.shape == (1, 3 * sum(g * g for g in grids), 5 + classes)
    assert torch.isfinite(y).all()


def test_base_yolov3_tiny_count():
    """The attention variants minus their block give pjreddie's yolov3-tiny: 8,669,876 params with 1 class."""
    text = (CFG / "yolov3-tiny-eca.cfg").read_text()
    base = text.replace("[eca]\nsize=3\n\n", "")
    assert base != text
    assert n_params(Darknet.from_cfg(base, classes=1)) == 8_669_876


@pytest.mark.parametrize("name,macs", [("yolo-nano", 2_031_908_624), ("yolov3-mobile", 1_327_579_008)])
def test_macs_at_416(name, macs):
    assert conv_linear_macs(Darknet.from_cfg(CFG / f"{name}.cfg"), 416) == macs


STEM = "[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
HEAD = ("\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n"
        "[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\nnum=3\nclasses=1\n")


def _layers(text: str) -> list:
    """The layers of a 16-channel stem + ``text`` + a 1-class head."""
    return list(Darknet.from_cfg("[net]\nchannels=3\n" + STEM + text + HEAD).layers)


def test_block_structure_and_tensor_order():
    pep, ep = _layers("[pep]\nfilters=16\nx=8\nstride=1\n[ep]\nfilters=24\nstride=2\n")[1:3]
    assert isinstance(pep, PEPLayer) and pep.residual and not ep.residual
    # PEP: proj 16->8, expand 8->8, dw 8, project 8->16, each conv as DK stores it (beta, gamma, mean, var, w)
    shapes = [tuple(t.shape) for t in pep.darknet_tensors()]
    assert shapes == [(8,)] * 4 + [(8, 16, 1, 1)] + [(8,)] * 4 + [(8, 8, 1, 1)] + [(8,)] * 4 + [(8, 1, 3, 3)] + \
        [(16,)] * 4 + [(16, 8, 1, 1)]
    se = _layers("[se]\nreduction=4\nbias=1\ngate=sigmoid\n")[1]
    assert [tuple(t.shape) for t in se.darknet_tensors()] == [(4, 16), (16, 4), (4,), (16,)]
    mob = _layers("[mobile]\nfilters=16\nsize=3\nstride=1\nexpansion_ratio=4\nsqueeze_excite=1\n")[1]
    assert isinstance(mob, MobileLayer) and mob.residual and mob.se.fc1.out_features == 16
    assert make_divisible(64 // 4) == 16 and make_divisible(3) == 8 and make_divisible(100) == 104


def test_gates_and_attention_values():
    """SE multiplies by the gate of fc2(relu(fc1(mean))); with zero weights that is 0.5 for both gate kinds."""
    x = torch.rand(2, 16, 4, 4) + 0.1
    for gate in ("sigmoid", "hard_sigmoid"):
        se = SELayer(16, 4, bias=False, gate=gate)
        nn.init.zeros_(se.se.fc2.weight)
        assert torch.allclose(se(x), 0.5 * x)
    eca = ECALayer(16, 3)
    nn.init.zeros_(eca.conv.weight)
    assert n_params(eca) == 3 and torch.allclose(eca(x), 0.5 * x)
    ca = ChannelAttention(32, 2)
    nn.init.zeros_(ca.fc2.weight)
    y = torch.rand(1, 32, 4, 4)
    assert torch.allclose(ca(y), 0.5 * y)


def test_channel_shuffle_and_shuffle_stage():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    stage = ShuffleStage(24, 176, 4, "leaky").eval()
    assert n_params(stage) == 57_192
    assert stage(torch.rand(1, 24, 16, 16)).shape == (1, 176, 8, 8)


def test_depthwise_groups_and_padding():
    dw = DepthwiseLayer(8, 8, 5, 2, True, True, "relu6")
    assert dw.unit.conv.groups == 8 and dw(torch.rand(1, 8, 16, 16)).shape == (1, 8, 8, 8)
    assert n_params(dw) == 5 * 5 * 8 + 2 * 8


@pytest.mark.parametrize("text,key", [
    ("[se]\nfilters=32\n", "filters"),
    ("[se]\ngate=relu\n", "gate"),
    ("[se]\nreduction=64\n", "reduction"),
    ("[shuffle]\nfilters=33\nunits=2\n", "filters"),
    ("[mobile]\nfilters=8\nsize=2\n", "size"),
    ("[pep]\nfilters=8\n", "x"),
    ("[depthwise]\nfilters=12\nsize=3\n", "filters"),
    ("[eca]\nsize=4\n", "size"),
    ("[sa]\nkernelsize=5\n", "kernelsize"),
    ("[fca]\nactivation=wobbly\n", "activation"),
])
def test_bad_block_keys_name_the_line(text, key):
    cfg = "[net]\nchannels=3\n" + STEM + text + HEAD
    with pytest.raises(CfgError) as e:
        Darknet.from_cfg(cfg)
    lines = cfg.splitlines()
    block = [i + 1 for i, ln in enumerate(lines) if i >= 9 and ln.startswith(key + "=")]
    assert e.value.line == (block[0] if block else 10)        # the key's line, or the block header when missing
    assert key in str(e.value)


@pytest.mark.parametrize("name", sorted({c[0] for c in COUNTS}))
def test_write_back_and_weights_round_trip(name, tmp_path):
    """Every layer's .weights tensors are its parameters plus BN running mean/var, each once; save -> rebuild from
    to_cfg() (each block's cfg_options) -> load -> identical outputs; file = 20 + 4·(P + 2·BN channels)."""
    torch.manual_seed(2)
    model = Darknet.from_cfg(CFG / f"{name}.cfg").eval()
    for layer in model.layers:
        stored = [id(t) for t in layer.darknet_tensors()]
        want = [id(p) for p in layer.parameters()]
        want += [id(b) for m in layer.modules() if isinstance(m, nn.BatchNorm2d)
                 for b in (m.running_mean, m.running_var)]
        assert len(stored) == len(set(stored)) and sorted(stored) == sorted(want), type(layer).__name__
    bn_ch = 0
    for m in model.modules():               # non-trivial BN statistics, so a swapped tensor would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            bn_ch += m.num_features
    path = tmp_path / f"{name}.weights"
    assert save_darknet_weights(model, path) == 20 + 4 * (n_params(model) + 2 * bn_ch) == path.stat().st_size
    torch.manual_seed(3)
    fresh = Darknet.from_cfg(model.to_cfg()).eval()
    assert [type(a) for a in fresh.layers] == [type(a) for a in model.layers]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.equal(model(x), fresh(x))
        assert not load_darknet_weights(fresh, path).partial
        assert torch.equal(model(x), fresh(x))
