"""Atomic file writes: a kill never leaves half a CSV, checkpoint or weights file where a whole one was."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` through a temp file in the same folder: flush, fsync,
    then ``os.replace``, so readers see the old file or the new one, never a mix. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)   # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: object, path: str | Path) -> Path:
    """``torch.save(obj)`` through :func:`atomic_write`."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, buf.getvalue())
