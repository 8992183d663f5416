"""Sparsity training: an L1 penalty on the BatchNorm scale factors γ (pruning-spec §1), as a trainer callback.

After the backward pass of every mini-batch, each γ in the sparsity set gets ``γ.grad += s·sign(γ)`` (sign(0) = 0),
the subgradient of ``s·Σ|γ|``; the loss value is unchanged.  The trainer calls ``after_backward`` once per optimizer
step with the gradients of ``state.accumulated`` batches summed and already unscaled, so the term is added
``accumulated`` times: the same update as a per-backward hook, and at full strength under AMP (the seeds that add it to
the *scaled* gradient apply only about s/65536, spec §1.1).

Sets (``--prune`` of TAN/SPURS, spec §1.2): 0 = the "normal" set (prunable convs outside shortcut groups and other
coupled groups), 1 = the shortcut/slim set (every prunable conv), 2 = the conv right before each ``[shortcut]``.

Schedules (TAN README, spec §1.3), with E = total epochs and ``epoch`` 0-based:
  * ``constant``: s at every step;
  * ``global``: s while ``epoch <= decay_at·E``, ``decay·s`` after (default 0.5 and 0.01, i.e. 100× at half time);
  * ``local`` (set 1 only): once ``epoch > decay_at·E``, on each step t = sortedAsc(|γ| of the set)[int(local_ratio·N)]
    and the channels with |γ| >= t get ``decay·s`` instead of s (``s·sign(γ)·(1 − (1−decay)·mask)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..engine.callbacks import Callback, TrainState
from ..errors import InputError

SCHEDULES = ("constant", "global", "local")
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
SMALL = (1e-3, 1e-2, 1e-1)


def sparsity_set(graph, mode: int) -> list[int]:
    """Layer indices (ascending) of the convs whose BN γ get the L1 term, for ``--prune`` ``mode`` 0, 1 or 2.

    graph: a :class:`yolocomp.prune.graph.PruneGraph`.  yolov3.cfg (spec §19.3): mode 0 = 42 layers / 13,376
    channels, mode 1 = 70 / 25,920, mode 2 = 23 / 10,560."""
    if mode == 0:
        coupled = {i for g in list(graph.shortcut_groups) + list(graph.coupled) for i in g}
        return sorted(i for i in graph.prunable if i not in coupled)
    if mode == 1:
        return sorted(graph.prunable)
    if mode == 2:
        return sorted(graph.before_shortcut)
    raise InputError(None, f"sparsity mode must be 0 (normal), 1 (shortcut/slim) or 2 (conv before shortcut), "
                           f"got {mode!r}")


def bn_layers(model: nn.Module, layers: Sequence[int]) -> list[nn.BatchNorm2d]:
    """The BatchNorm2d of each listed ``[convolutional]`` layer of a Darknet (an InputError if one has none)."""
    out = []
    for i in layers:
        bn = getattr(model.layers[i], "bn", None) if 0 <= i < len(model.layers) else None
        if not isinstance(bn, nn.BatchNorm2d):
            raise InputError(getattr(model, "path", None), f"layer {i} is not a batch-normalized [convolutional]")
        out.append(bn)
    return out


def gamma_abs(model: nn.Module, layers: Sequence[int]) -> torch.Tensor:
    """|γ| of every channel of the listed layers, concatenated in layer order: float (Σ C_l,), on the CPU."""
    return torch.cat([bn.weight.detach().abs().float().cpu() for bn in bn_layers(model, layers)])


def gamma_stats(model: nn.Module, layers: Sequence[int]) -> dict:
    """Summary of |γ| over the listed layers: ``channels``, ``mean``, ``max``, ``p1 … p99`` (numpy linear
    percentiles) and ``below_<x>`` = share of channels with |γ| < x for x in 1e-3, 1e-2, 1e-1."""
    g = gamma_abs(model, layers).double().numpy()
    row = {"channels": int(g.size), "mean": float(g.mean()), "max": float(g.max())}
    row.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, np.percentile(g, PERCENTILES))})
    row.update({f"below_{x:g}": float((g < x).mean()) for x in SMALL})
    return row


class BNSparsity(Callback):
    """L1 on BN γ during training: ``train(..., callbacks=[BNSparsity(analyze(model), mode=1)])``.

    graph: the model's PruneGraph; mode: the set (see :func:`sparsity_set`); s: the L1 strength (seeds' default
    1e-3); schedule: ``constant``, ``global`` or ``local`` (module docstring); decay_at, decay, local_ratio: the
    schedule constants (0.5, 0.01, 0.85 in TAN).  ``history``: one dict per finished epoch, ``{"epoch", "s" (the s
    of the epoch's last step), **gamma_stats}``.
    """

    def __init__(self, graph, mode: int = 1, s: float = 1e-3, schedule: str = "constant", decay_at: float = 0.5,
                 decay: float = 0.01, local_ratio: float = 0.85):
        if schedule not in SCHEDULES:
            raise InputError(None, f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if schedule == "local" and mode != 1:
            raise InputError(None, "the local-decay schedule is defined for the shortcut/slim set (mode 1) only")
        if not s >= 0 or not 0 < decay_at <= 1 or not 0 <= decay <= 1 or not 0 < local_ratio < 1:
            raise InputError(None, f"need s >= 0, 0 < decay_at <= 1, 0 <= decay <= 1, 0 < local_ratio < 1; got "
                                   f"s={s}, decay_at={decay_at}, decay={decay}, local_ratio={local_ratio}")
        self.layers = sparsity_set(graph, mode)
        if not self.layers:
            raise InputError(None, f"the sparsity set of mode {mode} is empty for this model")
        self.mode, self.s, self.schedule = mode, float(s), schedule
        self.decay_at, self.decay, self.local_ratio = decay_at, decay, local_ratio
        self.history: list[dict] = []
        self._last_s = float(s)

    def late(self, epoch: int, epochs: int) -> bool:
        """True in the second phase of the decay schedules (``epoch > decay_at·epochs``)."""
        return epoch > self.decay_at * epochs

    def s_at(self, epoch: int, epochs: int) -> float:
        """The s of the ``global`` schedule (or the constant s) at 0-based ``epoch`` of ``epochs``."""
        if self.schedule == "global" and self.late(epoch, epochs):
            return self.s * self.decay
        return self.s

    def penalty_grads(self, bns: Sequence[nn.BatchNorm2d], epoch: int, epochs: int) -> list[torch.Tensor]:
        """The term added to each γ's gradient for one backward pass: ``s_eff·sign(γ)``, shapes (C_l,)."""
        s = self.s_at(epoch, epochs)
        signs = [torch.sign(bn.weight.detach()) for bn in bns]
        if self.schedule != "local" or not self.late(epoch, epochs):
            return [s * g for g in signs]
        flat = torch.cat([bn.weight.detach().abs().flatten() for bn in bns])
        t = flat.sort().values[int(self.local_ratio * flat.numel())]
        return [s * g * (1 - (1 - self.decay) * (bn.weight.detach().abs() >= t).to(g.dtype))
                for g, bn in zip(signs, bns)]

    def apply(self, model: nn.Module, epoch: int, epochs: int, times: int = 1) -> None:
        """Add the penalty of ``times`` backward passes to the γ gradients of ``model`` (in place)."""
        bns = bn_layers(model, self.layers)
        for bn, d in zip(bns, self.penalty_grads(bns, epoch, epochs)):
            if bn.weight.grad is None:
                bn.weight.grad = torch.zeros_like(bn.weight)
            bn.weight.grad.add_(d, alpha=times)
        self._last_s = self.s_at(epoch, epochs)

    def after_backward(self, state: TrainState) -> None:
        self.apply(state.raw_model, state.epoch, int(state.args["epochs"]), max(int(state.accumulated), 1))

    def record(self, model: nn.Module, epoch: int) -> dict:
        """Append (and return) the γ statistics of ``model`` for ``epoch`` to ``history``."""
        row = {"epoch": int(epoch), "s": self._last_s, **gamma_stats(model, self.layers)}
        self.history.append(row)
        return row

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        self.record(state.raw_model, state.epoch)


def gamma_histogram_figure(source, layers: Sequence[int] | None = None, bins: int = 60):
    """A matplotlib Figure of the BN γ distribution.

    source: a :class:`BNSparsity` history (list of dicts) → the |γ| percentiles (p1 … p99) per epoch on a log axis,
    with the share of channels below 1e-2 on a second axis; or a Darknet model and its ``layers`` → a histogram of
    |γ| over those layers (all batch-normalized convs when ``layers`` is None) on log-spaced bins.
    """
    import matplotlib.pyplot as plt

    if isinstance(source, nn.Module):
        if layers is None:
            layers = [i for i, m in enumerate(source.layers) if isinstance(getattr(m, "bn", None), nn.BatchNorm2d)]
        g = gamma_abs(source, layers).numpy()
        lo = max(float(g[g > 0].min()) if (g > 0).any() else 1e-8, 1e-8)
        hi = max(float(g.max()), lo * 10)
        edges = np.geomspace(lo, hi, bins + 1)
        edges[0], edges[-1] = lo, hi        # exact ends, so rounding in geomspace drops no channel
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(g, bins=edges, color="tab:blue")
        ax.set_xscale("log")
        zeros = int((g == 0).sum())
        ax.set_xlabel("|γ|" + (f"  ({zeros} exact zeros not shown)" if zeros else ""))
        ax.set_ylabel("channels")
        ax.set_title(f"BN |γ| of {len(layers)} layers, {g.size} channels")
        fig.tight_layout()
        return fig
    rows = list(source)
    if not rows:
        raise InputError(None, "gamma_histogram_figure: the history is empty")
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    cmap = plt.get_cmap("viridis")
    for k, q in enumerate(PERCENTILES):
        ax.plot(epochs, [max(r[f"p{q}"], 1e-12) for r in rows], color=cmap(k / (len(PERCENTILES) - 1)),
                label=f"p{q}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("|γ| percentile")
    share = ax.twinx()
    share.plot(epochs, [r["below_0.01"] for r in rows], "k--", label="share < 1e-2")
    share.set_ylim(0, 1)
    share.set_ylabel("share of channels with |γ| < 1e-2")
    lines = ax.get_legend_handles_labels()
    extra = share.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=7, loc="lower left")
    ax.set_title("BN |γ| during sparsity training")
    fig.tight_layout()
    return fig
