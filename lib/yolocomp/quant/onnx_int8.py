"""Real int8 inference: export to ONNX, static quantization to QDQ int8 with onnxruntime, CPU latency, and an
adaptor that lets :func:`yolocomp.eval.evaluate` score an onnxruntime session with the usual post-processing.

Route: ONNX + onnxruntime rather than torchao's PT2E x86 path.  torch 2.14 no longer ships PT2E in
``torch.ao`` and torchao is not a dependency, while onnx and onnxruntime 1.32 are; onnxruntime's CPU kernels run
QDQ graphs as QLinearConv (VNNI where the CPU has it), and the result is one portable file whose size is the
deployed size.  The TorchScript exporter (``dynamo=False``) is used: it works offline and needs no onnxscript.

What is exported: the model with BN folded (running statistics) and *without* the decode — the graph's outputs
are the raw maps ``(N, A·(5+C), H_i, W_i)`` that feed each ``[yolo]`` layer.  The decode (sigmoid of x, y,
objectness and classes; exp of w, h times the anchors) runs in float in Python (:class:`OrtDetector`): quantizing
after the exponential would put a uniform grid on box sizes that span two orders of magnitude, and the head
outputs stay float as well by default (``exclude_heads``), so int8 ends where the conv stack ends.

Max-pools are exported with edge-replicate padding instead of the graph's −inf padding: for a max over a window
that overlaps the image the two are identical, and −inf has no int8 representation (onnxruntime would keep the
pool and the conv after it in float).

QAT models: the latent float weights are folded and exported; onnxruntime quantizes them per channel with the
rule the QAT weight quantizer simulated (symmetric int8, scale max|W|/127), and the activation ranges the QAT
observers learned are passed as ``TensorQuantOverrides`` (conv inputs and outputs), so the int8 graph carries the
QAT ranges; tensors without a QAT range (max-pool, concat, activation outputs) get calibrated ranges.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..bench.latency import _quantile, cpu_name
from ..errors import InputError
from ..models.head import YoloLayer
from ..models.layers_darknet import MaxPoolLayer
from .layers import FoldedQConv2d, conv_units, dequantized

OPSET = 17
INPUT = "images"


class RawHeads(nn.Module):
    """Export view of a (float, eval-mode) Darknet: ``(N, C, S, S)`` -> tuple of the raw maps
    ``(N, A·(5+C), H_i, W_i)`` that feed each ``[yolo]`` layer, in cfg order.  Max-pool paddings are computed once
    for ``img_size`` (constants in the graph) and use edge replication (see the module docstring)."""

    def __init__(self, model: nn.Module, img_size: int):
        super().__init__()
        self.model = model
        self.pads: dict[int, tuple[int, int, int, int]] = {}
        hs: dict[int, tuple[int, int]] = {}
        hooks = [m.register_forward_pre_hook(lambda _m, args, i=i: hs.__setitem__(i, tuple(args[0].shape[2:])))
                 for i, m in enumerate(model.layers) if isinstance(m, MaxPoolLayer)]
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, model.net.channels, img_size, img_size, device=p.device))
        for h in hooks:
            h.remove()
        for i, (h, w) in hs.items():
            m = model.layers[i]
            top, bottom = m._pads(h)
            left, right = m._pads(w)
            self.pads[i] = (left, max(right, 0), top, max(bottom, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        kept: dict[int, torch.Tensor] = {-1: x}
        heads = []
        for i, layer in enumerate(m.layers):
            if isinstance(layer, YoloLayer):
                heads.append(x)
            elif isinstance(layer, MaxPoolLayer):
                pad = self.pads[i]
                y = F.pad(x, pad, mode="replicate") if any(pad) else x
                x = F.max_pool2d(y, layer.size, layer.stride)
            elif len(layer.inputs) == 1 and layer.inputs[0] == i - 1:
                x = layer(x)
            else:
                x = layer(*(x if j == i - 1 else kept[j] for j in layer.inputs))
            if i in m._keep:
                kept[i] = x
        return tuple(heads)


def export_onnx(model: nn.Module, path: str | Path, img_size: int, opset: int = OPSET) -> Path:
    """Write ``model`` (float or quantized Darknet) as fp32 ONNX with BN folded and quantizers removed
    (:func:`yolocomp.quant.layers.dequantized`): input ``images`` ``(N, C, img_size, img_size)`` (dynamic N),
    outputs ``head0, head1, ...`` = the raw maps of the ``[yolo]`` layers.  Written atomically; returns ``path``."""
    path = Path(path)
    float_model = dequantized(model).cpu().float()
    view = RawHeads(float_model, img_size).eval()
    x = torch.zeros(1, float_model.net.channels, img_size, img_size)
    names = [f"head{k}" for k in range(len(float_model.yolo_indices))]
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(view, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT],
                          output_names=names, dynamic_axes={INPUT: {0: "n"}, **{n: {0: "n"} for n in names}},
                          do_constant_folding=True)
    os.replace(tmp, path)
    return path


class _Reader:
    """onnxruntime CalibrationDataReader over a list of ``(B, C, H, W)`` tensors."""

    def __init__(self, batches: list[torch.Tensor]):
        self.batches = batches
        self.it = iter(batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {INPUT: b.detach().cpu().float().numpy()}

    def rewind(self):
        self.it = iter(self.batches)


def _graph(path: Path):
    import onnx

    return onnx.load(str(path)).graph


def head_conv_nodes(path: str | Path) -> list[str]:
    """Names of the Conv nodes whose output is a graph output (the convs before the ``[yolo]`` layers)."""
    g = _graph(Path(path))
    outs = {o.name for o in g.output}
    return [n.name for n in g.node if n.op_type == "Conv" and n.output[0] in outs]


def qat_overrides(model: nn.Module, fp32_path: str | Path) -> dict[str, list[dict]]:
    """``TensorQuantOverrides`` for onnxruntime from a QAT model's observers: for every :class:`FoldedQConv2d`,
    its input range (``aq_in``) on the ONNX tensor that feeds the matching Conv node and its output range
    (``aq_out``) on the Conv's output tensor, as ``{"rmin", "rmax"}``.  Nodes are matched through the weight
    initializer name, which the exporter takes from the parameter path (``model.<path>.weight``).  A tensor read
    by several convs gets the union of their ranges."""
    g = _graph(Path(fp32_path))
    by_weight = {n.input[1]: n for n in g.node if n.op_type == "Conv" and len(n.input) > 1}
    ranges: dict[str, tuple[float, float]] = {}

    def add(tensor: str, q) -> None:
        if q is None or not q.tracker.initialized:
            return
        lo, hi = float(q.tracker.min_val.min()), float(q.tracker.max_val.max())
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        if tensor in ranges:
            lo, hi = min(lo, ranges[tensor][0]), max(hi, ranges[tensor][1])
        ranges[tensor] = (lo, hi)

    for name, unit in conv_units(model):
        conv = unit.conv
        if not isinstance(conv, FoldedQConv2d):
            continue
        node = by_weight.get(f"model.{name}.conv.weight" if name else "model.conv.weight")
        if node is None:
            continue
        add(node.input[0], conv.aq_in)
        add(node.output[0], conv.aq_out)
    return {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in ranges.items()}


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, batches: list[torch.Tensor],
                  method: str = "minmax", percentile: float = 99.99, exclude_heads: bool = True,
                  overrides: dict | None = None) -> Path:
    """onnxruntime static quantization of ``fp32_path`` to a QDQ int8 model at ``out_path``.

    Weights int8 symmetric per output channel, activations uint8 asymmetric per tensor (the x86 recommendation),
    ranges calibrated on ``batches`` with ``method`` (``minmax`` or ``percentile``), ``overrides`` (tensor name ->
    ``[{"rmin", "rmax"}]``, e.g. :func:`qat_overrides`) replacing calibrated ranges.  ``exclude_heads`` keeps
    the convs that produce the raw head maps in float (see the module docstring)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise InputError(None, f"unknown calibration method {method!r}; known: {', '.join(methods)}")
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    extra = {"WeightSymmetric": True, "ActivationSymmetric": False, "CalibPercentile": percentile}
    if overrides:
        extra["TensorQuantOverrides"] = overrides
    tmp = out_path.with_name(out_path.name + f".tmp-{os.getpid()}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    import logging

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)   # its "consider pre-processing" notes
    try:
        with np.errstate(all="ignore"):
            quantize_static(str(fp32_path), str(tmp), _Reader(batches), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method=methods[method],
                            nodes_to_exclude=head_conv_nodes(fp32_path) if exclude_heads else None,
                            extra_options=extra)
    finally:
        logging.getLogger().setLevel(level)
    os.replace(tmp, out_path)
    return out_path


def session(path: str | Path, threads: int | None = None):
    """A CPU onnxruntime InferenceSession with full graph optimisation and ``threads`` intra-op threads
    (None: onnxruntime's default)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtDetector(nn.Module):
    """An onnxruntime model with a Darknet's eval-mode interface: ``(N, C, S, S)`` float in [0, 1] ->
    ``(N, Σ A·H_i·W_i, 5+C)`` decoded (cx, cy, w, h in input pixels, objectness, class probabilities), the decode
    being the ``[yolo]`` layers of ``model`` (run in float).  Only inference: ``train()`` changes nothing."""

    def __init__(self, path: str | Path, model: nn.Module, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.heads = nn.ModuleList(copy.deepcopy(m) for m in model.yolo_layers)
        self._session = session(self.path, threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self._session.run(None, {INPUT: x.detach().cpu().float().numpy()})
        hw = (x.shape[2], x.shape[3])
        raws = [h(torch.from_numpy(o)) for h, o in zip(self.heads, outs)]
        return torch.cat([h.decode(r, hw) for h, r in zip(self.heads, raws)], 1)


def ort_latency(path: str | Path, img_size: int, batch: int = 1, threads: int | None = None, warmup: int = 5,
                iters: int = 20, channels: int = 3) -> dict:
    """Median onnxruntime CPU latency of ``path`` on a zero ``(batch, channels, S, S)`` batch after ``warmup``
    untimed runs — the policy of :func:`yolocomp.bench.latency.measure_latency` (perf_counter around each run,
    median, p10, p90).  Same keys: ``latency_ms``, ``p10_ms``, ``p90_ms``, ``device``, ``device_name``,
    ``batch``, ``img_size``, ``threads``, ``precision`` (``onnx``), ``iters``."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    sess = session(path, threads)
    x = {INPUT: np.zeros((batch, channels, img_size, img_size), np.float32)}
    for _ in range(warmup):
        sess.run(None, x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, x)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"latency_ms": statistics.median(times), "p10_ms": _quantile(times, 0.1),
            "p90_ms": _quantile(times, 0.9), "device": "cpu", "device_name": cpu_name(), "batch": batch,
            "img_size": f"{img_size}x{img_size}", "threads": threads if threads is not None else os.cpu_count(),
            "precision": "onnx", "iters": iters}


def file_mib(path: str | Path) -> float:
    """Size of a file in MiB."""
    return Path(path).stat().st_size / 2 ** 20


def op_counts(path: str | Path, threads: int | None = 1) -> dict[str, int]:
    """Node types of the graph onnxruntime actually runs (after its optimisations, e.g. QLinearConv), counted."""
    import tempfile
    from collections import Counter

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as d:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(d) / "opt.onnx")
        if threads is not None:
            so.intra_op_num_threads = threads
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return dict(Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node))


__all__ = ["INPUT", "OPSET", "OrtDetector", "RawHeads", "export_onnx", "file_mib",
           "head_conv_nodes", "op_counts", "ort_latency", "qat_overrides", "quantize_onnx", "session"]
