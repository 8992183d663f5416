"""Cost counts on tiny hand-built modules (every expected number computed by hand in the comments), then the
published figures of the seed READMEs on the zoo models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from yolocomp.bench.cost import (
    cost_row,
    count_params,
    macs_conv,
    macs_seed,
    macs_thop,
    storage_bytes,
    storage_mib,
)
from yolocomp.bench.latency import measure_latency
from yolocomp.models import zoo
from yolocomp.registry import MODELS

IMG = 8  # every toy model sees a 3 x 8 x 8 image


def conv(bias: bool) -> nn.Module:
    return nn.Conv2d(3, 8, 3, padding=1, bias=bias)


class ECA(nn.Module):
    """Channel attention with a Conv1d over the pooled channel vector (as in ECA)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        s = self.conv(self.pool(x).flatten(1).unsqueeze(1))          # (N, 1, C)
        return x * torch.sigmoid(s).transpose(1, 2).unsqueeze(-1)


def counts(model: nn.Module) -> tuple[int, int, int]:
    return macs_conv(model, IMG), macs_thop(model, IMG), macs_seed(model, IMG)


# out_numel of the 3->8 conv at 8x8 = 8*8*8 = 512; per output 3*3*3 = 27 multiply-adds.
def test_conv_without_bias():
    assert counts(conv(False)) == (512 * 27, 512 * 27, 512 * 27)


def test_conv_with_bias_adds_one_per_output_in_seed_rules_only():
    assert counts(conv(True)) == (13_824, 13_824, 512 * 28)


def test_batchnorm_is_2x_numel_for_seed_and_4x_for_thop_011():
    m = nn.Sequential(conv(False), nn.BatchNorm2d(8))
    assert counts(m) == (13_824, 13_824 + 4 * 512, 13_824 + 2 * 512)


def test_leaky_counts_numel_for_seed_only_and_relu_nothing():
    m = nn.Sequential(conv(False), nn.LeakyReLU(0.1), nn.ReLU(), nn.ReLU6())
    assert counts(m) == (13_824, 13_824, 13_824 + 512)


def test_nearest_upsample_is_free_for_seed_and_out_numel_for_thop_011():
    m = nn.Sequential(conv(False), nn.Upsample(scale_factor=2, mode="nearest"))
    assert counts(m) == (13_824, 13_824 + 8 * 16 * 16, 13_824)


def test_linear_and_adaptive_avgpool():
    # pool: kernel 8*8 = 64 -> (64 + 1) * 8 outputs = 520 in both thop releases; linear 8 -> 4: 8 * 4 = 32
    m = nn.Sequential(conv(False), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    assert counts(m) == (13_824 + 32, 13_824 + 520 + 32, 13_824 + 520 + 32)


def test_grouped_and_depthwise_conv():
    # depthwise 8->8 k3: 512 * 9; groups=2 8->4 k1: 4*8*8 outputs * (8/2) inputs = 1024
    m = nn.Sequential(conv(False), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                      nn.Conv2d(8, 4, 1, groups=2, bias=False))
    assert macs_conv(m, IMG) == 13_824 + 4_608 + 1_024
    assert macs_seed(m, IMG) == 13_824 + 4_608 + 1_024


def test_conv1d_inside_custom_module():
    # Conv1d k3 over 8 channels: 8 * 3 = 24; sigmoid and the custom module itself count 0
    m = nn.Sequential(conv(False), ECA())
    assert counts(m) == (13_824 + 24, 13_824 + 520 + 24, 13_824 + 520 + 24)


def test_subclass_of_conv_counts_like_conv_in_seed_rules():
    class MyConv(nn.Conv2d):
        pass

    m = nn.Sequential(MyConv(3, 8, 3, padding=1, bias=True), nn.BatchNorm2d(8))
    assert macs_seed(m, IMG) == 512 * 28 + 2 * 512
    assert macs_thop(m, IMG) == 4 * 512          # installed thop matches types exactly: the conv is missed


def test_rectangular_input_and_batch():
    m = conv(False)
    assert macs_conv(m, (8, 16)) == 8 * 8 * 16 * 27
    assert macs_conv(m, 8, batch=3) == 13_824


def test_params_and_storage():
    m = nn.Sequential(conv(True), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    p = 3 * 8 * 9 + 8 + 2 * 8 + 8 * 4 + 4
    assert count_params(m) == p == 276
    assert storage_bytes(m) == 20 + 4 * (p + 2 * 8)
    assert storage_mib(m) == pytest.approx((20 + 4 * 292) / 2**20, abs=0)


def test_thop_leaves_no_buffers_and_mode_is_restored():
    m = nn.Sequential(conv(True), nn.BatchNorm2d(8), nn.LeakyReLU(0.1), ECA())
    keys = list(m.state_dict())
    m.train()
    row = cost_row(m, IMG)
    assert list(m.state_dict()) == keys
    assert not any(hasattr(x, "total_ops") for x in m.modules())
    assert m.training
    assert row == {"params": count_params(m), "macs_conv": 13_824 + 24, "macs_thop": 13_824 + 2048 + 520 + 24,
                   "macs_seed": 14_336 + 1024 + 512 + 520 + 24, "storage_mib": storage_mib(m)}


def test_cpu_latency_reports_quantiles_and_leaves_model_and_threads_alone():
    m = nn.Sequential(conv(True), nn.BatchNorm2d(8), nn.LeakyReLU(0.1)).train()
    before = torch.get_num_threads()
    r = measure_latency(m, (16, 32), batch=2, threads=1, warmup=1, iters=7)
    assert set(r) == {"latency_ms", "p10_ms", "p90_ms", "device", "device_name", "batch", "img_size", "threads",
                      "precision", "iters"}
    assert 0 < r["p10_ms"] <= r["latency_ms"] <= r["p90_ms"]
    assert (r["device"], r["batch"], r["img_size"], r["threads"], r["precision"], r["iters"]) == \
        ("cpu", 2, "16x32", 1, "fp32", 7)
    assert torch.get_num_threads() == before
    assert m.training and m[0].weight.dtype == torch.float32


def test_latency_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision must be one of fp32"):
        measure_latency(conv(False), IMG, precision="int3")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency_in_fp16():
    r = measure_latency(conv(True), 64, device="cuda", warmup=2, iters=5, precision="fp16")
    assert r["device"].startswith("cuda:") and r["precision"] == "fp16" and r["latency_ms"] > 0


# ---- acceptance on the zoo: seed-compatible MACs reproduce the published figures, conv+linear MACs the origin builds
BIG = {"yolov3", "yolov3-spp", "yolov4"}      # 30-70 GMACs: a few seconds per forward on two CPU cores
SEED_FIGS = [(e.name, f) for e in MODELS for f in e.meta["published"]
             if f["convention"] in ("thop-0.0.31", "2*thop-0.0.31/1e9")]
CONV_CASES = [(e.name, c, v) for e in MODELS for c, v in e.meta["macs_conv_expected"].items()]


def _model(name: str, classes: int):
    if not zoo.cfg_path(name).is_file():
        pytest.skip(f"{zoo.cfg_path(name).name} not present yet")
    return zoo.build(name, classes)


def _marks(name: str) -> list:
    return [pytest.mark.slow] if name in BIG else []


@pytest.mark.parametrize("name,fig", [
    pytest.param(n, f, marks=_marks(n))
    for n, f in SEED_FIGS], ids=[f"{n}-{f['classes']}cls-{f['value']}" for n, f in SEED_FIGS])
def test_seed_macs_reproduce_published_figures(name, fig):
    macs = macs_seed(_model(name, fig["classes"]), fig["img_size"])
    if fig["convention"] == "thop-0.0.31":
        assert macs == int(fig["value"].replace(", ", ""))
    else:
        digits = len(fig["value"].partition(".")[2])
        assert f"{2 * macs / 1e9:.{digits}f}" == fig["value"]


@pytest.mark.parametrize("name,classes,expected", [pytest.param(*c, marks=_marks(c[0])) for c in CONV_CASES])
def test_conv_macs_at_416_match_the_origin_builds(name, classes, expected):
    assert macs_conv(_model(name, classes), 416) == expected
