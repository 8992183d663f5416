"""Write converted splits in the canonical on-disk form every converter produces (and :mod:`catalog` expects)::

    out/<name>.data                       classes, train, valid[, test], names, backup (paths relative to out/)
    out/<name>.names
    out/{train,val,test}.txt              image paths relative to out/
    out/images/<split>/<image>            hard links to the source images (copies across file systems)
    out/labels/<split>/<stem>.txt         <class> cx cy w h, relative
    out/annotations/instances_<split>.json   COCO json (bbox xywh), ``difficult`` kept as an extra key

Objects flagged ``difficult`` are left out of the YOLO labels (darknet's and ultralytics' VOC converters do the same)
and kept in the json with ``"difficult": 1`` so VOC-style evaluation can ignore them. The ``.data`` file is written
last: its presence marks a finished conversion.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from yolocomp.data.canonical import DetectionSet
from yolocomp.errors import DataError
from yolocomp.fileio import atomic_write

DATA_KEYS = {"train": "train", "val": "valid", "test": "test"}


def write_converted(name: str, splits: dict[str, DetectionSet], out: Path) -> Path:
    """Write ``splits`` (keys among ``train``, ``val``, ``test``; all with the same class names) under ``out``;
    return ``out/<name>.data``."""
    out = Path(out)
    data = out / f"{name}.data"
    data.unlink(missing_ok=True)   # a rerun that dies half-way must not look finished
    names = next(iter(splits.values())).names
    for split, ds in splits.items():
        if ds.names != names:
            raise ValueError(f"{split} split has other class names than the first split")
        _write_split(ds, split, out)
    atomic_write(out / f"{name}.names", "".join(f"{n}\n" for n in names))
    lines = [f"classes = {len(names)}"]
    lines += [f"{DATA_KEYS[s]} = {s}.txt" for s in ("train", "val", "test") if s in splits]
    lines += [f"names = {name}.names", "backup = backup/"]
    atomic_write(data, "\n".join(lines) + "\n")
    return data


def _write_split(ds: DetectionSet, split: str, out: Path) -> None:
    img_dir, lbl_dir = out / "images" / split, out / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[str, Path] = {}
    listing, coco_images, coco_anns = [], [], []
    for r in ds.images:
        stem = r.file.stem
        if stem in seen:
            raise DataError(r.file, f"image name clashes with {seen[stem]} in the {split} split")
        seen[stem] = r.file
        _link(r.file, img_dir / r.file.name)
        listing.append(f"images/{split}/{r.file.name}\n")
        rows = []
        for (x1, y1, x2, y2), c, d in zip(r.boxes.tolist(), r.labels.tolist(), r.difficult.tolist()):
            cid = ds.category_ids[c] if ds.category_ids else c + 1
            coco_anns.append({"id": len(coco_anns) + 1, "image_id": r.image_id, "category_id": cid,
                              "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                              **({"difficult": 1} if d else {})})
            if not d:
                rows.append(f"{c} {(x1 + x2) / 2 / r.width:.10g} {(y1 + y2) / 2 / r.height:.10g} "
                            f"{(x2 - x1) / r.width:.10g} {(y2 - y1) / r.height:.10g}\n")
        atomic_write(lbl_dir / f"{stem}.txt", "".join(rows))
        coco_images.append({"id": r.image_id, "file_name": r.file.name, "width": r.width, "height": r.height})
    cats = [{"id": ds.category_ids[i] if ds.category_ids else i + 1, "name": n} for i, n in enumerate(ds.names)]
    doc = {"images": coco_images, "annotations": coco_anns, "categories": cats}
    atomic_write(out / "annotations" / f"instances_{split}.json", json.dumps(doc, separators=(",", ":")))
    atomic_write(out / f"{split}.txt", "".join(listing))


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk space, survives moving the source); copy across file systems."""
    if dst.exists():
        if dst.samefile(src):
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)



def merge(name: str, sets: list[DetectionSet]) -> DetectionSet:
    """Concatenate sets with the same class names into one (image ids renumbered by position, warnings summed)."""
    out = DetectionSet(name, list(sets[0].names), [], source=sets[0].source, category_ids=sets[0].category_ids)
    for ds in sets:
        if ds.names != out.names:
            raise ValueError(f"{ds.name} has other class names than {sets[0].name}")
        out.warnings.update(ds.warnings)
        out.images.extend(ds.images)
    for i, r in enumerate(out.images):
        r.image_id = i
    return out


def run_cli(convert, description: str, argv=None) -> None:
    """The ``python -m yolocomp.data.convert.<name> SRC OUT`` entry point shared by the converters."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("src", type=Path, help="the dataset as downloaded (see yolocomp.data.catalog)")
    ap.add_argument("out", type=Path, help="where to write the converted dataset, e.g. DATA_ROOT/<name>")
    args = ap.parse_args(argv)
    print(convert(args.src, args.out))
