"""Rounding modes and straight-through estimators (quant-kd-spec §0).

Every quantizer of :mod:`yolocomp.quant.fake` rounds through :func:`ste_round` with an explicit mode, because the
seeds differ exactly there: ``even`` = ``torch.round`` (half to even; SPURS Era A, HALO, torch/onnxruntime), ``away``
= ``sign(v)·floor(|v| + 0.5)`` (half away from zero; SPURS HEAD).  The backward of a rounding is the identity (STE);
what bounds the gradient is the clamp around it, which autograd differentiates as usual (1 inside, 0 outside).
"""

from __future__ import annotations

import torch

ROUNDING = ("even", "away")


def round_even(x: torch.Tensor) -> torch.Tensor:
    """Half to even (``torch.round``): 0.5 -> 0, 1.5 -> 2, 127.5 -> 128."""
    return torch.round(x)


def round_away(x: torch.Tensor) -> torch.Tensor:
    """Half away from zero: 0.5 -> 1, -0.5 -> -1, 2.5 -> 3."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def round_with(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Round ``x`` with ``mode`` (``even`` or ``away``); no gradient handling."""
    if mode == "even":
        return round_even(x)
    if mode == "away":
        return round_away(x)
    raise ValueError(f"unknown rounding {mode!r} (known: {', '.join(ROUNDING)})")


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mode: str) -> torch.Tensor:
        return round_with(x, mode)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def ste_round(x: torch.Tensor, mode: str = "even") -> torch.Tensor:
    """Round with ``mode`` in the forward pass; the gradient passes through unchanged (STE)."""
    return _RoundSTE.apply(x, mode)


class _BinarizeSTE(torch.autograd.Function):
    """``1[v >= 0]`` mapped to (low, 1); backward passes the gradient where ``|v| < 1`` (the hard-tanh window of
    BinaryNet and SPURS' ``BinaryConv2d``) and zeroes it where ``v >= 1`` or ``v <= -1``."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, low: float) -> torch.Tensor:
        ctx.save_for_backward(v)
        return torch.where(v >= 0, torch.ones_like(v), torch.full_like(v, low))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (v,) = ctx.saved_tensors
        # where(), not a product: a masked-out inf gradient must give 0, not inf·0 = nan
        return torch.where(v.abs() < 1, grad, torch.zeros_like(grad)), None


def binarize(v: torch.Tensor, low: float = -1.0) -> torch.Tensor:
    """Binarize ``v`` to {low, 1} (``v >= 0`` -> 1, so ``binarize(0) = 1``) with the windowed STE.
    ``low = -1``: BinaryNet's sign; ``low = 0``: SPURS Era-A ``{0, 1}``."""
    return _BinarizeSTE.apply(v, float(low))


def pow2_nearest(v: torch.Tensor) -> torch.Tensor:
    """Nearest power of two with ties going down (spec §0): ``hi = 2^ceil(log2 v)`` if ``hi − v < v − lo`` else
    ``lo = 2^floor(log2 v)``.  5 -> 4, 6 -> 4, 6.0001 -> 8, 0.75 -> 0.5, 0.76 -> 1; powers of two map to themselves.
    ``v`` must be positive (a zero range is lifted to 2^-126 so the scale stays finite).  Computed in float64 so the
    tie test is exact for float32 inputs."""
    v64 = v.detach().double().clamp_min(2.0 ** -126)
    e = torch.log2(v64)
    lo, hi = torch.exp2(torch.floor(e)), torch.exp2(torch.ceil(e))
    return torch.where(hi - v64 < v64 - lo, hi, lo).to(v.dtype)
