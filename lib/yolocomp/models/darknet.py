"""The graph model built from a Darknet cfg: :class:`Darknet`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .head import YoloLayer
from .layer import LAYER_BUILDERS, BuildContext, Section
from .layers_darknet import ignorable_keys
from .parse import parse_cfg, read_cfg


@dataclass
class NetInfo:
    """The ``[net]`` section: input size the cfg was written for, input channels, and all raw options."""

    width: int
    height: int
    channels: int
    options: dict[str, str] = field(default_factory=dict)


class Darknet(nn.Module):
    """A YOLO detector defined by cfg sections.

    ``layers``: nn.ModuleList of DarknetLayer, one per cfg layer section, same indices as the cfg.
    ``yolo_layers``: the YoloLayer modules in cfg order; ``yolo_indices``: their layer indices.
    ``ignored_keys``: (section index, key) of the training-only keys that were accepted but not used
    (index -1 = ``[net]``).  ``net``: :class:`NetInfo`.

    forward(x: (N, C, H, W) float, H and W multiples of 32):
      * train mode: list with one raw head map (N, A, H_i, W_i, 5+classes) per ``[yolo]`` layer, cfg order
        (raw conv outputs, anchor-major; no activation applied);
      * eval mode: (N, Σ A·H_i·W_i, 5+classes) decoded as in :func:`yolocomp.models.head.decode_yolo`
        (cx, cy, w, h in input pixels, objectness, class probabilities), ordered by yolo layer, anchor, row, column.
    """

    def __init__(self, sections: list[Section], classes: int | None = None, in_channels: int | None = None):
        super().__init__()
        sections = copy.deepcopy(sections)
        net = sections[0]
        self.path = net.path
        if classes is not None:
            _set_classes(sections, classes)
        width, height = net.int("width", 416), net.int("height", 416)
        channels = in_channels if in_channels is not None else net.int("channels", 3)
        self.net = NetInfo(width, height, channels, dict(net.options))
        self.ignored_keys: list[tuple[int, str]] = []
        self._check_keys(net)

        self.layers = nn.ModuleList()
        out_channels: list[int] = []
        for s in sections[1:]:
            ctx = BuildContext(list(out_channels), out_channels[-1] if out_channels else channels, net, self.path)
            layer = LAYER_BUILDERS[s.type](s, ctx)
            if not layer.inputs:
                layer.inputs = [s.index - 1]
            self._check_keys(s)
            if isinstance(layer, YoloLayer):
                _check_head(sections, s, layer, ctx.in_channels)
            out_channels.append(layer.out_channels)
            self.layers.append(layer)
        self.yolo_indices = [i for i, m in enumerate(self.layers) if isinstance(m, YoloLayer)]
        if not self.yolo_indices:
            raise net.error("the cfg has no [yolo] layer")
        n_cls = {self.layers[i].classes for i in self.yolo_indices}
        if len(n_cls) > 1:
            raise sections[self.yolo_indices[-1] + 1].error(f"all [yolo] layers must have the same classes, got "
                                                            f"{sorted(n_cls)}", "classes")
        # outputs a later layer reads other than as its direct predecessor; everything else is dropped at once
        self._keep = {j for i, m in enumerate(self.layers) for j in m.inputs if j != i - 1}

    @classmethod
    def from_cfg(cls, cfg: str | Path, classes: int | None = None, in_channels: int | None = None) -> Darknet:
        """Build from a cfg file path or from cfg text (a string containing a newline).  ``classes`` rewrites every
        ``[yolo]`` classes and the filters of the conv before it; ``in_channels`` overrides ``[net] channels``."""
        if isinstance(cfg, str) and "\n" in cfg:
            sections = parse_cfg(cfg)
        else:
            sections = read_cfg(cfg)
        return cls(sections, classes, in_channels)

    @property
    def yolo_layers(self) -> list[YoloLayer]:
        return [self.layers[i] for i in self.yolo_indices]

    @property
    def classes(self) -> int:
        return self.yolo_layers[0].classes

    def _check_keys(self, s: Section) -> None:
        allowed = ignorable_keys(s.type)
        for key in s.options:
            if key in s.used:
                continue
            if key not in allowed:
                known = ", ".join(sorted((s.used | allowed) - {"clip"})) if s.used else "none"
                raise s.error(f"unknown key for [{s.type}] (known: {known})", key)
            self.ignored_keys.append((s.index, key))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        img_hw = (x.shape[2], x.shape[3])
        kept: dict[int, torch.Tensor] = {-1: x}
        heads: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, YoloLayer):
                heads.append(layer(x))      # the graph passes the conv map on unchanged, as DK does
            elif len(layer.inputs) == 1 and layer.inputs[0] == i - 1:
                x = layer(x)
            else:
                x = layer(*(x if j == i - 1 else kept[j] for j in layer.inputs))
            if i in self._keep:
                kept[i] = x
        if self.training:
            return heads
        return torch.cat([m.decode(h, img_hw) for m, h in zip(self.yolo_layers, heads)], 1)

    def to_cfg(self) -> str:
        """The model as cfg text, from the current module shapes ([net] keeps its original options)."""
        net = dict(self.net.options)
        net["channels"] = str(self.net.channels)
        lines = ["[net]"] + [f"{k}={v}" for k, v in net.items()]
        for layer in self.layers:
            lines += ["", f"[{layer.section_type}]"] + [f"{k}={v}" for k, v in layer.cfg_options()]
        return "\n".join(lines) + "\n"


def _head_conv(sections: list[Section], yolo: Section) -> Section:
    prev = sections[yolo.index]          # sections[0] is [net], so layer i-1 is sections[i]
    if prev.type not in ("convolutional", "conv"):
        raise yolo.error(f"the layer before a [yolo] must be a [convolutional], got [{prev.type}]")
    return prev


def _set_classes(sections: list[Section], classes: int) -> None:
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    for s in sections:
        if s.type == "yolo":
            n_mask = len(s.ints("mask", list(range(s.int("num", 1)))))
            s.options["classes"] = str(classes)
            _head_conv(sections, s).options["filters"] = str(n_mask * (classes + 5))
            s.used.clear()


def _check_head(sections: list[Section], s: Section, layer: YoloLayer, in_channels: int) -> None:
    conv = _head_conv(sections, s)
    want = layer.num_anchors * (layer.classes + 5)
    if in_channels != want:
        raise conv.error(f"filters={in_channels} but the [yolo] on line {s.line} needs len(mask)*(classes+5) = "
                         f"{layer.num_anchors}*({layer.classes}+5) = {want}", "filters")
