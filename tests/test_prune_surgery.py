"""Keep-size / compact surgery and export (pruning-spec.md §5, §6, §9; §19 facts 11-13, 24) on hand-made cfgs and
every zoo model with BN convs."""

import subprocess
import sys
from functools import cache

import pytest
import torch
from yolocomp.models import Darknet, load_checkpoint, zoo
from yolocomp.prune import select, surgery
from yolocomp.prune.export import save_pruned
from yolocomp.prune.graph import analyze
from yolocomp.registry import PRUNERS

STRATEGIES = PRUNERS.names(kind="channel")
FAST = ("yolov3-tiny", "yolov4-tiny", "yolov3tiny-mobilenetv3-small")
BIG = ("yolo-nano", "yolov3-mobilenetv3", "yolov3", "yolov3-spp", "yolov4", "yolov3-ghostnet")
X = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))

# every consumer of a pruned conv is 1x1 (exact fold, fact 12): shortcut, maxpool, upsample, route concat, mish,
# and a bias conv before the head
FOLD = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=linear

[shortcut]
from=-3
activation=linear

[maxpool]
size=2
stride=2

[upsample]
stride=2

[route]
layers=-1,0

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=mish

[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,4, 8,8, 16,16
classes=1
num=3
"""


def randomize(model: Darknet, seed: int = 0) -> Darknet:
    """Random BN γ (distinct), β, μ, σ² so that removed channels emit non-zero constants."""
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.weight.data = torch.rand(n, generator=gen) + 0.05
            mod.bias.data = torch.randn(n, generator=gen) * 0.5
            mod.running_mean.data = torch.randn(n, generator=gen) * 0.1
            mod.running_var.data = torch.rand(n, generator=gen) + 0.5
    return model.eval()


@cache
def zoo_model(name: str) -> Darknet:
    return randomize(zoo.build(name))


def outputs(model: Darknet, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def check_compact_equals_keep_size(name: str, strategy: str) -> None:
    m = zoo_model(name)
    g = analyze(m)
    masks = PRUNERS.get(strategy)(m, g, 0.3)
    n_removed = sum(int((~v).sum()) for v in masks.values())
    if (name, strategy) == ("yolo-nano", "regular"):
        assert n_removed == 0          # its one prunable conv has 12 channels: 30 % rounds back up to all 12
    else:
        assert n_removed > 0
    ks, c = surgery.keep_size(m, masks), surgery.compact(m, masks)
    n_params = [sum(p.numel() for p in net.parameters()) for net in (c, m)]
    assert n_params[0] < n_params[1] if n_removed else n_params[0] == n_params[1]
    for i, v in masks.items():
        assert c.layers[i].out_channels == int(v.sum())
    assert rel_diff(outputs(c), outputs(ks)) <= 1e-4                  # fact 11


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", FAST)
def test_compact_equals_keep_size_fast(name, strategy):
    check_compact_equals_keep_size(name, strategy)


@pytest.mark.parametrize("name", ("yolo-nano", "yolov3-mobilenetv3"))
def test_compact_equals_keep_size_slim(name):
    check_compact_equals_keep_size(name, "slim")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", BIG)
def test_compact_equals_keep_size_big(name, strategy):
    check_compact_equals_keep_size(name, strategy)


def test_fully_protected_model_refuses_masks():
    m = zoo.build("yolov3-mobile")                 # its only BN conv feeds a [mobile] block
    g = analyze(m)
    assert g.convs == [0] and g.prunable == []
    with pytest.raises(ValueError, match="layer 0 is protected"):
        surgery.check_masks(m, {0: torch.arange(8) > 0}, g)


def masked(model: Darknet, masks) -> Darknet:
    out = Darknet.from_cfg(model.to_cfg())
    out.load_state_dict(model.state_dict())
    for i, v in masks.items():
        out.layers[i].bn.weight.data[~v] = 0
    return out.eval()


def test_fold_is_exact_with_1x1_consumers():
    m = randomize(Darknet.from_cfg(FOLD), seed=3)
    g = analyze(m)
    assert g.prunable == [0, 1, 2, 3, 8] and g.shortcut_groups == [[1, 3]]
    masks = select.slim(m, g, 0.5, layer_keep=0.0)
    assert all(int((~masks[i]).sum()) > 0 for i in (0, 1, 2, 8))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    ref = outputs(masked(m, masks), x)
    ks = surgery.keep_size(m, masks)
    assert rel_diff(outputs(ks, x), ref) <= 1e-5                      # fact 12 (1x1 consumers: exact)
    assert rel_diff(outputs(surgery.compact(m, masks), x), ref) <= 1e-5
    # without the fold the removed constants are simply lost, so the check above can fail
    lost = masked(m, masks)
    for i, v in masks.items():
        lost.layers[i].bn.bias.data[~v] = 0
    assert rel_diff(outputs(lost, x), ref) > 1e-2


def test_offset_formula_on_consumer_mean():
    m = randomize(Darknet.from_cfg(FOLD), seed=4)
    masks = {2: torch.tensor([True] * 12 + [False] * 4)}
    ks = surgery.keep_size(m, masks)
    beta = m.layers[2].bn.bias.detach()
    a = torch.nn.functional.leaky_relu(torch.where(masks[2], torch.zeros_like(beta), beta), 0.1)
    k = m.layers[3].conv.weight.detach().sum((2, 3))
    want = m.layers[3].bn.running_mean - k @ a                       # fact 13: μ' = μ − K·a
    assert torch.allclose(ks.layers[3].bn.running_mean, want, atol=1e-6)
    assert not torch.allclose(ks.layers[3].bn.running_mean, m.layers[3].bn.running_mean)
    assert float(ks.layers[2].bn.weight.detach()[~masks[2]].abs().sum()) == 0.0
    assert float(ks.layers[2].bn.bias.detach()[~masks[2]].abs().sum()) == 0.0


@pytest.mark.parametrize("name", ("yolov3-tiny", "yolov3tiny-mobilenetv3-small"))
def test_zero_gamma_beta_channels_prune_to_original_output(name):
    m = zoo_model(name)
    g = analyze(m)
    masks = select.slim(m, g, 0.4)
    z = masked(m, masks)
    for i, v in masks.items():
        z.layers[i].bn.bias.data[~v] = 0
    c = surgery.compact(z, masks)
    assert rel_diff(outputs(c), outputs(z)) <= 1e-5


def test_bad_masks_raise():
    m = zoo_model("yolov3")
    g = analyze(m)
    with pytest.raises(ValueError, match="layer 84 is protected"):
        surgery.keep_size(m, {84: torch.arange(256) > 0})
    bad = {1: torch.arange(64) > 3, 3: torch.arange(64) > 4}
    with pytest.raises(ValueError, match=r"must share one mask.*layer 3 differs"):
        surgery.keep_size(m, bad)
    with pytest.raises(ValueError, match="removes every channel"):
        surgery.keep_size(m, {0: torch.zeros(32, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not a \\[convolutional\\] with batch_normalize=1"):
        surgery.keep_size(m, {105: torch.ones(255, dtype=torch.bool)})
    assert g.prunable


SUBPROCESS = """
import sys, torch
from yolocomp.models import Darknet, load_darknet_weights
cfg, weights, x, out = sys.argv[1:]
m = Darknet.from_cfg(cfg)
load_darknet_weights(m, weights)
with torch.no_grad():
    torch.save(m.eval()(torch.load(x, weights_only=True)), out)
"""


@pytest.mark.parametrize("name", ("yolov3-tiny", "yolov3tiny-mobilenetv3-small"))
def test_pruned_files_round_trip_in_fresh_process(name, tmp_path):
    m = zoo_model(name)
    masks = select.slim(m, analyze(m), 0.5)
    c = surgery.compact(m, masks)
    cfg, weights = save_pruned(c, tmp_path, f"prune_slim_0.5_{name}", method="slim", percent=0.5)
    assert cfg.name == f"prune_slim_0.5_{name}.cfg" and weights.suffix == ".weights"
    torch.save(X, tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", SUBPROCESS, str(cfg), str(weights), str(tmp_path / "x.pt"),
                    str(tmp_path / "y.pt")], check=True)
    want = outputs(c)
    assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), want)
    back, meta = load_checkpoint(tmp_path / f"prune_slim_0.5_{name}.pt")
    assert meta == {"method": "slim", "percent": 0.5}
    assert torch.equal(outputs(back), want)
    for i, v in masks.items():
        assert back.layers[i].out_channels == int(v.sum())
