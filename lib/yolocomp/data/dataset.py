"""Turn a :class:`DetectionSet` into batches: letterboxed (optionally augmented, mosaicked) images and targets.

Randomness is drawn per item from ``(seed, epoch, index)``, so an item is the same whichever worker loads it and
whatever ran before; call :meth:`DetectionDataset.set_epoch` each epoch for fresh augmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.transforms import (
    augment_pipeline,
    letterbox,
    letterbox_boxes,
    letterbox_params,
    mosaic,
    resize_long_side,
)
from yolocomp.errors import DataError
from yolocomp.seed import worker_init_fn


def load_image(rec: ImageRecord) -> Tensor:
    """uint8 (3, H, W) RGB of ``rec.file``; DataError naming the file if it is missing, unreadable, or not the
    size its labels were read for (which would silently misplace every box)."""
    path = Path(rec.file)
    if not path.is_file():
        raise DataError(path, "image not found")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(path, f"image unreadable ({e})") from None
    h, w = arr.shape[:2]
    img = torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
    if (w, h) != (rec.width, rec.height):
        raise DataError(path, f"image is {w}x{h} but its annotation says {rec.width}x{rec.height}")
    return img


class DetectionDataset(Dataset):
    """Items ``(image, target, meta)`` of a DetectionSet at ``img_size`` x ``img_size``.

    image: float (3, S, S) in [0, 1].  target: ``{"boxes": float (n, 4) xyxy pixels in the letterboxed (or
    augmented) image, "labels": int64 (n,)}``.  meta: ``{"image_id", "file", "orig_size": (h, w), "ratio",
    "pad": (padw, padh)}`` -- ratio and pad map boxes back with ``unletterbox_boxes`` and are only meaningful
    without augmentation. With ``augment``, a fraction ``mosaic`` of items are 4-image mosaics, then every item
    gets random affine, colour jitter and flip (:func:`augment_pipeline`).
    """

    def __init__(self, ds: DetectionSet, img_size: int, augment: bool, mosaic: float = 0.0, seed: int = 0):
        if not 0.0 <= mosaic <= 1.0:
            raise ValueError(f"mosaic must be a probability in [0, 1], got {mosaic}")
        self.ds, self.img_size, self.augment, self.mosaic, self.seed = ds, int(img_size), augment, mosaic, seed
        self.epoch = 0
        self._pipeline = augment_pipeline() if augment else None

    def set_epoch(self, epoch: int) -> None:
        """Reseed augmentation for ``epoch`` (the same epoch gives the same items)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ds)

    def _item_seed(self, i: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])

    def __getitem__(self, i: int) -> tuple[Tensor, dict, dict]:
        rec = self.ds.images[i]
        ratio, pad = letterbox_params(rec.height, rec.width, self.img_size)
        if self.augment:
            # fork_rng keeps the global torch stream untouched; v2 transforms draw from it.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._item_seed(i))
                if self.mosaic and torch.rand(()) < self.mosaic:
                    img, boxes, labels = self._mosaic(i)
                else:
                    img, boxes, labels = self._letterboxed(rec)
                out = self._pipeline({"image": tv_tensors.Image(img), "labels": labels,
                                      "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY",
                                                                        canvas_size=img.shape[-2:])})
            img, boxes, labels = out["image"].as_subclass(Tensor), out["boxes"].as_subclass(Tensor), out["labels"]
        else:
            img, boxes, labels = self._letterboxed(rec)
        meta = {"image_id": rec.image_id, "file": str(rec.file), "orig_size": (rec.height, rec.width),
                "ratio": ratio, "pad": pad}
        return img.float() / 255, {"boxes": boxes.float(), "labels": labels.long()}, meta

    def _letterboxed(self, rec: ImageRecord) -> tuple[Tensor, Tensor, Tensor]:
        img, ratio, pad = letterbox(load_image(rec), self.img_size)
        return img, letterbox_boxes(torch.from_numpy(rec.boxes).float(), ratio, pad), torch.from_numpy(rec.labels)

    def _mosaic(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """Item ``i`` plus three uniformly drawn items, tiled around a random centre (global torch RNG)."""
        s = self.img_size
        others = torch.randint(len(self), (3,)).tolist()
        xc, yc = (int(v) for v in torch.randint(s // 2, s + s // 2, (2,)))
        tiles = []
        for j in (i, *others):
            rec = self.ds.images[j]
            img, boxes = resize_long_side(load_image(rec), torch.from_numpy(rec.boxes).float(), s)
            tiles.append((img, boxes, torch.from_numpy(rec.labels)))
        return mosaic(tiles, s, (xc, yc))


def collate(batch: list[tuple[Tensor, dict, dict]]) -> tuple[Tensor, Tensor, list[dict]]:
    """Items -> ``(images (N, 3, S, S), targets (M, 6) float [batch_idx, class, x1, y1, x2, y2] pixels, metas)``."""
    images = torch.stack([b[0] for b in batch])
    rows = [torch.cat([torch.full((len(t["labels"]), 1), float(k)), t["labels"][:, None].float(), t["boxes"]], 1)
            for k, (_, t, _) in enumerate(batch)]
    return images, torch.cat(rows) if rows else torch.zeros(0, 6), [b[2] for b in batch]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, workers: int = 0) -> DataLoader:
    """A DataLoader whose order and worker seeds follow ``seed`` (a seeded generator + ``worker_init_fn``).
    Workers are not persistent, so ``set_epoch`` on the dataset reaches them each epoch."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
                      generator=g, worker_init_fn=worker_init_fn if workers else None)
