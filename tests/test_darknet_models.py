"""Darknet graph models: parameter and MAC counts of the shipped cfgs, output layout, decoding, DK layer semantics,
cfg write-back."""

from __future__ import annotations

from importlib.resources import files

import pytest
import torch
from torch import nn
from yolocomp.models import Darknet
from yolocomp.models.activations import ACTIVATION_NAMES, make_activation
from yolocomp.models.head import decode_yolo
from yolocomp.models.layers_darknet import ConvLayer, MaxPoolLayer, ShortcutLayer

CFG = files("yolocomp.models") / "cfg"


def cfg(name: str) -> str:
    return str(CFG / f"{name}.cfg")


def meta_model(name: str, classes: int | None = None) -> Darknet:
    """Built on the meta device: shapes and counts without allocating or initialising weights."""
    with torch.device("meta"):
        return Darknet.from_cfg(cfg(name), classes=classes)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,classes,expected", [
    ("yolov3", None, 61_949_149), ("yolov3", 20, 61_626_049),
    ("yolov3-tiny", None, 8_852_366), ("yolov3-tiny", 20, 8_713_766),
    ("yolov3-spp", None, 62_998_749), ("yolov3-spp", 20, 62_675_649),
    ("yolov4", None, 64_363_101), ("yolov4", 20, 64_040_001),
    ("yolov4-tiny", None, 6_056_606), ("yolov4-tiny", 20, 5_918_006),
    ("yolov3-tiny-prn", None, 4_935_182),
    ("enet-coco", None, 4_770_414),
])
def test_param_counts(name, classes, expected):
    assert n_params(meta_model(name, classes)) == expected


@pytest.mark.parametrize("name,yolo,strides", [
    ("yolov3", [82, 94, 106], [32, 16, 8]), ("yolov3-spp", [89, 101, 113], [32, 16, 8]),
    ("yolov3-tiny", [16, 23], [32, 16]), ("yolov4", [139, 150, 161], [8, 16, 32]),
    ("yolov4-tiny", [30, 37], [32, 16]), ("yolov3-tiny-prn", [18, 27], [32, 16]), ("enet-coco", [136, 145], [32, 16]),
])
def test_yolo_layers_and_strides(name, yolo, strides):
    m = meta_model(name).train()
    assert m.yolo_indices == yolo
    heads = m(torch.empty(1, 3, 416, 416, device="meta"))
    assert [416 // h.shape[2] for h in heads] == strides
    assert all(h.shape[1] == 3 and h.shape[4] == 85 for h in heads)


def conv_macs(m: Darknet, size: int) -> int:
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        total += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [c.register_forward_hook(hook) for c in m.modules() if isinstance(c, nn.Conv2d)]
    m.train()(torch.empty(1, 3, size, size, device="meta"))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name,classes,expected", [
    ("yolov3", 20, 32_713_987_072), ("yolov3", None, 32_932_037_632),
    ("yolov3-tiny", 20, 2_735_755_776), ("yolov4", None, 30_052_385_792),
    ("yolov3-tiny-prn", None, 1_730_430_208), ("enet-coco", None, 1_865_064_256),
])
def test_conv_macs_at_416(name, classes, expected):
    assert conv_macs(meta_model(name, classes), 416) == expected


@pytest.fixture(scope="module")
def tiny() -> Darknet:
    torch.manual_seed(0)
    return Darknet.from_cfg(cfg("yolov3-tiny")).eval()


def test_output_layout_train_and_eval(tiny):
    x = torch.rand(2, 3, 64, 96)
    heads = []
    hooks = [y.register_forward_hook(lambda mod, inp, out: heads.append(out)) for y in tiny.yolo_layers]
    with torch.no_grad():
        out = tiny(x)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        train_heads = tiny.train()(x)
    tiny.eval()
    assert [tuple(h.shape) for h in train_heads] == [(2, 3, 2, 3, 85), (2, 3, 4, 6, 85)]
    assert [tuple(h.shape) for h in heads] == [(2, 3, 2, 3, 85), (2, 3, 4, 6, 85)]
    assert out.shape == (2, 3 * 2 * 3 + 3 * 4 * 6, 85)
    # eval rows are the decoded train maps in (yolo layer, anchor, row, column) order
    first = decode_yolo(heads[0], tiny.yolo_layers[0].anchors, (64, 96))
    torch.testing.assert_close(out[:, :18], first)
    row = heads[1][1, 2, 3, 4]                     # image 1, anchor 2, row 3, col 4 of the second head
    k = 18 + 2 * 24 + 3 * 6 + 4
    torch.testing.assert_close(out[1, k, 4:], row[4:].sigmoid())
    assert out[1, k, 0].item() == pytest.approx((4 + row[0].sigmoid().item()) * 16, rel=1e-6)
    assert out[1, k, 3].item() == pytest.approx(58 * row[3].exp().item(), rel=1e-5)   # mask 0,1,2 -> anchor 37x58


def test_yolov3_forward_small():
    with torch.no_grad():
        m = Darknet.from_cfg(cfg("yolov3")).eval()
        out = m(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3 * (2 * 2 + 4 * 4 + 8 * 8), 85)
    assert torch.isfinite(out).all()
    assert ((out[..., 4:] >= 0) & (out[..., 4:] <= 1)).all()


def test_head_channel_layout(tiny):
    head = tiny.yolo_layers[0]
    conv_out = torch.arange(2 * 255 * 2 * 3, dtype=torch.float32).view(2, 255, 2, 3)
    raw = head(conv_out)
    assert raw.shape == (2, 3, 2, 3, 85)
    assert raw[1, 2, 1, 0, 7] == conv_out[1, 2 * 85 + 7, 1, 0]


def test_decode_hand_made():
    raw = torch.zeros(1, 2, 2, 3, 6)                 # 2 anchors, 2x3 grid, 1 class
    raw[0, 1, 1, 2] = torch.tensor([2.0, -1.0, 0.5, -0.25, 3.0, -2.0])
    anchors = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    sig = torch.sigmoid
    out = decode_yolo(raw, anchors, (64, 96))        # strides: y 32, x 32
    assert out.shape == (1, 12, 6)
    got = out[0, 1 * 6 + 1 * 3 + 2]
    want = [(2 + sig(torch.tensor(2.0))) * 32, (1 + sig(torch.tensor(-1.0))) * 32, 30 * torch.exp(torch.tensor(0.5)),
            40 * torch.exp(torch.tensor(-0.25)), sig(torch.tensor(3.0)), sig(torch.tensor(-2.0))]
    torch.testing.assert_close(got, torch.stack(want))
    assert out[0, 0].tolist() == pytest.approx([16, 16, 10, 20, 0.5, 0.5])
    # scale_x_y = 1.2: x = (col + σ·1.2 − 0.1)·stride
    out = decode_yolo(raw, anchors, (64, 96), scale_x_y=1.2)
    assert out[0, 0, 0].item() == pytest.approx((0.5 * 1.2 - 0.1) * 32)
    # new_coords: inputs already logistic, w = 4·t²·anchor, scores as given
    out = decode_yolo(raw.abs() / 4, anchors, (64, 96), new_coords=True)
    got = out[0, 11]
    assert got[0].item() == pytest.approx((2 + 0.5) * 32)
    assert got[2].item() == pytest.approx(4 * 0.125 ** 2 * 30)
    assert got[4].item() == pytest.approx(0.75)


def test_maxpool_dk_semantics():
    x = -torch.ones(1, 1, 13, 13)
    same = MaxPoolLayer(1, 2, 1, 1)                  # size 2 stride 1: keeps size, -inf (not zero) padding
    assert same(x).shape == (1, 1, 13, 13) and (same(x) == -1).all()
    assert MaxPoolLayer(1, 2, 2, 1)(x).shape == (1, 1, 7, 7)           # odd size rounds up
    assert MaxPoolLayer(1, 2, 2, 1)(torch.zeros(1, 1, 26, 26)).shape == (1, 1, 13, 13)
    spp = MaxPoolLayer(1, 5, 1, 4)
    y = torch.arange(25.0).view(1, 1, 5, 5)
    assert spp(y).shape == (1, 1, 5, 5) and spp(y)[0, 0, 0, 0] == 12   # window rows/cols 0..2 around (0,0)


def test_route_groups_and_shortcut_overlap(tmp_path):
    m = Darknet.from_cfg(cfg("yolov4-tiny"))
    route = m.layers[3]
    x = torch.arange(64.0).view(1, 64, 1, 1)
    assert route.out_channels == 32 and torch.equal(route(x), x[:, 32:])
    prn = Darknet.from_cfg(cfg("yolov3-tiny-prn"))
    sc = prn.layers[22]
    assert isinstance(sc, ShortcutLayer) and sc.inputs == [21, 8] and sc.out_channels == 128
    a, b = torch.randn(1, 128, 2, 2), torch.randn(1, 256, 2, 2)
    torch.testing.assert_close(sc(a, b), nn.functional.leaky_relu(a + b[:, :128], 0.1))


def test_conv_defaults_and_bn():
    m = Darknet.from_cfg("[net]\nchannels=5\n[convolutional]\nfilters=6\nsize=3\n[convolutional]\nbatch_normalize=1\n"
                         "filters=12\nsize=1\nactivation=linear\n[yolo]\nmask=0,1\nanchors=1,1,2,2\nnum=2\nclasses=1\n")
    c0, c1 = m.layers[0], m.layers[1]
    assert c0.activation == "logistic" and c0.conv.padding == (0, 0) and c0.conv.bias is not None
    assert c0.conv.in_channels == 5
    assert c1.conv.bias is None and c1.bn.eps == 1e-5 and c1.bn.momentum == 0.03


def test_activations():
    x = torch.linspace(-4, 4, 9)
    assert len(ACTIVATION_NAMES) >= 15
    for name in ACTIVATION_NAMES:
        assert make_activation(name)(x).shape == x.shape
    torch.testing.assert_close(make_activation("leaky")(x), torch.where(x > 0, x, 0.1 * x))
    torch.testing.assert_close(make_activation("mish")(x), x * torch.tanh(nn.functional.softplus(x)))
    torch.testing.assert_close(make_activation("h_swish")(x), x * torch.clamp(x + 3, 0, 6) / 6)
    torch.testing.assert_close(make_activation("logistic")(x), torch.sigmoid(x))
    with pytest.raises(KeyError, match="unknown activation"):
        make_activation("nope")


@pytest.mark.parametrize("name", ["yolov3", "yolov3-tiny", "yolov3-spp", "yolov4", "yolov4-tiny", "yolov3-tiny-prn",
                                  "enet-coco"])
def test_cfg_round_trip_structure(name):
    a = meta_model(name)
    text = a.to_cfg()
    with torch.device("meta"):
        b = Darknet.from_cfg(text)
    assert b.to_cfg() == text
    assert [(k, p.shape) for k, p in a.state_dict().items()] == [(k, p.shape) for k, p in b.state_dict().items()]
    assert b.yolo_indices == a.yolo_indices
    assert [(y.mask, y.all_anchors, y.scale_x_y, y.loss_options) for y in b.yolo_layers] == \
           [(y.mask, y.all_anchors, y.scale_x_y, y.loss_options) for y in a.yolo_layers]


@pytest.mark.parametrize("name", ["yolov3-tiny", "enet-coco", "yolov4-tiny"])
def test_cfg_round_trip_outputs(name):
    torch.manual_seed(1)
    a = Darknet.from_cfg(cfg(name)).eval()
    b = Darknet.from_cfg(a.to_cfg()).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_to_cfg_follows_module_surgery(tiny):
    m = Darknet.from_cfg(tiny.to_cfg())
    layer4, layer6 = m.layers[4], m.layers[6]
    layer4.conv = nn.Conv2d(32, 40, 3, 1, 1, bias=False)          # prune 64 -> 40 filters
    layer4.bn = nn.BatchNorm2d(40)
    layer4.out_channels = m.layers[5].out_channels = 40
    layer6.conv = nn.Conv2d(40, 128, 3, 1, 1, bias=False)
    text = m.to_cfg()
    assert "filters=40" in text
    rebuilt = Darknet.from_cfg(text)
    assert [(k, p.shape) for k, p in rebuilt.state_dict().items()] == [(k, p.shape) for k, p in m.state_dict().items()]
    assert isinstance(rebuilt.layers[4], ConvLayer) and rebuilt.layers[6].conv.in_channels == 40


def test_only_needed_outputs_are_kept():
    m = meta_model("yolov3")
    residual_inputs = {i - 3 for i, layer in enumerate(m.layers) if isinstance(layer, ShortcutLayer)}
    assert m._keep == residual_inputs | {36, 61, 79, 91}
