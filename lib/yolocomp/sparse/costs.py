"""What a sparse (unstructured-pruned) model honestly costs: non-zero parameters, MACs of non-zero weights, bytes
of the sparse file actually written, next to the dense file.

Unstructured sparsity changes none of these for a dense kernel: the model still has the same tensor shapes, a dense
convolution multiplies every zero, and the ``.weights`` file stores every zero.  The counts below are what a kernel
that skipped zeros *could* save; the latency table measures what the dense kernels actually do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from ..bench.cost import _forward_eval, count_params, macs_conv, zero_input
from ..models.weights_io import save_darknet_weights
from . import masks as M
from .storage import save_sparse


def count_nonzero(model: nn.Module) -> int:
    """Parameters that are not exactly zero (BN, biases and head convs included; mask buffers are not
    parameters)."""
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def macs_nonzero(model: nn.Module, img_size: int | tuple[int, int], batch: int = 1) -> int:
    """Conv/Linear multiply-adds per image counting only non-zero weights: each call adds
    ``(output positions) × count_nonzero(weight)``, i.e. ``out_numel / out_channels × nnz`` (= ``macs_conv`` for a
    dense model)."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        channels = out.shape[1] if isinstance(m, nn.Conv2d) else out.shape[-1]
        total += out.numel() // channels * int(torch.count_nonzero(m.weight))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        _forward_eval(model, zero_input(model, img_size, batch))
    finally:
        for h in handles:
            h.remove()
    return total // batch


def sparse_cost_row(model: nn.Module, img_size: int, sparse_file: str | Path | None = None) -> dict:
    """One table row for a (masked) Darknet:

    * ``params``: non-zero parameters; ``params_dense``: all parameters;
    * ``macs_conv``: conv/linear MACs of non-zero weights; ``macs_dense``: of all weights;
    * ``storage_mib``: size of the sparse file (``sparse_file`` if given, else one written to a temp folder);
      ``dense_mib``: size of the fp32 darknet ``.weights`` file, written to a temp folder and measured;
    * ``weights_remaining``: kept / all prunable weights (the masks; 1.0 for a model without masks).
    """
    with tempfile.TemporaryDirectory() as tmp:
        dense_file = Path(tmp) / "model.weights"
        save_darknet_weights(model, dense_file)
        dense_bytes = dense_file.stat().st_size
        if sparse_file is None:
            sparse_file = Path(tmp) / "model.sparse.pt"
            save_sparse(model, sparse_file)
        sparse_bytes = Path(sparse_file).stat().st_size
    masks = M.masks_of(model)
    kept, total = M.counts(masks) if masks else (1, 1)
    return {"params": count_nonzero(model), "params_dense": count_params(model),
            "macs_conv": macs_nonzero(model, img_size), "macs_dense": macs_conv(model, img_size),
            "storage_mib": sparse_bytes / 2**20, "dense_mib": dense_bytes / 2**20,
            "weights_remaining": kept / total}
