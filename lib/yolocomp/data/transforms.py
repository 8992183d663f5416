"""Geometry of the training pipeline: letterbox and its inverse, 4-image mosaic, and the augmentation stack.

Boxes are ``xyxy`` pixels throughout. Images are uint8 ``(3, H, W)`` while augmenting (torchvision's colour ops are
exact on uint8) and become float in [0, 1] only at the end of :class:`yolocomp.data.dataset.DetectionDataset`.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors

PAD_VALUE = 114   # the YOLO ports' grey border (uint8); 114/255 on float images


def _fill(img: Tensor) -> float:
    return PAD_VALUE if img.dtype == torch.uint8 else PAD_VALUE / 255


def letterbox(img: Tensor, size: int) -> tuple[Tensor, float, tuple[float, float]]:
    """Resize ``img`` (3, H, W) keeping its aspect ratio so the long side is ``size``, then pad to (3, size, size).

    Returns ``(image, ratio, (padw, padh))`` with ``ratio = size / max(H, W)`` and the *fractional* pad per side
    (the YOLO convention: an odd total puts the extra pixel at the bottom/right, e.g. 20.5 -> 20 top, 21 bottom,
    while boxes shift by 20.5). Map boxes with :func:`letterbox_boxes` / :func:`unletterbox_boxes`.
    The pad is grey 114 (uint8) or 114/255 (float).
    """
    h, w = img.shape[-2:]
    r, (dw, dh) = letterbox_params(h, w, size)
    nw, nh = size - round(2 * dw), size - round(2 * dh)
    if (nw, nh) != (w, h):
        img = F.resize(img, [nh, nw], antialias=True)
    left, right, top, bottom = round(dw - 0.1), round(dw + 0.1), round(dh - 0.1), round(dh + 0.1)
    return F.pad(img, [left, top, right, bottom], fill=_fill(img)), r, (dw, dh)


def letterbox_params(h: int, w: int, size: int) -> tuple[float, tuple[float, float]]:
    """``(ratio, (padw, padh))`` that :func:`letterbox` uses for an H x W image, without touching pixels."""
    r = min(size / h, size / w)
    return r, ((size - round(w * r)) / 2, (size - round(h * r)) / 2)


def letterbox_boxes(boxes: Tensor, ratio: float, pad: tuple[float, float]) -> Tensor:
    """(n, 4) xyxy pixels of the original image -> xyxy pixels of the letterboxed image."""
    shift = boxes.new_tensor([pad[0], pad[1], pad[0], pad[1]])
    return boxes * ratio + shift


def unletterbox_boxes(boxes: Tensor, ratio: float, pad: tuple[float, float]) -> Tensor:
    """(n, 4) xyxy pixels of the letterboxed image -> xyxy pixels of the original image (inverse of
    :func:`letterbox_boxes`; clip to the original size afterwards if predictions may overhang)."""
    shift = boxes.new_tensor([pad[0], pad[1], pad[0], pad[1]])
    return (boxes - shift) / ratio


def resize_long_side(img: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Scale (3, H, W) so its long side is ``size`` (a mosaic tile); boxes (n, 4) xyxy scale along."""
    h, w = img.shape[-2:]
    r = size / max(h, w)
    if r != 1:
        img = F.resize(img, [max(1, round(h * r)), max(1, round(w * r))], antialias=True)
    return img, boxes * r


def mosaic(tiles: list[tuple[Tensor, Tensor, Tensor]], size: int, centre: tuple[int, int]
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Four ``(image (3, h, w) uint8, boxes (n, 4) xyxy, labels (n,))`` tiles -> one ``size`` x ``size`` mosaic.

    As the YOLO ports: a 2S x 2S grey canvas; tile k has its bottom-right (k=0), bottom-left (1), top-right (2),
    top-left (3) corner at ``centre`` (each coordinate in [S/2, 3S/2]); then the centre S x S window
    [S/2, 3S/2]^2 is cut out. Boxes are shifted and clipped to the window; empty ones are left for the
    sanitizer to drop.
    """
    s2 = 2 * size
    xc, yc = centre
    canvas = torch.full((3, s2, s2), PAD_VALUE, dtype=torch.uint8)
    all_boxes, all_labels = [], []
    for k, (img, boxes, labels) in enumerate(tiles):
        h, w = img.shape[-2:]
        # Canvas window (xa1, ya1, xa2, ya2) of the tile, then the matching window inside the tile.
        xa1, xa2 = (max(xc - w, 0), xc) if k in (0, 2) else (xc, min(xc + w, s2))
        ya1, ya2 = (max(yc - h, 0), yc) if k in (0, 1) else (yc, min(yc + h, s2))
        xb1 = w - (xa2 - xa1) if k in (0, 2) else 0
        yb1 = h - (ya2 - ya1) if k in (0, 1) else 0
        canvas[:, ya1:ya2, xa1:xa2] = img[:, yb1:yb1 + ya2 - ya1, xb1:xb1 + xa2 - xa1]
        all_boxes.append(boxes + boxes.new_tensor([xa1 - xb1, ya1 - yb1, xa1 - xb1, ya1 - yb1]))
        all_labels.append(labels)
    o = size // 2
    boxes = (torch.cat(all_boxes) - o).clamp_(0, size)
    return canvas[:, o:o + size, o:o + size].clone(), boxes, torch.cat(all_labels)


class RandomScaleTranslate(T.Transform):
    """Random zoom about the canvas centre (s ~ U(1 - scale, 1 + scale)) plus a shift of up to ``translate`` of the
    side, on a grey canvas of unchanged size.

    This is ``RandomAffine(degrees=0, translate, scale)`` -- all the seeds use zero rotation and shear -- done as
    resize + paste, which is 20-50x faster on CPU than the grid-sample warp and keeps the uint8 pixels exact.
    Boxes (``tv_tensors.BoundingBoxes``, xyxy) move with the pixels; clamp and sanitize afterwards.
    """

    def __init__(self, translate: float = 0.1, scale: float = 0.5):
        super().__init__()
        self.translate, self.scale = translate, scale

    def make_params(self, flat_inputs: list) -> dict:
        h, w = next(x for x in flat_inputs if isinstance(x, tv_tensors.Image)).shape[-2:]
        s = 1 + (2 * torch.rand(()).item() - 1) * self.scale
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        tx, ty = ((2 * torch.rand(2) - 1) * self.translate * torch.tensor([w, h])).round().int().tolist()
        return {"size": (nh, nw), "offset": ((w - nw) // 2 + tx, (h - nh) // 2 + ty), "scale": (nw / w, nh / h)}

    def transform(self, inpt, params: dict):
        (nh, nw), (ox, oy), (sx, sy) = params["size"], params["offset"], params["scale"]
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            out = inpt.as_subclass(Tensor) * inpt.new_tensor([sx, sy, sx, sy]) + inpt.new_tensor([ox, oy, ox, oy])
            return tv_tensors.wrap(out, like=inpt)
        if isinstance(inpt, tv_tensors.Image):
            h, w = inpt.shape[-2:]
            small = F.resize(inpt.as_subclass(Tensor), [nh, nw], antialias=True)
            canvas = torch.full_like(inpt.as_subclass(Tensor), _fill(inpt))
            # Overlap of the pasted image [ox, ox+nw) x [oy, oy+nh) with the canvas.
            x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + nw, w), min(oy + nh, h)
            if x1 < x2 and y1 < y2:
                canvas[:, y1:y2, x1:x2] = small[:, y1 - oy:y2 - oy, x1 - ox:x2 - ox]
            return tv_tensors.wrap(canvas, like=inpt)
        return inpt


class RandomHSV(T.Transform):
    """YOLO's HSV jitter: gains g = 1 + U(-1, 1) * (h, s, v), applied with 256-entry look-up tables in HSV
    (hue wraps, saturation and value clip), on uint8 images only.

    torchvision's ``ColorJitter(hue=...)`` is a different operation (an additive hue shift) and 5-20x slower on
    CPU; PIL's C HSV conversion gives the ports' method at a few ms per image.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, gains: tuple[float, float, float] = (0.015, 0.7, 0.4)):
        super().__init__()
        self.gains = torch.tensor(gains, dtype=torch.float64)

    def make_params(self, flat_inputs: list) -> dict:
        return {"g": (1 + (2 * torch.rand(3, dtype=torch.float64) - 1) * self.gains).tolist()}

    def transform(self, inpt, params: dict):
        if inpt.dtype != torch.uint8:
            raise TypeError("RandomHSV works on uint8 images")
        gh, gs, gv = params["g"]
        x = np.arange(256)
        luts = [((x * gh) % 256).astype(np.uint8), np.clip(x * gs, 0, 255).astype(np.uint8),
                np.clip(x * gv, 0, 255).astype(np.uint8)]
        hsv = Image.fromarray(inpt.permute(1, 2, 0).numpy()).convert("HSV")
        chans = [c.point(lut.tolist()) for c, lut in zip(hsv.split(), luts)]
        rgb = np.asarray(Image.merge("HSV", chans).convert("RGB"))
        return tv_tensors.wrap(torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous(), like=inpt)


def augment_pipeline(translate: float = 0.1, scale: float = 0.5, hsv: tuple[float, float, float] = (0.015, 0.7, 0.4),
                     flip: float = 0.5) -> T.Compose:
    """The training augmentation of ``{"image": tv_tensors.Image uint8, "boxes": BoundingBoxes, "labels"}`` on a
    square canvas. Defaults are the YOLOv3/v5 ``hyp.scratch`` gains: translate 0.1, scale 1 +- 0.5, HSV gains
    (0.015, 0.7, 0.4), left-right flip 0.5; then boxes are clamped to the canvas and those under 2 px a side
    dropped (with their labels).
    """
    return T.Compose([
        RandomScaleTranslate(translate, scale),
        RandomHSV(hsv),
        T.RandomHorizontalFlip(flip),
        T.ClampBoundingBoxes(),
        T.SanitizeBoundingBoxes(min_size=2),
    ])
