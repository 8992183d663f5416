"""BDD100K detection labels (json list of frames) -> canonical form.

Layout as downloaded::

    SRC/images/100k/{train,val}/*.jpg                               1280x720 frames
    SRC/labels/det_20/det_{train,val}.json                          detection 2020 labels, or the 2018 release:
    SRC/labels/bdd100k_labels_images_{train,val}.json

Each frame is ``{"name": ..., "labels": [{"category": ..., "box2d": {"x1", "y1", "x2", "y2"}, ...}]}``. Labels
without ``box2d`` (lanes, drivable area in the 2018 release) and categories outside the 10 detection classes
(``other person``, ``other vehicle``, ``trailer``) are skipped and counted. The 2018 names ``person``, ``bike`` and
``motor`` map to ``pedestrian``, ``bicycle`` and ``motorcycle``. ``box2d`` corners are taken as continuous pixels.
Image sizes are read from the images (all 1280x720 in the release); a frame whose image is missing is an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.coco import load_json
from yolocomp.data.convert._canonical import run_cli, write_converted
from yolocomp.data.images import check_box, image_size
from yolocomp.errors import DataError

CLASSES = ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle", "traffic light",
           "traffic sign"]
OLD_NAMES = {"person": "pedestrian", "bike": "bicycle", "motor": "motorcycle"}
NO_BOX = "BDD100K label without box2d skipped"


def label_file(src: Path, split: str) -> Path:
    """The detection json of ``split`` (``train``/``val``): the 2020 file if present, else the 2018 one."""
    for p in (Path(src) / "labels" / "det_20" / f"det_{split}.json",
              Path(src) / "labels" / f"bdd100k_labels_images_{split}.json"):
        if p.is_file():
            return p
    raise DataError(src, f"no labels/det_20/det_{split}.json or labels/bdd100k_labels_images_{split}.json")


def read(src: Path, split: str = "val") -> DetectionSet:
    """Split ``train``/``val`` as a DetectionSet (boxes xyxy pixels, frames in json order)."""
    src = Path(src)
    js = label_file(src, split)
    frames = load_json(js)
    if not isinstance(frames, list):
        raise DataError(js, "top level is not a list of frames")
    index = {c: i for i, c in enumerate(CLASSES)}
    warnings: Counter = Counter()
    images = []
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
            raise DataError(js, f"frame[{k}] has no 'name'")
        img = src / "images" / "100k" / split / frame["name"]
        w, h = image_size(img, js)
        boxes, labels = [], []
        for j, lab in enumerate(frame.get("labels") or []):
            where = f"frame[{k}] {frame['name']} labels[{j}]"
            if "box2d" not in lab:
                warnings[NO_BOX] += 1
                continue
            cat = OLD_NAMES.get(lab.get("category"), lab.get("category"))
            if cat not in index:
                warnings[f"BDD100K category {cat!r} skipped"] += 1
                continue
            try:
                b = lab["box2d"]
                box = check_box((b["x1"], b["y1"], b["x2"], b["y2"]), w, h, warnings, js, None)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(js, f"{where}: box2d needs numeric x1, y1, x2, y2 ({e!r})") from None
            except DataError as e:
                raise DataError(js, f"{where}: {e.reason}") from None
            if box is not None:
                boxes.append(box)
                labels.append(index[cat])
        images.append(ImageRecord(img, w, h, boxes, labels, None, image_id=k))
    return DetectionSet(f"bdd100k_{split}", list(CLASSES), images, source=js, warnings=warnings)


def convert(src: Path, out: Path) -> Path:
    """Convert the train and val splits into ``out``; return ``out/bdd100k.data``."""
    return write_converted("bdd100k", {s: read(src, s) for s in ("train", "val")}, out)


if __name__ == "__main__":
    run_cli(convert, __doc__.splitlines()[0])
