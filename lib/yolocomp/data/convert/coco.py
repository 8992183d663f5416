"""COCO 2014 / 2017 detection -> canonical form.

Layout as downloaded::

    SRC/annotations/instances_{train,val}<year>.json
    SRC/{train,val}<year>/*.jpg

COCO's own json is copied unchanged as ``annotations/instances_<split>.json`` (crowd regions matter to COCO
evaluation); the YOLO labels hold the non-crowd boxes with labels 0..79 in category-id order.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from yolocomp.data.canonical import DetectionSet
from yolocomp.data.coco import read_coco
from yolocomp.data.convert._canonical import write_converted


def read(src: Path, split: str = "val", year: int = 2017) -> DetectionSet:
    """Split ``train``/``val`` of COCO ``year`` as a DetectionSet (boxes xyxy pixels, crowd boxes counted)."""
    src = Path(src)
    return read_coco(src / "annotations" / f"instances_{split}{year}.json", src / f"{split}{year}",
                     name=f"coco{year}_{split}")


def convert(src: Path, out: Path, year: int = 2017) -> Path:
    """Convert COCO ``year`` train and val into ``out``; return ``out/coco<year>.data``."""
    src, out = Path(src), Path(out)
    data = write_converted(f"coco{year}", {s: read(src, s, year) for s in ("train", "val")}, out)
    for s in ("train", "val"):
        shutil.copyfile(src / "annotations" / f"instances_{s}{year}.json", out / "annotations" / f"instances_{s}.json")
    return data


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="folder with annotations/ and the image folders")
    ap.add_argument("out", type=Path, help="e.g. DATA_ROOT/coco2017")
    ap.add_argument("--year", type=int, choices=(2014, 2017), default=2017)
    args = ap.parse_args()
    print(convert(args.src, args.out, args.year))
