"""Channel/spatial attention cfg blocks of the seed repositories: ``[se]`` (SPURS / HALO), ``[fca]`` (ANDREY),
``[ca]`` + ``[sa]`` (CBAM, HALO-old), ``[eca]`` (HALO-old).  All keep (N, C, H, W) -> (N, C, H, W).

.weights order: ``[se]``/``[fca]``: fc1.weight, fc2.weight (row-major (out, in)), then fc1.bias, fc2.bias if the
linears have biases.  ``[ca]``: the shared MLP's two 1×1 conv weights.  ``[sa]``, ``[eca]``: the conv weight.
"""

from __future__ import annotations

import torch
from torch import nn

from .layer import BuildContext, DarknetLayer, Section, register_layer
from .layers_mobile import SqueezeExcite, _act_name, _flag, _positive

_GATES = ("sigmoid", "hard_sigmoid")


class SELayer(DarknetLayer):
    """``[se]``: squeeze-excite with a ReLU between two Linear layers.

    Keys: reduction (default 4; hidden = C // reduction) or hidden, bias (0/1, default 0), gate (``hard_sigmoid``
    default, or ``sigmoid``), filters (optional; must equal the input channels).  The defaults are SPURS' ``[se]``
    (no bias, hard-sigmoid); HALO's GhostNet SE is ``bias=1 gate=sigmoid``; the yolov3-tiny SE is
    ``reduction=16 bias=1 gate=sigmoid`` without HALO-old's unused ``fc2`` branch.
    """

    section_type = "se"

    def __init__(self, channels: int, hidden: int, bias: bool, gate: str, act: str = "relu"):
        super().__init__()
        self.se = SqueezeExcite(channels, hidden, bias=bias, act=act, gate=gate)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(x)

    def _hidden_options(self) -> list[tuple[str, str]]:
        c, h = self.se.fc1.in_features, self.se.fc1.out_features
        r = c // h if h else 0
        return [("reduction", str(r))] if r and c // r == h else [("hidden", str(h))]

    def cfg_options(self) -> list[tuple[str, str]]:
        return self._hidden_options() + [("bias", str(int(self.se.fc1.bias is not None))),
                                         ("gate", self.se.gate_name)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return self.se.darknet_tensors()


class FCALayer(SELayer):
    """ANDREY ``[fca]`` (YOLO Nano's fully-connected attention): Linear C->C//reduction (no bias) -> activation ->
    Linear (no bias) -> Sigmoid -> x·s.  Keys: reduction (default 8) or hidden, activation (default relu6)."""

    section_type = "fca"

    def cfg_options(self) -> list[tuple[str, str]]:
        return self._hidden_options() + [("activation", self.se.act_name)]


def _se_hidden(section: Section, channels: int, default_reduction: int) -> int:
    if "hidden" in section.options:
        return _positive(section, "hidden")
    r = _positive(section, "reduction", default_reduction)
    if channels // r < 1:
        raise section.error(f"reduction {r} leaves no hidden units for {channels} channels", "reduction")
    return channels // r


@register_layer("se")
def build_se(section: Section, ctx: BuildContext) -> SELayer:
    c = ctx.in_channels
    if section.int("filters", c) != c:
        raise section.error(f"filters={section.options['filters']} but the input has {c} channels", "filters")
    gate = section.str("gate", "hard_sigmoid")
    if gate not in _GATES:
        raise section.error(f"gate must be one of {', '.join(_GATES)}, got {gate!r}", "gate")
    layer = SELayer(c, _se_hidden(section, c, 4), _flag(section, "bias", 0), gate)
    layer.inputs = [section.index - 1]
    return layer


@register_layer("fca")
def build_fca(section: Section, ctx: BuildContext) -> FCALayer:
    c = ctx.in_channels
    layer = FCALayer(c, _se_hidden(section, c, 8), False, "sigmoid", _act_name(section, "relu6"))
    layer.inputs = [section.index - 1]
    return layer


class ChannelAttention(DarknetLayer):
    """CBAM ``[ca]``: sigmoid(mlp(avgpool x) + mlp(maxpool x)) · x; mlp = 1×1 conv C->C//ratio (no bias) -> ReLU ->
    1×1 conv -> C (no bias), shared by both pools.  Key: ratio (default 16)."""

    section_type = "ca"

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        # pooling modules (not x.mean/x.amax) so that MAC counters see them, as they saw the seed's block
        self.avg, self.max = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(self.relu(self.fc1(self.avg(x))))
        mx = self.fc2(self.relu(self.fc1(self.max(x))))
        return x * torch.sigmoid(avg + mx)

    def cfg_options(self) -> list[tuple[str, str]]:
        c, h = self.fc1.in_channels, self.fc1.out_channels
        r = c // h
        return [("ratio", str(r))] if c // r == h else [("hidden", str(h))]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return [self.fc1.weight, self.fc2.weight]


@register_layer("ca")
def build_ca(section: Section, ctx: BuildContext) -> ChannelAttention:
    c = ctx.in_channels
    if "hidden" in section.options:
        hidden = _positive(section, "hidden")
    else:
        r = _positive(section, "ratio", 16)
        if c // r < 1:
            raise section.error(f"ratio {r} leaves no hidden units for {c} channels", "ratio")
        hidden = c // r
    layer = ChannelAttention(c, hidden)
    layer.inputs = [section.index - 1]
    return layer


class SpatialAttention(DarknetLayer):
    """CBAM ``[sa]``: x · sigmoid(conv k×k 2->1 (no bias) of [channel mean, channel max]).
    Key: kernelsize (3 or 7)."""

    section_type = "sa"

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, k, padding=k // 2, bias=False)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.conv(m))

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("kernelsize", str(self.conv.kernel_size[0]))]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return [self.conv.weight]


@register_layer("sa")
def build_sa(section: Section, ctx: BuildContext) -> SpatialAttention:
    k = section.int("kernelsize", 7)
    if k not in (3, 7):
        raise section.error(f"kernelsize must be 3 or 7, got {k}", "kernelsize")
    layer = SpatialAttention(ctx.in_channels, k)
    layer.inputs = [section.index - 1]
    return layer


class ECALayer(DarknetLayer):
    """``[eca]``: x · sigmoid(conv1d over the C pooled values, kernel k, padding k//2, no bias).  Key: size (odd,
    default 3; HALO-old's ``kernel_size`` is ignored by the seed, which always uses 3, so it is not a key here)."""

    section_type = "eca"

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(self.pool(x).flatten(1)[:, None, :])[:, 0]
        return x * torch.sigmoid(s)[:, :, None, None]

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("size", str(self.conv.kernel_size[0]))]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return [self.conv.weight]


@register_layer("eca")
def build_eca(section: Section, ctx: BuildContext) -> ECALayer:
    k = _positive(section, "size", 3)
    if k % 2 == 0:
        raise section.error(f"size must be odd, got {k}", "size")
    layer = ECALayer(ctx.in_channels, k)
    layer.inputs = [section.index - 1]
    return layer

