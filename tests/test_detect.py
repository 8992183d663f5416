"""The detect command: annotated images + detections.json from an image folder, via the library and the CLI."""

import json
import shutil

import pytest
import torch
from PIL import Image
from yolocomp.data.synthetic import embedded
from yolocomp.data.yolo_txt import read_yolo
from yolocomp.detect import cli_detect, detect
from yolocomp.errors import InputError
from yolocomp.models import Darknet, save_checkpoint
from yolocomp.paths import package_dir


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    ds = read_yolo(embedded("smoke"), split="valid")
    folder = tmp_path_factory.mktemp("src")
    for r in ds.images[:2]:
        shutil.copy(r.file, folder / r.file.name)
    return folder, ds.names


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Darknet.from_cfg(package_dir() / "models" / "cfg" / "yolov3-tiny.cfg", classes=6).eval()


def test_detect_writes_images_and_json(two_images, tiny, tmp_path):
    folder, names = two_images
    # A random model's scores sit near 0.25 (sigmoid(0)^2); conf 0.01 guarantees boxes to draw.
    recs = detect(tiny, folder, tmp_path, img_size=64, conf_thres=0.01, names=names)
    files = sorted(p.name for p in folder.iterdir())
    assert [r["file"].split("/")[-1] for r in recs] == files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files + ["detections.json"])
    assert json.loads((tmp_path / "detections.json").read_text()) == recs
    for r in recs:
        assert r["detections"], "expected detections at conf 0.01"
        with Image.open(tmp_path / r["file"].split("/")[-1]) as out, Image.open(r["file"]) as src:
            assert out.size == src.size == (r["width"], r["height"])
        for d in r["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 <= x2 <= r["width"] and 0 <= y1 <= y2 <= r["height"]
            assert d["name"] == names[d["class"]] and d["score"] >= 0.01
    one = detect(tiny, folder / files[0], tmp_path / "one", img_size=64, conf_thres=0.01, names=names)
    assert one == recs[:1]


def test_cli_detect_from_checkpoint(two_images, tiny, tmp_path, capsys):
    folder, _ = two_images
    save_checkpoint(tiny, tmp_path / "m.pt")
    rc = cli_detect(["--weights", str(tmp_path / "m.pt"), "--source", str(folder), "--output", str(tmp_path / "o"),
                     "--img-size", "64", "--conf-thres", "0.01"])
    assert rc == 0 and (tmp_path / "o" / "detections.json").is_file()
    assert "detections" in capsys.readouterr().out
    with pytest.raises(InputError, match="not an image file or a folder"):
        detect(tiny, tmp_path / "missing", tmp_path / "x", 64)
