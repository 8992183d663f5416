"""The canonical in-memory form every reader and converter produces.

Boxes are ``xyxy`` float pixels in the image's own size; labels are 0-based indices into ``DetectionSet.names``.
Two readers agree on a dataset exactly when their ``DetectionSet``s compare equal image by image
(:func:`DetectionSet.assert_same`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageRecord:
    """One image and its objects.

    file: path of the image file.  width, height: image size in pixels.
    boxes: float64 ``(n, 4)`` xyxy pixels.  labels: int64 ``(n,)``.  difficult: bool ``(n,)`` (VOC flag;
    all False for formats without it).  image_id: stable integer id (COCO id, else position in the set).
    """

    file: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: int

    def __post_init__(self) -> None:
        self.file = Path(self.file)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = (np.zeros(len(self.labels), bool) if self.difficult is None
                          else np.asarray(self.difficult, dtype=bool).reshape(-1))
        if not (len(self.boxes) == len(self.labels) == len(self.difficult)):
            raise ValueError(f"{self.file}: boxes, labels and difficult differ in length")


@dataclass
class DetectionSet:
    """A list of annotated images with class names.

    source: the annotation file or folder it was read from (for messages and the dataset summary).
    warnings: counted reasons for samples or boxes that were skipped (e.g. ``"zero-area box"``); never silent.
    category_ids: for sets read from COCO json, the json category id of each label (COCO's 91-id scheme),
    so predictions can be written back with the ids the ground truth uses; None otherwise.
    """

    name: str
    names: list[str]
    images: list[ImageRecord]
    source: Path | None = None
    warnings: Counter = field(default_factory=Counter)
    category_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(r.labels) for r in self.images))

    def summary(self) -> dict:
        """Images, boxes, classes, box-size percentiles (sqrt of area, pixels) and the counted warnings."""
        sizes = np.concatenate([np.sqrt(np.prod(r.boxes[:, 2:] - r.boxes[:, :2], axis=1)) for r in self.images]
                               or [np.zeros(0)])
        pct = np.percentile(sizes, [5, 50, 95]) if len(sizes) else [np.nan] * 3
        return {"dataset": self.name, "images": len(self), "boxes": self.num_boxes, "classes": len(self.names),
                "box_px_p5": float(pct[0]), "box_px_p50": float(pct[1]), "box_px_p95": float(pct[2]),
                "warned": int(sum(self.warnings.values())),  # skipped or clipped, by reason below
                "warnings": "; ".join(f"{k}: {v}" for k, v in sorted(self.warnings.items()))}

    def assert_same(self, other: DetectionSet, atol: float = 1e-6) -> None:
        """Raise AssertionError naming the first image where ``other`` differs (files matched by name)."""
        assert self.names == other.names, f"class names differ: {self.names} vs {other.names}"
        mine = {r.file.name: r for r in self.images}
        theirs = {r.file.name: r for r in other.images}
        assert mine.keys() == theirs.keys(), f"image sets differ: {sorted(mine.keys() ^ theirs.keys())[:5]}"
        for k, a in mine.items():
            b = theirs[k]
            assert (a.width, a.height) == (b.width, b.height), f"{k}: size differs"
            oa, ob = _order(a), _order(b)
            assert np.array_equal(a.labels[oa], b.labels[ob]), f"{k}: labels differ"
            assert np.allclose(a.boxes[oa], b.boxes[ob], atol=atol), f"{k}: boxes differ"


def _order(r: ImageRecord) -> np.ndarray:
    """A canonical object order (label, then box) so formats that reorder objects still compare equal. Boxes are
    rounded first: text formats return 5.0 as 4.9999999, which must not decide the order."""
    return np.lexsort((*np.round(r.boxes, 3).T[::-1], r.labels))
