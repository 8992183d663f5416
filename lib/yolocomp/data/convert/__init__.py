"""Converters from datasets as downloaded to the canonical on-disk form (see ``_canonical``).

Each module ``yolocomp.data.convert.<name>`` has ``read(src, split) -> DetectionSet`` (the native format parsed),
``convert(src, out) -> Path`` (writes ``out/<name>.data`` and the rest) and a ``python -m`` entry point.
"""

from __future__ import annotations

import importlib
from types import ModuleType

CONVERTERS = ("coco", "voc", "exdark", "dior", "bdd100k", "visdrone", "oxfordhand")


def get(name: str) -> ModuleType:
    """The converter module ``name`` (imported on demand: scipy is only needed by ``oxfordhand``)."""
    if name not in CONVERTERS:
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(CONVERTERS)}")
    return importlib.import_module(f"{__name__}.{name}")
