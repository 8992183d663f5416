"""Cross-checks between annotation formats and converters, as shown in ``01_datasets/02_dataset_formats``.

The embedded set is written as YOLO txt, COCO json and Pascal VOC xml; every converter writes our canonical form from a
dataset's native format. These functions read both sides back through the real readers and report whether they agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .canonical import DetectionSet
from .coco import read_coco
from .convert import get
from .voc import read_voc
from .yolo_txt import read_names, read_yolo

NATIVE = ("exdark", "dior", "bdd100k", "visdrone", "oxfordhand")   # converters from a non-standard native format
SPLITS = {"train": "train", "valid": "val"}   # darknet .data key -> file/split name of the embedded layout


def embedded_formats(data_file: Path, split: str = "valid") -> dict[str, DetectionSet]:
    """The embedded split read three ways: ``{"yolo": ..., "coco": ..., "voc": ...}`` (same images, same boxes
    if the writers and readers agree)."""
    root = Path(data_file).parent
    name = SPLITS[split]
    names = read_names(root / "embedded.names")
    return {"yolo": read_yolo(data_file, split=split),
            "coco": read_coco(root / "annotations" / f"instances_{name}.json", root / "images"),
            "voc": read_voc(root / "voc", name, names=names, image_dir=root / "images")}


def agreement(reference: DetectionSet, other: DetectionSet) -> dict:
    """Whether ``other`` holds the same images, labels and boxes as ``reference``; max box difference in pixels."""
    try:
        reference.assert_same(other)
        same = True
    except AssertionError:
        same = False
    ref = {r.file.name: r for r in reference.images}
    diffs = [np.abs(np.sort(r.boxes, axis=0) - np.sort(ref[r.file.name].boxes, axis=0)).max()
             for r in other.images if r.file.name in ref and r.boxes.shape == ref[r.file.name].boxes.shape
             and len(r.boxes)]
    # rounded: the differences are float noise of the format conversions, not a property of the data
    return {"identical": same, "max_box_diff_px": round(float(max(diffs, default=0.0)), 6)}


def convert_fixture(name: str, fixtures: Path, out: Path, split: str = "val") -> tuple[DetectionSet, DetectionSet]:
    """Run converter ``name`` on its native-format fixture ``fixtures/<name>`` into ``out/<name>``; return
    ``(native parse, canonical form read back by read_yolo)`` for ``split``."""
    conv = get(name)
    data = conv.convert(fixtures / name, out / name)
    return conv.read(fixtures / name, split), read_yolo(data, split=_data_key(split))


def converter_fixtures(fixtures: Path, out: Path) -> dict[str, tuple[DetectionSet, DetectionSet]]:
    """:func:`convert_fixture` for every native-format converter (:data:`NATIVE`)."""
    return {n: convert_fixture(n, fixtures, out) for n in NATIVE}


def format_table(rows: dict[tuple, tuple[DetectionSet, DetectionSet]], key_names: tuple[str, ...]) -> pd.DataFrame:
    """One row per (reference, other) pair: the other set's summary plus whether it agrees with the reference."""
    out = []
    for key, (ref, other) in rows.items():
        s = other.summary()
        s.pop("dataset")
        out.append({**dict(zip(key_names, key)), **s, **agreement(ref, other)})
    return pd.DataFrame(out)


def _data_key(split: str) -> str:
    return {"val": "valid"}.get(split, split)


def fixtures_dir() -> Path:
    """The converters' native-format fixtures in the checkout (``tests/fixtures/datasets``)."""
    from ..paths import repo_root
    return repo_root() / "tests" / "fixtures" / "datasets"
