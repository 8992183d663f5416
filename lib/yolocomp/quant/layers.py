"""Quantized convolutions and conv-BN folding.

A *conv unit* is any module with a ``conv`` (``nn.Conv2d``), a ``bn`` (``nn.BatchNorm2d`` or None) and an ``act``
attribute, applied as ``act(bn(conv(x)))``: the ``[convolutional]`` layer itself and the ConvBN units inside the
seed blocks (``[mobile]``, ``[pep]``, ``[depthwise]``, ``[shuffle]`` ...).  Quantization swaps modules inside a
unit and keeps the unit, so the graph, its cfg writer and the trainer do not change:

* :class:`QConv2d` (SPURS Era A, HALO): ``conv(aq(x), wq(W)) + b``; the BatchNorm stays a separate module and the
  weight keeps its name ``conv.weight`` (float checkpoints load directly).
* :class:`FoldedQConv2d` (SPURS HEAD mode 1 and the 8-bit affine QAT): BN folded into the conv in training, with
  batch statistics until ``bn_freeze_step`` training forwards and running statistics afterwards (and always in
  eval); running statistics use momentum 0.01 and the unbiased variance (fact 17).  The unit's ``bn`` becomes a
  :class:`FoldedBN` placeholder (so ``to_cfg`` still writes ``batch_normalize=1``); the BatchNorm moves to
  ``conv.bn``.
* :class:`QuantAct`: the unit's activation followed by an activation quantizer (HEAD: block outputs are
  quantized after the nonlinearity).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from ..models.convs import conv_geometry, copy_conv_params

BN_FOLD_MOMENTUM = 0.01


def is_unit(m: nn.Module) -> bool:
    """A conv unit: has ``conv`` (an ``nn.Conv2d``), ``bn`` and ``act`` attributes."""
    return isinstance(getattr(m, "conv", None), nn.Conv2d) and hasattr(m, "bn") and hasattr(m, "act")


def conv_units(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(qualified name, unit)`` of every conv unit inside ``module`` (the module itself included), in module
    order."""
    for name, m in module.named_modules():
        if is_unit(m):
            yield name, m


class QConv2d(nn.Conv2d):
    """``conv(aq(x), wq(W), b)``: fake-quantized weights and inputs, BN left to the unit (SPURS Era A, HALO).

    ``wq``: a module mapping the latent weight ``(C_out, C_in/g, k, k)`` to its quantized value (None = float);
    ``aq``: a module applied to the input ``(N, C_in, H, W)`` (None = float)."""

    def __init__(self, conv: nn.Conv2d, wq: nn.Module | None = None, aq: nn.Module | None = None):
        super().__init__(**conv_geometry(conv))
        copy_conv_params(self, conv)
        self.wq, self.aq = wq, aq

    def quantized_weight(self) -> torch.Tensor:
        return self.wq(self.weight) if self.wq is not None else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.aq is not None:
            x = self.aq(x)
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class FoldedBN(nn.Identity):
    """Stands in for a BatchNorm that was folded into the preceding :class:`FoldedQConv2d` (``conv.bn`` holds it)."""


class FoldedQConv2d(nn.Conv2d):
    """Conv with BatchNorm folded in and fake-quantized folded weight/bias (SPURS HEAD ``BNFold_…``, §1.4).

    Training forward (with BN): a float conv ``y0 = conv(x, W, b)`` gives the batch mean and unbiased variance
    over (N, H, W) (gradients flow through them); running statistics follow ``r ← 0.99·r + 0.01·batch`` (copied
    on the first batch when both are all zero).  While ``step < bn_freeze_step`` (or the freeze step is unset,
    −1) the fold uses the batch statistics, afterwards the running ones; eval always uses running statistics.
    Fold (fact 16): ``W' = W·γ/√(σ² + ε)``, ``b' = β + (b − μ)·γ/√(σ² + ε)``.  Then ``y = conv(aq_in(x),
    wq(W'), bq(b'))`` and, if set, ``aq_out(y)`` (the pre-activation output; onnxruntime quantizes it too).
    With every quantizer None (or at 32 bits), eval output = conv → BN(running) of the float unit.

    ``mode="correct"`` (torch / MQBench / Krishnamoorthi 2018 §3.2, one conv instead of two): before the freeze
    the weight is folded with the *running* σ, ``y = conv(x, wq(W·γ/σ_r))``, then rescaled by ``σ_r/γ`` and
    batch-normalised with the batch statistics of that rescaled output (which also update the running ones);
    after the freeze and in eval it is the plain running-statistics fold, as in ``mode="spurs"``."""

    MODES = ("spurs", "correct")

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, wq: nn.Module | None = None,
                 bq: nn.Module | None = None, aq_in: nn.Module | None = None, aq_out: nn.Module | None = None,
                 momentum: float = BN_FOLD_MOMENTUM, mode: str = "spurs"):
        super().__init__(**conv_geometry(conv))
        copy_conv_params(self, conv)
        self.bn = bn
        self.wq, self.bq, self.aq_in, self.aq_out = wq, bq, aq_in, aq_out
        if mode not in self.MODES:
            raise ValueError(f"fold mode must be one of {self.MODES}, got {mode!r}")
        self.momentum, self.mode = momentum, mode
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("bn_freeze_step", torch.full((), -1, dtype=torch.int64))

    def _batch_stats(self, x: torch.Tensor, y0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch mean and unbiased variance over (N, H, W) of the float conv output ``y0`` (computed from ``x``
        when not given), with the running statistics updated."""
        if y0 is None:
            y0 = self._conv_forward(x, self.weight, self.bias)
        mean = y0.mean((0, 2, 3))
        var = y0.var((0, 2, 3), unbiased=True)
        bn = self.bn
        with torch.no_grad():
            if not bool(bn.running_mean.any()) and not bool(bn.running_var.any()):
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            else:
                bn.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
                bn.running_var.mul_(1 - self.momentum).add_(var.detach(), alpha=self.momentum)
        return mean, var

    def folded(self, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W', b')`` of the current mode: batch statistics of ``x`` in training before the freeze step,
        running statistics otherwise.  Without BN: ``(W, b)``."""
        if self.bn is None:
            return self.weight, self.bias
        if self.training and not self._bn_frozen() and x is not None:
            mean, var = self._batch_stats(x)
        else:
            mean, var = self.bn.running_mean, self.bn.running_var
        s = self.bn.weight / torch.sqrt(var + self.bn.eps)
        w = self.weight * s.view(-1, 1, 1, 1)
        b = self.bias if self.bias is not None else torch.zeros_like(mean)
        return w, self.bn.bias + (b - mean) * s

    def _bn_frozen(self) -> bool:
        return 0 <= int(self.bn_freeze_step) <= int(self.step)

    def _forward_corrected(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        s_r = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        s_r = torch.where(s_r.abs() < 1e-8, torch.full_like(s_r, 1e-8), s_r)
        w = self.weight * s_r.view(-1, 1, 1, 1)
        self.step += 1
        if self.wq is not None:
            w = self.wq(w)
        y = self._conv_forward(x, w, None) / s_r.view(1, -1, 1, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        mean, var = self._batch_stats(x, y)
        y = (y - mean.view(1, -1, 1, 1)) * (bn.weight / torch.sqrt(var + bn.eps)).view(1, -1, 1, 1)
        y = y + bn.bias.view(1, -1, 1, 1)
        return self.aq_out(y) if self.aq_out is not None else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.aq_in is not None:
            x = self.aq_in(x)
        if self.mode == "correct" and self.bn is not None and self.training and not self._bn_frozen():
            return self._forward_corrected(x)
        w, b = self.folded(x)
        if self.training:
            self.step += 1
        if self.wq is not None:
            w = self.wq(w)
        if self.bq is not None and b is not None:
            b = self.bq(b)
        y = self._conv_forward(x, w, b)
        return self.aq_out(y) if self.aq_out is not None else y


class QuantAct(nn.Module):
    """``aq(act(x))``: a unit's activation followed by its output quantizer."""

    def __init__(self, act: nn.Module, aq: nn.Module):
        super().__init__()
        self.act, self.aq = act, aq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aq(self.act(x))


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` (with bias) equal in eval to ``bn(conv(x))`` with running statistics (BN eps as
    stored).  Works for float convs and for the quantized ones above (their latent float weights are used)."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, True, conv.padding_mode)
    with torch.no_grad():
        w = conv.weight.detach().float()
        b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(conv.out_channels)
        if bn is not None:
            s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            w = w * s.view(-1, 1, 1, 1)
            b = bn.bias.detach() + (b - bn.running_mean) * s
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out


def dequantized(model: nn.Module) -> nn.Module:
    """A float copy of ``model`` for export: every conv unit becomes one plain conv with its BN folded (running
    statistics) and no quantizer; :class:`QuantAct` wrappers are unwrapped.  The eval output equals the float
    model's (for a float model) or the quantized model's with its quantizers bypassed."""
    out = copy.deepcopy(model).eval()
    for _, unit in list(conv_units(out)):
        conv = unit.conv
        bn = conv.bn if isinstance(conv, FoldedQConv2d) else unit.bn
        unit.conv = fold_conv_bn(conv, bn if isinstance(bn, nn.BatchNorm2d) else None)
        unit.bn = None
        if isinstance(unit.act, QuantAct):
            unit.act = unit.act.act
    return out


def strip_quantizers(model: nn.Module) -> nn.Module:
    """A float copy of a model quantized by a non-folding scheme (:class:`QConv2d`): each QConv2d becomes a plain
    ``nn.Conv2d`` holding its latent float weight; BN and everything else unchanged, so the result loads into
    (and has the state-dict keys of) the float model.  Stage-wise training starts each stage from this.
    Folded units are folded with running statistics (:func:`dequantized`)."""
    out = copy.deepcopy(model)
    if any(isinstance(m, (FoldedQConv2d, QuantAct)) for m in out.modules()):
        return dequantized(out)
    for _, unit in list(conv_units(out)):
        c = unit.conv
        if isinstance(c, QConv2d):
            unit.conv = copy_conv_params(nn.Conv2d(**conv_geometry(c)), c)
        if getattr(unit.act, "replaces", None) is not None:    # BNN's binary activation
            unit.act = unit.act.replaces
    if hasattr(out, "quant_spec"):
        del out.quant_spec
    return out


def weight_bits(conv: nn.Conv2d) -> int:
    """Bits per weight a conv would need stored: 1 (binary), k (DoReFa k), 8 (the 8-bit schemes) or 32."""
    from .fake import AffineFakeQuant, BinaryWeight, DoReFaWeight, Pow2FakeQuant

    wq = getattr(conv, "wq", None)
    if isinstance(wq, BinaryWeight):
        return 1
    if isinstance(wq, DoReFaWeight):
        return min(wq.bits, 32)
    if isinstance(wq, (AffineFakeQuant, Pow2FakeQuant)):
        return min(wq.bits, 32)
    return 32


def packed_mib(model: nn.Module) -> float:
    """Storage in MiB if every quantized conv weight were packed at :func:`weight_bits` and every other parameter
    (BN, biases, float convs) and BN running statistics kept as float32 — what the simulated schemes would weigh on
    a deployment that stores them natively (per-tensor/per-channel scales neglected)."""
    bits = 0
    conv_weights = set()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            conv_weights.add(id(m.weight))
            bits += m.weight.numel() * weight_bits(m)
    for p in model.parameters():
        if id(p) not in conv_weights and p.dtype.is_floating_point:
            bits += p.numel() * 32
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            bits += 2 * m.num_features * 32
    return bits / 8 / 2 ** 20


def binary_weight_fraction(model: nn.Module) -> float:
    """Fraction of all conv weights that a binary weight quantizer replaces (for the packed-size estimate)."""
    from .fake import BinaryWeight

    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    binar = sum(m.weight.numel() for m in model.modules()
                if isinstance(m, QConv2d) and isinstance(m.wq, BinaryWeight))
    return binar / total if total else 0.0


__all__ = ["BN_FOLD_MOMENTUM", "FoldedBN", "FoldedQConv2d", "QConv2d", "QuantAct",
           "binary_weight_fraction", "conv_units", "dequantized", "fold_conv_bn", "is_unit",
           "packed_mib", "strip_quantizers", "weight_bits"]
