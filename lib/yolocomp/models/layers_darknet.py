"""Darknet's own layer types (``[yolo]`` is in :mod:`.head`), one :class:`DarknetLayer` subclass each, registered
under their cfg section names.

Key policy (checked by :class:`~yolocomp.models.darknet.Darknet` after each builder ran): a key that a builder read is
used; a key in :data:`IGNORED_KEYS` for that section type (or in :data:`COMMON_IGNORED_KEYS`) is a training-only
setting of darknet's own trainer and is accepted and reported in ``Darknet.ignored_keys``; any other key is a
CfgError.  Darknet keys that would change the architecture in a way not implemented here (``dilation``,
``stride_x``, ``antialiasing``, ``weights_type`` ...) are accepted only at their default value.

BatchNorm uses eps 1e-5 (DK) and PyTorch momentum 0.03 (the value the seed repositories train with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import ACTIVATION_NAMES, make_activation
from .layer import BuildContext, DarknetLayer, Section, register_layer

BN_EPS = 1e-5
BN_MOMENTUM = 0.03

# darknet's parse_network_cfg reads these for every layer; all are trainer settings.
COMMON_IGNORED_KEYS = frozenset({
    "clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn", "dontload",
    "dontloadscales", "learning_rate",
})
IGNORED_KEYS: dict[str, frozenset[str]] = {
    "net": frozenset({
        "batch", "subdivisions", "learning_rate", "max_batches", "momentum", "decay", "burn_in", "policy", "steps", "scales",
        "step", "gamma", "power", "angle", "saturation", "exposure", "hue", "aspect", "mosaic", "mosaic_bound",
        "cutmix", "mixup", "blur", "gaussian_noise", "flip", "letter_box", "max_epochs", "ema_alpha", "adam", "B1",
        "B2", "eps", "loss_scale", "workspace_size_limit_MB", "optimized_memory", "dynamic_minibatch",
        "time_steps", "track", "augment_speed", "sequential_subdivisions", "init_sequential_subdivisions",
        "try_fix_nan", "resize_step", "min_crop", "max_crop", "max_chart_loss", "batches_per_cycle",
        "batches_cycle_mult", "equidistant_point", "unsupervised", "contrastive", "contrastive_jit_flip",
        "contrastive_color", "adversarial_lr", "attention", "center", "show_receptive_field", "label_smooth_eps",
        "cosine_lr", "sgdr_cycle", "sgdr_mult", "seed",
    }),
    "convolutional": frozenset({"stream", "wait_stream", "grad_centr"}),
    "dropout": frozenset({"dropblock", "dropblock_size_rel", "dropblock_size_abs"}),
}
IGNORED_KEYS["conv"] = IGNORED_KEYS["convolutional"]


def ignorable_keys(section_type: str) -> frozenset[str]:
    """Training-only keys accepted (and ignored) in a section of this type."""
    if section_type in ("net", "network"):
        return IGNORED_KEYS["net"]
    return COMMON_IGNORED_KEYS | IGNORED_KEYS.get(section_type, frozenset())


def _only_default(s: Section, key: str, default: int, actual: int | None = None) -> None:
    value = s.int(key, default) if actual is None else actual
    if value != default:
        raise s.error(f"value {value} is not supported (only {default})", key)


def _positive(s: Section, key: str, default) -> int:
    v = s.int(key, default)
    if v < 1:
        raise s.error(f"must be >= 1, got {v}", key)
    return v


def _activation(s: Section, default: str) -> tuple[str, nn.Module]:
    name = s.str("activation", default)
    if name not in ACTIVATION_NAMES:
        raise s.error(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_NAMES)}", "activation")
    return name, make_activation(name)


def _refs(s: Section, ctx: BuildContext, key: str) -> list[int]:
    refs = s.ints(key)
    if not refs:
        raise s.error("needs at least one layer index", key)
    return [ctx.resolve(s, key, r) for r in refs]


class ConvLayer(DarknetLayer):
    """``[convolutional]``: Conv2d (no bias when batch-normalized) -> BatchNorm2d -> activation.
    (N, C_in, H, W) -> (N, filters, (H + 2p - size)//stride + 1, ...)."""

    section_type = "convolutional"

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, padding: int, groups: int,
                 batch_normalize: bool, activation: str):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride, padding, groups=groups, bias=not batch_normalize)
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_normalize else None
        self.activation = activation
        self.act = make_activation(activation)
        self.out_channels = filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def cfg_options(self) -> list[tuple[str, str]]:
        c = self.conv
        k, p = c.kernel_size[0], c.padding[0]
        opts = [("batch_normalize", "1")] if self.bn is not None else []
        opts += [("filters", str(c.out_channels)), ("size", str(k)), ("stride", str(c.stride[0]))]
        opts += [("pad", "1")] if p == k // 2 else [("pad", "0"), ("padding", str(p))]
        if c.groups != 1:
            opts.append(("groups", str(c.groups)))
        return opts + [("activation", self.activation)]

    def darknet_tensors(self) -> list[torch.Tensor]:
        if self.bn is not None:
            return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var, self.conv.weight]
        return [self.conv.bias, self.conv.weight]


@register_layer("convolutional", "conv")
def build_conv(s: Section, ctx: BuildContext) -> ConvLayer:
    filters = _positive(s, "filters", 1)
    size = _positive(s, "size", 1)
    stride = _positive(s, "stride", 1)
    padding = s.int("padding", 0)
    if s.int("pad", 0):
        padding = size // 2
    if padding < 0:
        raise s.error(f"must be >= 0, got {padding}", "padding")
    groups = _positive(s, "groups", 1)
    bn = s.int("batch_normalize", 0)
    if bn not in (0, 1):
        raise s.error(f"must be 0 or 1, got {bn}", "batch_normalize")
    name, _ = _activation(s, "logistic")   # DK's default when the key is missing
    for key in ("stride_x", "stride_y"):
        _only_default(s, key, stride)
    for key in ("dilation",):
        _only_default(s, key, 1)
    for key in ("antialiasing", "binary", "xnor", "flipped", "coordconv", "assisted_excitation", "sway",
                "rotate", "stretch", "stretch_sway", "deform"):
        _only_default(s, key, 0)
    if "share_index" in s.options:
        raise s.error("weight sharing between layers is not supported", "share_index")
    if ctx.in_channels % groups or filters % groups:
        raise s.error(f"input channels {ctx.in_channels} and filters {filters} must both be divisible by "
                      f"groups={groups}", "groups")
    return ConvLayer(ctx.in_channels, filters, size, stride, padding, groups, bool(bn), name)


class ShortcutLayer(DarknetLayer):
    """``[shortcut]``: activation(previous + Σ from-layers).  Output channels = previous layer's C; a wider
    ``from`` layer contributes its first C channels (as DK does; yolov3-tiny-prn and enet-coco rely on it)."""

    section_type = "shortcut"

    def __init__(self, prev: int, sources: list[int], channels: int, activation: str):
        super().__init__()
        self.inputs = [prev] + sources
        self.out_channels = channels
        self.activation = activation
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        for o in others:
            x = x + (o if o.shape[1] == c else o[:, :c])
        return self.act(x)

    def cfg_options(self) -> list[tuple[str, str]]:
        me = self.inputs[0] + 1
        return [("from", ",".join(str(j - me) for j in self.inputs[1:])), ("activation", self.activation)]


@register_layer("shortcut")
def build_shortcut(s: Section, ctx: BuildContext) -> ShortcutLayer:
    sources = _refs(s, ctx, "from")
    name, _ = _activation(s, "linear")
    if s.str("weights_type", "none") != "none":
        raise s.error("weighted shortcuts are not supported (only none)", "weights_type")
    if s.str("weights_normalization", "none") != "none":
        raise s.error("weighted shortcuts are not supported (only none)", "weights_normalization")
    for j in sources:
        # DK would add a narrower from-layer into the leading channels only and pass the rest through unsummed;
        # no published cfg does that and it is nearly always a wiring mistake, so it is an error here.
        if ctx.channels[j] < ctx.in_channels:
            raise s.error(f"channel mismatch: layer {j} has {ctx.channels[j]} channels, fewer than the "
                          f"{ctx.in_channels} of the previous layer {s.index - 1}", "from")
    return ShortcutLayer(s.index - 1, sources, ctx.in_channels, name)


class RouteLayer(DarknetLayer):
    """``[route]``: channel concatenation of the listed layers; with ``groups=G group_id=g`` each input contributes
    its g-th of G equal channel chunks.  Output C = Σ C_j / G."""

    section_type = "route"

    def __init__(self, sources: list[int], channels: int, groups: int = 1, group_id: int = 0):
        super().__init__()
        self.inputs = sources
        self.out_channels = channels
        self.groups = groups
        self.group_id = group_id

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.groups > 1:
            xs = tuple(x.chunk(self.groups, 1)[self.group_id] for x in xs)
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)

    def cfg_options(self) -> list[tuple[str, str]]:
        opts = [("layers", ",".join(str(j) for j in self.inputs))]
        if self.groups > 1:
            opts += [("groups", str(self.groups)), ("group_id", str(self.group_id))]
        return opts


@register_layer("route")
def build_route(s: Section, ctx: BuildContext) -> RouteLayer:
    sources = _refs(s, ctx, "layers")
    groups = _positive(s, "groups", 1)
    group_id = s.int("group_id", 0)
    if not 0 <= group_id < groups:
        raise s.error(f"must be in [0, groups={groups}), got {group_id}", "group_id")
    for j in sources:
        if ctx.channels[j] % groups:
            raise s.error(f"layer {j} has {ctx.channels[j]} channels, not divisible by groups={groups}", "groups")
    return RouteLayer(sources, sum(ctx.channels[j] for j in sources) // groups, groups, group_id)


class UpsampleLayer(DarknetLayer):
    """``[upsample]``: nearest-neighbour ×stride.  (N, C, H, W) -> (N, C, H·s, W·s)."""

    section_type = "upsample"

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.out_channels = channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.stride, mode="nearest")

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("stride", str(self.stride))]


@register_layer("upsample")
def build_upsample(s: Section, ctx: BuildContext) -> UpsampleLayer:
    stride = _positive(s, "stride", 2)   # DK's negative stride (down-sampling) is not supported
    if s.float("scale", 1.0) != 1.0:
        raise s.error("only scale=1 is supported", "scale")
    return UpsampleLayer(ctx.in_channels, stride)


class MaxPoolLayer(DarknetLayer):
    """``[maxpool]`` with DK geometry: out = (W + padding - size)//stride + 1, window offset -padding//2,
    out-of-image taps are -inf.  So size=2 stride=1 keeps the size (pads right/bottom), odd sizes round up."""

    section_type = "maxpool"

    def __init__(self, channels: int, size: int, stride: int, padding: int):
        super().__init__()
        self.out_channels = channels
        self.size, self.stride, self.padding = size, stride, padding

    def _pads(self, n: int) -> tuple[int, int]:
        out = (n + self.padding - self.size) // self.stride + 1
        before = self.padding // 2
        return before, (out - 1) * self.stride + self.size - n - before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pads(x.shape[2])
        left, right = self._pads(x.shape[3])
        if top or bottom or left or right:
            x = F.pad(x, (left, max(right, 0), top, max(bottom, 0)), value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)

    def cfg_options(self) -> list[tuple[str, str]]:
        opts = [("size", str(self.size)), ("stride", str(self.stride))]
        return opts + ([] if self.padding == self.size - 1 else [("padding", str(self.padding))])


@register_layer("maxpool")
def build_maxpool(s: Section, ctx: BuildContext) -> MaxPoolLayer:
    stride = _positive(s, "stride", 1)
    size = _positive(s, "size", stride)
    padding = s.int("padding", size - 1)
    if padding < 0:
        raise s.error(f"must be >= 0, got {padding}", "padding")
    for key in ("stride_x", "stride_y"):
        _only_default(s, key, stride)
    for key in ("maxpool_depth", "antialiasing"):
        _only_default(s, key, 0)
    return MaxPoolLayer(ctx.in_channels, size, stride, padding)


class AvgPoolLayer(DarknetLayer):
    """``[avgpool]``: global average pool.  (N, C, H, W) -> (N, C, 1, 1)."""

    section_type = "avgpool"

    def __init__(self, channels: int):
        super().__init__()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)

    def cfg_options(self) -> list[tuple[str, str]]:
        return []


@register_layer("avgpool")
def build_avgpool(s: Section, ctx: BuildContext) -> AvgPoolLayer:
    return AvgPoolLayer(ctx.in_channels)


class DropoutLayer(DarknetLayer):
    """``[dropout]``: inverted dropout with ``probability`` in training, identity in eval (DropBlock keys ignored)."""

    section_type = "dropout"

    def __init__(self, channels: int, probability: float):
        super().__init__()
        self.out_channels = channels
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.probability, self.training) if self.probability > 0 else x

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("probability", repr(self.probability))]


@register_layer("dropout")
def build_dropout(s: Section, ctx: BuildContext) -> DropoutLayer:
    p = s.float("probability", 0.2)
    if not 0.0 <= p < 1.0:
        raise s.error(f"must be in [0, 1), got {p}", "probability")
    return DropoutLayer(ctx.in_channels, p)


class ReorgLayer(DarknetLayer):
    """``[reorg]``: space-to-depth by ``stride``.  (N, C, H, W) -> (N, C·s², H/s, W/s), channel order of
    ``torch.pixel_unshuffle`` (DK's reorg_cpu orders channels differently; only matters for YOLOv2 weights)."""

    section_type = "reorg"

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.out_channels = channels * stride * stride
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.stride)

    def cfg_options(self) -> list[tuple[str, str]]:
        return [("stride", str(self.stride))]


@register_layer("reorg")
def build_reorg(s: Section, ctx: BuildContext) -> ReorgLayer:
    _only_default(s, "reverse", 0)
    return ReorgLayer(ctx.in_channels, _positive(s, "stride", 1))


class ScaleChannelsLayer(DarknetLayer):
    """``[scale_channels] from=k``: activation(layer k's output (N, C, H, W) × this layer's input (N, C, 1, 1))."""

    section_type = "scale_channels"

    def __init__(self, prev: int, source: int, channels: int, activation: str):
        super().__init__()
        self.inputs = [prev, source]
        self.out_channels = channels
        self.activation = activation
        self.act = make_activation(activation)

    def forward(self, scale: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        return self.act(feature * scale)

    def cfg_options(self) -> list[tuple[str, str]]:
        opts = [("from", str(self.inputs[1] - self.inputs[0] - 1))]
        return opts + ([] if self.activation == "linear" else [("activation", self.activation)])


@register_layer("scale_channels")
def build_scale_channels(s: Section, ctx: BuildContext) -> ScaleChannelsLayer:
    sources = _refs(s, ctx, "from")
    if len(sources) != 1:
        raise s.error(f"expects exactly one layer, got {len(sources)}", "from")
    source = sources[0]
    _only_default(s, "scale_wh", 0)
    name, _ = _activation(s, "linear")
    if ctx.channels[source] != ctx.in_channels:
        raise s.error(f"channel mismatch: layer {source} has {ctx.channels[source]} channels, the scale input "
                      f"has {ctx.in_channels}", "from")
    return ScaleChannelsLayer(s.index - 1, source, ctx.in_channels, name)
