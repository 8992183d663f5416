"""Oxford hand dataset (MATLAB .mat quadrilaterals) -> canonical form, one class ``hand``.

Layout as downloaded (``SRC`` may be ``hand_dataset`` itself or the folder holding it)::

    SRC/hand_dataset/{training,validation,test}_dataset/<split>_data/images/<name>.jpg
    SRC/hand_dataset/{training,validation,test}_dataset/<split>_data/annotations/<name>.mat

Each .mat holds ``boxes``, a cell array of structs with fields ``a, b, c, d``: the four corners of a rotated box,
each ``[y, x]`` 1-based. A box becomes the axis-aligned extent of its corners, shifted to 0-based pixels
(``x - 1``) and clipped to the image: hands at the border are annotated past it, so clipping here is counted but
not bounded by a tolerance. Needs scipy (``pip install scipy``) to read .mat files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.convert._canonical import run_cli, write_converted
from yolocomp.data.images import ZERO_AREA, image_size, list_images
from yolocomp.errors import DataError

CLASSES = ["hand"]
SPLITS = {"train": "training", "val": "validation", "test": "test"}
CLIPPED = "hand box clipped to image"


def read(src: Path, split: str = "val") -> DetectionSet:
    """Split ``train``/``val``/``test`` as a DetectionSet (boxes xyxy pixels, all label 0)."""
    src = Path(src)
    root = src if src.name == "hand_dataset" else src / "hand_dataset"
    folder = root / f"{SPLITS[split]}_dataset" / f"{SPLITS[split]}_data"
    if not (folder / "images").is_dir():
        raise DataError(folder / "images", "folder not found")
    warnings: Counter = Counter()
    images = []
    for img in list_images(folder / "images"):
        w, h = image_size(img)
        boxes = []
        for quad in read_mat_boxes(folder / "annotations" / f"{img.stem}.mat"):
            x1, y1 = quad[:, 1].min() - 1, quad[:, 0].min() - 1
            x2, y2 = quad[:, 1].max() - 1, quad[:, 0].max() - 1
            box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
            if box != (x1, y1, x2, y2):
                warnings[CLIPPED] += 1
            if box[2] <= box[0] or box[3] <= box[1]:
                warnings[ZERO_AREA] += 1
                continue
            boxes.append(box)
        images.append(ImageRecord(img, w, h, boxes, np.zeros(len(boxes), np.int64), None, image_id=len(images)))
    return DetectionSet(f"oxfordhand_{split}", list(CLASSES), images, source=folder, warnings=warnings)


def read_mat_boxes(path: Path) -> list[np.ndarray]:
    """The corner quadrilaterals of one annotation: a list of float ``(4, 2)`` arrays of ``[y, x]`` (1-based)."""
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise ImportError("reading the Oxford hand .mat annotations needs scipy: pip install scipy") from None
    if not path.is_file():
        raise DataError(path, "annotation not found")
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except (MatReadError, ValueError, TypeError, OSError) as e:
        raise DataError(path, f"unreadable .mat ({e})") from None
    if "boxes" not in mat:
        raise DataError(path, "no 'boxes' variable")
    quads = []
    for k, s in enumerate(np.atleast_1d(mat["boxes"])):
        try:
            quads.append(np.array([np.asarray(getattr(s, c), float).reshape(2) for c in "abcd"]))
        except (AttributeError, ValueError) as e:
            raise DataError(path, f"boxes{{{k + 1}}} needs fields a, b, c, d of [y, x] ({e})") from None
        if not np.isfinite(quads[-1]).all():
            raise DataError(path, f"boxes{{{k + 1}}} has non-finite corners")
    return quads


def convert(src: Path, out: Path) -> Path:
    """Convert the training/validation/test splits into ``out``; return ``out/oxfordhand.data``."""
    return write_converted("oxfordhand", {s: read(src, s) for s in SPLITS}, out)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
