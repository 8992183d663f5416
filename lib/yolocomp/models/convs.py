"""Rebuilding a Conv2d as another Conv2d class (quantized, soft-masked, plain) with the same geometry and weights."""

from __future__ import annotations

import torch
from torch import nn


def conv_geometry(conv: nn.Conv2d, bias: bool | None = None) -> dict:
    """The ``nn.Conv2d`` constructor keywords that rebuild ``conv``'s shape on its device and dtype; ``bias``
    overrides whether the new conv has one (default: as ``conv``)."""
    return {"in_channels": conv.in_channels, "out_channels": conv.out_channels, "kernel_size": conv.kernel_size,
            "stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups,
            "bias": conv.bias is not None if bias is None else bias, "padding_mode": conv.padding_mode,
            "device": conv.weight.device, "dtype": conv.weight.dtype}


@torch.no_grad()
def copy_conv_params(dst: nn.Conv2d, src: nn.Conv2d) -> nn.Conv2d:
    """Copies ``src``'s weight (and bias, if it has one) into ``dst`` of the same shape; returns ``dst``."""
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)
    return dst
