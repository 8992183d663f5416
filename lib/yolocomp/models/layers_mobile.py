"""MobileNet-family cfg blocks of the seed repositories: ``[depthwise]`` (SPURS), ``[mobile]``, ``[pep]``, ``[ep]``
(ANDREY), plus the conv/BN/activation unit and the squeeze-excite module the other seed blocks share.

Every conv inside a block is stored in .weights files the way Darknet stores a ``[convolutional]``: with BN
``beta, gamma, running_mean, running_var, weight``; without BN ``bias, weight``; a conv that has both a bias and
BN (ShuffleNetV2 units only) stores the BN form followed by its bias. Blocks store their inner convs in execution
order. Squeeze-excite stores ``fc1.weight, fc2.weight`` (row-major ``(out, in)``, as SPURS writes ``[se]``), then
``fc1.bias, fc2.bias`` when the linears have biases.
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_activation
from .layer import BuildContext, DarknetLayer, Section, register_layer
from .layers_darknet import BN_EPS, BN_MOMENTUM


def activation(name: str, section: Section | None = None, key: str = "activation") -> nn.Module:
    """The module for a cfg activation name (activations.py), plus ``hard_sigmoid`` = relu6(x+3)/6 for SE gates."""
    if name == "hard_sigmoid":
        return nn.Hardsigmoid()
    try:
        return make_activation(name)
    except KeyError as e:
        if section is None:
            raise
        raise section.error(e.args[0], key) from None


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNetV3 channel rounding: nearest multiple of ``divisor`` (>= divisor), bumped up if it lost > 10 %."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBN(nn.Module):
    """Conv2d (padding (k-1)//2) -> optional BatchNorm2d (as [convolutional]'s) -> activation.
    (N, cin, H, W) -> (N, cout, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, bn: bool = True,
                 act: str = "linear", bias: bool | None = None):
        super().__init__()
        bias = not bn if bias is None else bias
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM) if bn else None
        self.act_name = act
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def darknet_tensors(self) -> list[torch.Tensor]:
        c, bn = self.conv, self.bn
        if bn is None:
            return [c.bias, c.weight]
        tail = [c.bias] if c.bias is not None else []
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, c.weight] + tail


class SqueezeExcite(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))): (N, C, H, W) -> (N, C, H, W); fc are Linear C->hidden->C."""

    def __init__(self, channels: int, hidden: int, bias: bool, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        # a pooling module (not x.mean) so that MAC counters see it, as they saw the seeds' blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act_name, self.gate_name = act, gate
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.act(self.fc1(self.pool(x).flatten(1)))))
        return x * s[:, :, None, None]

    def darknet_tensors(self) -> list[torch.Tensor]:
        t = [self.fc1.weight, self.fc2.weight]
        return t + ([self.fc1.bias, self.fc2.bias] if self.fc1.bias is not None else [])


def _flag(section: Section, key: str, default: int) -> bool:
    v = section.int(key, default)
    if v not in (0, 1):
        raise section.error(f"expected 0 or 1, got {v}", key)
    return bool(v)


def _positive(section: Section, key: str, default=None) -> int:
    v = section.int(key) if default is None else section.int(key, default)
    if v <= 0:
        raise section.error(f"must be a positive integer, got {v}", key)
    return v


def _stride(section: Section) -> int:
    s = section.int("stride", 1)
    if s not in (1, 2):
        raise section.error(f"stride must be 1 or 2, got {s}", "stride")
    return s


def _act_name(section: Section, default: str) -> str:
    name = section.str("activation", default)
    activation(name, section)
    return name


class DepthwiseLayer(DarknetLayer):
    """SPURS ``[depthwise]``: conv with groups = input channels (filters a multiple of them, default equal), optional
    BN, activation.  Keys: filters, size, stride, pad (flag: padding (size-1)//2), batch_normalize, activation."""

    section_type = "depthwise"

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: bool, bn: bool, act: str):
        super().__init__()
        self.unit = ConvBN(cin, cout, k, stride, groups=cin, bn=bn, act=act)
        if not pad:
            self.unit.conv.padding = (0, 0)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x)

    def cfg_options(self) -> list[tuple[str, str]]:
        c = self.unit.conv
        return [("batch_normalize", str(int(self.unit.bn is not None))), ("filters", str(c.out_channels)),
                ("size", str(c.kernel_size[0])), ("stride", str(c.stride[0])), ("pad", str(int(c.padding[0] > 0))),
                ("activation", self.unit.act_name)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        return self.unit.darknet_tensors()


@register_layer("depthwise")
def build_depthwise(section: Section, ctx: BuildContext) -> DepthwiseLayer:
    cin = ctx.in_channels
    cout = _positive(section, "filters", cin)
    if cout % cin:
        raise section.error(f"filters={cout} must be a multiple of the input channels ({cin})", "filters")
    k = _positive(section, "size", 1)
    layer = DepthwiseLayer(cin, cout, k, _positive(section, "stride", 1), _flag(section, "pad", 1),
                           _flag(section, "batch_normalize", 0), _act_name(section, "linear"))
    layer.inputs = [section.index - 1]
    return layer


class MobileLayer(DarknetLayer):
    """ANDREY ``[mobile]``: MobileNetV3 bottleneck.  (N, in, H, W) -> (N, filters, H/stride, W/stride).

    hidden == in: depthwise k×k -> BN -> act -> [SE] -> 1×1 -> BN.  Otherwise: 1×1 in->hidden -> BN -> act ->
    depthwise -> BN -> [SE] -> act -> 1×1 hidden->out -> BN (SE before the activation, as the seed does).
    SE: Linear with bias, ReLU, Sigmoid, squeeze make_divisible(hidden // 4, 8).  Residual iff stride 1, in == out.
    Keys: filters, size, stride, expansion_ratio, squeeze_excite (0/1), activation; ``hidden`` and ``se_hidden``
    override the derived widths (written back only when they differ, e.g. after pruning).
    """

    section_type = "mobile"

    def __init__(self, cin: int, cout: int, k: int, stride: int, e: float, hidden: int, se_hidden: int | None,
                 act: str):
        super().__init__()
        self.expansion_ratio = e
        self.expand = ConvBN(cin, hidden, 1, act=act) if hidden != cin else None
        self.dw = ConvBN(hidden, hidden, k, stride, groups=hidden, act=act if self.expand is None else "linear")
        self.se = SqueezeExcite(hidden, se_hidden, bias=True) if se_hidden else None
        self.post_act = activation(act) if self.expand is not None else nn.Identity()
        self.project = ConvBN(hidden, cout, 1)
        self.act_name = act
        self.residual = stride == 1 and cin == cout
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(self.post_act(y))
        return x + y if self.residual else y

    def cfg_options(self) -> list[tuple[str, str]]:
        dw = self.dw.conv
        cin = dw.in_channels if self.expand is None else self.expand.conv.in_channels
        hidden = dw.out_channels
        e = self.expansion_ratio
        out = [("filters", str(self.out_channels)), ("size", str(dw.kernel_size[0])), ("stride", str(dw.stride[0])),
               ("expansion_ratio", f"{e:g}")]
        if make_divisible(cin * e) != hidden:
            out.append(("hidden", str(hidden)))
        out.append(("squeeze_excite", str(int(self.se is not None))))
        if self.se is not None and self.se.fc1.out_features != make_divisible(hidden // 4):
            out.append(("se_hidden", str(self.se.fc1.out_features)))
        return out + [("activation", self.act_name)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        t = self.expand.darknet_tensors() if self.expand is not None else []
        t += self.dw.darknet_tensors()
        if self.se is not None:
            t += self.se.darknet_tensors()
        return t + self.project.darknet_tensors()


@register_layer("mobile")
def build_mobile(section: Section, ctx: BuildContext) -> MobileLayer:
    cin = ctx.in_channels
    cout = _positive(section, "filters")
    k = _positive(section, "size", 3)
    if k % 2 == 0:
        raise section.error(f"size must be odd, got {k}", "size")
    e = section.float("expansion_ratio", 1.0)
    if e <= 0:
        raise section.error(f"must be positive, got {e}", "expansion_ratio")
    section.str("pad", "1")  # the seed always pads (size-1)//2; the key is accepted and ignored
    hidden = _positive(section, "hidden", make_divisible(cin * e))
    se = _flag(section, "squeeze_excite", 0)
    se_hidden = _positive(section, "se_hidden", make_divisible(hidden // 4)) if se else None
    layer = MobileLayer(cin, cout, k, _stride(section), e, hidden, se_hidden, _act_name(section, "relu"))
    layer.inputs = [section.index - 1]
    return layer


class PEPLayer(DarknetLayer):
    """ANDREY ``[pep]`` / ``[ep]`` (YOLO Nano).  (N, in, H, W) -> (N, filters, H/stride, W/stride).

    PEP: 1×1 in->x (BN, act) then EP on x channels.  EP: 1×1 c->c (BN, act) -> depthwise 3×3 stride (BN, act) ->
    1×1 c->filters (BN, no act).  Residual (after the last BN) iff stride 1 and in == filters.
    Keys: filters, stride, activation, and x (PEP only).
    """

    def __init__(self, cin: int, cout: int, x: int | None, stride: int, act: str):
        super().__init__()
        self.section_type = "pep" if x is not None else "ep"
        mid = cin if x is None else x
        self.proj = ConvBN(cin, x, 1, act=act) if x is not None else None
        self.expand = ConvBN(mid, mid, 1, act=act)
        self.dw = ConvBN(mid, mid, 3, stride, groups=mid, act=act)
        self.project = ConvBN(mid, cout, 1)
        self.act_name = act
        self.residual = stride == 1 and cin == cout
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.proj is None else self.proj(x)
        y = self.project(self.dw(self.expand(y)))
        return x + y if self.residual else y

    def cfg_options(self) -> list[tuple[str, str]]:
        out = [("filters", str(self.out_channels))]
        if self.proj is not None:
            out.append(("x", str(self.proj.conv.out_channels)))
        return out + [("stride", str(self.dw.conv.stride[0])), ("activation", self.act_name)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        units = ([self.proj] if self.proj is not None else []) + [self.expand, self.dw, self.project]
        return [t for u in units for t in u.darknet_tensors()]


@register_layer("pep")
def build_pep(section: Section, ctx: BuildContext) -> PEPLayer:
    layer = PEPLayer(ctx.in_channels, _positive(section, "filters"), _positive(section, "x"), _stride(section),
                     _act_name(section, "relu6"))
    layer.inputs = [section.index - 1]
    return layer


@register_layer("ep")
def build_ep(section: Section, ctx: BuildContext) -> PEPLayer:
    layer = PEPLayer(ctx.in_channels, _positive(section, "filters"), None, _stride(section),
                     _act_name(section, "relu6"))
    layer.inputs = [section.index - 1]
    return layer
