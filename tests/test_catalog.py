"""The dataset catalogue: every paper-profile dataset registered, and require() failing fast with instructions."""

import time
from pathlib import Path

import pytest
from yolocomp.data.catalog import DatasetMissing, require
from yolocomp.data.convert import CONVERTERS
from yolocomp.errors import DataError
from yolocomp.registry import DATASETS

F = Path(__file__).parent / "fixtures" / "datasets"
PAPER = ["coco2014", "coco2017", "voc2007", "exdark", "dior", "bdd100k", "visdrone", "oxfordhand", "embedded"]


def test_all_paper_datasets_registered_with_meta():
    assert DATASETS.names() == PAPER
    assert {n: DATASETS.entry(n).meta["classes"] for n in PAPER} == {
        "coco2014": 80, "coco2017": 80, "voc2007": 20, "exdark": 12, "dior": 20, "bdd100k": 10, "visdrone": 10,
        "oxfordhand": 1, "embedded": 6}
    assert "HALO" in DATASETS.entry("visdrone").meta["seeds"]


def test_require_voc2007_fails_fast_naming_layout_and_command(tmp_path):
    t = time.perf_counter()
    with pytest.raises(DatasetMissing) as e:
        require("voc2007", tmp_path)
    assert time.perf_counter() - t < 0.05
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}/voc2007/voc2007.data: dataset 'voc2007' is not in DATA_ROOT={tmp_path}")
    assert "DATA_ROOT/voc2007/\n  voc2007.data  voc2007.names" in msg
    assert f"python -m yolocomp.data.convert.voc SRC {tmp_path}/voc2007" in msg
    assert "host.robots.ox.ac.uk/pascal/VOC/voc2007" in msg
    assert isinstance(e.value, DataError) and isinstance(e.value, FileNotFoundError)


def test_require_returns_data_file_after_conversion(tmp_path):
    from yolocomp.data.convert import get
    get("visdrone").convert(F / "visdrone", tmp_path / "visdrone")
    assert require("visdrone", tmp_path) == tmp_path / "visdrone" / "visdrone.data"


def test_commands_name_real_converters():
    for entry in DATASETS:
        cmd = entry.obj.command
        if entry.name != "embedded":
            module = cmd.split()[2]
            assert module.rsplit(".", 1)[1] in CONVERTERS, cmd
            assert cmd.split()[4] == f"DATA_ROOT/{entry.name}", cmd
