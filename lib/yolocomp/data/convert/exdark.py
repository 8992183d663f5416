"""ExDark (Exclusively Dark) low-light images, bbGt annotations -> canonical form.

Layout as downloaded::

    SRC/ExDark/<Class>/<image>                 12 class folders, .jpg/.png/... in mixed case
    SRC/ExDark_Annno/<Class>/<image>.txt       bbGt: '% bbGt version=3', then '<class> l t w h 0 0 0 0 0 0 0'
    SRC/imageclasslist.txt                     'Name Class Light In/Out Split' (split 1 train, 2 val, 3 test)

``l t w h`` are pixels, taken as the box ``[l, l + w] x [t, t + h]``. An annotation file name matches its image
name case-insensitively (the release mixes ``.JPG`` and ``.jpg``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.convert._canonical import run_cli, write_converted
from yolocomp.data.images import check_box, image_size
from yolocomp.errors import DataError

CLASSES = ["Bicycle", "Boat", "Bottle", "Bus", "Car", "Cat", "Chair", "Cup", "Dog", "Motorbike", "People", "Table"]
SPLIT_CODES = {"train": "1", "val": "2", "test": "3"}


def read(src: Path, split: str = "val") -> DetectionSet:
    """Split ``train``/``val``/``test`` (from ``imageclasslist.txt``) as a DetectionSet, boxes xyxy pixels."""
    src = Path(src)
    listing = src / "imageclasslist.txt"
    if not listing.is_file():
        raise DataError(listing, "split list not found (it ships with ExDark's Groundtruth folder)")
    lower = {c.lower(): i for i, c in enumerate(CLASSES)}
    warnings: Counter = Counter()
    images = []
    for ln, raw in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        fields = raw.split()
        if not fields or (ln == 1 and fields[0].lower() == "name"):   # blank line or header
            continue
        if len(fields) != 5 or not all(f.isdigit() for f in fields[1:]):
            raise DataError(listing, f"expected 'Name Class Light In/Out Split', got {raw.strip()!r}", ln)
        if fields[4] != SPLIT_CODES[split]:
            continue
        if not 1 <= int(fields[1]) <= len(CLASSES):
            raise DataError(listing, f"class code {fields[1]} out of range 1..{len(CLASSES)}", ln)
        folder = CLASSES[int(fields[1]) - 1]
        img = src / "ExDark" / folder / fields[0]
        w, h = image_size(img, listing, ln)
        ann = _annotation(src / "ExDark_Annno" / folder, fields[0], listing, ln)
        boxes, labels = [], []
        lines = ann.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].startswith("% bbGt"):
            raise DataError(ann, "first line is not '% bbGt version=3'", 1)
        for k, line in enumerate(lines[1:], 2):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 12:
                raise DataError(ann, f"expected 12 fields '<class> l t w h 0 0 0 0 0 0 0', got {len(parts)}", k)
            if parts[0].lower() not in lower:
                raise DataError(ann, f"unknown class {parts[0]!r}; ExDark has {', '.join(CLASSES)}", k)
            try:
                l, t, bw, bh = (float(v) for v in parts[1:5])
            except ValueError:
                raise DataError(ann, f"non-numeric box in {line.strip()!r}", k) from None
            if bw < 0 or bh < 0:
                raise DataError(ann, f"negative box size w={bw:g} h={bh:g}", k)
            box = check_box((l, t, l + bw, t + bh), w, h, warnings, ann, k)
            if box is not None:
                boxes.append(box)
                labels.append(lower[parts[0].lower()])
        images.append(ImageRecord(img, w, h, boxes, labels, None, image_id=len(images)))
    return DetectionSet(f"exdark_{split}", list(CLASSES), images, source=src, warnings=warnings)


def convert(src: Path, out: Path) -> Path:
    """Convert ExDark's train/val/test splits into ``out`` (canonical form); return ``out/exdark.data``."""
    return write_converted("exdark", {s: read(src, s) for s in ("train", "val", "test")}, out)


def _annotation(folder: Path, image_name: str, listing: Path, line: int) -> Path:
    exact = folder / f"{image_name}.txt"
    if exact.is_file():
        return exact
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.lower() == f"{image_name}.txt".lower():
                return p
    raise DataError(listing, f"annotation not found: {exact}", line)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
