"""Readers of YOLO txt, COCO json and VOC xml on the committed fixtures (tests/fixtures/datasets)."""

from pathlib import Path

import numpy as np
import pytest
from yolocomp.data.coco import read_coco
from yolocomp.data.images import CLIPPED, ZERO_AREA
from yolocomp.data.voc import VOC_CLASSES, read_voc
from yolocomp.data.yolo_txt import label_path, read_names, read_yolo

F = Path(__file__).parent / "fixtures" / "datasets"


def boxes_of(ds):
    return {r.file.name: (r.boxes.tolist(), r.labels.tolist()) for r in ds.images}


def test_yolo_list_split_with_both_label_locations_and_background():
    ds = read_yolo(F / "yolo" / "toy.data", "train")
    assert ds.names == ["square", "circle"] and ds.name == "toy"
    assert [(r.width, r.height, r.image_id) for r in ds.images] == [(32, 24, 0)] * 1 + [(32, 24, 1), (32, 24, 2)]
    assert boxes_of(ds) == {
        "a.jpg": ([[12, 6, 20, 18], [0, 0, 16, 12]], [0, 1]),   # labels/ found by the images -> labels swap
        "b.png": ([], []),                                        # no label file: background
        "c.jpg": ([[0, 0, 32, 24]], [1]),                         # label beside the image
    }
    assert not ds.warnings


def test_yolo_folder_split_counts_clipped_and_zero_area_boxes():
    ds = read_yolo(F / "yolo" / "toy.data", "valid")
    (r,) = ds.images
    np.testing.assert_allclose(r.boxes, [[8, 6, 24, 18], [0, 6, 0.20025 * 32, 18]])
    assert ds.warnings == {ZERO_AREA: 1, CLIPPED: 1}
    s = ds.summary()
    assert s["boxes"] == 2 and s["warned"] == 2 and "zero-area box skipped: 1" in s["warnings"]


def test_label_path_prefers_labels_folder(tmp_path):
    img = tmp_path / "images" / "x" / "images" / "a.jpg"
    (tmp_path / "images" / "x" / "labels").mkdir(parents=True)
    (tmp_path / "images" / "x" / "labels" / "a.txt").write_text("")
    assert label_path(img) == tmp_path / "images" / "x" / "labels" / "a.txt"   # the last images/ is swapped
    assert label_path(tmp_path / "elsewhere.jpg") is None


def test_read_names_ignores_trailing_blank_lines():
    assert read_names(F / "yolo" / "toy.names") == ["square", "circle"]


def test_coco_sorts_categories_skips_crowd_keeps_empty_images():
    ds = read_coco(F / "coco" / "instances.json", F / "coco" / "images")
    assert ds.names == ["cat", "dog"] and ds.category_ids == [1, 3]
    assert [r.image_id for r in ds.images] == [3, 7]
    assert boxes_of(ds) == {"2.jpg": ([], []), "1.jpg": ([[1, 2, 11, 7], [0, 0, 32, 24]], [0, 1])}
    assert ds.warnings == {"iscrowd box skipped": 1}


def test_voc_one_based_corners_and_difficult():
    ds = read_voc(F / "voc" / "VOCdevkit" / "VOC2007", "test")
    assert ds.names == VOC_CLASSES
    (r,) = ds.images
    assert r.boxes.tolist() == [[0, 0, 10, 12], [4, 2, 32, 24]]     # xmin - 1, ymin - 1, xmax, ymax
    assert r.labels.tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert r.difficult.tolist() == [False, True]


def test_voc_zero_area_box_counted_and_explicit_names():
    ds = read_voc(F / "voc" / "VOCdevkit" / "VOC2007", "trainval", names=["cat"])
    assert ds.names == ["cat"] and ds.num_boxes == 0 and ds.warnings == {ZERO_AREA: 1}


def test_voc_names_default_to_sorted_found_names_for_non_voc_classes(tmp_path):
    import shutil
    root = tmp_path / "VOC"
    shutil.copytree(F / "voc" / "VOCdevkit" / "VOC2007", root)
    xml = root / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>zebra</name>"))
    ds = read_voc(root, "test")
    assert ds.names == ["person", "zebra"] and ds.images[0].labels.tolist() == [1, 0]


@pytest.mark.parametrize("split", ["train", "valid"])
def test_yolo_reader_is_deterministic(split):
    a, b = read_yolo(F / "yolo" / "toy.data", split), read_yolo(F / "yolo" / "toy.data", split)
    a.assert_same(b, atol=0)
