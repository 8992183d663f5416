"""The embedded dataset: coloured shapes on cluttered backgrounds, generated from a seed.

Every notebook runs on it by default, so it has to be small, learnable and still exercise what real detection
data does: six classes that differ in shape *and* hue, object sizes from VisDrone-tiny (8-16 px) to large,
occlusion, textured backgrounds, distractors that are not classes, several aspect ratios (letterboxing) and an
ExDark-like low-light variant. The same seed gives byte-identical files.

Boxes are the tight extent of each object's *visible* pixels; an object hidden below ``MIN_VISIBLE_FRACTION`` of
its area (or ``MIN_VISIBLE_PX`` pixels) is drawn but not labelled. Box corners are snapped outwards to a pixel grid
chosen per image size so that YOLO txt (6 decimals), COCO json and VOC xml (integers) hold the very same numbers.
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from yolocomp import paths
from yolocomp.data import writers
from yolocomp.data.canonical import DetectionSet, ImageRecord

NAMES = ["circle", "square", "triangle", "cross", "ring", "star"]
# Characteristic hue (degrees) of each class, jittered by HUE_JITTER per object.
HUES = {"circle": 0, "square": 220, "triangle": 120, "cross": 55, "ring": 300, "star": 185}
HUE_JITTER = 8.0

# (width, height) choices: square, landscape 16:10 and 2:1, portrait. Each side gives an exact 6-decimal YOLO
# representation on a grid of at most 2 px (see _grid).
IMAGE_SIZES = ((320, 320), (320, 200), (200, 320), (320, 160))

SIZES: dict[str, dict] = {
    # train / val: images per split.  objects / distractors: inclusive (min, max) per image.
    # image_sizes: (w, h) choices.  size_bins: (probability, min px, max px as a fraction of the short image side or
    # px) of the object extent -- tiny 8-16 px, medium 16-48 px, large 48 px up to 45 % of the short side.
    # overlap: chance that an object is placed against an earlier one (partial occlusion).
    "smoke": {"train": 24, "val": 12, "objects": (1, 6), "distractors": (1, 4), "image_sizes": IMAGE_SIZES,
              "size_bins": ((0.3, 8, 16), (0.45, 16, 48), (0.25, 48, 0.45)), "overlap": 0.3},
    "small": {"train": 800, "val": 200, "objects": (1, 8), "distractors": (2, 6), "image_sizes": IMAGE_SIZES,
              "size_bins": ((0.3, 8, 16), (0.45, 16, 48), (0.25, 48, 0.45)), "overlap": 0.3},
}

MIN_VISIBLE_FRACTION = 0.25
MIN_VISIBLE_PX = 12
JPEG = {"quality": 92, "subsampling": 0}   # 4:4:4 so the hue of an 8 px object survives compression
SPLITS = ("train", "val")


def generate(root: Path, size: str = "small", seed: int = 0, low_light: bool = False) -> Path:
    """Write the embedded dataset to ``root`` in YOLO txt, COCO json and VOC xml; return ``root/embedded.data``.

    The set is built in a sibling temp folder and renamed into place at the end, so an interrupted build never
    looks finished. An existing ``root`` is replaced. ``low_light`` renders the same scenes (same labels) dark,
    low-contrast and noisy.
    """
    return _generate(Path(root), size, seed, low_light, replace=True)


def embedded(size: str = "small", seed: int = 0, low_light: bool = False) -> Path:
    """The ``.data`` file of the embedded set in the artefact cache, generating it first if missing.

    Safe to call from several processes at once: a finished set is never replaced, the first build to finish wins.
    """
    root = paths.cache_dir() / "data" / f"embedded-{size}-s{seed}{'-lowlight' if low_light else ''}"
    data = root / "embedded.data"
    return data if data.is_file() else _generate(root, size, seed, low_light, replace=False)


def _generate(root: Path, size: str, seed: int, low_light: bool, replace: bool) -> Path:
    if size not in SIZES:
        raise ValueError(f"unknown embedded size {size!r}; known: {', '.join(SIZES)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, size, seed, low_light)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if replace or not (root / "embedded.data").is_file():
        # A leftover without embedded.data is an older interrupted copy; a finished one is replaced only on request.
        shutil.rmtree(root, ignore_errors=True)
    try:
        os.rename(tmp, root)
    except OSError:
        # Another process published the same set meanwhile: keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / "embedded.data").is_file():
            raise
    return root / "embedded.data"


def scene(split: str, index: int, size: str = "small", seed: int = 0, low_light: bool = False
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``index`` of ``split`` exactly as :func:`generate` writes it (before JPEG): ``(uint8 (H, W, 3) RGB,
    float64 (n, 4) xyxy pixel boxes, int64 (n,) labels)``."""
    return render(np.random.SeedSequence([seed, SPLITS.index(split), index]), SIZES[size], low_light)


def _build(root: Path, size: str, seed: int, low_light: bool) -> None:
    images = root / "images"
    images.mkdir(parents=True)
    for split in SPLITS:
        records = []
        for i in range(SIZES[size][split]):
            pixels, boxes, labels = scene(split, i, size, seed, low_light)
            file = images / f"{split}_{i:06d}.jpg"
            Image.fromarray(pixels).save(file, "JPEG", **JPEG)
            records.append(ImageRecord(file, pixels.shape[1], pixels.shape[0], boxes, labels, None, image_id=i))
        ds = DetectionSet(f"embedded-{split}", list(NAMES), records, source=root)
        writers.write_yolo_labels(ds, root / "labels")
        writers.write_image_list(ds, root / f"{split}.txt", root)
        writers.write_coco(ds, root / "annotations" / f"instances_{split}.json", images)
        writers.write_voc(ds, root / "voc", split)
    # Written last: a root holding embedded.data is a finished build.
    writers.write_darknet_data(root / "embedded.data", NAMES, root / "train.txt", root / "val.txt")


def render(ss: np.random.SeedSequence, preset: dict, low_light: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: ``(uint8 (H, W, 3) RGB, float64 (n, 4) xyxy pixel boxes, int64 (n,) labels)``.

    The scene stream and the low-light stream are independent children of ``ss``, so the low-light variant has
    the same objects and labels.
    """
    scene_ss, dark_ss = ss.spawn(2)
    rng = np.random.default_rng(scene_ss)
    w, h = preset["image_sizes"][rng.integers(len(preset["image_sizes"]))]
    img = _background(rng, w, h)
    owner = np.full((h, w), -1, np.int16)    # which object owns each pixel after occlusion; -1 none

    objects = _place_objects(rng, preset, w, h)
    areas = {}
    n_dis = int(rng.integers(preset["distractors"][0], preset["distractors"][1] + 1))
    items = [("object", k) for k in range(len(objects))] + [("distractor", k) for k in range(n_dis)]
    for kind, k in (items[j] for j in rng.permutation(len(items))):
        if kind == "object":
            cls, cx, cy, s = objects[k]
            mask = _shape_mask(NAMES[cls], s, rng.uniform(0, 2 * math.pi))
            areas[k] = int(mask.sum())
            x0, y0 = round(cx - mask.shape[1] / 2), round(cy - mask.shape[0] / 2)
            _paint(img, owner, mask, x0, y0, _class_colour(rng, NAMES[cls]), rng, k)
        else:
            _distractor(rng, img, owner)

    boxes, labels = [], []
    qx, qy = _grid(w), _grid(h)
    for k, (cls, _, _, _) in enumerate(objects):
        ys, xs = np.nonzero(owner == k)
        if len(xs) < max(MIN_VISIBLE_PX, MIN_VISIBLE_FRACTION * areas[k]):
            continue
        # Snap outwards to the exact-representation grid (image sides are multiples of it).
        boxes.append((qx * (xs.min() // qx), qy * (ys.min() // qy),
                      qx * -(-(xs.max() + 1) // qx), qy * -(-(ys.max() + 1) // qy)))
        labels.append(cls)

    if low_light:
        img = _darken(np.random.default_rng(dark_ss), img)
    pixels = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return pixels, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(labels, np.int64)


def _grid(side: int) -> int:
    """Smallest pixel step q such that corners on multiples of q give 6-decimal-exact YOLO centres and sizes.

    YOLO stores (x1 + x2) / (2 * side); that is exact in 6 decimals when q * 10**6 is a multiple of 2 * side.
    """
    q = next(q for q in range(1, 2 * side + 1) if q * 10**6 % (2 * side) == 0)
    if side % q:
        raise ValueError(f"image side {side} is not a multiple of its box grid {q}")
    return q


def _hsv(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((h_deg % 360) / 360, s, v), np.float32) * 255


def _dull(rng: np.random.Generator) -> np.ndarray:
    """A background colour: any hue, low saturation, so class hues stay distinct."""
    return _hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.uniform(0.2, 0.85))


def _class_colour(rng: np.random.Generator, name: str) -> np.ndarray:
    return _hsv(HUES[name] + rng.uniform(-HUE_JITTER, HUE_JITTER), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """float32 (h, w, 3) in 0..255: a two-colour gradient, low-frequency blobs, optional stripes, grain."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    c0, c1 = _dull(rng), _dull(rng)
    img = c0 + (c1 - c0) * t[..., None]
    # Blobs: mostly brightness, a little colour, so the clutter does not mimic the class hues.
    coarse = rng.normal(0, 1, (4, max(2, h // 32), max(2, w // 32))).astype(np.float32)
    up = [np.asarray(Image.fromarray(c, "F").resize((w, h), Image.BICUBIC)) for c in coarse]
    img += up[0][..., None] * rng.uniform(8, 25) + np.stack(up[1:], -1) * rng.uniform(2, 8)
    if rng.random() < 0.5:
        a, period = rng.uniform(0, math.pi), rng.uniform(5, 30)
        stripes = np.sin((xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period))
        img += (stripes * rng.uniform(6, 22))[..., None]
    img += rng.normal(0, rng.uniform(2, 8), (h, w, 3)).astype(np.float32)
    return img


def _object_size(rng: np.random.Generator, bins, short: int) -> float:
    """Object extent in px, log-uniform inside a bin drawn by probability (a bin max <= 1 is a fraction of short)."""
    probs = np.array([b[0] for b in bins], np.float64)
    _, lo, hi = bins[rng.choice(len(bins), p=probs / probs.sum())]
    hi = hi * short if hi <= 1 else hi
    return float(math.exp(rng.uniform(math.log(lo), math.log(max(hi, lo)))))


def _place_objects(rng: np.random.Generator, preset: dict, w: int, h: int) -> list[tuple[int, float, float, float]]:
    """``[(class, cx, cy, extent)]``: mostly apart, some placed against an earlier object to overlap it."""
    lo, hi = preset["objects"]
    out: list[tuple[int, float, float, float]] = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        cls = int(rng.integers(len(NAMES)))
        s = _object_size(rng, preset["size_bins"], min(w, h))
        for _attempt in range(10):
            if out and rng.random() < preset["overlap"]:
                _, px, py, ps = out[int(rng.integers(len(out)))]
                a, d = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.8) * (ps + s) / 2
                cx, cy, apart = px + d * math.cos(a), py + d * math.sin(a), False
            else:
                cx, cy, apart = rng.uniform(0.3 * s, w - 0.3 * s), rng.uniform(0.3 * s, h - 0.3 * s), True
            inside = 0 <= cx < w and 0 <= cy < h
            clear = not apart or all(math.hypot(cx - ox, cy - oy) > 0.5 * (s + os_) / 2 for _, ox, oy, os_ in out)
            if inside and clear:
                break
        out.append((cls, cx, cy, s))
    return out


def _polygon(r: float, theta: float, pts) -> np.ndarray:
    """Unit-radius points scaled by r and rotated by theta (radians)."""
    p = np.asarray(pts, np.float64) * r
    c, s = math.cos(theta), math.sin(theta)
    return p @ np.array([[c, s], [-s, c]])


def _shape_mask(kind: str, s: float, theta: float, aspect: float = 0.4) -> np.ndarray:
    """bool (n, n) mask of a shape of extent ``s`` px centred in an n = ceil(s) + 2 canvas."""
    n = math.ceil(s) + 2
    c, r = n / 2, s / 2
    canvas = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(canvas)
    k = np.arange(10)
    if kind in ("circle", "ring"):
        draw.ellipse([c - r, c - r, c + r, c + r], fill=255)
        if kind == "ring":
            ri = 0.55 * r
            draw.ellipse([c - ri, c - ri, c + ri, c + ri], fill=0)
        return np.asarray(canvas) > 0
    if kind == "square":
        a = k[:4] * math.pi / 2 + math.pi / 4
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == "triangle":
        a = k[:3] * 2 * math.pi / 3 - math.pi / 2
        pts = np.stack([np.cos(a), np.sin(a)], 1)
    elif kind == "cross":
        b = 0.38
        pts = [(b, 1), (b, b), (1, b), (1, -b), (b, -b), (b, -1), (-b, -1), (-b, -b), (-1, -b), (-1, b),
               (-b, b), (-b, 1)]
    elif kind == "star":
        a = k * math.pi / 5 - math.pi / 2
        rad = np.where(k % 2 == 0, 1.0, 0.45)
        pts = np.stack([rad * np.cos(a), rad * np.sin(a)], 1)
    elif kind == "ellipse":
        a = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        pts = np.stack([np.cos(a), aspect * np.sin(a)], 1)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    draw.polygon([tuple(p) for p in _polygon(r, theta, pts) + c], fill=255)
    return np.asarray(canvas) > 0


def _paint(img: np.ndarray, owner: np.ndarray, mask: np.ndarray, x0: int, y0: int, colour: np.ndarray,
           rng: np.random.Generator, value: int) -> None:
    """Fill ``mask`` (placed with its top-left at x0, y0, clipped to the image) with a shaded, grainy ``colour``
    and record ``value`` as the owner of those pixels (-1 for distractors, which hide what is below)."""
    h, w = owner.shape
    mh, mw = mask.shape
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + mw, w), min(y0 + mh, h)
    if xa >= xb or ya >= yb:
        return
    m = mask[ya - y0:yb - y0, xa - x0:xb - x0]
    a = rng.uniform(0, 2 * math.pi)
    ramp = (np.arange(mw)[None, :] * math.cos(a) + np.arange(mh)[:, None] * math.sin(a)) / max(mw, mh)
    shade = (1 + rng.uniform(-0.15, 0.15) * ramp)[ya - y0:yb - y0, xa - x0:xb - x0]
    tex = colour * shade[..., None] + rng.normal(0, 4, (*m.shape, 3))
    img[ya:yb, xa:xb][m] = tex[m]
    owner[ya:yb, xa:xb][m] = value


def _distractor(rng: np.random.Generator, img: np.ndarray, owner: np.ndarray) -> None:
    """A non-class mark: an elongated grey or off-hue ellipse, a line, or a row of text-like glyphs."""
    h, w = owner.shape
    kind = ("ellipse", "line", "text")[int(rng.integers(3))]
    if kind == "ellipse":
        s = rng.uniform(10, 0.4 * min(w, h))
        mask = _shape_mask("ellipse", s, rng.uniform(0, math.pi), aspect=rng.uniform(0.2, 0.5))
        colour = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.45), rng.uniform(0.3, 0.9))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        _paint(img, owner, mask, round(cx - mask.shape[1] / 2), round(cy - mask.shape[0] / 2), colour,
               rng, -1)
        return
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "line":
        xy = [tuple(rng.uniform(0, (w, h))) for _ in range(int(rng.integers(2, 4)))]
        draw.line(xy, fill=255, width=int(rng.integers(1, 4)))
        colour = _hsv(rng.uniform(0, 360), rng.uniform(0, 0.6), rng.uniform(0.2, 0.95))
    else:
        gh = rng.uniform(6, 14)
        gw = 0.6 * gh
        x, y = rng.uniform(0, w - gw), rng.uniform(0, h - gh)
        for _ in range(int(rng.integers(3, 9))):
            for _stroke in range(int(rng.integers(2, 4))):
                p = rng.uniform(0, 1, 4) * (gw, gh, gw, gh) + (x, y, x, y)
                draw.line(tuple(p), fill=255, width=1 + int(gh > 10))
            x += gw * 1.3
        colour = _hsv(0, 0, rng.choice([rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)]))
    _paint(img, owner, np.asarray(canvas) > 0, 0, 0, colour, rng, -1)


def _darken(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """ExDark-like low light: gamma, strong gain loss, a cool tint and sensor noise (float 0..255 in and out)."""
    x = np.clip(img / 255.0, 0, 1) ** rng.uniform(1.2, 1.7)
    x = x * rng.uniform(0.15, 0.35) + rng.uniform(0.005, 0.03)
    x = x * np.array([rng.uniform(0.8, 0.95), rng.uniform(0.85, 1.0), rng.uniform(1.0, 1.1)])
    x = x + rng.normal(0, rng.uniform(0.01, 0.025), x.shape)
    return x * 255.0
