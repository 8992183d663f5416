"""Pascal VOC xml datasets (``Annotations/``, ``ImageSets/Main/``, ``JPEGImages/``) read into a DetectionSet.

VOC corners are 1-based and inclusive: a box covering pixel columns 0..9 is written ``xmin=1, xmax=10``. In our
continuous pixel frame that box spans ``[0, 10)``, hence ``x1 = xmin - 1, x2 = xmax`` (and the same for y); a
writer does the inverse (``xmin = x1 + 1, xmax = x2``). The ``difficult`` flag is kept; VOC evaluation ignores
those objects. The xml is parsed with :mod:`xml.etree.ElementTree`: the files are local annotations, not
untrusted network input.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from xml.parsers import expat

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.images import check_box, image_size
from yolocomp.errors import DataError

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


def read_split_ids(path: Path) -> list[str]:
    """Image ids listed in an ``ImageSets/Main/<split>.txt`` file (first field of each line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(path, "split file not found") from None
    ids = [s.split()[0] for s in lines if s.strip()]
    if not ids:
        raise DataError(path, "split lists no images")
    return ids


def read_voc(root: Path, split: str, names: list[str] | None = None, image_dir: Path | None = None,
             ann_dir: Path | None = None) -> DetectionSet:
    """Read ``root/ImageSets/Main/<split>.txt`` with xmls in ``ann_dir`` (default ``root/Annotations``) and images
    in ``image_dir`` (default ``root/JPEGImages``), named by each xml's ``<filename>``.

    ``names`` default: the 20 VOC classes when every object name is one of them, else the sorted set of the names
    found in this split (pass ``names`` explicitly so train and test splits agree). Boxes xyxy float pixels,
    ``difficult`` bool per object, ``image_id`` = position in the split. Errors (:class:`DataError` at
    ``xml:line``): malformed xml, missing fields, a class not in ``names``, a box outside the image by more than
    1 px, an image missing or of another size than the xml says. Counted warnings: zero-area boxes, clipped boxes.
    """
    root = Path(root)
    image_dir = root / "JPEGImages" if image_dir is None else Path(image_dir)
    ann_dir = root / "Annotations" if ann_dir is None else Path(ann_dir)
    ids = read_split_ids(root / "ImageSets" / "Main" / f"{split}.txt")
    parsed = [parse_voc_xml(ann_dir / f"{i}.xml", image_dir) for i in ids]
    if names is None:
        found = {o[0] for p in parsed for o in p["objects"]}
        names = list(VOC_CLASSES) if found <= set(VOC_CLASSES) else sorted(found)
    index = {n: k for k, n in enumerate(names)}
    warnings: Counter = Counter()
    images = []
    for image_id, p in enumerate(parsed):
        boxes, labels, difficult = [], [], []
        for k, (cls, box, diff) in enumerate(p["objects"]):
            if cls not in index:
                raise DataError(p["xml"], f"class {cls!r} not in the {len(names)} names",
                                _object_line(p["xml"], k))
            try:
                b = check_box(box, p["width"], p["height"], warnings, p["xml"], None)
            except DataError as e:
                raise DataError(p["xml"], e.reason, _object_line(p["xml"], k)) from None
            if b is not None:
                boxes.append(b)
                labels.append(index[cls])
                difficult.append(diff)
        images.append(ImageRecord(p["file"], p["width"], p["height"], boxes, labels, difficult, image_id))
    return DetectionSet(f"{root.name}_{split}", list(names), images, source=root, warnings=warnings)


def parse_voc_xml(xml: Path, image_dir: Path) -> dict:
    """One VOC annotation: ``{"xml", "file", "width", "height", "objects": [(name, (x1, y1, x2, y2), difficult)]}``
    with boxes converted from 1-based inclusive corners to xyxy pixels (not yet checked against the image)."""
    xml = Path(xml)
    try:
        tree = ET.parse(xml)
    except FileNotFoundError:
        raise DataError(xml, "annotation not found") from None
    except ET.ParseError as e:
        raise DataError(xml, f"malformed xml: {e}", e.position[0]) from None
    ann = tree.getroot()
    fname = _text(ann, "filename", xml)
    f = Path(image_dir) / fname
    w, h = image_size(f, xml)
    size = ann.find("size")
    if size is not None:
        xw, xh = (_number(size, k, xml) for k in ("width", "height"))
        if (xw, xh) != (0, 0) and (xw, xh) != (w, h):
            raise DataError(xml, f"<size> says {xw:g}x{xh:g} but {f} is {w}x{h}")
    objects = []
    for k, obj in enumerate(ann.findall("object")):
        try:
            cls = _text(obj, "name", xml).strip()
            bb = obj.find("bndbox")
            if bb is None:
                raise DataError(xml, "object without <bndbox>")
            xmin, ymin, xmax, ymax = (_number(bb, t, xml) for t in ("xmin", "ymin", "xmax", "ymax"))
            diff = obj.findtext("difficult", "0").strip() not in ("", "0")
        except DataError as e:
            raise DataError(xml, e.reason, _object_line(xml, k)) from None
        objects.append((cls, (xmin - 1, ymin - 1, xmax, ymax), diff))
    return {"xml": xml, "file": f, "width": w, "height": h, "objects": objects}


def _text(el, tag: str, xml: Path) -> str:
    t = el.findtext(tag)
    if t is None or not t.strip():
        raise DataError(xml, f"missing <{tag}>")
    return t.strip()


def _number(el, tag: str, xml: Path) -> float:
    t = _text(el, tag, xml)
    try:
        return float(t)
    except ValueError:
        raise DataError(xml, f"<{tag}> is not a number: {t!r}") from None


def _object_line(xml: Path, k: int) -> int | None:
    """Line of the ``k``-th ``<object>`` (ElementTree keeps no line numbers; only looked up to report an error)."""
    lines: list[int] = []
    p = expat.ParserCreate()
    p.StartElementHandler = lambda tag, attrs: lines.append(p.CurrentLineNumber) if tag == "object" else None
    p.Parse(Path(xml).read_bytes(), True)
    return lines[k] if k < len(lines) else None
