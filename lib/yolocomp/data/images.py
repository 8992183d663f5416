"""Image files: which suffixes count as images, and their size read from the header without decoding pixels."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from yolocomp.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (a stable order makes image ids reproducible)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and is_image(p))


def image_size(path: Path, ref: Path | None = None, line: int | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (PIL opens lazily, so pixels are not decoded).

    ``ref``/``line`` name the file that pointed at the image, so a missing image is reported where it was listed.
    """
    path = Path(path)
    where = (ref, line) if ref is not None else (path, None)
    if not path.is_file():
        raise DataError(where[0], f"image not found: {path}", where[1])
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(where[0], f"image unreadable: {path} ({e})", where[1]) from None
    if w <= 0 or h <= 0:
        raise DataError(where[0], f"image has no pixels: {path}", where[1])
    return int(w), int(h)


# Boxes may overhang their image by rounding (COCO floats, VOC's 1-based corners); more than this is an error.
PIXEL_TOLERANCE = 1.0
CLIPPED = "box clipped to image (within tolerance)"
ZERO_AREA = "zero-area box skipped"


def check_box(box, width: int, height: int, warnings, path: Path, line: int | None,
              tol: float = PIXEL_TOLERANCE) -> tuple[float, float, float, float] | None:
    """Validate one ``xyxy`` pixel box against its ``width x height`` image.

    Returns the box, clipped to the image when it overhangs by at most ``tol`` pixels (counted in ``warnings``
    under :data:`CLIPPED`), or None for a box with zero width or height (counted under :data:`ZERO_AREA`).
    Raises :class:`DataError` at ``path:line`` for non-finite values, inverted corners or a larger overhang.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(map(math.isfinite, (x1, y1, x2, y2))):
        raise DataError(path, f"non-finite box {box}", line)
    if x2 < x1 or y2 < y1:
        raise DataError(path, f"inverted box x1,y1,x2,y2={x1:g},{y1:g},{x2:g},{y2:g}", line)
    if x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol:
        raise DataError(path, f"box x1,y1,x2,y2={x1:g},{y1:g},{x2:g},{y2:g} outside [0, {width}] x [0, {height}] "
                              f"by more than {tol:g}", line)
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped != (x1, y1, x2, y2):
        warnings[CLIPPED] += 1
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        warnings[ZERO_AREA] += 1
        return None
    return clipped

