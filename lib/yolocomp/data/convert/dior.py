"""DIOR remote-sensing images (VOC-style xml, 800x800 images) -> canonical form.

Layout as downloaded::

    SRC/Annotations/*.xml            (or SRC/Annotations/Horizontal Bounding Boxes/*.xml)
    SRC/JPEGImages-trainval/*.jpg    images of the train and val splits
    SRC/JPEGImages-test/*.jpg
    SRC/ImageSets/Main/{train,val,test}.txt

Boxes follow the VOC corner convention (see :mod:`yolocomp.data.voc`).
"""

from __future__ import annotations

from pathlib import Path

from yolocomp.data.canonical import DetectionSet
from yolocomp.data.convert._canonical import run_cli, write_converted
from yolocomp.data.voc import read_voc

CLASSES = ["airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney", "dam",
           "Expressway-Service-area", "Expressway-toll-station", "golffield", "groundtrackfield", "harbor",
           "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle", "windmill"]


def read(src: Path, split: str = "val") -> DetectionSet:
    """Split ``train``/``val``/``test`` as a DetectionSet with DIOR's 20 classes (boxes xyxy pixels)."""
    src = Path(src)
    ann = src / "Annotations" / "Horizontal Bounding Boxes"
    ann = ann if ann.is_dir() else src / "Annotations"
    images = src / ("JPEGImages-test" if split == "test" else "JPEGImages-trainval")
    ds = read_voc(src, split, names=CLASSES, image_dir=images, ann_dir=ann)
    ds.name = f"dior_{split}"
    return ds


def convert(src: Path, out: Path) -> Path:
    """Convert DIOR's train/val/test splits into ``out``; return ``out/dior.data``."""
    return write_converted("dior", {s: read(src, s) for s in ("train", "val", "test")}, out)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
