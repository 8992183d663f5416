"""The three real readers see the same embedded dataset: YOLO txt, COCO json and VOC xml agree box for box, and
agree with the scenes the generator drew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from yolocomp.data import synthetic
from yolocomp.data.coco import read_coco
from yolocomp.data.voc import read_voc
from yolocomp.data.yolo_txt import read_yolo


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return synthetic.generate(tmp_path_factory.mktemp("emb") / "smoke", "smoke", seed=0).parent


@pytest.mark.parametrize("split, yolo_split", [("train", "train"), ("val", "valid")])
def test_yolo_coco_voc_read_identical_sets(root, split, yolo_split):
    yolo = read_yolo(root / "embedded.data", split=yolo_split)
    coco = read_coco(root / "annotations" / f"instances_{split}.json", root / "images")
    voc = read_voc(root / "voc", split, names=synthetic.NAMES, image_dir=root / "images")
    assert len(yolo) == synthetic.SIZES["smoke"][split] and yolo.num_boxes > 2 * len(yolo)
    assert yolo.names == synthetic.NAMES
    yolo.assert_same(coco)
    yolo.assert_same(voc)
    assert not yolo.warnings and not coco.warnings and not voc.warnings
    assert not voc.images[0].difficult.any()
    for r in yolo.images[:8]:
        index = int(r.file.stem.split("_")[1])
        _, boxes, labels = synthetic.scene(split, index, "smoke", seed=0)
        order = np.lexsort((*boxes.T[::-1], labels))
        mine = np.lexsort((*r.boxes.T[::-1], r.labels))
        assert np.array_equal(r.labels[mine], labels[order])
        assert np.allclose(r.boxes[mine], boxes[order], atol=1e-6), r.file.name


def test_object_order_ignores_float_noise_of_text_formats():
    from yolocomp.data.canonical import DetectionSet, ImageRecord
    boxes = np.array([[5.0, 118, 57, 170], [5.0, 68, 62, 124]])
    noisy = boxes + np.array([[-1e-9, 0, 0, 0], [1e-9, 0, 0, 0]])
    a = DetectionSet("a", ["x"], [ImageRecord("i.jpg", 320, 320, boxes, [0, 0], None, 0)])
    b = DetectionSet("b", ["x"], [ImageRecord("i.jpg", 320, 320, noisy[::-1], [0, 0], None, 0)])
    a.assert_same(b)
