"""Post-training quantization: calibrate the observers of a quantized model on a few batches, BN folded.

``calibrate(quantize_model(model, "ptq8", tracker="minmax"|"percentile"), batches)`` runs the model in eval mode
(so the folds use running statistics) with every range tracker observing; afterwards the ranges are fixed and the
model is a simulated-int8 model.  The same batches calibrate the real int8 ONNX model
(:func:`yolocomp.quant.onnx_int8.quantize_onnx`).  SPURS' PTQ.py does this with its COS-PTQ quantizer in train mode
under no_grad (§1.7); its bias correction is not reproduced.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..data.dataset import DetectionDataset, make_loader
from ..data.yolo_txt import read_yolo
from ..errors import InputError
from .fake import VoteFakeQuant, _Observed

CALIBRATION_METHODS = ("minmax", "percentile")


def calibration_batches(data: str | Path, img_size: int, n_batches: int, batch_size: int,
                        split: str = "train") -> list[torch.Tensor]:
    """The first ``n_batches`` batches ``(B, 3, img_size, img_size)`` float in [0, 1] of ``split`` of a darknet
    ``.data`` file, letterboxed without augmentation, in file order (deterministic)."""
    if n_batches < 1 or batch_size < 1:
        raise InputError(data, f"need n_batches >= 1 and batch_size >= 1, got {n_batches}, {batch_size}")
    loader = make_loader(DetectionDataset(read_yolo(Path(data), split), img_size, augment=False), batch_size,
                         shuffle=False, seed=0)
    out = []
    for images, _, _ in loader:
        out.append(images)
        if len(out) == n_batches:
            break
    return out


@contextmanager
def calibrating(model: nn.Module):
    """Every observer of ``model`` observes (even in eval mode) inside the block."""
    qs = [m for m in model.modules() if isinstance(m, (_Observed, VoteFakeQuant))]
    for q in qs:
        q.calibrating = True
    try:
        yield qs
    finally:
        for q in qs:
            q.calibrating = False


def calibrate(model: nn.Module, batches: list[torch.Tensor], device: str = "cpu") -> nn.Module:
    """Run ``batches`` (each ``(B, C, H, W)``) through ``model`` in eval mode under no_grad with every range tracker
    observing; returns the model (same object) in eval mode.  The tracker kind set at quantization decides the
    rule (``minmax``: running min/max, ``percentile``: mean of per-batch percentiles)."""
    model.eval()
    with calibrating(model) as qs, torch.no_grad():
        if not qs:
            raise InputError(None, "the model has no quantizer to calibrate (quantize it with 'ptq8' first)")
        for x in batches:
            model(x.to(device))
    return model
