"""Darknet / ultralytics YOLO txt datasets: a ``.data`` file, a ``.names`` file, image lists and label files.

A ``.data`` file holds ``key = value`` lines (``classes``, ``train``, ``valid``, ``names``, ``backup``; any other key
such as ``test`` works as a split too). Relative paths are taken from the ``.data`` file's folder. A split is a list
file (one image path per line, relative to the list file's folder) or a folder of images. Each image's labels are
found by replacing the last ``images`` folder of its path with ``labels`` (ultralytics), else beside the image, with
lines ``<class> cx cy w h`` relative to the image size. No label file, or an empty one, is a background image.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.images import check_box, image_size, is_image, list_images
from yolocomp.errors import DataError

# Relative coordinates may overhang [0, 1] by float rounding in exporters; more is an error.
RELATIVE_TOLERANCE = 1e-3


def read_names(path: Path) -> list[str]:
    """Class names, one per line (trailing blank lines ignored; a blank line between names is an error)."""
    path = Path(path)
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, s in enumerate(lines, 1):
        if not s.strip():
            raise DataError(path, "blank class name", i)
    if not lines:
        raise DataError(path, "no class names")
    return [s.strip() for s in lines]


def read_data_file(data_file: Path) -> dict[str, tuple[str, int]]:
    """The ``key -> (value, line number)`` entries of a darknet ``.data`` file (``#`` starts a comment)."""
    data_file = Path(data_file)
    entries: dict[str, tuple[str, int]] = {}
    for i, raw in enumerate(_read_text(data_file).splitlines(), 1):
        s = raw.split("#", 1)[0].strip()
        if not s:
            continue
        key, sep, value = s.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DataError(data_file, f"expected 'key = value', got {raw.strip()!r}", i)
        entries[key.strip()] = (value.strip(), i)
    return entries


def read_yolo(data_file: Path, split: str = "valid") -> DetectionSet:
    """Read split ``split`` of a darknet ``.data`` dataset into a :class:`DetectionSet` (boxes xyxy pixels).

    Image sizes come from the image headers. Raises :class:`DataError` naming ``file:line`` for structural problems
    (see :func:`read_labels`); zero-area boxes and boxes overhanging by at most 1e-3 are counted in ``warnings``.
    """
    data_file = Path(data_file)
    entries = read_data_file(data_file)
    for key in ("classes", "names", split):
        if key not in entries:
            raise DataError(data_file, f"no '{key} =' entry")
    classes_value, classes_line = entries["classes"]
    try:
        num_classes = int(classes_value)
    except ValueError:
        raise DataError(data_file, f"classes = {classes_value!r} is not an integer", classes_line) from None
    names_path = _entry_path(data_file, entries, "names")
    if not names_path.is_file():
        raise DataError(data_file, f"names file not found: {names_path}", entries["names"][1])
    names = read_names(names_path)
    if len(names) != num_classes:
        raise DataError(data_file, f"classes = {num_classes} but {names_path} lists {len(names)} names",
                        classes_line)
    warnings: Counter = Counter()
    images = []
    for i, (img, ref, line) in enumerate(_split_images(data_file, entries, split)):
        w, h = image_size(img, ref, line)
        label_file = label_path(img)
        boxes, labels = (read_labels(label_file, num_classes, w, h, warnings) if label_file is not None
                         else (np.zeros((0, 4)), np.zeros(0, np.int64)))
        images.append(ImageRecord(img, w, h, boxes, labels, None, image_id=i))
    return DetectionSet(data_file.stem, names, images, source=data_file, warnings=warnings)


def label_path(image: Path) -> Path | None:
    """The label file of ``image``: ``.../images/x.jpg`` -> ``.../labels/x.txt`` if it exists, else ``x.txt`` beside
    the image, else None (a background image)."""
    image = Path(image)
    parts = image.parts
    if "images" in parts[:-1]:
        k = len(parts) - 2 - parts[-2::-1].index("images")
        swapped = Path(*parts[:k], "labels", *parts[k + 1:]).with_suffix(".txt")
        if swapped.is_file():
            return swapped
    beside = image.with_suffix(".txt")
    return beside if beside.is_file() else None


def read_labels(path: Path, num_classes: int, width: int, height: int,
                warnings: Counter) -> tuple[np.ndarray, np.ndarray]:
    """Parse one label file into ``boxes`` float64 ``(n, 4)`` xyxy pixels of a ``width x height`` image and
    ``labels`` int64 ``(n,)``.

    Errors (``path:line``): a line without exactly 5 fields, a non-numeric or non-integer value, a class outside
    ``[0, num_classes)``, a negative size, a box overhanging [0, 1] by more than 1e-3. Counted warnings: a box
    overhanging by at most 1e-3 (clipped), a zero-area box (skipped).
    """
    path = Path(path)
    boxes, labels = [], []
    for i, raw in enumerate(_read_text(path).splitlines(), 1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise DataError(path, f"expected 5 fields '<class> cx cy w h', got {len(fields)}: {raw.strip()!r}", i)
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise DataError(path, f"non-numeric value in {raw.strip()!r}", i) from None
        cls = values[0]
        if cls != int(cls):
            raise DataError(path, f"class id {fields[0]!r} is not an integer", i)
        if not 0 <= cls < num_classes:
            raise DataError(path, f"class id {int(cls)} out of range [0, {num_classes})", i)
        cx, cy, bw, bh = values[1:]
        if bw < 0 or bh < 0:
            raise DataError(path, f"negative box size w={bw:g} h={bh:g}", i)
        rel = check_box((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1, 1, warnings, path, i,
                        tol=RELATIVE_TOLERANCE)
        if rel is None:
            continue
        boxes.append((rel[0] * width, rel[1] * height, rel[2] * width, rel[3] * height))
        labels.append(int(cls))
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64)


def _split_images(data_file: Path, entries: dict, split: str):
    """Yield ``(image path, listing file, line)`` for a split given as a list file or a folder of images."""
    src = _entry_path(data_file, entries, split)
    if src.is_dir():
        for img in list_images(src):
            yield img, src, None
        return
    if not src.is_file():
        raise DataError(data_file, f"{split} list not found: {src}", entries[split][1])
    seen = set()
    for i, raw in enumerate(_read_text(src).splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        img = Path(s) if Path(s).is_absolute() else src.parent / s
        if not is_image(img):
            raise DataError(src, f"not an image file name: {s!r}", i)
        if img in seen:
            raise DataError(src, f"image listed twice: {s!r}", i)
        seen.add(img)
        yield img, src, i


def _entry_path(data_file: Path, entries: dict, key: str) -> Path:
    p = Path(entries[key][0]).expanduser()
    return p if p.is_absolute() else data_file.parent / p


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable ({e})") from None
