"""Bad input: a DataError at ``file:line: reason`` for structural problems, a counted warning for samples a
practitioner expects to be skipped (zero-area boxes, boxes overhanging the image by rounding)."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from yolocomp.data.coco import read_coco
from yolocomp.data.convert import get
from yolocomp.data.images import CLIPPED, ZERO_AREA
from yolocomp.data.voc import VOC_CLASSES, read_voc
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.errors import DataError

F = Path(__file__).parent / "fixtures" / "datasets"


def yolo_set(root: Path, label: str = "0 0.5 0.5 0.5 0.5\n", names: str = "a\nb\n", classes: int = 2,
             listing: str = "images/x.jpg\n") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (32, 24)).save(root / "images" / "x.jpg")
    (root / "labels" / "x.txt").write_text(label)
    (root / "set.names").write_text(names)
    (root / "val.txt").write_text(listing)
    data = root / "set.data"
    data.write_text(f"classes = {classes}\nvalid = val.txt\nnames = set.names\nbackup = backup/\n")
    return data


def raises(match: str, fn, *args):
    with pytest.raises(DataError, match=match) as e:
        fn(*args)
    return e.value


@pytest.mark.parametrize("label, reason", [
    ("0 0.5 0.5 0.5\n", r"x\.txt:1: expected 5 fields '<class> cx cy w h', got 4"),
    ("0 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.5 0.9\n", r"x\.txt:2: expected 5 fields .* got 6"),
    ("0 0.5 abc 0.5 0.5\n", r"x\.txt:1: non-numeric value"),
    ("2 0.5 0.5 0.5 0.5\n", r"x\.txt:1: class id 2 out of range \[0, 2\)"),
    ("-1 0.5 0.5 0.5 0.5\n", r"x\.txt:1: class id -1 out of range"),
    ("0.5 0.5 0.5 0.5 0.5\n", r"x\.txt:1: class id '0.5' is not an integer"),
    ("0 0.5 0.5 -0.1 0.5\n", r"x\.txt:1: negative box size"),
    ("\n0 0.9 0.5 0.4 0.5\n", r"x\.txt:2: box .* outside \[0, 1\] x \[0, 1\] by more than 0.001"),
    ("0 0.5 0.5 nan 0.5\n", r"x\.txt:1: non-finite box"),
])
def test_label_errors_name_file_and_line(tmp_path, label, reason):
    e = raises(reason, read_yolo, yolo_set(tmp_path, label))
    assert e.path == str(tmp_path / "labels" / "x.txt")


def test_zero_area_and_slight_overhang_are_counted_warnings(tmp_path):
    ds = read_yolo(yolo_set(tmp_path, "0 0.5 0.5 0 0.5\n0 0.1 0.5 0.2008 0.5\n1 0.5 0.5 0.5 0.5\n"))
    assert ds.warnings == {ZERO_AREA: 1, CLIPPED: 1} and ds.num_boxes == 2
    assert ds.images[0].boxes[0, 0] == 0.0   # clipped, not left at -0.0004 * 32
    assert "zero-area box skipped: 1" in ds.summary()["warnings"]


def test_missing_image_named_at_its_list_line(tmp_path):
    raises(r"val\.txt:2: image not found: .*nothere\.jpg", read_yolo,
           yolo_set(tmp_path, listing="images/x.jpg\nimages/nothere.jpg\n"))


def test_unreadable_image(tmp_path):
    data = yolo_set(tmp_path)
    (tmp_path / "images" / "x.jpg").write_bytes(b"not a jpeg")
    raises(r"val\.txt:1: image unreadable: .*x\.jpg", read_yolo, data)


def test_names_count_differs_from_classes(tmp_path):
    raises(r"set\.data:1: classes = 3 but .*set\.names lists 2 names", read_yolo, yolo_set(tmp_path, classes=3))


def test_data_file_pointing_nowhere(tmp_path):
    data = yolo_set(tmp_path)
    (tmp_path / "set.names").unlink()
    raises(r"set\.data:3: names file not found: .*set\.names", read_yolo, data)
    shutil.rmtree(tmp_path)
    data = yolo_set(tmp_path)
    (tmp_path / "val.txt").unlink()
    raises(r"set\.data:2: valid list not found: .*val\.txt", read_yolo, data)
    raises(r"set\.data: no 'train =' entry", read_yolo, data, "train")


def test_malformed_data_and_names_files(tmp_path):
    data = yolo_set(tmp_path, names="a\n\nb\n")
    raises(r"set\.names:2: blank class name", read_yolo, data)
    data.write_text("classes = 2\nvalid val.txt\n")
    raises(r"set\.data:2: expected 'key = value'", read_yolo, data)
    data.write_text("classes = two\nvalid = val.txt\nnames = set.names\n")
    raises(r"set\.data:1: classes = 'two' is not an integer", read_yolo, data)


def copy_voc(tmp_path) -> Path:
    root = tmp_path / "VOC2007"
    shutil.copytree(F / "voc" / "VOCdevkit" / "VOC2007", root)
    return root


def test_malformed_xml(tmp_path):
    root = copy_voc(tmp_path)
    xml = root / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("</bndbox>", "", 1))
    raises(r"000001\.xml:\d+: malformed xml: mismatched tag", read_voc, root, "test")


@pytest.mark.parametrize("old, new, reason", [
    ("<name>dog</name>", "<name>zebra</name>", r"000001\.xml:8: class 'zebra' not in the 20 names"),
    ("<xmax>32</xmax>", "<xmax>40</xmax>", r"000001\.xml:18: box .* outside \[0, 32\] x \[0, 24\] by more than 1"),
    ("<xmax>10</xmax>", "<xmax>ten</xmax>", r"000001\.xml:8: <xmax> is not a number: 'ten'"),
    ("<width>32</width>", "<width>64</width>", r"000001\.xml: <size> says 64x24 but .*000001\.jpg is 32x24"),
    ("<filename>000001.jpg</filename>", "<filename>gone.jpg</filename>", r"000001\.xml: image not found"),
])
def test_voc_errors(tmp_path, old, new, reason):
    root = copy_voc(tmp_path)
    xml = root / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace(old, new))
    raises(reason, read_voc, root, "test", VOC_CLASSES)


def coco_json(tmp_path, mutate) -> Path:
    doc = json.loads((F / "coco" / "instances.json").read_text())
    mutate(doc)
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(doc))
    return p


def test_malformed_json(tmp_path):
    p = tmp_path / "instances.json"
    p.write_text('{"images": [],\n "annotations": [,\n')
    raises(r"instances\.json:2: malformed json: Expecting value", read_coco, p, tmp_path)


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d["annotations"][0].update(category_id=2), r"annotations\[0\] \(id=1\): unknown category_id 2"),
    (lambda d: d["annotations"][0].update(image_id=99), r"annotations\[0\] \(id=1\): unknown image_id 99"),
    (lambda d: d["annotations"][1].update(bbox=[0, 0, 40, 24]), r"annotations\[1\] \(id=2\): box .* outside"),
    (lambda d: d["annotations"][1].update(bbox=[0, 0, 4]), r"annotations\[1\] \(id=2\): needs .* 4-number bbox"),
    (lambda d: d["images"][0].update(width=64), r"image id 7: json says 64x24 but .*1\.jpg is 32x24"),
    (lambda d: d.pop("categories"), r"instances\.json: missing list 'categories'"),
])
def test_coco_errors_name_the_file_and_entry(tmp_path, mutate, reason):
    e = raises(reason, read_coco, coco_json(tmp_path, mutate), F / "coco" / "images")
    assert e.path == str(tmp_path / "instances.json")


def test_coco_zero_area_counted(tmp_path):
    ds = read_coco(coco_json(tmp_path, lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 5])), F / "coco" / "images")
    assert ds.warnings == {ZERO_AREA: 1, "iscrowd box skipped": 1} and ds.num_boxes == 1


def test_native_format_errors(tmp_path):
    src = tmp_path / "exdark"
    shutil.copytree(F / "exdark", src)
    (src / "ExDark_Annno" / "People" / "2015_00002.jpg.txt").write_text("% bbGt version=3\nPeople 20 4 12 20\n")
    raises(r"2015_00002\.jpg\.txt:2: expected 12 fields", get("exdark").read, src, "val")
    (src / "ExDark_Annno" / "People" / "2015_00002.jpg.txt").write_text("% bbGt version=3\nHorse 1 1 2 2 0 0 0 0 0 0 0\n")
    raises(r"2015_00002\.jpg\.txt:2: unknown class 'Horse'", get("exdark").read, src, "val")
    vd = tmp_path / "visdrone"
    shutil.copytree(F / "visdrone", vd)
    ann = next((vd / "VisDrone2019-DET-val" / "annotations").iterdir())
    ann.write_text("1,2,10,8,1,12,0,0\n")
    raises(r"0000001_00000_d_0000001\.txt:1: object_category 12 out of range", get("visdrone").read, vd, "val")
    ann.write_text("1,2,10,8,1,4,0\n")
    raises(r"\.txt:1: expected 8 comma-separated fields, got 7", get("visdrone").read, vd, "val")
