"""PyTorch checkpoints of a :class:`~yolocomp.models.darknet.Darknet`: state_dict + the cfg text that rebuilds the
(possibly pruned) graph + caller metadata, in one file loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..errors import CfgError, WeightsError
from ..fileio import atomic_torch_save
from .darknet import Darknet
from .parse import parse_cfg

_FORMAT = "yolocomp-darknet-checkpoint/1"


def save_checkpoint(model: Darknet, path: str | Path, **metadata) -> None:
    """Save ``model`` atomically.  ``metadata`` values must be plain Python/tensor values (weights_only loading)."""
    path = Path(path)
    obj = {"format": _FORMAT, "cfg": model.to_cfg(), "state_dict": model.state_dict(), "metadata": metadata}
    atomic_torch_save(obj, path)


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """The raw dict of a yolocomp checkpoint (``format``, ``cfg``, ``state_dict``, ``metadata``), loaded with
    ``weights_only=True``; a clear error naming the file when it is unreadable or not ours."""
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise WeightsError(str(path), f"cannot load checkpoint: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise WeightsError(str(path), f"not a yolocomp checkpoint (expected format {_FORMAT!r})")
    return obj


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[Darknet, dict]:
    """Rebuild the model from the stored cfg and load its state_dict.  Returns (model in eval mode, metadata)."""
    path = Path(path)
    obj = read_checkpoint(path, map_location)
    try:
        model = Darknet(parse_cfg(obj["cfg"], f"{path}[cfg]"))
    except CfgError as e:
        raise WeightsError(str(path), f"stored cfg does not build: {e}") from None
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        raise WeightsError(str(path), f"state_dict does not match the stored cfg: {e}") from None
    return model.eval(), obj["metadata"]
