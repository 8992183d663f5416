"""Exponential moving average of a model's weights (training-recipe §4, ULY v8 ``ModelEMA``)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ema_decay(updates: int, decay: float = 0.9999, tau: float = 2000.0) -> float:
    """Decay after ``updates`` optimizer steps: ``decay * (1 - exp(-updates / tau))`` (d(1) = 0.0005, d(2000) = 0.632)."""
    return decay * (1.0 - math.exp(-updates / tau))


class ModelEMA:
    """EMA copy of a model, updated after every optimizer step.

    ``ema`` is a deep copy of the model at construction (after weights are loaded), kept in eval mode with no
    gradients.  Every floating-point state-dict entry (parameters and BN running statistics) follows
    ``θ_ema ← d·θ_ema + (1 − d)·θ``; integer entries (``num_batches_tracked``) are copied.  ``updates`` is saved in
    checkpoints so a resumed run continues the ramp instead of restarting it (the recipe's improvement over ULY).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(_unwrap(model)).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = ema_decay(self.updates, self.decay, self.tau)
        src = _unwrap(model).state_dict()
        for name, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[name].detach(), alpha=1.0 - d)
            else:
                v.copy_(src[name])

    def state_dict(self) -> dict:
        return {"state_dict": self.ema.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model
