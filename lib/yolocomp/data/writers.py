"""Write any :class:`DetectionSet` as YOLO txt + darknet ``.data``, COCO json or Pascal VOC xml.

The embedded generator and the format converters both go through these, so the readers are tested against the
files real tools would see. Each file is written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from yolocomp.data.canonical import DetectionSet
from yolocomp.fileio import atomic_write


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`yolocomp.fileio.atomic_write`)."""
    return atomic_write(path, text)


def write_yolo_labels(ds: DetectionSet, labels_dir: Path) -> Path:
    """One ``<image stem>.txt`` per image in ``labels_dir``: ``class cx cy w h`` relative to the image size,
    6 decimals (darknet's layout: ``.../images/x.jpg`` -> ``.../labels/x.txt``). Images without objects get an
    empty file (a negative sample, not a missing label)."""
    labels_dir = Path(labels_dir)
    for r in ds.images:
        b = r.boxes
        rel = np.stack([(b[:, 0] + b[:, 2]) / (2 * r.width), (b[:, 1] + b[:, 3]) / (2 * r.height),
                        (b[:, 2] - b[:, 0]) / r.width, (b[:, 3] - b[:, 1]) / r.height], 1)
        lines = [f"{c} " + " ".join(f"{v:.6f}" for v in row) for c, row in zip(r.labels, rel)]
        atomic_write_text(labels_dir / f"{r.file.stem}.txt", "".join(line + "\n" for line in lines))
    return labels_dir


def write_image_list(ds: DetectionSet, list_path: Path, root: Path) -> Path:
    """Darknet image list: one image path per line, relative to ``root`` (the folder of the ``.data`` file)."""
    lines = [Path(os.path.relpath(r.file, root)).as_posix() for r in ds.images]
    return atomic_write_text(list_path, "".join(line + "\n" for line in lines))


def write_darknet_data(data_path: Path, names: list[str], train_list: Path, valid_list: Path) -> Path:
    """Write ``<data_path stem>.names`` and the darknet ``.data`` file beside it; paths in it are relative to its
    folder (``classes=``, ``train=``, ``valid=``, ``names=``, ``backup=backup/``). Returns ``data_path``."""
    data_path = Path(data_path)
    names_path = atomic_write_text(data_path.with_suffix(".names"), "".join(n + "\n" for n in names))
    rel = lambda p: Path(os.path.relpath(p, data_path.parent)).as_posix()
    text = (f"classes={len(names)}\ntrain={rel(train_list)}\nvalid={rel(valid_list)}\n"
            f"names={rel(names_path)}\nbackup=backup/\n")
    return atomic_write_text(data_path, text)


def _num(v: float) -> int | float:
    """Integral coordinates as json ints (how COCO tools write pixel boxes); others as exact floats."""
    v = float(v)
    return int(v) if v.is_integer() else v


def write_coco(ds: DetectionSet, json_path: Path, images_dir: Path) -> Path:
    """COCO instances json: ``file_name`` relative to ``images_dir``, ``bbox`` xywh pixels, ``area`` = w*h,
    ``iscrowd`` 0. Category ids are ``ds.category_ids`` when the set has them (kept from a COCO source), else
    1..K. Image ids are ``ImageRecord.image_id``; annotation ids count from 1."""
    cat_ids = list(ds.category_ids) if ds.category_ids is not None else list(range(1, len(ds.names) + 1))
    images, anns = [], []
    for r in ds.images:
        images.append({"id": int(r.image_id), "file_name": Path(os.path.relpath(r.file, images_dir)).as_posix(),
                       "width": int(r.width), "height": int(r.height)})
        for box, label in zip(r.boxes, r.labels):
            x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": int(r.image_id), "category_id": cat_ids[int(label)],
                         "bbox": [_num(x), _num(y), _num(w), _num(h)], "area": _num(w * h), "iscrowd": 0})
    cats = [{"id": i, "name": n, "supercategory": "object"} for i, n in zip(cat_ids, ds.names)]
    doc = {"info": {"description": ds.name}, "images": images, "annotations": anns, "categories": cats}
    return atomic_write_text(json_path, json.dumps(doc, separators=(",", ":")))


def write_voc(ds: DetectionSet, voc_root: Path, split: str) -> Path:
    """Pascal VOC: ``Annotations/<stem>.xml`` per image and ``ImageSets/Main/<split>.txt`` listing the stems.

    VOC corners are 1-based integers: ``xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2`` (rounded to whole
    pixels, so non-integer boxes lose their fraction). Returns the ImageSets list.
    """
    voc_root = Path(voc_root)
    for r in ds.images:
        ann = ET.Element("annotation")
        ET.SubElement(ann, "folder").text = r.file.parent.name
        ET.SubElement(ann, "filename").text = r.file.name
        size = ET.SubElement(ann, "size")
        for tag, v in (("width", r.width), ("height", r.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(int(v))
        ET.SubElement(ann, "segmented").text = "0"
        for box, label, difficult in zip(r.boxes, r.labels, r.difficult):
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = ds.names[int(label)]
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = str(int(difficult))
            bnd = ET.SubElement(obj, "bndbox")
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
                ET.SubElement(bnd, tag).text = str(v)
        ET.indent(ann)
        atomic_write_text(voc_root / "Annotations" / f"{r.file.stem}.xml", ET.tostring(ann, encoding="unicode") + "\n")
    stems = "".join(r.file.stem + "\n" for r in ds.images)
    return atomic_write_text(voc_root / "ImageSets" / "Main" / f"{split}.txt", stems)
