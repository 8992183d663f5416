"""Continuous Sparsification (CS) as ANDREY's cs.py runs it on YOLOv3 (pruning-spec §13).

Every prunable conv (all but the ``[yolo]`` head convs) becomes a :class:`SoftMaskConv2d`: its weight w gets a mask
parameter s of the same shape, initialised to s0 (seed: -0.1, the cfg value), and computes with w ⊙ m where

* soft mask (search rounds): ``m = sigmoid(β·s) / sigmoid(s0)`` (m = 1 at the start of a round, β = 1);
* ticket mask (after the search): ``m = 1[s > 0] / sigmoid(s0)`` - the kept weights keep the scale
  1/σ(s0) (2.1052 for s0 = -0.1), exactly as the seed does.

As β grows σ(β·s)/σ(s0) tends to the ticket mask ({0, 1/σ(s0)}; 0/1 once multiplied by σ(s0)).

Training (:class:`CSCallback` hooks into :func:`yolocomp.engine.trainer.train`):

* loss = detection loss·(bs/64) + λ·Σ m over every mask entry (λ = 1e-8), added through ``extra_loss``;
* the masks have their own optimizer, SGD(lr = 0.1, momentum = 0.9, nesterov), stepped with the weights (every
  ``accumulate`` batches) and following the weights' LR schedule (its lr is mask_lr × the conv-weight group's lr /
  lr0); the trainer's optimizer never sees them: :func:`freeze_scores` takes them out of ``requires_grad`` before
  ``train()`` builds it, and the callback turns them back on at ``on_train_start``;
* temperature per round of E epochs: β = 1 in epoch 0 and β ← β·τ at every later epoch, τ = T^(1/(E-1)) with
  final temperature T = 200, so β = T in the last epoch (``anneal="epoch"``, the seed).  ``anneal="batch"``
  raises β geometrically per batch instead, from 1 at the first batch to T at the last, for rounds of one epoch.

Rounds (seed: 3 rounds of 100 epochs; "CS 1 It" = 1 round of 300): before every round after the first, the
temperature is reset to 1 and then s ← min(s, s0).  The full weight state (not s) is saved at the start of epoch
``reset_epoch`` (10) of round 0.  After the last round: ticket mode on, weights rewound to that state, mask optimizer
off, the ticket trained (300 epochs).  :func:`harden` then folds w ⊙ m into a plain Darknet with bool masks (the
model saved as cfg + weights + sparse file).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..engine.callbacks import Callback, TrainState
from ..errors import InputError
from ..models.convs import conv_geometry, copy_conv_params
from . import masks as M
from .imp import Snapshot

ANNEAL = ("epoch", "batch")


def method_label(iterations: int) -> str:
    """The results-table method of CS with ``iterations`` search rounds: "CS 1 iteration", "CS 3 iterations"."""
    return f"CS {iterations} iteration" + ("" if iterations == 1 else "s")
SCORE = "score"


def sigmoid(x: float) -> float:
    """σ(x) = 1 / (1 + e^-x) of a Python float."""
    return 1.0 / (1.0 + math.exp(-x))


class SoftMaskConv2d(nn.Conv2d):
    """A Conv2d computing with ``weight ⊙ mask()`` (see the module docstring).

    ``score``: the mask parameter s, shape of ``weight``.  ``s0``: its initial value; ``beta``: the temperature
    (plain attributes, set by :class:`CSCallback` on the model and its EMA copy); ``ticket``: hard mask mode."""

    def __init__(self, conv: nn.Conv2d, s0: float = -0.1):
        super().__init__(**conv_geometry(conv))
        copy_conv_params(self, conv)
        self.score = nn.Parameter(torch.full_like(conv.weight, float(s0)))
        self.s0, self.beta, self.ticket = float(s0), 1.0, False

    def mask(self) -> torch.Tensor:
        """The current mask m, shape of ``weight``: σ(β·s)/σ(s0), or 1[s > 0]/σ(s0) in ticket mode."""
        if self.ticket:
            return (self.score > 0).to(self.weight.dtype) / sigmoid(self.s0)
        return torch.sigmoid(self.beta * self.score) / sigmoid(self.s0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask(), self.bias)


def soft_convs(model: nn.Module) -> dict[str, SoftMaskConv2d]:
    """``{module name: SoftMaskConv2d}`` of a softened model."""
    return {n: m for n, m in model.named_modules() if isinstance(m, SoftMaskConv2d)}


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def soften(model: nn.Module, s0: float = -0.1, exclude_heads: bool = True) -> nn.Module:
    """A copy of ``model`` whose prunable Conv2d (:func:`yolocomp.sparse.masks.prunable`) are SoftMaskConv2d with
    s = s0 everywhere; the copy computes the same function (m = 1 at β = 1).  Masks already attached are folded
    into the weights first (their zeros stay zeros: w ⊙ m = 0 wherever w = 0)."""
    model = copy.deepcopy(model)
    M.remove(model)
    for p in model.parameters():   # e.g. an EMA copy passed in: the weights train during the search
        p.requires_grad_(True)
    for name, m in M.prunable(model, exclude_heads).items():
        if type(m) is nn.Conv2d:
            _replace(model, name, SoftMaskConv2d(m, s0))
    if not soft_convs(model):
        raise InputError(getattr(model, "path", None), "the model has no prunable Conv2d to soften")
    return model


def set_temperature(model: nn.Module, beta: float) -> None:
    for m in soft_convs(model).values():
        m.beta = float(beta)


def set_ticket(model: nn.Module, on: bool = True) -> None:
    for m in soft_convs(model).values():
        m.ticket = bool(on)


def freeze_scores(model: nn.Module, frozen: bool = True) -> None:
    """Take the mask parameters out of (or put them back into) ``requires_grad``: frozen before ``train()`` so
    the trainer's weight optimizer leaves them out (:class:`CSCallback` owns them)."""
    for m in soft_convs(model).values():
        m.score.requires_grad_(not frozen)


@torch.no_grad()
def reset_scores(model: nn.Module) -> None:
    """Between rounds: s ← min(s, s0) (the seed resets the temperature first, so the factor is 1)."""
    for m in soft_convs(model).values():
        m.score.clamp_(max=m.s0)


def remaining(model: nn.Module) -> tuple[int, int]:
    """(entries with s > 0, all mask entries): the weights the ticket mask would keep."""
    convs = soft_convs(model).values()
    return sum(int((m.score > 0).sum()) for m in convs), sum(m.score.numel() for m in convs)


def l1_term(model: nn.Module) -> torch.Tensor:
    """Σ m over every mask entry of the model (the current soft masks), a scalar with gradient to the scores."""
    return sum(m.mask().sum() for m in soft_convs(model).values())


def temperature(final: float, epochs: int, epoch: int) -> float:
    """β in epoch ``epoch`` (0-based) of a round of ``epochs``: τ^epoch with τ = final^(1/(epochs-1))."""
    if epochs < 2:
        raise InputError(None, f"anneal='epoch' needs rounds of at least 2 epochs (τ = T^(1/(E-1))), got "
                               f"{epochs}; use anneal='batch' for one-epoch rounds")
    return final ** (epoch / (epochs - 1))


class CSCallback(Callback):
    """Continuous Sparsification during :func:`~yolocomp.engine.trainer.train` (see the module docstring).

    Search round: ``CSCallback(final_temperature=200, lam=1e-8, mask_lr=0.1, mask_momentum=0.9, anneal="epoch")``
    on a softened model whose scores were frozen with :func:`freeze_scores`.  Ticket: ``CSCallback(ticket=True)``
    sets ticket mode on the model and its EMA copy and trains the weights only."""

    def __init__(self, final_temperature: float = 200.0, lam: float = 1e-8, mask_lr: float = 0.1,
                 mask_momentum: float = 0.9, anneal: str = "epoch", ticket: bool = False):
        if anneal not in ANNEAL:
            raise InputError(None, f"anneal must be one of {', '.join(ANNEAL)}, got {anneal!r}")
        if final_temperature < 1:
            raise InputError(None, f"final temperature must be >= 1, got {final_temperature}")
        self.final, self.lam, self.mask_lr, self.momentum = final_temperature, lam, mask_lr, mask_momentum
        self.anneal, self.ticket = anneal, ticket
        self.optimizer: torch.optim.Optimizer | None = None
        self.beta = 1.0
        self._ni0, self._batches = 0, 1

    def _models(self, state: TrainState) -> list[nn.Module]:
        return [state.raw_model] + ([state.ema.ema] if state.ema is not None else [])

    def _set_beta(self, state: TrainState, beta: float) -> None:
        self.beta = beta
        for m in self._models(state):
            set_temperature(m, beta)

    def on_train_start(self, state: TrainState) -> None:
        scores = [m.score for m in soft_convs(state.raw_model).values()]
        if not scores:
            raise InputError(None, "CSCallback: the model has no SoftMaskConv2d (build it with soften())")
        in_opt = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        if any(id(s) in in_opt for s in scores):
            raise InputError(None, "CSCallback: the mask scores are in the trainer's optimizer; call "
                                   "freeze_scores(model) before train()")
        for m in self._models(state):
            set_ticket(m, self.ticket)
        self._set_beta(state, 1.0)
        if self.ticket:
            return
        if state.world_size > 1:
            raise InputError(None, "CSCallback: the mask search runs in one process (DDP would not all-reduce "
                                   "the mask gradients); the ticket training may use torchrun")
        for s in scores:
            s.requires_grad_(True)
        self.optimizer = torch.optim.SGD(scores, lr=self.mask_lr, momentum=self.momentum, nesterov=True)
        if self.anneal == "batch":
            self._ni0 = state.ni
            self._batches = state.args["epochs"] * _batches_per_epoch(state)

    def on_epoch_start(self, state: TrainState) -> None:
        if self.ticket:
            return
        if self.anneal == "epoch":
            self._set_beta(state, temperature(self.final, state.args["epochs"], state.epoch))
        else:
            self._set_beta(state, self._batch_beta(state.ni))

    def _batch_beta(self, ni: int) -> float:
        k = min(ni - self._ni0, self._batches - 1)
        return self.final ** (k / (self._batches - 1)) if self._batches > 1 else 1.0

    def extra_loss(self, state: TrainState, outputs, targets) -> torch.Tensor | None:
        if self.ticket:
            return None
        term = self.lam * l1_term(state.raw_model)
        if self.anneal == "batch":  # the forward of batch ni used β(ni); the next batch gets β(ni + 1)
            self._set_beta(state, self._batch_beta(state.ni + 1))
        return term

    def after_backward(self, state: TrainState) -> None:
        if self.optimizer is None:
            return
        if state.scaler.is_enabled():  # the trainer unscales only its own optimizer's gradients
            scale = state.scaler.get_scale()
            grads = [p.grad for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            for grad in grads:
                grad.div_(scale)
            if not all(bool(torch.isfinite(grad).all()) for grad in grads):  # skipped, like the scaler's step
                self.optimizer.zero_grad(set_to_none=True)
                return
        g = state.optimizer.param_groups[1]  # conv weights: the group whose schedule the masks follow
        factor = g["lr"] / g["initial_lr"]
        for pg in self.optimizer.param_groups:
            pg["lr"] = self.mask_lr * factor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def on_train_end(self, state: TrainState) -> None:
        freeze_scores(state.raw_model)
        self.optimizer = None


def _batches_per_epoch(state: TrainState) -> int:
    from ..data.yolo_txt import read_yolo

    n = len(read_yolo(Path(state.args["data"]), "train"))
    per_rank = math.ceil(n / state.world_size)
    return math.ceil(per_rank / state.args["batch_size"])


@torch.no_grad()
def harden(model: nn.Module) -> nn.Module:
    """A plain copy of a softened model: each SoftMaskConv2d becomes an nn.Conv2d with weight w ⊙ ticket mask
    (1[s > 0]/σ(s0), exactly +0.0 where s <= 0) and the bool mask 1[s > 0] attached as its ``weight_mask``."""
    model = copy.deepcopy(model)
    masks = {}
    for name, m in soft_convs(model).items():
        conv = nn.Conv2d(**conv_geometry(m))
        keep = m.score > 0
        ticket, m.ticket = m.ticket, True
        conv.weight.copy_((m.weight * m.mask()).masked_fill(~keep, 0.0))   # the very product the ticket forward uses
        m.ticket = ticket
        if m.bias is not None:
            conv.bias.copy_(m.bias)
        _replace(model, name, conv)
        masks[name] = keep
    M.attach(model, masks)
    return model


def weight_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict without mask scores (what the seed's rewind checkpoint holds: weights and BN state)."""
    return {k: v.detach().clone().cpu() for k, v in model.state_dict().items()
            if not k.endswith("." + SCORE) and not k.endswith("." + M.MASK)}


def load_weight_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Rewind: load ``state`` (:func:`weight_state` of this or of the original plain model) keeping the scores."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("." + SCORE)]
    if missing or unexpected:
        raise InputError(None, f"rewind state does not match the model: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")


TrainFn = Callable[[nn.Module, list, int], object]


@dataclass
class SearchRound:
    """One search round: the trained soft ``model`` (raw weights and scores, carried to the next round), the
    trainer's last ``metrics`` (of the soft model at the final temperature), ``kept``/``total`` = entries with s > 0
    and the ``snapshot`` (rewind state) when this round took it."""

    model: nn.Module
    metrics: dict
    kept: int
    total: int
    snapshot: dict | None


def search_round(soft: nn.Module, round_index: int, train_fn: TrainFn, callback: CSCallback,
                 reset_epoch: int | None = None) -> SearchRound:
    """Train one round (in place).  Rounds after the first start with s ← min(s, s0); ``reset_epoch`` (round 0
    only): take the rewind snapshot at the start of that epoch."""
    if round_index > 0:
        reset_scores(soft)
    freeze_scores(soft)
    snap = Snapshot(reset_epoch) if reset_epoch is not None else None
    result = train_fn(soft, [callback] + ([snap] if snap else []), round_index)
    kept, total = remaining(result.model)
    state = {k: v for k, v in snap.state.items() if not k.endswith("." + SCORE)} if snap and snap.state else None
    return SearchRound(result.model, result.metrics, kept, total, state)


def train_ticket(soft: nn.Module, rewind_state: dict | None, train_fn: TrainFn, round_index: int) -> tuple:
    """Ticket mode on, weights rewound to ``rewind_state`` (None: keep them), scores frozen, train; returns
    ``(plain model with masks, trainer metrics)`` - the hardened evaluated model (EMA when on)."""
    soft = copy.deepcopy(soft)
    for p in soft.parameters():
        p.requires_grad_(True)
    if rewind_state is not None:
        load_weight_state(soft, rewind_state)
    set_ticket(soft, True)
    freeze_scores(soft)
    result = train_fn(soft, [CSCallback(ticket=True)], round_index)
    return harden(result.ema_model if result.ema_model is not None else result.model), result.metrics


def continuous_sparsification(model: nn.Module, train_fn: TrainFn, rounds: int = 3, s0: float = -0.1,
                              final_temperature: float = 200.0, lam: float = 1e-8, mask_lr: float = 0.1,
                              mask_momentum: float = 0.9, reset_epoch: int = 10, anneal: str = "epoch",
                              exclude_heads: bool = True) -> tuple[nn.Module, list[SearchRound], dict]:
    """CS from ``model`` (not modified): ``rounds`` search rounds, then the rewound ticket is trained.

    ``train_fn(model, callbacks, round_index) -> TrainResult`` trains a round (its epochs set the round length;
    round index ``rounds`` is the ticket).  Returns ``(final plain model with masks, search rounds, ticket
    metrics)``."""
    soft = soften(model, s0, exclude_heads)
    found, rewind = [], None
    for r in range(rounds):
        cb = CSCallback(final_temperature, lam, mask_lr, mask_momentum, anneal)
        res = search_round(soft, r, train_fn, cb, reset_epoch if r == 0 else None)
        found.append(res)
        soft = res.model
        rewind = res.snapshot if r == 0 else rewind
    final, metrics = train_ticket(soft, rewind, train_fn, rounds)
    return final, found, metrics
