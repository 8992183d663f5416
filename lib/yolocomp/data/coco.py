"""COCO detection json (``instances_*.json``) read into the canonical :class:`DetectionSet`.

Categories sorted by id become contiguous labels ``0..K-1``; their json ids are kept in
``DetectionSet.category_ids`` so predictions can be written back with COCO's ids. ``bbox`` is ``xywh`` pixels in the
json and ``xyxy`` in the set. Crowd annotations (``iscrowd=1``) are not objects to detect one by one: they are
skipped and counted. Images without annotations are kept as background images. A non-standard ``"difficult": 1``
key (written by our converters for VOC-style sets) sets ``ImageRecord.difficult``.

The json is parsed with :mod:`json` rather than ``pycocotools.coco.COCO`` so that every error names the file and the
offending entry (COCO's loader asserts without saying where).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.images import check_box, image_size
from yolocomp.errors import DataError

CROWD = "iscrowd box skipped"


def load_json(path: Path):
    """Parse a json file; a syntax error becomes a :class:`DataError` at ``file:line``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed json: {e.msg} (column {e.colno})", e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable ({e})") from None


def read_coco(ann_json: Path, image_dir: Path, name: str | None = None) -> DetectionSet:
    """Read a COCO detection json whose ``file_name``s live in ``image_dir``.

    Returns a :class:`DetectionSet` ordered by image id (``image_id`` = the json id), boxes xyxy float pixels.
    Raises :class:`DataError` naming the json and the entry for missing keys, unknown image or category ids,
    malformed bboxes, a missing image or a size that disagrees with the image header.
    """
    ann_json, image_dir = Path(ann_json), Path(image_dir)
    doc = load_json(ann_json)
    if not isinstance(doc, dict):
        raise DataError(ann_json, "top level is not an object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(ann_json, f"missing list '{key}'")
    try:
        cats = sorted(doc["categories"], key=lambda c: int(c["id"]))
        cat_ids = [int(c["id"]) for c in cats]
        names = [str(c["name"]) for c in cats]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(ann_json, f"categories need integer 'id' and 'name' ({e!r})") from None
    if len(set(cat_ids)) != len(cat_ids):
        raise DataError(ann_json, "duplicate category ids")
    label_of = {cid: i for i, cid in enumerate(cat_ids)}

    infos = {}
    for k, im in enumerate(doc["images"]):
        try:
            iid, fname, w, h = int(im["id"]), str(im["file_name"]), int(im["width"]), int(im["height"])
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(ann_json, f"images[{k}] needs id, file_name, width, height ({e!r})") from None
        if iid in infos:
            raise DataError(ann_json, f"images[{k}]: duplicate image id {iid}")
        infos[iid] = (fname, w, h)

    warnings: Counter = Counter()
    objects: dict[int, list] = {iid: [] for iid in infos}
    for k, a in enumerate(doc["annotations"]):
        where = f"annotations[{k}] (id={a.get('id') if isinstance(a, dict) else '?'})"
        try:
            iid, cid, bbox = int(a["image_id"]), int(a["category_id"]), a["bbox"]
            x, y, bw, bh = (float(v) for v in bbox)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(ann_json, f"{where}: needs image_id, category_id and a 4-number bbox ({e!r})") from None
        if iid not in infos:
            raise DataError(ann_json, f"{where}: unknown image_id {iid}")
        if cid not in label_of:
            raise DataError(ann_json, f"{where}: unknown category_id {cid}")
        if a.get("iscrowd", 0):
            warnings[CROWD] += 1
            continue
        if bw < 0 or bh < 0:
            raise DataError(ann_json, f"{where}: negative bbox size {bbox}")
        _, w, h = infos[iid]
        try:
            box = check_box((x, y, x + bw, y + bh), w, h, warnings, ann_json, None)
        except DataError as e:
            raise DataError(ann_json, f"{where}: {e.reason}") from None
        if box is not None:
            objects[iid].append((box, label_of[cid], bool(a.get("difficult", 0))))

    images = []
    for iid in sorted(infos):
        fname, w, h = infos[iid]
        f = image_dir / fname
        size = image_size(f, ann_json)
        if size != (w, h):
            raise DataError(ann_json, f"image id {iid}: json says {w}x{h} but {f} is {size[0]}x{size[1]}")
        objs = objects[iid]
        images.append(ImageRecord(f, w, h, [o[0] for o in objs], [o[1] for o in objs], [o[2] for o in objs],
                                  image_id=iid))
    return DetectionSet(name or ann_json.stem, names, images, source=ann_json, warnings=warnings,
                        category_ids=cat_ids)
