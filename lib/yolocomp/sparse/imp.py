"""Lottery Ticket / iterative magnitude pruning (IMP), local and global, with rewinding (pruning-spec §12).

One IMP round: prune a fraction ``rate`` of the weights still alive, by smallest |w| (per tensor = ``local``, ANDREY's
``IMP_LOCAL``; over all prunable tensors pooled = ``global``, ``IMP_GLOBAL``), rewind the surviving weights, train with
the masks held at zero (:class:`~yolocomp.sparse.masks.MaskCallback`).  Rewinding modes (:data:`REWIND`):

* ``early`` (default): every round restarts from one fixed early state θ_k of the dense run, the full state_dict
  after k epochs (Frankle et al. 2019-2020, "rewinding to iteration k"; k = 0 is the original LTH);
* ``seed``: ANDREY's rule: round r restarts from the state saved at the start of epoch k of round r-1's own
  training (for round 1, of the dense run), so the rewind point moves with the rounds (spec §12.2);
* ``none``: no rewinding, round r fine-tunes round r-1's pruned weights (magnitude pruning with fine-tuning).

Defaults are the seed's schedule (params/*/IMP.yaml): 12 prune events of 20 % (13 training iterations, the first
one the dense run), rewind point k = 9 epochs, 300 epochs per round.

Counting: a prune event removes ``round(rate · alive)`` weights (ANDREY: ``floor``, and its ``|w| <= thr`` rule
removes every weight tied with the threshold).  Here exactly that many go: candidates are ordered by |w|, ties by
position (tensors in ``named_modules`` order, then flat index), with a stable sort.  Already-masked weights stay
masked.  So a single global prune at ratio r of N prunable weights zeroes exactly round(r·N) of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..engine.callbacks import Callback, TrainState
from ..errors import InputError
from . import masks as M

SCOPES = ("local", "global")
REWIND = ("early", "seed", "none")


def _select(scores: torch.Tensor, alive: torch.Tensor, rate: float) -> torch.Tensor:
    """New keep-mask (flat) of a pool: the dead stay dead, then ``round(rate · alive)`` more of the alive with the
    smallest score go; ties broken by position (stable sort)."""
    n_alive = int(alive.sum())
    n_new = round(rate * n_alive)
    # dead entries sort first whatever their stored value is, so they are always part of the pruned prefix
    key = torch.where(alive, scores.double(), torch.full_like(scores, -1.0, dtype=torch.float64))
    order = torch.sort(key, stable=True).indices
    keep = torch.ones_like(alive)
    keep[order[: scores.numel() - n_alive + n_new]] = False
    return keep


def magnitude_masks(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor], rate: float,
                    scope: str) -> dict[str, torch.Tensor]:
    """One prune event: new bool masks (same keys and shapes as ``weights``) removing ``round(rate · alive)`` of the
    weights still alive under ``masks``, smallest |w| first, per tensor (``local``) or pooled (``global``)."""
    if scope not in SCOPES:
        raise InputError(None, f"IMP scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 0.0 <= rate < 1.0:
        raise InputError(None, f"pruning rate must be in [0, 1), got {rate!r}")
    names = list(weights)
    if scope == "local":
        return {n: _select(weights[n].detach().abs().flatten(), masks[n].flatten(), rate).view_as(masks[n])
                for n in names}
    scores = torch.cat([weights[n].detach().abs().flatten().cpu() for n in names])
    alive = torch.cat([masks[n].flatten().cpu() for n in names])
    keep = _select(scores, alive, rate)
    out, pos = {}, 0
    for n in names:
        k = weights[n].numel()
        out[n] = keep[pos:pos + k].view_as(masks[n]).to(masks[n].device)
        pos += k
    return out


def prune(model: nn.Module, rate: float, scope: str, exclude_heads: bool = True) -> dict[str, torch.Tensor]:
    """One prune event on ``model`` in place: masks from its current weights (all-True where it has none yet),
    attached and applied.  Returns the new masks."""
    modules = M.prunable(model, exclude_heads)
    old = M.masks_of(model)
    current = {n: old.get(n, torch.ones_like(m.weight, dtype=torch.bool)) for n, m in modules.items()}
    new = magnitude_masks({n: m.weight for n, m in modules.items()}, current, rate, scope)
    M.attach(model, new)
    return new


def lth_local(model: nn.Module, rate: float) -> dict[str, torch.Tensor]:
    """IMP_LOCAL prune event: ``rate`` of each prunable tensor's alive weights (registered as ``lth-local``)."""
    return prune(model, rate, "local")


def lth_global(model: nn.Module, rate: float) -> dict[str, torch.Tensor]:
    """IMP_GLOBAL prune event: ``rate`` of all alive prunable weights pooled (registered as ``lth-global``)."""
    return prune(model, rate, "global")


def remaining_after(rounds: int, rate: float) -> float:
    """Fraction of prunable weights alive after ``rounds`` prune events (up to rounding): (1 - rate)^rounds."""
    return (1.0 - rate) ** rounds


class Snapshot(Callback):
    """Copies the raw model's full state_dict (weights, BN statistics, masks) as it is after ``epoch`` completed
    epochs of this training, i.e. at the start of epoch ``epoch`` (ANDREY's backup is taken at the start of epoch
    ``reseting - 1`` = 9, spec §12.2).  ``stop``: end the training right after the copy (epoch 0: after one epoch,
    as the trainer only stops at epoch ends).  ``state`` is None when training ended before that epoch."""

    def __init__(self, epoch: int, stop: bool = False):
        if epoch < 0:
            raise InputError(None, f"snapshot epoch must be >= 0, got {epoch}")
        self.epoch, self.stop, self.state = epoch, stop, None

    def _take(self, state: TrainState) -> None:
        self.state = {k: v.detach().clone().cpu() for k, v in state.raw_model.state_dict().items()}
        if self.stop:
            state.stop = True

    def on_train_start(self, state: TrainState) -> None:
        if self.epoch == 0:
            self._take(state)

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        if state.epoch == self.epoch - 1:
            self._take(state)


TrainFn = Callable[[nn.Module, list, int], object]


@dataclass
class RoundOutput:
    """One IMP round: ``model`` (the trained, masked model that was evaluated), ``masks``, ``metrics`` (the trainer's
    last evaluation), ``snapshot`` (the rewind state this round's training saved, for the ``seed`` rewinding of the
    next round; None otherwise) and the ``(kept, total)`` prunable weights."""

    model: nn.Module
    masks: dict[str, torch.Tensor]
    metrics: dict
    snapshot: dict | None
    kept: int
    total: int


def imp_round(model: nn.Module, rate: float, scope: str, rewind: str, rewind_state: dict | None,
              train_fn: TrainFn, round_index: int, rewind_epoch: int = 9, exclude_heads: bool = True) -> RoundOutput:
    """Prune ``model`` (in place) by ``rate`` of its alive weights, rewind (to ``rewind_state`` unless ``rewind`` is
    ``none``), train it with ``train_fn(model, callbacks, round_index) -> TrainResult`` and return the round.

    ``rewind_state``: the state_dict to restart from (θ_k of the dense run for ``early``; the previous round's
    snapshot for ``seed``).  The returned model is the trainer's evaluated one (the EMA when on; masked exactly)."""
    if rewind not in REWIND:
        raise InputError(None, f"rewind must be one of {', '.join(REWIND)}, got {rewind!r}")
    masks = prune(model, rate, scope, exclude_heads)
    for p in model.parameters():   # e.g. an EMA copy passed in: every parameter trains in the round
        p.requires_grad_(True)
    if rewind != "none":
        if rewind_state is None:
            raise InputError(None, f"rewind={rewind!r} needs a rewind state")
        M.load_state_keeping_masks(model, rewind_state)
    snap = Snapshot(rewind_epoch) if rewind == "seed" else None
    result = train_fn(model, [M.MaskCallback()] + ([snap] if snap else []), round_index)
    out = result.ema_model if result.ema_model is not None else result.model
    kept, total = M.counts(masks)
    return RoundOutput(out, masks, result.metrics, snap.state if snap else None, kept, total)


def iterative_magnitude_pruning(model: nn.Module, train_fn: TrainFn, rounds: int = 12, rate: float = 0.2,
                                scope: str = "local", rewind: str = "early", rewind_state: dict | None = None,
                                rewind_epoch: int = 9, exclude_heads: bool = True) -> list[RoundOutput]:
    """IMP from a trained dense ``model`` (not modified): ``rounds`` prune events, each followed by rewinding and a
    training with ``train_fn``.  ``rewind_state``: θ_k of the dense run (the full state_dict after ``rewind_epoch``
    epochs) for ``early`` and, as the first rewind point, for ``seed``.  Returns every round."""
    model = copy.deepcopy(model)
    out, state = [], rewind_state
    for r in range(1, rounds + 1):
        res = imp_round(model, rate, scope, rewind, state, train_fn, r, rewind_epoch, exclude_heads)
        out.append(res)
        model = copy.deepcopy(res.model)
        if rewind == "seed" and res.snapshot is not None:
            state = res.snapshot   # a round that stopped before the rewind epoch keeps the older backup (as ANDREY)
    return out
