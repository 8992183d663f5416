"""VisDrone2019-DET -> canonical form.

Layout as downloaded (one folder per split)::

    SRC/VisDrone2019-DET-train/{images/*.jpg, annotations/*.txt}
    SRC/VisDrone2019-DET-val/...
    SRC/VisDrone2019-DET-test-dev/...

Annotation lines: ``bbox_left,bbox_top,bbox_width,bbox_height,score,object_category,truncation,occlusion`` in
pixels. Category 0 (ignored regions) and 11 (others) are not objects of the 10 classes; they, and any box with
score 0 (not evaluated), are skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.convert._canonical import run_cli, write_converted
from yolocomp.data.images import check_box, image_size, list_images
from yolocomp.errors import DataError

CLASSES = ["pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle", "awning-tricycle", "bus", "motor"]
SPLITS = {"train": "train", "val": "val", "test": "test-dev"}
IGNORED_REGION = "VisDrone ignored region (category 0) skipped"
OTHERS = "VisDrone 'others' (category 11) skipped"
SCORE_ZERO = "VisDrone box with score 0 skipped"


def split_dir(src: Path, split: str) -> Path:
    """The ``*-DET-<split>`` folder of ``src`` (``val`` -> ``...-DET-val``, ``test`` -> ``...-DET-test-dev``)."""
    found = sorted(Path(src).glob(f"*-DET-{SPLITS[split]}"))
    if len(found) != 1:
        raise DataError(src, f"expected one folder '*-DET-{SPLITS[split]}', found {len(found)}")
    return found[0]


def read(src: Path, split: str = "val") -> DetectionSet:
    """Split ``train``/``val``/``test`` as a DetectionSet (boxes xyxy pixels); skipped boxes counted in warnings."""
    folder = split_dir(src, split)
    warnings: Counter = Counter()
    images = []
    for img in list_images(folder / "images"):
        w, h = image_size(img)
        ann = folder / "annotations" / f"{img.stem}.txt"
        if not ann.is_file():
            raise DataError(ann, f"annotation of {img.name} not found")
        boxes, labels = [], []
        for k, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.strip().rstrip(",").split(",")
            if fields == [""]:
                continue
            if len(fields) != 8:
                raise DataError(ann, f"expected 8 comma-separated fields, got {len(fields)}", k)
            try:
                l, t, bw, bh, score, cat = (int(v) for v in fields[:6])
            except ValueError:
                raise DataError(ann, f"non-integer value in {line.strip()!r}", k) from None
            if cat == 0:
                warnings[IGNORED_REGION] += 1
                continue
            if cat == 11:
                warnings[OTHERS] += 1
                continue
            if not 1 <= cat <= 10:
                raise DataError(ann, f"object_category {cat} out of range 0..11", k)
            if score == 0:
                warnings[SCORE_ZERO] += 1
                continue
            if bw < 0 or bh < 0:
                raise DataError(ann, f"negative box size w={bw} h={bh}", k)
            box = check_box((l, t, l + bw, t + bh), w, h, warnings, ann, k)
            if box is not None:
                boxes.append(box)
                labels.append(cat - 1)
        images.append(ImageRecord(img, w, h, boxes, labels, None, image_id=len(images)))
    if not images:
        raise DataError(folder / "images", "no images")
    return DetectionSet(f"visdrone_{split}", list(CLASSES), images, source=folder, warnings=warnings)


def convert(src: Path, out: Path) -> Path:
    """Convert the splits found under ``src`` (train and val required, test-dev if present); return the .data."""
    splits = [s for s in SPLITS if s != "test" or list(Path(src).glob("*-DET-test-dev"))]
    return write_converted("visdrone", {s: read(src, s) for s in splits}, out)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
