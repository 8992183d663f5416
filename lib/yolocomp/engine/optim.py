"""Optimizer, parameter groups, LR schedule, warm-up and accumulation (training-recipe §3).

Everything here is a pure function of (epoch, global batch index ``ni``), so a resumed run recomputes the same
learning rates without any scheduler state.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SCHEDULES = ("cosine", "tan-step", "inverse-exp", "multistep")


def param_groups(model: nn.Module) -> tuple[list, list, list]:
    """The recipe's three groups (ULY/SPURS): ``(other, conv_weights, biases)``.

    ``conv_weights``: weights of every ``nn.Conv2d`` (the only decayed group); ``biases``: every ``.bias`` (BN β and
    head-conv biases); ``other``: the rest (BN γ, ...), no decay.  Selected by module type rather than by name, so
    convs inside unnamed containers still get decay (the YOLO-Nano pitfall of §3.1 does not happen here).
    """
    conv_w = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    other, decay, bias = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in conv_w:
            decay.append(p)
        elif name.endswith(".bias"):
            bias.append(p)
        else:
            other.append(p)
    return other, decay, bias


def build_optimizer(model: nn.Module, lr0: float, momentum: float, weight_decay: float,
                    adam: bool = False, groups: int = 3, nesterov: bool = True) -> torch.optim.Optimizer:
    """SGD (nesterov, ``momentum``) or Adam (default betas) over :func:`param_groups`; group 1 (conv weights)
    carries ``weight_decay``.

    Weight decay is torch's coupled L2, applied once per optimizer step.  Each group keeps ``initial_lr`` = lr0.
    ``groups=2`` (TAN) puts the biases into group 0.
    """
    other, decay, bias = param_groups(model)
    if groups == 2:
        other, bias = other + bias, []
    # groups keep their positions (0 other, 1 decay, 2 bias) even when empty, e.g. a model without BN
    plist = [{"params": other}, {"params": decay, "weight_decay": weight_decay}]
    plist += [{"params": bias}] if groups == 3 else []
    if adam:
        opt = torch.optim.Adam(plist, lr=lr0)  # default betas, as ULY
    else:
        opt = torch.optim.SGD(plist, lr=lr0, momentum=momentum, nesterov=nesterov)
    for g in opt.param_groups:
        g["initial_lr"] = lr0
    return opt


def lr_factor(schedule: str, epoch: int, epochs: int, lrf: float = 0.05,
              milestones: tuple[float, ...] = (0.2, 0.5, 0.8), gamma: float = 0.3) -> float:
    """Per-epoch LR multiplier of lr0 (§3.2).

    * ``cosine`` (ULY/SPURS, floor ``lrf`` = 0.05): ``lrf + (1 - lrf)·(1 + cos(π·e/E))/2`` (f(150 of 300) = 0.525);
    * ``tan-step`` (TAN): 1, ×0.1 when e > 0.7·E, ×0.01 when e > 0.9·E (strict);
    * ``inverse-exp`` (ANDREY, ``lrf`` = -4): ``1 - 10^(lrf·(1 - e/E))`` (f(225 of 300) = 0.90);
    * ``multistep`` (SPURS quantised): ×gamma at each epoch ⌊E·m⌋ passed, m in ``milestones``.
    """
    if schedule == "cosine":
        return lrf + (1 - lrf) * (1 + math.cos(epoch * math.pi / epochs)) / 2
    if schedule == "tan-step":
        return 0.01 if epoch > 0.9 * epochs else 0.1 if epoch > 0.7 * epochs else 1.0
    if schedule == "inverse-exp":
        return 1 - 10 ** (lrf * (1 - epoch / epochs))
    if schedule == "multistep":
        return gamma ** sum(epoch >= int(epochs * m) for m in milestones)
    raise ValueError(f"unknown LR schedule {schedule!r} (known: {', '.join(SCHEDULES)})")


def warmup_batches(batches_per_epoch: int, warmup_epochs: float, min_batches: int = 500) -> int:
    """n_burn = max(warmup_epochs · nb, min_batches) (ULY: max(3·nb, 500)); 0 disables warm-up."""
    return 0 if warmup_epochs <= 0 else max(round(warmup_epochs * batches_per_epoch), min_batches)


def apply_lr(opt: torch.optim.Optimizer, ni: int, n_burn: int, factor: float, weight_decay: float,
             momentum: float, warmup_bias_lr: float = 0.1, warmup_momentum: float = 0.9) -> float:
    """Set every group's lr (and during warm-up, weight decay and momentum) for global batch ``ni``.

    After warm-up: lr = initial_lr·factor.  For ni <= n_burn, linear in ni over [0, n_burn]: groups 0 and 1 lr
    0 -> lr0·factor, bias group 0.1 -> lr0·factor, conv weight decay 0 -> wd, momentum 0.9 -> hyp (SGD only).
    Returns the lr of group 0 (what the logs show).
    """
    warm = ni <= n_burn and n_burn > 0
    for j, g in enumerate(opt.param_groups):
        target = g["initial_lr"] * factor
        if warm:
            g["lr"] = float(np.interp(ni, [0, n_burn], [warmup_bias_lr if j == 2 else 0.0, target]))
            g["weight_decay"] = float(np.interp(ni, [0, n_burn], [0.0, weight_decay if j == 1 else 0.0]))
            if "momentum" in g:
                g["momentum"] = float(np.interp(ni, [0, n_burn], [warmup_momentum, momentum]))
        else:
            g["lr"] = target
            g["weight_decay"] = weight_decay if j == 1 else 0.0
            if "momentum" in g:
                g["momentum"] = momentum
    return opt.param_groups[0]["lr"]


def warmup_accumulate(ni: int, n_burn: int, accumulate: int) -> int:
    """Accumulation during warm-up: 1 -> accumulate linearly over [0, n_burn], rounded (ULY); then ``accumulate``."""
    if n_burn > 0 and ni <= n_burn:
        return max(1, int(np.round(np.interp(ni, [0, n_burn], [1, accumulate]))))
    return accumulate


def multi_scale_range(img_size: int, stride: int = 32) -> tuple[int, int]:
    """ULY rule: (⌊(S//1.5)/32⌋·32, ⌊(S//0.667)/32⌋·32); 320 -> (192, 448), 416 -> (256, 608)."""
    return int(img_size // 1.5) // stride * stride, int(img_size // 0.667) // stride * stride


def tan_warmup_lr(lr0: float, ni: int, nb: int) -> float:
    """TAN's per-batch ramp for epochs 0-5: ``1e-6 + (lr0 - 1e-6)·ni/(2·nb)`` (reaches ≈3·lr0 by epoch 5, §3.4)."""
    return 1e-6 + (lr0 - 1e-6) * ni / (2 * nb)


def prebias(opt: torch.optim.Optimizer, epoch: int, nb: int, lr0: float, momentum: float,
            warmup_bias_lr: float = 0.1, warmup_momentum: float = 0.9) -> bool:
    """ANDREY's prebias: for e <= n_e = max(round(30/nb), 3) set the bias group's lr to interp(e; [0, n_e] ->
    [0.1, 2·lr0]) and its momentum to interp(e; [0, n_e] -> [0.9, momentum]).  Returns whether it applied."""
    n_e = max(round(30 / nb), 3)
    if epoch > n_e or len(opt.param_groups) < 3:
        return False
    g = opt.param_groups[2]
    g["lr"] = float(np.interp(epoch, [0, n_e], [warmup_bias_lr, 2 * lr0]))
    if "momentum" in g:
        g["momentum"] = float(np.interp(epoch, [0, n_e], [warmup_momentum, momentum]))
    return True
