"""Weight masks for unstructured pruning, as one small mechanism every sparse method shares.

A mask is a bool tensor of a weight's shape (True = keep).  It lives on the module itself as the buffer
``weight_mask``, so it travels with every ``state_dict``: the trainer's ``last.pt``/``best.pt``, the EMA copy (bool
buffers are copied, never averaged) and our sparse file all carry it without extra bookkeeping.

* :func:`prunable` - which weights may be masked: every ``nn.Conv2d``/``nn.Linear`` weight except the conv that feeds a
  ``[yolo]`` layer (ANDREY prune.py excludes those by their width, (classes+5)·3, which also excludes any other
  layer that happens to have that width, pruning-spec §12.1; we exclude them by position).
* :func:`attach` / :func:`apply` / :func:`remove` - put masks on a model, zero the masked weights, take the masks
  off again (the weights stay zero: plain weights a plain Darknet loads).
* :class:`MaskCallback` - keeps masked weights exactly zero during :func:`yolocomp.engine.trainer.train`: the
  weights and the EMA copy at the start, the gradients before every optimizer step and the weights right after it
  (the EMA is updated after that hook, from zeros into zeros, so what the trainer evaluates and saves is masked too).
  ANDREY masked only before each forward and evaluated without re-masking (spec §12.2); that is not repeated here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..engine.callbacks import Callback, TrainState
from ..errors import InputError, WeightsError
from ..models.checkpoint import read_checkpoint
from ..models.darknet import Darknet
from ..models.parse import parse_cfg

MASK = "weight_mask"
_WEIGHTED = (nn.Conv2d, nn.Linear)


def head_convs(model: nn.Module) -> set[str]:
    """Module names of the convs that feed a ``[yolo]`` layer of a Darknet (empty for other models)."""
    indices = getattr(model, "yolo_indices", [])
    names = set()
    for i in indices:
        conv = getattr(model.layers[i - 1], "conv", None)
        if conv is not None:
            names.update(n for n, m in model.named_modules() if m is conv)
    return names


def prunable(model: nn.Module, exclude_heads: bool = True) -> dict[str, nn.Module]:
    """``{module name: module}`` of the modules whose ``.weight`` may be masked, in ``named_modules`` order:
    every Conv2d and Linear (subclasses included), without the ``[yolo]`` head convs when ``exclude_heads``."""
    heads = head_convs(model) if exclude_heads else set()
    return {n: m for n, m in model.named_modules() if isinstance(m, _WEIGHTED) and n not in heads}


def full_masks(model: nn.Module, exclude_heads: bool = True) -> dict[str, torch.Tensor]:
    """All-True masks for every prunable weight (nothing pruned yet)."""
    return {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in prunable(model, exclude_heads).items()}


def masks_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module name: bool mask}`` of every module carrying a ``weight_mask`` buffer (the buffers themselves)."""
    return {n: getattr(m, MASK) for n, m in model.named_modules() if isinstance(getattr(m, MASK, None), torch.Tensor)}


def attach(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Register each mask as the ``weight_mask`` buffer of its module (replacing an older one) and zero the masked
    weights.  ``masks``: module name -> bool tensor of that module's weight shape.  Returns ``model``."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        m = modules.get(name)
        if m is None or not isinstance(getattr(m, "weight", None), torch.Tensor):
            raise InputError(None, f"mask for {name!r}: the model has no weighted module of that name")
        if tuple(mask.shape) != tuple(m.weight.shape):
            raise InputError(None, f"mask for {name!r} has shape {tuple(mask.shape)}, its weight "
                                   f"{tuple(m.weight.shape)}")
        buf = mask.detach().to(device=m.weight.device, dtype=torch.bool).clone()
        if MASK in m._buffers:
            m._buffers[MASK] = buf
        else:
            m.register_buffer(MASK, buf)
    apply(model)
    return model


@torch.no_grad()
def apply(model: nn.Module) -> None:
    """Set every masked weight to exactly +0.0 (masked_fill, so no -0.0 from multiplying a negative weight)."""
    for m in model.modules():
        mask = getattr(m, MASK, None)
        if isinstance(mask, torch.Tensor):
            m.weight.masked_fill_(~mask, 0.0)


def mask_gradients(model: nn.Module) -> None:
    """Zero the gradients of masked weights, so momentum never builds up where the weight must stay zero."""
    for m in model.modules():
        mask = getattr(m, MASK, None)
        if isinstance(mask, torch.Tensor) and m.weight.grad is not None:
            m.weight.grad.masked_fill_(~mask, 0.0)


def remove(model: nn.Module) -> dict[str, torch.Tensor]:
    """Zero the masked weights one last time and delete the buffers: ``model`` is then a plain model (its
    state_dict loads into a freshly built one).  Returns the removed masks."""
    apply(model)
    out = {}
    for n, m in model.named_modules():
        if MASK in m._buffers:
            out[n] = m._buffers.pop(MASK)
    return out


def counts(masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(kept, total) entries over all masks."""
    return sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())


def masked_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{module name: mask}`` found in a state_dict (keys ``<module>.weight_mask``)."""
    suffix = "." + MASK
    return {k[: -len(suffix)]: v for k, v in state.items() if k.endswith(suffix)}


def load_masked(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Darknet, dict]:
    """A yolocomp checkpoint (``save_checkpoint`` or the trainer's ``last.pt``/``best.pt``) of a masked Darknet:
    the model rebuilt from its cfg with its masks attached, in eval mode, and the metadata."""
    path = Path(path)
    obj = read_checkpoint(path, map_location)
    model = Darknet(parse_cfg(obj["cfg"], f"{path}[cfg]"))
    state = obj["state_dict"]
    masks = masked_state(state)
    try:
        attach(model, masks)
        model.load_state_dict(state)
        apply(model)
    except (RuntimeError, InputError) as e:
        raise WeightsError(str(path), f"state_dict does not match the stored cfg: {e}") from None
    return model.eval(), obj.get("metadata", {})


def load_state_keeping_masks(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a (plain or masked) state_dict into a masked model, keep the model's own masks, and re-apply them.

    Used for rewinding: the stored state is the model before (this round's) pruning."""
    state = {k: v for k, v in state.items() if not k.endswith("." + MASK)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("." + MASK)]
    if missing or unexpected:
        raise WeightsError(None, f"rewind state does not match the model: missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}")
    apply(model)


class MaskCallback(Callback):
    """Trainer hook that keeps every ``weight_mask`` of the model exactly in force (see the module docstring).

    ``train(model, ..., callbacks=[MaskCallback()])`` with masks already attached to ``model``."""

    def on_train_start(self, state: TrainState) -> None:
        apply(state.raw_model)
        if state.ema is not None:
            apply(state.ema.ema)

    def after_backward(self, state: TrainState) -> None:
        mask_gradients(state.raw_model)

    def after_optimizer_step(self, state: TrainState) -> None:
        apply(state.raw_model)
