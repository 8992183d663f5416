"""Hooks into :func:`yolocomp.engine.trainer.train`, for sparsity training, pruning masks, distillation, logging.

Callbacks
---------
Subclass :class:`Callback` and override any of its methods; pass instances as ``train(..., callbacks=[...])``.
Hooks run in list order, on every rank (so a hook that changes gradients or weights stays consistent across DDP
ranks); guard file writes with ``state.is_main``.  Order within a run::

    on_train_start(state)                      once, after model, EMA, optimizer and resume state are ready
    for each epoch:
        on_epoch_start(state)                  state.epoch is the epoch about to run
        for each batch:
            extra_loss(state, outputs, targets) -> Tensor | None
                                               added to the detection loss before the bs/64 factor (e.g. a
                                               distillation term); outputs = the model's raw head maps
                                               [(N, A, H, W, 5+C)], targets (M, 6) [batch_idx, cls, x1, y1, x2, y2]
            (backward; then, only on batches that take an optimizer step:)
            after_backward(state)              gradients are summed over ``state.accumulated`` batches and already
                                               unscaled (AMP-safe): add e.g. s·sign(γ) for BN-L1 sparsity here
                                               (multiply by state.accumulated to match a per-backward update)
            after_optimizer_step(state)        weights just changed: re-apply pruning masks here (the EMA is
                                               updated after this hook, so it sees the masked weights)
        on_epoch_end(state, metrics)           after evaluation, before the checkpoint is written; metrics =
                                               the results.csv row (epoch, lr, box, obj, cls, total, ap50, ap, ...)
    on_train_end(state)                        after the last checkpoint

``state`` is a :class:`TrainState`.  ``state.model`` is the module being trained (DDP-wrapped under torchrun;
``state.raw_model`` is the unwrapped Darknet), ``state.ema`` a :class:`~yolocomp.engine.ema.ModelEMA` or None.
A hook may set ``state.stop = True`` to end training after the current epoch (early stopping).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    """What hooks see.  ``epoch``: current epoch (0-based); ``step``: optimizer steps so far; ``ni``: batches so far
    (global, across epochs); ``accumulated``: batches summed into the pending gradient; ``args``: the train()
    arguments as a dict; ``best_fitness``: best evaluation fitness so far (-1 before the first evaluation)."""

    model: nn.Module
    raw_model: nn.Module
    ema: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    hyp: Any
    device: torch.device
    args: dict
    epoch: int = 0
    step: int = 0
    ni: int = 0
    accumulated: int = 0
    best_fitness: float = -1.0
    rank: int = 0
    world_size: int = 1
    stop: bool = False
    # scratch shared by the trainer and hooks: "imgs" = the batch (N, 3, H, W) as the model sees it (set by the
    # trainer before the forward); "det_loss_gain" = a factor on the detection loss a hook may set (GAN KD stage 1)
    extra: dict = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Callback:
    """Base class: every hook does nothing.  See the module docstring for when each runs."""

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_epoch_start(self, state: TrainState) -> None:
        pass

    def extra_loss(self, state: TrainState, outputs: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor | None:
        return None

    def after_backward(self, state: TrainState) -> None:
        pass

    def after_optimizer_step(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass


class CallbackList:
    """Calls a hook on every callback in order; ``extra_loss`` sums the non-None terms (None if all are None)."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be yolocomp.engine.callbacks.Callback instances, got {type(cb)!r}")

    def fire(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def extra_loss(self, state: TrainState, outputs, targets) -> torch.Tensor | None:
        terms = [t for t in (cb.extra_loss(state, outputs, targets) for cb in self.callbacks) if t is not None]
        return sum(terms) if terms else None
