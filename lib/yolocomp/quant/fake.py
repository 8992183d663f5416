"""Fake-quantization modules: ``x̂ = dequant(clamp(round(quant(x))))`` in float32, one small module per seed scheme.

Observed ranges, step counters and votes live in buffers, so they are saved in checkpoints, copied into the EMA model
and restored on resume.  Rounding modes and STEs are those of :mod:`yolocomp.quant.ste`.  Tensor shapes: weights
``(C_out, C_in/g, k, k)`` (per-channel = per output channel, axis 0); activations ``(N, C, H, W)`` (per tensor).

=====================  ==========================================================  ===============================
module                 rule                                                        spec (quant-kd-spec)
=====================  ==========================================================  ===============================
BinaryWeight           {−1,+1} (BinaryNet) or {0,1} (SPURS), × α = mean|W| (BWN)   §1.2.2, §1.2.3, facts 1-3
BinaryAct              sign with hard-tanh STE (BinaryNet; the seed has none)      §1.2.2
DoReFaWeight/Act       tanh map / clamp(0.1·x, 0, 1), k bits, half-even            §1.2.4, §2, facts 4-6
AffineFakeQuant        uniform affine (asym uint / sym int, per channel or tensor)  §1.2.5, §7, facts 7-9
Pow2FakeQuant          symmetric, scale pow2_nearest(max|x|)/2^(b−1), half-away    §1.4, facts 10-12
TPSQFakeQuant          learnable power-of-two clip S, 127/128 levels               §1.6, fact 13
VoteFakeQuant          COS-PTQ cosine-similarity search over 2^i ranges + vote     §1.7, fact 14
nnie_fake_quant        NNIE log-domain 8 bit (16 steps per octave)                 §3, fact 15
=====================  ==========================================================  ===============================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .ste import binarize, pow2_nearest, ste_round

TRACKERS = ("global", "ema", "minmax", "percentile")


def _reduce_dims(x: torch.Tensor, per_channel: bool) -> tuple[int, ...]:
    return tuple(range(1, x.ndim)) if per_channel else tuple(range(x.ndim))


class RangeTracker(nn.Module):
    """Observed ``[min_val, max_val]`` of a tensor, per tensor (shape ``()``) or per output channel (``(C,)``).

    kind:
      * ``global`` — SPURS' ``GlobalRangeTracker`` as it behaves (fact 8): the *current* tensor's range widened to
        include 0, ``(min(0, min x), max(0, max x))``, independent of earlier batches;
      * ``ema`` — ``AveragedRangeTracker`` (fact 9): the first update copies the batch min/max, later ones do
        ``r ← (1 − momentum)·r + momentum·batch`` (momentum 0.1 in the seeds);
      * ``minmax`` — running min and max over all updates (PTQ calibration, onnxruntime's MinMax);
      * ``percentile`` — mean over updates of the batch's ``(100 − p, p)`` percentiles (PTQ calibration; on at most
        2^20 evenly strided samples per batch so ``torch.quantile`` stays within its size limit).
    """

    def __init__(self, kind: str = "ema", channels: int | None = None, momentum: float = 0.1,
                 percentile: float = 99.99):
        super().__init__()
        if kind not in TRACKERS:
            raise ValueError(f"unknown range tracker {kind!r} (known: {', '.join(TRACKERS)})")
        self.kind, self.momentum, self.percentile = kind, momentum, percentile
        self.per_channel = channels is not None
        shape = (channels,) if channels is not None else ()
        self.register_buffer("min_val", torch.zeros(shape))
        self.register_buffer("max_val", torch.zeros(shape))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    @property
    def initialized(self) -> bool:
        return bool(self.updates > 0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        if self.kind == "percentile":
            lo, hi = self._percentiles(x)
        else:
            dims = _reduce_dims(x, self.per_channel)
            lo, hi = x.amin(dims), x.amax(dims)
        first = not self.initialized
        if self.kind == "global":
            self.min_val.copy_(lo.clamp(max=0))
            self.max_val.copy_(hi.clamp(min=0))
        elif first:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        elif self.kind == "ema":
            self.min_val.mul_(1 - self.momentum).add_(lo, alpha=self.momentum)
            self.max_val.mul_(1 - self.momentum).add_(hi, alpha=self.momentum)
        elif self.kind == "minmax":
            torch.minimum(self.min_val, lo, out=self.min_val)
            torch.maximum(self.max_val, hi, out=self.max_val)
        else:   # percentile: running mean of the per-batch percentiles
            n = float(self.updates)
            self.min_val.mul_(n / (n + 1)).add_(lo / (n + 1))
            self.max_val.mul_(n / (n + 1)).add_(hi / (n + 1))
        self.updates += 1

    def _percentiles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.tensor([1 - self.percentile / 100, self.percentile / 100], dtype=x.dtype, device=x.device)
        if self.per_channel:
            flat = x.reshape(x.shape[0], -1)
            flat = flat[:, :: max(1, math.ceil(flat.shape[1] / 2 ** 20))]
            v = torch.quantile(flat, q, dim=1)
            return v[0], v[1]
        flat = x.reshape(-1)
        v = torch.quantile(flat[:: max(1, math.ceil(flat.numel() / 2 ** 20))], q)
        return v[0], v[1]


class _Observed(nn.Module):
    """Base of the range-based quantizers: observation policy and the step counter.

    The range is updated when the module is training and ``step < freeze_step`` (``freeze_step < 0``: never
    frozen), while ``calibrating`` is set (PTQ, in eval mode), or when it has never been observed (so a model
    quantized and evaluated at once still has a range).  ``step`` counts training forwards only (SPURS also counts
    evaluation passes, which moves its freeze point slightly; not reproduced).  ``bits >= 32``: identity."""

    def __init__(self, bits: int, tracker: RangeTracker):
        super().__init__()
        self.bits = int(bits)
        self.tracker = tracker
        self.calibrating = False
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("freeze_step", torch.full((), -1, dtype=torch.int64))

    def observing(self) -> bool:
        if self.calibrating or not self.tracker.initialized:
            return True
        return self.training and (int(self.freeze_step) < 0 or int(self.step) < int(self.freeze_step))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits >= 32:
            return x
        if self.observing():
            self.tracker.update(x)
        if self.training:
            self.step += 1
        return self.quantize(x)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, tracker={self.tracker.kind}"


def fake_quant(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, qmin: int, qmax: int,
               rounding: str = "even") -> torch.Tensor:
    """``(clamp(round(x/scale) + zp, qmin, qmax) − zp)·scale`` with an STE round; the clamp passes the gradient
    only inside the representable range.  ``scale``/``zero_point`` broadcast against ``x`` (scalars, or shaped
    ``(C, 1, ..., 1)`` for per-channel)."""
    q = ste_round(x / scale, rounding) + zero_point
    return (torch.clamp(q, qmin, qmax) - zero_point) * scale


def _per_channel_view(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.view(-1, *([1] * (x.ndim - 1))) if t.ndim else t


class AffineFakeQuant(_Observed):
    """Uniform affine quantization, the convention of torch and onnxruntime (``x ≈ (q − zp)·scale``).

    * ``symmetric=False`` (activations): unsigned ``[0, 2^b − 1]``, range widened to include 0,
      ``scale = (max − min)/(2^b − 1)``, ``zp = round(−min/scale)``, so real 0 is exact.  This is the SPURS Era-A /
      HALO "micronet" quantizer with its inverse scale written the other way round (fact 7: range [−1.3, 2.7] ->
      scale 4/255, zp 83 (their ``zp = −83``)).
    * ``symmetric=True`` (weights): signed narrow ``[−(2^(b−1) − 1), 2^(b−1) − 1]``, ``scale = max|x|/(2^(b−1) − 1)``,
      zp 0 — what onnxruntime's ``quantize_static`` computes for symmetric per-channel int8 weights, so the real
      int8 model holds the same integers.

    ``channels``: per output channel (axis 0) when given.  ``tracker``: a :data:`TRACKERS` kind.  Rounding half to
    even (torch / onnxruntime)."""

    def __init__(self, bits: int = 8, symmetric: bool = False, channels: int | None = None, tracker: str = "ema",
                 momentum: float = 0.1, percentile: float = 99.99, rounding: str = "even"):
        super().__init__(bits, RangeTracker(tracker, channels, momentum, percentile))
        self.symmetric, self.rounding = symmetric, rounding
        if symmetric:
            self.qmin, self.qmax = -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
        else:
            self.qmin, self.qmax = 0, 2 ** bits - 1

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)`` from the observed range, shaped like the tracker's buffers."""
        lo, hi = self.tracker.min_val, self.tracker.max_val
        if self.symmetric:
            scale = torch.maximum(lo.abs(), hi.abs()) / self.qmax
            return scale.clamp_min(1e-12), torch.zeros_like(scale)
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        scale = ((hi - lo) / (self.qmax - self.qmin)).clamp_min(1e-12)
        zp = torch.clamp(torch.round(self.qmin - lo / scale), self.qmin, self.qmax)
        return scale, zp

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        scale, zp = self.qparams()
        if self.rounding == "even" and x.dtype == torch.float32:
            return self.fused(x, scale, zp)
        return fake_quant(x, _per_channel_view(scale, x), _per_channel_view(zp, x), self.qmin, self.qmax,
                          self.rounding)

    def fused(self, x: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
        """torch's fused fake-quant kernels: the same function as :func:`fake_quant` with half-even rounding
        (``nearbyint``) and the same gradient (identity inside the range, 0 outside), in one pass — the weight
        quantizer runs over every weight at every step, so this is most of QAT's overhead."""
        zp = zp.round().to(torch.int32)
        if scale.ndim:
            return torch.fake_quantize_per_channel_affine(x, scale.float(), zp, 0, self.qmin, self.qmax)
        return torch.fake_quantize_per_tensor_affine(x, scale.float().reshape(()), zp.reshape(()), self.qmin,
                                                     self.qmax)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, symmetric={self.symmetric}, per_channel={self.tracker.per_channel}"


class Pow2FakeQuant(_Observed):
    """SPURS HEAD power-of-two symmetric quantizer (§1.4): ``s = pow2_nearest(max(|min|, |max|))/2^(b−1)``,
    ``q = clamp(round_away(x/s), −2^(b−1), 2^(b−1) − 1)``, ``x̂ = q·s``, zero-point 0.  Because ``pow2_nearest`` may
    round the range down, values above ``127·s`` saturate (fact 11: max|x| = 5 -> s = 2^−5, 3.99 -> 3.96875,
    −5 -> −4).  ``tracker``: ``global`` for weights and biases, ``ema`` for activations, as HEAD.  bits = 1 is
    rejected (HEAD asserts)."""

    def __init__(self, bits: int = 8, tracker: str = "global", channels: int | None = None, momentum: float = 0.1):
        if bits < 2:
            raise ValueError(f"power-of-two quantization needs bits >= 2, got {bits}")
        super().__init__(bits, RangeTracker(tracker, channels, momentum))
        self.qmin, self.qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def scale(self) -> torch.Tensor:
        fmax = torch.maximum(self.tracker.min_val.abs(), self.tracker.max_val.abs())
        return pow2_nearest(fmax) / 2 ** (self.bits - 1)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        s = _per_channel_view(self.scale(), x)
        return fake_quant(x, s, torch.zeros_like(s), self.qmin, self.qmax, "away")


class BinaryWeight(nn.Module):
    """Binary weights with the windowed STE (fact 3).

    levels: ``pm1`` = {−1, +1} (BinaryNet / XNOR-Net, default) or ``01`` = {0, 1} (SPURS Era A: ``1[W >= 0]``).
    scale: None (BNN), ``tensor`` (BWN as SPURS: one α = mean|W| per layer) or ``channel`` (XNOR-Net: α per output
    channel).  α is a differentiable function of W, as in the seed.  Fact 2: W = [[−0.5, 0.25], [0.75, −1]],
    ``01``, ``tensor`` -> α = 0.625, kernel [[0, 0.625], [0.625, 0]]."""

    def __init__(self, levels: str = "pm1", scale: str | None = None):
        super().__init__()
        if levels not in ("pm1", "01"):
            raise ValueError(f"binary levels must be 'pm1' or '01', got {levels!r}")
        if scale not in (None, "tensor", "channel"):
            raise ValueError(f"binary scale must be None, 'tensor' or 'channel', got {scale!r}")
        self.levels, self.scale = levels, scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        b = binarize(w, -1.0 if self.levels == "pm1" else 0.0)
        if self.scale is None:
            return b
        alpha = w.abs().mean() if self.scale == "tensor" else w.abs().mean(_reduce_dims(w, True), keepdim=True)
        return alpha * b

    def extra_repr(self) -> str:
        return f"levels={self.levels}, scale={self.scale}"


class BinaryAct(nn.Module):
    """BinaryNet activations: ``sign(x)`` ({−1,+1}, or {0,1} with ``levels="01"``) with the hard-tanh STE; used in
    place of a unit's activation, so the unit outputs ``sign(BN(conv(x)))`` and the next conv sees binary inputs.
    SPURS' BNN does not binarize activations (it cites BinaryNet but binarizes weights only)."""

    def __init__(self, levels: str = "pm1", replaces: nn.Module | None = None):
        super().__init__()
        self.levels = levels
        self.replaces = replaces     # the unit's own activation, kept (unused) so stripping can restore it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(x, -1.0 if self.levels == "pm1" else 0.0)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


def dorefa_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa weights (SPURS Era A / HALO, fact 4): ``t = tanh W``, ``u = t/(2·max|t|) + 0.5``,
    ``Wq = 2·round_even(u·(2^k − 1))/(2^k − 1) − 1`` ∈ {2i/(2^k − 1) − 1}; STE on the round, tanh and max
    differentiate normally.  HALO's 1-bit branch is ``sign(W)·mean|W|`` (fact 6); k = 32 still applies the tanh
    normalisation (HALO's ``nbit_w <= 32`` test)."""
    if bits == 1:
        return ste_sign(w) * w.abs().mean()
    n = 2.0 ** bits - 1
    t = torch.tanh(w)
    u = t / (2 * t.abs().max()) + 0.5
    return 2 * ste_round(u * n, "even") / n - 1


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """``torch.sign`` (sign(0) = 0, as HALO's ``torch.sign``) with an identity backward."""
    return _SignSTE.apply(x)


def dorefa_act(x: torch.Tensor, bits: int, prescale: float = 0.1) -> torch.Tensor:
    """DoReFa activations on a conv input (fact 5): ``round_even(clamp(prescale·x, 0, 1)·(2^k − 1))/(2^k − 1)``.
    The seeds' 0.1 pre-scale is not undone: the conv sees 0.1·x, negative inputs become 0, inputs >= 10 saturate;
    an image in [0, 1] keeps at most 27 of 256 levels at 8 bits.  Gradient: STE on the round, clamp as usual."""
    n = 2.0 ** bits - 1
    return ste_round(torch.clamp(prescale * x, 0, 1) * n, "even") / n


class DoReFaWeight(nn.Module):
    """:func:`dorefa_weight` as a module."""

    def __init__(self, bits: int = 8):
        super().__init__()
        self.bits = int(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return dorefa_weight(w, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class DoReFaAct(nn.Module):
    """:func:`dorefa_act` as a module; ``undo_prescale=True`` multiplies by 1/prescale afterwards (not in any seed:
    the conv then sees the clipped, quantized input at its original magnitude)."""

    def __init__(self, bits: int = 8, prescale: float = 0.1, undo_prescale: bool = False):
        super().__init__()
        self.bits, self.prescale, self.undo_prescale = int(bits), float(prescale), bool(undo_prescale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = dorefa_act(x, self.bits, self.prescale)
        return y / self.prescale if self.undo_prescale else y

    def extra_repr(self) -> str:
        return f"bits={self.bits}, prescale={self.prescale}, undo_prescale={self.undo_prescale}"


class _Pow2Project(torch.autograd.Function):
    """TPSQ's projection of S onto powers of two; the backward multiplies the gradient by S_eff / S."""

    @staticmethod
    def forward(ctx, s: torch.Tensor) -> torch.Tensor:
        s_eff = pow2_nearest(s)
        ctx.save_for_backward(s_eff / s)
        return s_eff

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad * ratio


class TPSQFakeQuant(nn.Module):
    """SPURS HEAD mode 2 "trainable power-of-two scale" (§1.6, fact 13).

    ``S_eff = pow2_nearest(S)`` (S is then overwritten in place with S_eff); ``xc = ½(|x + S_eff| − |x − S_eff|)``;
    ``q = round_away(xc·(2^(b−1) − 1)/S_eff)`` (STE); ``x̂ = q·S_eff/2^(b−1)`` — 2^b − 1 levels, the top one
    127/128·S_eff at 8 bits.  ``warmup``: on the first forward, S is set by a grid search
    ``S = i·max(x)/100, i = 1..99`` maximising the cosine similarity of x and x̂ (activations; the seed's weight
    quantizer never warms up and starts at S = 1)."""

    def __init__(self, bits: int = 8, init: float = 1.0, warmup: bool = False):
        super().__init__()
        self.bits = int(bits)
        self.scale = nn.Parameter(torch.tensor(float(init)))
        self.register_buffer("warmed", torch.tensor(not warmup))

    def _fq(self, x: torch.Tensor, s_eff: torch.Tensor) -> torch.Tensor:
        xc = 0.5 * ((x + s_eff).abs() - (x - s_eff).abs())
        q = ste_round(xc * (2 ** (self.bits - 1) - 1) / s_eff, "away")
        return q * s_eff / 2 ** (self.bits - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.warmed):
            with torch.no_grad():
                top = x.detach().max()
                cands = [i * top / 100 for i in range(1, 100)]
                sims = [float(F.cosine_similarity(x.flatten(), self._fq(x, pow2_nearest(c)).flatten(), 0))
                        for c in cands]
                self.scale.copy_(cands[max(range(len(sims)), key=sims.__getitem__)])
                self.warmed.fill_(True)
        s_eff = _Pow2Project.apply(self.scale)
        with torch.no_grad():
            self.scale.copy_(s_eff.detach())
        return self._fq(x, s_eff)


def cos_ptq_candidates(bits: int = 8, kind: str = "conv") -> list[float]:
    """COS-PTQ candidate float ranges (fact 14): conv ``2^(i−5)``, i = 0..b+6 (8 bit: 2^−5 … 2^9, 15 values);
    shortcut ``2^i``, i = 0..b−1.  The scale of a candidate R is R/2^(b−1)."""
    if kind == "conv":
        return [2.0 ** (i - 5) for i in range(bits + 7)]
    if kind == "shortcut":
        return [2.0 ** i for i in range(bits)]
    raise ValueError(f"kind must be 'conv' or 'shortcut', got {kind!r}")


def pow2_fake_quant(x: torch.Tensor, scale: float, bits: int = 8) -> torch.Tensor:
    """Symmetric fake quantization at a given scale with half-away rounding (no STE; used by searches)."""
    return torch.clamp(torch.sign(x / scale) * torch.floor((x / scale).abs() + 0.5),
                       -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * scale


def cos_search(x: torch.Tensor, candidates: list[float], bits: int = 8) -> int:
    """Index of the candidate range whose fake quantization of ``x`` has the highest cosine similarity with ``x``
    (first best on ties, i.e. the smallest range)."""
    flat = x.detach().flatten().float()
    sims = [float(F.cosine_similarity(flat, pow2_fake_quant(flat, r / 2 ** (bits - 1), bits), 0)) for r in candidates]
    return max(range(len(sims)), key=lambda i: (sims[i], -i))


class VoteFakeQuant(nn.Module):
    """COS-PTQ quantizer (SPURS HEAD mode 3, §1.7): while ``calibrating``, every forward searches the best
    candidate range (:func:`cos_search`) and adds a vote; the range used is the most-voted so far (ties -> the
    smallest exponent).  Outputs ``clamp(round_away(x/s))·s`` with ``s = R/2^(b−1)``."""

    def __init__(self, bits: int = 8, kind: str = "conv"):
        super().__init__()
        self.bits = int(bits)
        self.candidates = cos_ptq_candidates(bits, kind)
        self.calibrating = False
        self.register_buffer("votes", torch.zeros(len(self.candidates), dtype=torch.int64))

    def chosen(self) -> int:
        """Index of the range in use: the most voted, smallest on ties (argmax returns the first maximum)."""
        return int(torch.argmax(self.votes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating or int(self.votes.sum()) == 0:
            self.votes[cos_search(x, self.candidates, self.bits)] += 1
        s = self.candidates[self.chosen()] / 2 ** (self.bits - 1)
        q = ste_round(x / s, "away")
        return torch.clamp(q, -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1) * s


def nnie_fake_quant(x: torch.Tensor) -> torch.Tensor:
    """NNIE log-domain 8-bit fake quantization (GUMP's ``--BackendType NNIE``, fact 15): with
    ``z = round(16·log2(max|x|)) − 127``, every non-zero output magnitude is ``2^((k + z)/16)`` (16 levels per
    octave), k ∈ [0, 127] for positives and [1, 127] for negatives; magnitudes below the lowest level become 0.
    Straight-through gradient."""
    data_max = x.detach().abs().max().clamp_min(1e-30)
    z = torch.round(16 * torch.log2(data_max)) - 127
    mag = x.detach().abs().clamp_min(1e-30)
    k = torch.round(16 * torch.log2(mag)) - z
    kmin = torch.where(x < 0, torch.ones_like(k), torch.zeros_like(k))
    q = torch.where(k < kmin, torch.zeros_like(mag), torch.exp2((k.clamp(max=127) + z) / 16))
    y = torch.sign(x.detach()) * q
    return x + (y - x).detach()
