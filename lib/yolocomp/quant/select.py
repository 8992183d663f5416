"""Which layers a scheme quantizes: SPURS' ``--qlayers q`` (stage-wise), generalised through the graph.

SPURS Era A binarizes a ``[convolutional]`` block at index i iff ``q != −1 and q <= i <= 74`` — 74 being the last
layer of Darknet-53 in yolov3.cfg, hard-coded (quant-kd-spec §1.2.1, fact 19).  Here the upper bound is the end of
the *backbone* of whatever model is given, found from its graph by :func:`backbone_end`, and any layer holding conv
units (``[convolutional]`` or a block such as ``[mobile]``) counts.  With ``heads=True`` the range runs to the last
layer (DoReFa / 8-bit schemes quantize every conv, as the seeds do).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..models.darknet import Darknet
from ..models.layers_darknet import ConvLayer, MaxPoolLayer, RouteLayer, UpsampleLayer
from ..models.layers_mobile import DepthwiseLayer, MobileLayer, PEPLayer
from ..models.layers_shuffle import ShuffleStage
from .layers import conv_units

# layers that transform features the way a detection head's conv stack does (attention gates are not among them)
_CONV_LIKE = (ConvLayer, DepthwiseLayer, MobileLayer, PEPLayer, ShuffleStage)
_PROBE = 64


def _heights(model: Darknet) -> list[int]:
    """Output height of every layer for a :data:`_PROBE`-pixel zero image (-1 for non-map outputs)."""
    hs: dict[int, int] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, i=i: hs.__setitem__(i, out.shape[2] if out.ndim == 4
                                                                               else -1))
             for i, m in enumerate(model.layers)]
    was = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, model.net.channels, _PROBE, _PROBE, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return [hs[i] for i in range(len(model.layers))]


def _source(model: Darknet, j: int) -> int:
    """Follow single-input routes and stride-1 max-pools back to the layer that produced ``j``'s values."""
    layers = model.layers
    while j >= 0:
        m = layers[j]
        single_route = isinstance(m, RouteLayer) and len(m.inputs) == 1 and m.groups == 1
        if not (single_route or (isinstance(m, MaxPoolLayer) and m.stride == 1)):
            return j
        j = m.inputs[0]
    return j


def backbone_end(model: Darknet) -> int:
    """Index of the last backbone layer, from the graph (yolov3: 74, as SPURS hard-codes; yolov3-tiny: 12).

    Walk back from the first ``[upsample]`` (the start of the top-down path; the first ``[yolo]`` when there is
    none) through the deepest scale's head: plain convs and conv blocks that keep the resolution, single-input
    routes (jumps), and SPP blocks (a route of stride-1 max-pools of one layer).  The walk stops at anything else
    (a shortcut, a concatenation of different layers, an attention gate, a down-sampling layer) and at a 1×1 conv
    that *widens* the channels (a backbone's last expansion, as MobileNetV3's and EfficientNet's).  The head starts
    at the earliest channel-reducing 1×1 conv of the walk (the first layer of the walk if there is none); the
    backbone ends just before it.  Every zoo model's boundary agrees with its cfg's ``####`` separator where
    one is written (darknet cfgs), and with the end of the named backbone elsewhere."""
    layers = model.layers
    heights = _heights(model)
    ups = [i for i, m in enumerate(layers) if isinstance(m, UpsampleLayer)]
    chain: list[int] = []
    if ups:
        i = layers[ups[0]].inputs[0]
    else:   # no top-down path: start below the conv that feeds the first [yolo], which is head by definition
        i = layers[layers[model.yolo_indices[0]].inputs[0]].inputs[0]
    while i >= 0:
        m = layers[i]
        if isinstance(m, RouteLayer):
            sources = {_source(model, j) for j in m.inputs}
            if m.groups != 1 or len(sources) != 1:
                break
            i = sources.pop()
            continue
        if not isinstance(m, _CONV_LIKE) or len(m.inputs) != 1:
            break
        if heights[i] != (heights[m.inputs[0]] if m.inputs[0] >= 0 else _PROBE):
            break
        if isinstance(m, ConvLayer) and m.conv.kernel_size == (1, 1) and m.out_channels > m.conv.in_channels:
            break
        chain.append(i)
        i = m.inputs[0]
    if not chain:
        return i
    reducing = [j for j in chain if isinstance(layers[j], ConvLayer) and layers[j].conv.kernel_size == (1, 1)
                and layers[j].out_channels < layers[j].conv.in_channels]
    return min(reducing or chain) - 1


def quantizable_layers(model: nn.Module) -> list[int]:
    """Indices of the layers that hold at least one conv unit."""
    return [i for i, m in enumerate(model.layers) if next(conv_units(m), None) is not None]


def select_layers(model: Darknet, qlayers: int = 0, heads: bool = False, end: int | None = None) -> list[int]:
    """Layer indices quantized by ``--qlayers q``: the quantizable layers with ``q <= i <= end``.

    qlayers: −1 = none (SPURS' default), 0 = from the first layer.  end: last layer index (default
    :func:`backbone_end`; pass 74 for SPURS' hard-coded bound on any model).  heads: run to the last layer
    instead (head convs quantized too; ``end`` is then ignored)."""
    if not isinstance(qlayers, int) or qlayers < -1:
        raise InputError(getattr(model, "path", None), f"qlayers must be an integer >= -1, got {qlayers!r}")
    if qlayers == -1:
        return []
    last = len(model.layers) - 1 if heads else (backbone_end(model) if end is None else end)
    return [i for i in quantizable_layers(model) if qlayers <= i <= last]
