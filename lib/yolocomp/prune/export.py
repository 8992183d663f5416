"""Writing a pruned model as Darknet cfg + .weights + our checkpoint (pruning-spec.md §9)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..models.checkpoint import save_checkpoint
from ..models.darknet import Darknet
from ..models.weights_io import save_darknet_weights


def save_pruned(model: Darknet, out_dir: str | Path, name: str, **metadata) -> tuple[Path, Path]:
    """Write ``out_dir/name.cfg`` (from the module shapes), ``out_dir/name.weights`` (Darknet layout, §9.3) and
    ``out_dir/name.pt`` (checkpoint with cfg, state_dict and ``metadata``), each atomically.  ``Darknet.from_cfg``
    + ``load_darknet_weights`` (or ``load_checkpoint``) rebuild it with identical eval outputs.
    Returns (cfg_path, weights_path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path, weights_path = out / f"{name}.cfg", out / f"{name}.weights"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=cfg_path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(model.to_cfg())
        os.replace(tmp, cfg_path)
    except BaseException:
        os.unlink(tmp)
        raise
    save_darknet_weights(model, weights_path)
    save_checkpoint(model, out / f"{name}.pt", **metadata)
    return cfg_path, weights_path
