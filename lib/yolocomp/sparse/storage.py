"""A sparse file for masked Darknet models: what unstructured pruning saves on disk, honestly measured.

Format (one ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "yolocomp-sparse/1", "cfg": <cfg text>,
     "dense":  {state_dict key: tensor},                       # BN, biases, unmasked weights, as they are
     "sparse": {weight key: {"shape": [...], "encoding": "bitmap" | "index",
                             "where": uint8 packed bits (bitmap) | int32 flat indices (index),
                             "values": float tensor of the kept entries, in flat order}}}

Each masked weight is stored by its mask: the kept values plus either a bitmap (1 bit per entry) or the int32 indices
of the kept entries, whichever is smaller (indices win below 1/32 density; at full density the bitmap costs 1/32
more than the dense tensor).  Masked entries are zero by construction, so the file loads back to exactly the same
weights, and the masks come back too (a later pruning round continues from them).  Its size, compared with the fp32 darknet ``.weights`` file of the same model,
is the storage cost :mod:`yolocomp.sparse.costs` reports.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from ..fileio import atomic_torch_save
from ..models.darknet import Darknet
from ..models.parse import parse_cfg
from . import masks as M

FORMAT = "yolocomp-sparse/1"
ENCODINGS = ("bitmap", "index")


def encoding_for(kept: int, total: int) -> str:
    """The smaller encoding of a masked tensor with ``kept`` of ``total`` entries: ``bitmap`` (total/8 + 4·kept
    bytes) or ``index`` (8·kept); ties go to the bitmap."""
    return "index" if 8 * kept < (total + 7) // 8 + 4 * kept else "bitmap"


def _encode(weight: torch.Tensor, mask: torch.Tensor) -> dict:
    flat_w, flat_m = weight.detach().cpu().flatten(), mask.detach().cpu().flatten().bool()
    enc = encoding_for(int(flat_m.sum()), flat_m.numel())
    if enc == "bitmap":
        where = torch.from_numpy(np.packbits(flat_m.numpy()))
    else:
        where = torch.nonzero(flat_m).flatten().to(torch.int32)
    return {"shape": list(weight.shape), "encoding": enc, "where": where, "values": flat_w[flat_m].clone()}


def _decode(entry: dict, path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    shape, values = entry["shape"], entry["values"]
    n = int(np.prod(shape))
    if entry["encoding"] == "bitmap":
        mask = torch.from_numpy(np.unpackbits(entry["where"].numpy(), count=n).astype(bool))
    elif entry["encoding"] == "index":
        mask = torch.zeros(n, dtype=torch.bool)
        mask[entry["where"].long()] = True
    else:
        raise WeightsError(str(path), f"{key}: unknown encoding {entry['encoding']!r}")
    if int(mask.sum()) != values.numel():
        raise WeightsError(str(path), f"{key}: {int(mask.sum())} kept entries but {values.numel()} values")
    weight = torch.zeros(n, dtype=values.dtype)
    weight[mask] = values
    return weight.view(shape), mask.view(shape)


def save_sparse(model: Darknet, path: str | Path, masks: dict[str, torch.Tensor] | None = None) -> int:
    """Write ``model`` as a sparse file (atomically).  ``masks`` (module name -> bool): default the model's attached
    masks; tensors without a mask (BN, biases, head convs, every weight of an unmasked model) are stored dense.
    Returns the file size in bytes."""
    masks = M.masks_of(model) if masks is None else masks
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("." + M.MASK)}
    dense, sparse = {}, {}
    for key, value in state.items():
        module = key.rpartition(".")[0]
        entry = _encode(value, masks[module]) if key.endswith(".weight") and module in masks else None
        if entry is None:
            dense[key] = value.detach().cpu().clone()
        else:
            sparse[key] = entry
    path = Path(path)
    atomic_torch_save({"format": FORMAT, "cfg": model.to_cfg(), "dense": dense, "sparse": sparse}, path)
    return path.stat().st_size


def load_sparse(path: str | Path) -> Darknet:
    """The model of a sparse file, rebuilt from its cfg, in eval mode, with the stored masks attached."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise WeightsError(str(path), f"cannot load sparse file: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise WeightsError(str(path), f"not a sparse model file (expected format {FORMAT!r})")
    model = Darknet(parse_cfg(obj["cfg"], f"{path}[cfg]"))
    state, masks = dict(obj["dense"]), {}
    for key, entry in obj["sparse"].items():
        state[key], masks[key.rpartition(".")[0]] = _decode(entry, path, key)
    try:
        M.attach(model, masks)
        model.load_state_dict(state, strict=False)
        missing = [k for k in model.state_dict() if k not in state and not k.endswith("." + M.MASK)]
        if missing or set(state) - set(model.state_dict()):
            raise RuntimeError(f"missing {missing[:3]}, unexpected {sorted(set(state) - set(model.state_dict()))[:3]}")
    except RuntimeError as e:
        raise WeightsError(str(path), f"stored tensors do not match the stored cfg: {e}") from None
    M.apply(model)
    return model.eval()


def file_mib(path: str | Path) -> float:
    """Size of a file on disk in MiB (bytes / 2**20)."""
    return Path(path).stat().st_size / 2**20


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy without mask buffers (the masked weights stay zero), e.g. to time it as an ordinary dense model."""
    import copy

    out = copy.deepcopy(model)
    M.remove(out)
    return out
