"""Training pipeline: letterbox geometry, augmented and mosaic items, collate layout, seeded loaders, bad images."""

from __future__ import annotations

import pytest
import torch
from yolocomp.data import synthetic
from yolocomp.data.canonical import DetectionSet, ImageRecord
from yolocomp.data.dataset import DetectionDataset, collate, make_loader
from yolocomp.data.transforms import PAD_VALUE, letterbox, letterbox_boxes, mosaic, unletterbox_boxes
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.errors import DataError

S = 256


@pytest.fixture(scope="module")
def train_set(tmp_path_factory) -> DetectionSet:
    data = synthetic.generate(tmp_path_factory.mktemp("emb") / "smoke", "smoke", seed=0)
    return read_yolo(data, "train")


def test_letterbox_geometry_and_pad_split():
    img = torch.zeros(3, 101, 200)                        # r = 1.28 -> 256 x 129, pad 63.5: 63 top, 64 bottom
    out, r, (pw, ph) = letterbox(img, S)
    assert out.shape == (3, S, S) and r == pytest.approx(1.28) and (pw, ph) == (0.0, 63.5)
    assert torch.all(out[:, 62] == PAD_VALUE / 255) and torch.all(out[:, 63] == 0)
    assert torch.all(out[:, 63 + 129 - 1] == 0) and torch.all(out[:, 63 + 129] == PAD_VALUE / 255)
    u8, _, _ = letterbox(torch.zeros(3, 50, 40, dtype=torch.uint8), 100)
    assert u8.dtype == torch.uint8 and u8[0, 0, 0] == PAD_VALUE and u8[0, 50, 50] == 0


def test_letterbox_boxes_round_trip():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=g) * torch.tensor([300.0, 180.0])
    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 20 + 1], 1)
    _, r, pad = letterbox(torch.zeros(3, 200, 320), S)
    there = letterbox_boxes(boxes, r, pad)
    assert torch.allclose(there[:, 1], boxes[:, 1] * 0.8 + 48)
    assert torch.allclose(unletterbox_boxes(there, r, pad), boxes, atol=1e-4)


def test_eval_item_is_the_letterboxed_image_with_mapped_boxes(train_set):
    d = DetectionDataset(train_set, S, augment=False)
    for i in range(4):
        img, t, meta = d[i]
        rec = train_set.images[i]
        assert img.shape == (3, S, S) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
        assert t["labels"].dtype == torch.int64 and t["labels"].tolist() == rec.labels.tolist()
        assert meta["orig_size"] == (rec.height, rec.width) and meta["file"] == str(rec.file)
        back = unletterbox_boxes(t["boxes"], meta["ratio"], meta["pad"])
        assert torch.allclose(back, torch.from_numpy(rec.boxes).float(), atol=1e-3)
    a, b = d[0][0], d[0][0]
    assert torch.equal(a, b)


def _check_valid(t: dict) -> None:
    b = t["boxes"]
    assert b.ndim == 2 and b.shape[1] == 4 and len(b) == len(t["labels"])
    assert torch.all(b >= 0) and torch.all(b <= S)
    assert torch.all(b[:, 2:] - b[:, :2] >= 2)
    assert torch.all((t["labels"] >= 0) & (t["labels"] < 6))


def test_augmented_items_valid_deterministic_and_epoch_dependent(train_set):
    d = DetectionDataset(train_set, S, augment=True, seed=7)
    before = torch.random.get_rng_state()
    items = [d[i] for i in range(8)]
    assert torch.equal(torch.random.get_rng_state(), before), "augmentation touched the global torch RNG"
    for img, t, _ in items:
        assert img.shape == (3, S, S) and 0 <= img.min() and img.max() <= 1
        _check_valid(t)
    assert sum(len(t["labels"]) for _, t, _ in items) > 0
    same = DetectionDataset(train_set, S, augment=True, seed=7)[3]
    assert torch.equal(same[0], items[3][0]) and torch.equal(same[1]["boxes"], items[3][1]["boxes"])
    plain = DetectionDataset(train_set, S, augment=False)[3][0]
    assert not torch.equal(items[3][0], plain)
    d.set_epoch(1)
    assert not torch.equal(d[3][0], items[3][0])
    d.set_epoch(0)
    assert torch.equal(d[3][0], items[3][0])


def test_mosaic_items_mix_four_images(train_set):
    d = DetectionDataset(train_set, S, augment=True, mosaic=1.0, seed=0)
    counts = []
    for i in range(8):
        img, t, _ = d[i]
        assert img.shape == (3, S, S)
        _check_valid(t)
        counts.append(len(t["labels"]))
    own = [len(train_set.images[i].labels) for i in range(8)]
    assert sum(counts) > sum(own) // 2 and any(c > o for c, o in zip(counts, own))


def test_mosaic_places_tiles_around_the_centre():
    tiles = []
    for k in range(4):
        img = torch.full((3, 100, 80), 10 * (k + 1), dtype=torch.uint8)
        tiles.append((img, torch.tensor([[0.0, 0.0, 80.0, 100.0]]), torch.tensor([k])))
    out, boxes, labels = mosaic(tiles, 100, centre=(60, 110))    # crop window [50, 150)^2 of the 200 canvas
    assert out.shape == (3, 100, 100) and labels.tolist() == [0, 1, 2, 3]
    # tile 0 has its bottom-right corner at the centre, 1 its bottom-left, 2 its top-right, 3 its top-left
    expect = torch.tensor([[0, 0, 10, 60], [10, 0, 90, 60], [0, 60, 10, 100], [10, 60, 90, 100]], dtype=torch.float)
    assert torch.equal(boxes, expect)
    assert out[0, 30, 5] == 10 and out[0, 30, 50] == 20 and out[0, 80, 5] == 30 and out[0, 80, 50] == 40
    assert out[0, 30, 95] == PAD_VALUE and out[0, 80, 95] == PAD_VALUE      # right of tiles 1 and 3 (x >= 140)


def test_collate_layout(train_set):
    d = DetectionDataset(train_set, S, augment=False)
    batch = [d[i] for i in range(3)]
    images, targets, metas = collate(batch)
    assert images.shape == (3, 3, S, S) and targets.shape[1] == 6 and len(metas) == 3
    n = [len(b[1]["labels"]) for b in batch]
    assert targets.shape[0] == sum(n)
    assert targets[:, 0].tolist() == [float(k) for k, c in enumerate(n) for _ in range(c)]
    assert torch.equal(targets[: n[0], 1].long(), batch[0][1]["labels"])
    assert torch.equal(targets[: n[0], 2:], batch[0][1]["boxes"])
    empty = collate([(images[0], {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}, {})])
    assert empty[1].shape == (0, 6)


def test_loader_is_seeded(train_set):
    d = DetectionDataset(train_set, S, augment=True, seed=0)
    first = [torch.cat([t for _, t, _ in make_loader(d, 4, True, seed=5)][:2])]
    again = [torch.cat([t for _, t, _ in make_loader(d, 4, True, seed=5)][:2])]
    other = [torch.cat([t for _, t, _ in make_loader(d, 4, True, seed=6)][:2])]
    assert torch.equal(first[0], again[0])
    assert not torch.equal(first[0], other[0])
    ids = [m["image_id"] for _, _, ms in make_loader(d, 4, False, seed=5) for m in ms]
    assert ids == list(range(len(train_set)))


def test_missing_unreadable_or_resized_image_is_a_data_error(train_set, tmp_path):
    rec = train_set.images[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    for file, w, h, what in [(tmp_path / "gone.jpg", rec.width, rec.height, "not found"),
                             (bad, rec.width, rec.height, "unreadable"),
                             (rec.file, rec.width + 1, rec.height, "annotation says")]:
        ds = DetectionSet("x", train_set.names, [ImageRecord(file, w, h, rec.boxes, rec.labels, None, 0)])
        with pytest.raises(DataError, match=what) as e:
            DetectionDataset(ds, S, augment=False)[0]
        assert str(e.value).startswith(str(file))
