"""Model cost: parameters, three multiply-accumulate (MAC) counts and the size of the darknet .weights file.

The three MAC counts answer different questions (definitions: shared/reference/arch-anchors.md §1):

* ``macs_conv`` - conv + linear multiply-adds only, ``out_numel * (C_in/groups) * k*k`` per call. Independent of the
  counting tool, so it is the number to compare implementations with.
* ``macs_thop`` - what the installed thop reports (thop 0.1.1 adds 4*numel per affine BatchNorm and out_numel per
  nearest upsample, nothing for a conv bias or LeakyReLU).
* ``macs_seed`` - the rules of thop 0.0.31, the release the seed projects used in 2020; every published MAC/GFLOPS
  figure of the seed READMEs is reproduced only with these rules.

All counts are per image of an ``(1, C, H, W)`` zero input, taken from a real eval-mode forward under ``no_grad``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import thop
import torch
from thop.vision.basic_hooks import count_upsample
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

ImgSize = int | tuple[int, int]

WEIGHTS_HEADER_BYTES = 20      # int32 major, minor, revision + uint64 seen (format version >= 0.2)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def image_hw(img_size: ImgSize) -> tuple[int, int]:
    """``416`` -> ``(416, 416)``; ``(480, 640)`` stays (H, W)."""
    if isinstance(img_size, int):
        return img_size, img_size
    h, w = img_size
    return int(h), int(w)


def input_channels(model: nn.Module) -> int:
    """Channels of the image the model takes: ``model.in_channels`` (a Darknet's ``[net] channels``) if set, else
    the first conv's input channels, else 3."""
    c = getattr(model, "in_channels", None)
    if isinstance(c, int):
        return c
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3


def zero_input(model: nn.Module, img_size: ImgSize, batch: int = 1) -> torch.Tensor:
    """A zero image batch ``(batch, C, H, W)`` on the model's device and in its floating dtype."""
    h, w = image_hw(img_size)
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    return torch.zeros(batch, input_channels(model), h, w, device=device, dtype=dtype)


def count_params(model: nn.Module) -> int:
    """Number of parameters, ``sum(p.numel())`` (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def _forward_eval(model: nn.Module, x: torch.Tensor) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)


def macs_conv(model: nn.Module, img_size: ImgSize, batch: int = 1) -> int:
    """Conv1d/Conv2d/Linear multiply-adds per image: Σ over calls of ``out_numel * weight[0].numel()``
    (= ``(C_in/groups) * k*k`` for a conv, ``in_features`` for a linear layer). Subclasses count too."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONV_TYPES)]
    try:
        _forward_eval(model, zero_input(model, img_size, batch))
    finally:
        for h in handles:
            h.remove()
    return total // batch


def _thop(model: nn.Module, img_size: ImgSize, custom_ops: dict | None) -> int:
    # thop registers total_ops/total_params buffers on every module and removes them only from the modules it has
    # a rule for, so it profiles a copy and the caller's state_dict never gains keys.
    m = copy.deepcopy(model)
    macs, _ = thop.profile(m, inputs=(zero_input(m, img_size),), custom_ops=custom_ops, verbose=False)
    return round(macs)


def macs_thop(model: nn.Module, img_size: ImgSize) -> int:
    """MACs per image as the installed thop reports them (thop 0.1.1 rules)."""
    return _thop(model, img_size, None)


# thop 0.0.31 rules (arch-anchors §1). Each rule adds to the ``total_ops`` buffer thop attaches to the module.
def _seed_conv(m: nn.Module, x, y: torch.Tensor) -> None:
    m.total_ops += y.numel() * (m.weight[0].numel() + (1 if m.bias is not None else 0))


def _seed_bn(m: nn.Module, x, y) -> None:
    m.total_ops += 2 * x[0].numel()


def _seed_leaky(m: nn.Module, x, y) -> None:
    m.total_ops += x[0].numel()


def _seed_linear(m: nn.Linear, x, y: torch.Tensor) -> None:
    m.total_ops += m.in_features * y.numel()


def _seed_upsample(m: nn.Upsample, x, y) -> None:
    if m.mode != "nearest":
        count_upsample(m, x, y)


def _seed_zero(m: nn.Module, x, y) -> None:
    pass


# First matching base class wins; ReLU/ReLU6/MaxPool/ZeroPad count 0 in both thop releases, but are listed so that
# subclasses of them (which thop matches only by exact type) count 0 deliberately.
_SEED_RULES: list[tuple[type, Callable]] = [
    (nn.Conv1d, _seed_conv), (nn.Conv2d, _seed_conv), (nn.Conv3d, _seed_conv),
    (_BatchNorm, _seed_bn),
    (nn.LeakyReLU, _seed_leaky),
    (nn.Linear, _seed_linear),
    (nn.Upsample, _seed_upsample),
    (nn.ReLU, _seed_zero), (nn.ReLU6, _seed_zero), (nn.MaxPool2d, _seed_zero), (nn.ZeroPad2d, _seed_zero),
]


def seed_custom_ops(model: nn.Module) -> dict[type, Callable]:
    """thop ``custom_ops`` implementing the thop-0.0.31 rules for every module type found in ``model``
    (types are matched with ``isinstance``, so subclasses of nn.Conv2d etc. count like their base)."""
    ops: dict[type, Callable] = {}
    for m in model.modules():
        t = type(m)
        if t in ops:
            continue
        for base, rule in _SEED_RULES:
            if issubclass(t, base):
                ops[t] = rule
                break
    return ops


def macs_seed(model: nn.Module, img_size: ImgSize) -> int:
    """MACs per image with the thop-0.0.31 rules the seed projects' published figures use:
    conv ``out_numel * ((C_in/g)*k*k + 1 if bias)``, BatchNorm ``2*numel``, LeakyReLU ``numel``,
    ReLU/ReLU6/MaxPool/ZeroPad and nearest Upsample 0, Linear ``in_features*out_numel``, AdaptiveAvgPool
    ``(k+1)*out_numel``; modules thop has no rule for (Sigmoid, Hardswish, Mish, custom blocks) count 0."""
    return _thop(model, img_size, seed_custom_ops(model))


def weights_floats(model: nn.Module) -> int:
    """Float32 values a darknet .weights file of a conv/BN/linear model holds: parameters plus the BatchNorm
    running mean and variance (``P + 2*BNch``)."""
    running = sum(m.running_mean.numel() + m.running_var.numel()
                  for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None)
    return count_params(model) + running


def storage_bytes(model: nn.Module) -> int:
    """Size in bytes of the model's fp32 darknet .weights file: 20-byte header + 4 bytes per stored float.
    A Darknet graph is measured by the .weights writer's own layout (``weights_io.darknet_weights_size``), so
    layer types that store extra or fewer tensors are counted as written; any other module as ``P + 2*BNch``."""
    from ..models.darknet import Darknet  # lazy: the cost functions also serve plain nn.Modules
    from ..models.weights_io import darknet_weights_size

    if isinstance(model, Darknet):
        return darknet_weights_size(model)
    return WEIGHTS_HEADER_BYTES + 4 * weights_floats(model)


def storage_mib(model: nn.Module) -> float:
    """Size of the fp32 darknet .weights file in MiB (bytes / 2**20), the unit of darknet's and the seeds' "MB"."""
    return storage_bytes(model) / 2**20


def cost_row(model: nn.Module, img_size: ImgSize) -> dict:
    """One table row: ``params``, ``macs_conv``, ``macs_thop``, ``macs_seed`` (per image at ``img_size``) and
    ``storage_mib``."""
    return {
        "params": count_params(model),
        "macs_conv": macs_conv(model, img_size),
        "macs_thop": macs_thop(model, img_size),
        "macs_seed": macs_seed(model, img_size),
        "storage_mib": storage_mib(model),
    }
