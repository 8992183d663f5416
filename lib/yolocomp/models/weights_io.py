"""Darknet ``.weights`` files: read into and write from a :class:`~yolocomp.models.darknet.Darknet`.

Layout (little-endian): int32 major, minor, revision; ``seen`` (images trained on) as uint64 when
major*10+minor >= 2 (and both < 1000), else uint32; then float32 arrays, layer by layer in cfg order, each layer's
``darknet_tensors()`` flattened (conv with BN: beta, gamma, running mean, running var, weights; without BN: bias,
weights).  We write version 0.2.5 (20-byte header), as DK and the seed repositories do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import WeightsError
from ..fileio import atomic_write

_VERSION = (0, 2, 5)


@dataclass
class WeightsInfo:
    """What :func:`load_darknet_weights` found: header fields and how many layers (of ``total``) it filled."""

    major: int
    minor: int
    revision: int
    seen: int
    layers_loaded: int
    total_layers: int
    partial: bool


def _layers(model: nn.Module, cutoff: int | None) -> list:
    layers = list(model.layers)
    return layers if cutoff is None else layers[:cutoff]


def darknet_weights_size(model: nn.Module, cutoff: int | None = None) -> int:
    """Size in bytes of the .weights file :func:`save_darknet_weights` writes for ``model`` (20-byte header)."""
    return 20 + 4 * sum(t.numel() for layer in _layers(model, cutoff) for t in layer.darknet_tensors())


def load_darknet_weights(model: nn.Module, path: str | Path, cutoff: int | None = None) -> WeightsInfo:
    """Fill ``model``'s layers [0, cutoff) in place from a .weights file.

    A file that ends exactly at a layer boundary before the last weighted layer is a partial (backbone) file such
    as ``darknet53.conv.74``: it is loaded and a warning says how many layers were filled.  A file that ends inside
    a layer, or has bytes left after the last layer (without ``cutoff``), raises :class:`WeightsError`.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise WeightsError(str(path), f"cannot read weights file: {e.strerror or e}") from None
    if len(raw) < 16:
        raise WeightsError(str(path), f"file is {len(raw)} bytes, shorter than a .weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(raw, "<i4", 3))
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    header = 20 if wide else 16
    if len(raw) < header:
        raise WeightsError(str(path), f"file is {len(raw)} bytes, shorter than its {header}-byte header")
    seen = int(np.frombuffer(raw, "<u8" if wide else "<u4", 1, 12)[0])
    if (len(raw) - header) % 4:
        raise WeightsError(str(path), f"body of {len(raw) - header} bytes is not a whole number of float32 values")
    data = np.frombuffer(raw, "<f4", offset=header)

    layers = _layers(model, cutoff)
    pos, loaded = 0, 0
    weighted = [i for i, layer in enumerate(layers) if layer.darknet_tensors()]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            tensors = layer.darknet_tensors()
            if not tensors:
                continue
            need = sum(t.numel() for t in tensors)
            if pos == len(data):
                break
            if pos + need > len(data):
                raise WeightsError(str(path), f"file ends inside layer {i} ({layer.section_type}): it needs {need} "
                                              f"floats ({4 * need} bytes), {len(data) - pos} remain")
            for t in tensors:
                n = t.numel()
                t.copy_(torch.from_numpy(data[pos:pos + n].copy()).view_as(t))
                pos += n
            loaded = i + 1
    if pos < len(data) and cutoff is None:
        raise WeightsError(str(path), f"{4 * (len(data) - pos)} bytes left over after the last layer "
                                      f"(expected {darknet_weights_size(model) - 20 + header} bytes in all, "
                                      f"file has {len(raw)})")
    partial = bool(weighted) and loaded < weighted[-1] + 1
    if partial:
        warnings.warn(f"{path}: partial weights file, filled layers 0..{loaded - 1} of {len(layers)}", stacklevel=2)
    return WeightsInfo(major, minor, revision, seen, loaded, len(layers), partial)


def save_darknet_weights(model: nn.Module, path: str | Path, cutoff: int | None = None, seen: int = 0) -> int:
    """Write layers [0, cutoff) of ``model`` as a Darknet 0.2.5 .weights file (atomically).  Returns bytes written."""
    path = Path(path)
    parts = [np.array(_VERSION, "<i4").tobytes(), np.array([seen], "<u8").tobytes()]
    for layer in _layers(model, cutoff):
        for t in layer.darknet_tensors():
            parts.append(t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4").tobytes())
    blob = b"".join(parts)
    atomic_write(path, blob)
    return len(blob)
