"""EagleEye (SPURS EagleEye_{normal,slim}_prune, pruning-spec §10): random sub-nets under a MACs budget, adaptive
BatchNorm recalibration, selection by a validation score.

Per candidate: every conv of the pool draws a prune rate r ~ U(0, 1) and keeps its n = max(int(C·(1−r)), 1) filters
with the largest L1 norm Σ|W| (over input channels and kernel; the ranking ignores BN γ, so no sparsity training is
needed).  The *slim* pool (every prunable conv) merges each shortcut / coupled group by union; the *normal* pool skips
grouped convs; the *regular* pool (EagleEye_regular) rounds every width to a multiple of ``base`` (8).  A candidate is accepted only when |MACs_c / MACs_orig − (1 − percent)| ≤ delta (SPURS: 0.5, 0.05,
at 480×640), otherwise redrawn.  Pruned channels get γ = β = 0 with no offset folding (§5.6), the compact model is
built, its BN statistics are re-estimated on a few training batches, and the best-scoring candidate wins.

Differences from SPURS, on purpose: adaptive BN resets the running statistics and takes their cumulative average
(``momentum=None``) instead of an EMA that keeps 0.9^(steps+2) of the inherited statistics (§19 fact 23); the first
candidate always counts as the best so far (SPURS starts from mAP 0 and crashes if every candidate scores 0); the
redraw loop is bounded by ``max_draws``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..bench.cost import ImgSize, image_hw
from ..errors import InputError
from ..models.darknet import Darknet
from ..models.layers_darknet import (
    ConvLayer,
    DropoutLayer,
    MaxPoolLayer,
    RouteLayer,
    ShortcutLayer,
    UpsampleLayer,
)
from .graph import PruneGraph, analyze
from .select import normal_pool
from .surgery import compact

Masks = dict[int, torch.Tensor]
POOLS = ("normal", "slim", "regular")
_PASS_THROUGH = (UpsampleLayer, MaxPoolLayer, DropoutLayer)


@dataclass
class EagleEyeResult:
    """``masks``: keep masks of the winner over the original layer indices (every BN conv); ``model``: its compact
    model after adaptive BN; ``score``: its score; ``macs_ratio``: its MACs / the original's; ``history``: one dict
    per evaluated candidate ``{"candidate", "draws" (samples drawn so far, rejected included), "macs_ratio",
    "score", "channels_kept"}``."""

    masks: Masks
    model: Darknet
    score: float
    macs_ratio: float
    history: list[dict] = field(default_factory=list)


def filter_l1(model: Darknet, i: int) -> torch.Tensor:
    """L1 norm of each output filter of conv layer ``i``: Σ|W| over (C_in/groups, kh, kw) -> float (C_out,)."""
    return model.layers[i].conv.weight.detach().abs().sum((1, 2, 3)).float().cpu()


def _top(score: torch.Tensor, n: int) -> torch.Tensor:
    keep = torch.zeros(len(score), dtype=torch.bool)
    keep[torch.argsort(score, descending=True, stable=True)[:n]] = True
    return keep


def nearest_multiple(n: int, base: int, c: int) -> int:
    """EagleEye_regular's width (spec fact 9): n rounded to the nearest multiple of ``base`` (a tie rounds up),
    clipped to ``c``, and ``base`` (at most c) instead of 0."""
    q = min((2 * n + base) // (2 * base) * base, c)      # floor(n/base + 1/2)·base in integers
    return q if q > 0 else min(base, c)


def random_masks(model: Darknet, graph: PruneGraph, generator: torch.Generator, pool: str = "normal",
                 base: int = 8) -> Masks:
    """One random sub-net: for each pool conv (ascending index) r ~ U(0, 1) from ``generator`` and the top filters
    by L1 norm are kept: max(int(C·(1−r)), 1) of them (``normal``, ``slim``) or int(C·(1−r)) rounded with
    :func:`nearest_multiple` to ``base`` (``regular``).  Shortcut/coupled groups: ``slim`` keeps the union of the
    members' masks; ``regular`` keeps the union size rounded to ``base`` channels with the most member votes (ties
    by the members' summed L1 norm, where SPURS breaks them arbitrarily).  Returns a mask (bool (C,)) for every
    conv of ``graph.convs``, all True outside the pool."""
    if pool not in POOLS:
        raise InputError(None, f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if base < 1:
        raise InputError(None, f"base must be >= 1, got {base}")
    layers = normal_pool(graph) if pool == "normal" else sorted(graph.prunable)
    masks = {i: torch.ones(model.layers[i].out_channels, dtype=torch.bool) for i in graph.convs}
    for i in layers:
        r = float(torch.rand((), generator=generator, dtype=torch.float64))
        c = model.layers[i].out_channels
        n = nearest_multiple(int(c * (1 - r)), base, c) if pool == "regular" else max(int(c * (1 - r)), 1)
        masks[i] = _top(filter_l1(model, i), n)
    if pool != "normal":
        for group in graph.shortcut_groups + graph.coupled:
            stacked = torch.stack([masks[i] for i in group])
            merged = stacked.any(0)
            if pool == "regular":
                c = len(merged)
                votes = stacked.sum(0).double()
                l1 = torch.stack([filter_l1(model, i) for i in group]).sum(0).double()
                # votes dominate; the L1 sum (scaled below one vote) only orders equal vote counts
                merged = _top(votes + l1 / (2 * float(l1.max()) + 1e-12), nearest_multiple(int(merged.sum()), base, c))
            for i in group:
                masks[i] = merged.clone()
    return masks


class MacsCounter:
    """Conv multiply-adds of ``model`` pruned by a mask set, without building it: one forward at ``img_size``
    records each conv's output H·W, then MACs(masks) = Σ H·W · kept_out · kept_in · k² (a grouped conv keeps its
    per-filter size).  Agrees with :func:`yolocomp.bench.cost.macs_conv` of the compact model (tested); computed
    here because rejection sampling would otherwise build and profile every rejected candidate."""

    def __init__(self, model: Darknet, img_size: ImgSize):
        h, w = image_hw(img_size)
        self.model = model
        self.hw: dict[int, int] = {}
        hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: self.hw.__setitem__(i, out.shape[2] * out.shape[3]))
                 for i, m in enumerate(model.layers) if isinstance(m, ConvLayer)]
        was = model.training
        try:
            with torch.no_grad():
                p = next(model.parameters())
                model.eval()(torch.zeros(1, model.net.channels, h, w, dtype=p.dtype, device=p.device))
        finally:
            model.train(was)
            for hk in hooks:
                hk.remove()
        self.full = self(None)

    def __call__(self, masks: Masks | None) -> int:
        """Conv MACs per image with ``masks`` (None = unpruned)."""
        masks = masks or {}
        kept: list[int] = []
        total = 0
        for i, m in enumerate(self.model.layers):
            src = [kept[j] if j >= 0 else self.model.net.channels for j in m.inputs]
            if isinstance(m, ConvLayer):
                c = int(masks[i].sum()) if i in masks else m.out_channels
                per_filter = m.conv.weight[0].numel() if m.conv.groups > 1 else src[0] * m.conv.weight[0, 0].numel()
                total += self.hw[i] * c * per_filter
                kept.append(c)
            elif isinstance(m, RouteLayer):
                kept.append(sum(src) // m.groups)
            elif isinstance(m, (ShortcutLayer, *_PASS_THROUGH)):
                kept.append(src[0])
            else:
                kept.append(m.out_channels)
        return total


def adaptive_bn(model: nn.Module, batches: Iterable, steps: int | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics in place: reset them, then forward ``steps`` batches (all
    when None) in train mode under no_grad with ``momentum=None`` (exact cumulative average over the batches).
    batches: images (N, C, H, W) in [0, 1], or loader items whose first element is that.  Returns ``model`` in
    eval mode with the BN momenta restored."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    p = next(model.parameters())
    n = 0
    try:
        model.train()
        with torch.no_grad():
            for item in itertools.islice(batches, steps):
                x = item[0] if isinstance(item, (tuple, list)) else item
                model(x.to(device=p.device, dtype=p.dtype))
                n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    if n == 0:
        raise InputError(None, "adaptive_bn got no batches")
    return model


def zero_pruned(model: Darknet, masks: Masks) -> Darknet:
    """A copy of ``model`` with γ and β of every removed channel set to 0 (SPURS' EagleEye keep-size model: no
    offset folding, so :func:`~yolocomp.prune.surgery.compact` of it folds nothing)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for i, m in masks.items():
            bn = out.layers[i].bn
            drop = ~m.to(bn.weight.device)
            bn.weight[drop] = 0
            bn.bias[drop] = 0
    return out


def eagleeye(model: Darknet, score: Callable[[Darknet], float], abn_batches: Iterable, candidates: int = 200,
             percent: float = 0.5, delta: float = 0.05, pool: str = "normal", img_size: ImgSize = (480, 640),
             abn_steps: int | None = None, seed: int = 0, max_draws: int = 100_000,
             base: int = 8, graph: PruneGraph | None = None) -> EagleEyeResult:
    """Search ``candidates`` accepted random sub-nets of ``model`` and return the best by ``score``.

    score: the compact candidate (eval mode, after adaptive BN) -> float, higher is better (SPURS: mAP@0.5 at conf
    0.1 on the validation set; any cheap proxy works).  abn_batches: a re-iterable of training batches (e.g. a
    DataLoader; SPURS uses ceil(0.1·N_train/bs) + 2 augmented batches), ``abn_steps`` of which are used per
    candidate.  percent, delta: the budget |MACs_c/MACs_o − (1 − percent)| ≤ delta, MACs of a 1×3×``img_size``
    input.  pool: ``normal``, ``slim`` or ``regular`` (widths multiples of ``base``).  seed: the sampling generator's seed (same seed, same candidates).
    An InputError if ``max_draws`` samples yield fewer than ``candidates`` accepted ones."""
    if not 0 < percent < 1 or delta < 0 or candidates < 1:
        raise InputError(None, f"need 0 < percent < 1, delta >= 0, candidates >= 1; got percent={percent}, "
                               f"delta={delta}, candidates={candidates}")
    graph = graph or analyze(model)
    counter = MacsCounter(model, img_size)
    gen = torch.Generator().manual_seed(seed)
    target = 1 - percent
    best: EagleEyeResult | None = None
    history: list[dict] = []
    draws = 0
    while len(history) < candidates:
        if draws >= max_draws:
            raise InputError(None, f"EagleEye: only {len(history)} of {draws} random sub-nets met the budget "
                                   f"{target:.3f} ± {delta} of the MACs; widen delta or raise max_draws")
        draws += 1
        masks = random_masks(model, graph, gen, pool, base)
        ratio = counter(masks) / counter.full
        if abs(ratio - target) > delta:
            continue
        net = adaptive_bn(compact(zero_pruned(model, masks), masks), abn_batches, abn_steps)
        s = float(score(net))
        history.append({"candidate": len(history), "draws": draws, "macs_ratio": ratio, "score": s,
                        "channels_kept": sum(int(m.sum()) for m in masks.values())})
        if best is None or s > best.score:
            best = EagleEyeResult(masks, net, s, ratio)
    best.history = history
    return best
