"""The embedded dataset generator: determinism, coverage, exact box snapping, low light, atomic builds."""

from __future__ import annotations

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from yolocomp.data import synthetic, writers


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("emb") / "smoke"
    t = time.perf_counter()
    data = synthetic.generate(root, "smoke", seed=0)
    return data, time.perf_counter() - t


@pytest.fixture(scope="module")
def smoke_dark(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("emb") / "dark", "smoke", seed=0, low_light=True)


def _coco(data: Path, split: str) -> dict:
    return json.loads((data.parent / "annotations" / f"instances_{split}.json").read_text())


def test_layout_and_build_time(smoke):
    data, seconds = smoke
    root = data.parent
    assert seconds < 20, f"smoke build took {seconds:.1f} s"
    assert data.read_text().splitlines() == ["classes=6", "train=train.txt", "valid=val.txt",
                                            "names=embedded.names", "backup=backup/"]
    assert (root / "embedded.names").read_text().split() == synthetic.NAMES
    n_train, n_val = synthetic.SIZES["smoke"]["train"], synthetic.SIZES["smoke"]["val"]
    assert (root / "train.txt").read_text().splitlines()[:2] == ["images/train_000000.jpg", "images/train_000001.jpg"]
    assert len((root / "val.txt").read_text().splitlines()) == n_val
    assert len(list((root / "images").glob("*.jpg"))) == n_train + n_val
    assert len(list((root / "labels").glob("*.txt"))) == n_train + n_val
    assert len(list((root / "voc" / "Annotations").glob("*.xml"))) == n_train + n_val
    assert (root / "voc" / "ImageSets" / "Main" / "val.txt").read_text().split()[0] == "val_000000"
    assert not list(root.parent.glob(".*tmp*")), "temp build folder left behind"


def test_same_seed_same_bytes_other_seed_differs(smoke, tmp_path):
    again = synthetic.generate(tmp_path / "again", "smoke", seed=0)
    first = _hashes(smoke[0].parent)
    assert len(first) > 100
    assert _hashes(again.parent) == first
    other = synthetic.generate(tmp_path / "other", "smoke", seed=1)
    differ = [k for k, v in _hashes(other.parent).items() if k.startswith("images/") and first[k] != v]
    assert len(differ) == len([k for k in first if k.startswith("images/")])


def test_classes_sizes_and_aspect_ratios_covered(smoke):
    doc = _coco(smoke[0], "train")
    assert [c["id"] for c in doc["categories"]] == [1, 2, 3, 4, 5, 6]
    assert {a["category_id"] for a in doc["annotations"]} == {1, 2, 3, 4, 5, 6}
    wh = np.array([a["bbox"][2:] for a in doc["annotations"]], float)
    side = np.sqrt(wh.prod(1))
    assert (side <= 16).sum() >= 5, "no VisDrone-like tiny objects"
    assert (side >= 64).sum() >= 3, "no large objects"
    assert {(i["width"], i["height"]) for i in doc["images"]} == set(synthetic.IMAGE_SIZES)
    per_image = np.bincount([a["image_id"] for a in doc["annotations"]], minlength=len(doc["images"]))
    hi = synthetic.SIZES["smoke"]["objects"][1]
    assert per_image.max() <= hi and per_image.max() >= 3
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0 for a in doc["annotations"])


def _class_hue_mask(pixels: np.ndarray, cls: int) -> np.ndarray:
    hsv = np.asarray(Image.fromarray(pixels).convert("HSV"), float)
    hue = hsv[..., 0] * 360 / 256
    d = np.abs((hue - synthetic.HUES[synthetic.NAMES[cls]] + 180) % 360 - 180)
    return (d < synthetic.HUE_JITTER + 8) & (hsv[..., 1] > 0.55 * 255) & (hsv[..., 2] > 0.4 * 255)


@pytest.mark.parametrize("index", [0, 3, 5, 11])
def test_boxes_are_the_tight_visible_extent(smoke, index):
    """Every box edge touches pixels of the object's class hue (within the snapping grid) and the box is the
    image that generate wrote."""
    pixels, boxes, labels = synthetic.scene("train", index, "smoke", seed=0)
    img = np.asarray(Image.open(smoke[0].parent / "images" / f"train_{index:06d}.jpg"))
    assert img.shape == pixels.shape and np.abs(img.astype(int) - pixels).mean() < 8  # JPEG of this scene
    assert len(boxes) and np.all(boxes == np.round(boxes)) and np.all(boxes[:, 2:] > boxes[:, :2])
    h, w = pixels.shape[:2]
    q = 2  # the coarsest snapping grid of IMAGE_SIZES
    for (x1, y1, x2, y2), c in zip(boxes.astype(int), labels):
        sub = _class_hue_mask(pixels, c)[y1:y2, x1:x2]
        assert sub[:, :q].any() and sub[:, -q:].any() and sub[:q].any() and sub[-q:].any(), (index, c)
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_yolo_coco_voc_hold_the_same_integer_boxes(smoke):
    root = smoke[0].parent
    doc = _coco(smoke[0], "val")
    by_image = {i["id"]: i for i in doc["images"]}
    for img_id, info in list(by_image.items())[:6]:
        stem = Path(info["file_name"]).stem
        coco = sorted((a["category_id"] - 1, *a["bbox"]) for a in doc["annotations"] if a["image_id"] == img_id)
        W, H = info["width"], info["height"]
        yolo = []
        for line in (root / "labels" / f"{stem}.txt").read_text().splitlines():
            c, cx, cy, bw, bh = line.split()
            assert all(len(v.split(".")[1]) == 6 for v in (cx, cy, bw, bh))
            x1, y1 = (float(cx) - float(bw) / 2) * W, (float(cy) - float(bh) / 2) * H
            yolo.append((int(c), x1, y1, float(bw) * W, float(bh) * H))
        yolo = sorted(yolo)
        assert len(yolo) == len(coco)
        assert np.allclose(np.array(yolo), np.array(coco, float), atol=1e-9), stem
        xml = ET.parse(root / "voc" / "Annotations" / f"{stem}.xml").getroot()
        voc = sorted((synthetic.NAMES.index(o.findtext("name")),
                      int(o.findtext("bndbox/xmin")) - 1, int(o.findtext("bndbox/ymin")) - 1,
                      int(o.findtext("bndbox/xmax")) - int(o.findtext("bndbox/xmin")) + 1,
                      int(o.findtext("bndbox/ymax")) - int(o.findtext("bndbox/ymin")) + 1)
                     for o in xml.iter("object"))
        assert voc == [tuple(int(v) for v in row) for row in coco], stem


def test_low_light_is_darker_with_the_same_labels(smoke, smoke_dark):
    bright, dark = smoke[0].parent, smoke_dark.parent
    for stem in ("train_000000", "train_000007", "val_000002"):
        assert (bright / "labels" / f"{stem}.txt").read_bytes() == (dark / "labels" / f"{stem}.txt").read_bytes()
        b = np.asarray(Image.open(bright / "images" / f"{stem}.jpg"), float)
        d = np.asarray(Image.open(dark / "images" / f"{stem}.jpg"), float)
        assert d.mean() < 0.4 * b.mean(), stem
        assert d.std() < 0.5 * b.std(), stem       # low contrast


def test_embedded_uses_cache_and_does_not_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOCOMP_CACHE", str(tmp_path))
    data = synthetic.embedded("smoke", seed=3)
    assert data == tmp_path / "data" / "embedded-smoke-s3" / "embedded.data" and data.is_file()
    stamp = data.stat().st_mtime_ns
    assert synthetic.embedded("smoke", seed=3) == data and data.stat().st_mtime_ns == stamp
    assert synthetic.embedded("smoke", seed=3, low_light=True).parent.name == "embedded-smoke-s3-lowlight"


def test_interrupted_build_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(writers, "write_darknet_data", boom)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(tmp_path / "x", "smoke", seed=0)
    assert list(tmp_path.iterdir()) == []


def test_unknown_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="smoke"):
        synthetic.generate(tmp_path / "x", "huge")
