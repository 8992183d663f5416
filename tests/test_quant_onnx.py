"""Real int8: ONNX export of the raw head maps (fp32 equal to torch), onnxruntime static quantization (QDQ int8,
<= 30 % of the fp32 file, QLinearConv kernels), QAT ranges as overrides, latency, and evaluation of an
onnxruntime model through yolocomp.eval."""

from __future__ import annotations

import onnx
import pytest
import torch
from onnx import numpy_helper
from yolocomp.data import synthetic
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.eval import evaluate
from yolocomp.models import zoo
from yolocomp.quant import calibration_batches, quantize_model
from yolocomp.quant import onnx_int8 as oi
from yolocomp.quant.layers import FoldedQConv2d

# the fake-quant graphs are many small ops: on a shared 2-core machine one thread is several times faster
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data():
    return synthetic.embedded("smoke")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = zoo.build("yolov3-tiny", 6)
    with torch.no_grad():    # non-trivial BN statistics, so the fold is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.fixture(scope="module")
def exported(model, data, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    fp32 = oi.export_onnx(model, d / "fp32.onnx", 64)
    batches = calibration_batches(data, 64, 2, 4)
    int8 = oi.quantize_onnx(fp32, d / "int8.onnx", batches)
    return d, fp32, int8, batches


def test_fp32_onnx_equals_torch(model, exported):
    _, fp32, _, _ = exported
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
    got = oi.OrtDetector(fp32, model)(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)   # incl. the stride-1 max-pool (edge padding)


def test_int8_is_small_runs_int8_kernels_and_keeps_heads_float(model, exported):
    _, fp32, int8, _ = exported
    assert oi.file_mib(int8) / oi.file_mib(fp32) <= 0.30
    ops = oi.op_counts(int8)
    assert ops.get("QLinearConv", 0) == 11 and ops.get("Conv", 0) == 2     # 13 convs, the 2 head convs float
    x = torch.rand(2, 3, 64, 64)
    a, b = oi.OrtDetector(fp32, model)(x), oi.OrtDetector(int8, model)(x)
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0) > 0.99


def test_qat_ranges_reach_the_int8_graph(model, exported):
    d, _, _, batches = exported
    q = quantize_model(model, "qat8").train()
    for x in batches:
        q(x)
    fp32 = oi.export_onnx(q, d / "qat-fp32.onnx", 64)
    ov = oi.qat_overrides(q.eval(), fp32)
    convs = [m for m in q.modules() if isinstance(m, FoldedQConv2d)]
    assert len(convs) == 13 and "images" in ov and len(ov) >= 13
    first = q.layers[0].conv.aq_in.tracker
    assert ov["images"][0]["rmax"] == pytest.approx(float(first.max_val))
    int8 = oi.quantize_onnx(fp32, d / "qat-int8.onnx", batches, overrides=ov)
    g = onnx.load(str(int8)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    q_in = next(n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == "images")
    scale = float(inits[q_in.input[1]])
    lo, hi = min(float(first.min_val), 0.0), max(float(first.max_val), 0.0)
    assert scale == pytest.approx((hi - lo) / 255, rel=1e-5)


def test_latency_and_evaluation_of_an_onnxruntime_model(model, exported, data):
    int8 = exported[2]
    t = oi.ort_latency(int8, 64, threads=1, warmup=1, iters=3)
    assert t["latency_ms"] > 0 and t["batch"] == 1 and t["threads"] == 1 and t["img_size"] == "64x64"
    m = evaluate(oi.OrtDetector(int8, model), read_yolo(data, "valid"), 64, batch_size=4, conf_thres=0.1)
    assert m["images"] == 12 and (m["ap50"] >= 0.0 or m["ap50"] == -1.0)
