"""Darknet ``activation=`` names mapped to torch modules (modules rather than functions so thop, FX quantization
and forward hooks see them)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# DK spells hard-swish ``h_swish`` (SPURS), ``hswish`` (ANDREY) and ``HardSwish`` (HALO-old); all are x·relu6(x+3)/6.
_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "leaky": lambda: nn.LeakyReLU(0.1),
    "linear": nn.Identity,
    "logistic": nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "mish": nn.Mish,          # softplus threshold 20, as DK
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "h_swish": nn.Hardswish,
    "hswish": nn.Hardswish,
    "HardSwish": nn.Hardswish,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": lambda: nn.GELU(approximate="tanh"),   # DK's gelu is the tanh approximation
}

ACTIVATION_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_activation(name: str) -> nn.Module:
    """A fresh module for a cfg activation name; KeyError (listing the known names) for anything else."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise KeyError(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_NAMES)}") from None
