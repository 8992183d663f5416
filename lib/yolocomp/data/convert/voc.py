"""Pascal VOC 2007 (+ 2012 trainval) -> canonical form, the usual 07+12 protocol.

Layout as downloaded::

    SRC/VOC2007/{Annotations,ImageSets/Main,JPEGImages}    trainval and test (VOCtest_06-Nov-2007.tar)
    SRC/VOC2012/{Annotations,ImageSets/Main,JPEGImages}    optional: trainval joins the training split

``SRC`` is the ``VOCdevkit`` folder. train = 2007 trainval (+ 2012 trainval), val = 2007 test.
"""

from __future__ import annotations

from pathlib import Path

from yolocomp.data.canonical import DetectionSet
from yolocomp.data.convert._canonical import merge, run_cli, write_converted
from yolocomp.data.voc import VOC_CLASSES, read_voc


def read(src: Path, split: str = "val") -> DetectionSet:
    """``train`` (07 trainval + 12 trainval when present) or ``val`` (07 test), boxes xyxy pixels, difficult kept."""
    src = Path(src)
    if split == "val":
        return read_voc(src / "VOC2007", "test", names=VOC_CLASSES)
    years = ["VOC2007"] + (["VOC2012"] if (src / "VOC2012").is_dir() else [])
    return merge("voc0712_trainval", [read_voc(src / y, "trainval", names=VOC_CLASSES) for y in years])


def convert(src: Path, out: Path) -> Path:
    """Convert into ``out``; return ``out/voc2007.data``."""
    return write_converted("voc2007", {s: read(src, s) for s in ("train", "val")}, out)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
