"""Each converter on its native-format fixture: parsed boxes, skipped counts, and the canonical files it writes read
back identically by the YOLO and COCO readers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from yolocomp.data.coco import read_coco
from yolocomp.data.convert import CONVERTERS, get
from yolocomp.data.voc import VOC_CLASSES
from yolocomp.data.yolo_txt import read_yolo

F = Path(__file__).parent / "fixtures" / "datasets"


def boxes_of(ds):
    return {r.file.name: (r.boxes.tolist(), r.labels.tolist()) for r in ds.images}


def test_exdark():
    m = get("exdark")
    val = m.read(F / "exdark", "val")
    assert len(val.names) == 12
    assert boxes_of(val) == {"2015_00001.png": ([[2, 3, 12, 11], [0, 0, 5, 6]], [0, 10]),
                             "2015_00002.jpg": ([[20, 4, 32, 24]], [10])}
    train = m.read(F / "exdark", "train")   # annotation file name differs in extension case
    assert boxes_of(train) == {"2015_00003.JPG": ([[1, 1, 4, 4]], [m.CLASSES.index("Cup")])}
    assert len(m.read(F / "exdark", "test")) == 0


def test_visdrone_skips_ignored_regions_and_others():
    m = get("visdrone")
    val = m.read(F / "visdrone", "val")
    assert boxes_of(val) == {"0000001_00000_d_0000001.jpg": ([[1, 2, 11, 10], [5, 6, 12, 14]], [3, 0])}
    assert val.warnings == {m.IGNORED_REGION: 1, m.OTHERS: 1}
    assert val.summary()["warned"] == 2


def test_bdd100k_maps_old_names_and_skips_non_boxes():
    m = get("bdd100k")
    val = m.read(F / "bdd100k", "val")
    assert boxes_of(val) == {"b1c66a42-6f7d68ca.jpg": ([[1.5, 2, 20.25, 12], [0, 0, 4, 10]], [2, 0]),
                             "b1c81faa-3df17267.jpg": ([], [])}
    assert val.warnings == {m.NO_BOX: 1, "BDD100K category 'other vehicle' skipped": 1}


def test_dior_reads_horizontal_bounding_boxes_folder():
    m = get("dior")
    assert boxes_of(m.read(F / "dior", "val")) == {"00002.jpg": ([[10, 0, 40, 30], [2, 3, 5, 9]], [7, 13])}
    test = m.read(F / "dior", "test")
    assert test.images[0].file.parent.name == "JPEGImages-test" and test.images[0].labels.tolist() == [19]


def test_oxfordhand_polygons_to_clipped_boxes():
    m = get("oxfordhand")
    val = m.read(F / "oxfordhand", "val")
    assert boxes_of(val) == {"VOC2007_1.jpg": ([[3, 2, 11, 9], [29, 19, 32, 24]], [0, 0]),
                             "VOC2007_6.jpg": ([[19, 1, 30, 11]], [0])}
    assert val.warnings == {m.CLIPPED: 1}
    assert boxes_of(m.read(F / "oxfordhand" / "hand_dataset", "train")) == {"VOC2010_10.jpg": ([[0, 0, 8, 8]], [0])}


def test_voc_0712_protocol(tmp_path):
    m = get("voc")
    assert m.read(F / "voc" / "VOCdevkit", "val").names == VOC_CLASSES
    assert [r.file.name for r in m.read(F / "voc" / "VOCdevkit", "train").images] == ["000002.jpg"]


@pytest.mark.parametrize("name", ["exdark", "visdrone", "bdd100k", "dior", "oxfordhand", "voc"])
def test_convert_writes_canonical_form_that_reads_back(name, tmp_path):
    m = get(name)
    src = F / name / ("VOCdevkit" if name == "voc" else "")
    data = m.convert(src, tmp_path / name)
    stem = "voc2007" if name == "voc" else name
    assert data == tmp_path / name / f"{stem}.data"
    native = m.read(src, "val")
    via_yolo = read_yolo(data, "valid")
    via_coco = read_coco(tmp_path / name / "annotations" / "instances_val.json", tmp_path / name / "images" / "val")
    if name == "voc":   # difficult objects stay out of the YOLO labels but keep their flag in the json
        keep = native.images[0].difficult
        assert via_yolo.images[0].boxes.tolist() == native.images[0].boxes[~keep].tolist()
        assert via_coco.images[0].difficult.tolist() == keep.tolist()
    else:
        via_yolo.assert_same(native, atol=1e-6)
    via_coco.assert_same(native, atol=1e-9)
    assert (tmp_path / name / f"{stem}.names").read_text().splitlines() == native.names


def test_convert_is_byte_deterministic(tmp_path):
    m = get("oxfordhand")
    a, b = m.convert(F / "oxfordhand", tmp_path / "a").parent, m.convert(F / "oxfordhand", tmp_path / "b").parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 4 + 4 + 3 + 3 + 2   # images, labels, split lists, jsons, .data and .names
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_cli_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "yolocomp.data.convert.visdrone", str(F / "visdrone"),
                          str(tmp_path / "vd")], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(tmp_path / "vd" / "visdrone.data")
    text = (tmp_path / "vd" / "visdrone.data").read_text()
    assert "classes = 10" in text and "valid = val.txt" in text and "test" not in text
    assert np.loadtxt(tmp_path / "vd" / "labels" / "val" / "0000001_00000_d_0000001.txt").shape == (2, 5)


def test_every_converter_module_imports():
    assert all(callable(get(n).convert) and callable(get(n).read) for n in CONVERTERS)
