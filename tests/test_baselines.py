"""Baselines: a detectors table trained twice from nothing with the same seed is the same bytes (CPU)."""

from __future__ import annotations

import pytest
import torch
from yolocomp import baselines
from yolocomp.data import synthetic
from yolocomp.workbook.results import to_csv_bytes


@pytest.mark.slow
def test_same_seed_same_csv_bytes(tmp_path, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setenv("YOLOCOMP_CACHE", str(tmp_path / "data-cache"))
    data = synthetic.embedded("smoke")
    tables = []
    for run in ("a", "b"):      # separate caches: the second table is retrained, not looked up
        monkeypatch.setenv("YOLOCOMP_CACHE", str(tmp_path / run))
        recipes = baselines.recipes(["yolov3-tiny"], [0, 1], data, 1, 4, 64, "default",
                                    {"warmup_iters": 1, "accumulate": 1})
        rows = baselines.detector_rows(recipes, dataset="embedded-smoke").assign(profile="small")
        tables.append(to_csv_bytes(rows))     # what write_results writes
        assert (tmp_path / run / "train").is_dir()
    assert tables[0] == tables[1]
    assert b"yolov3-tiny,embedded-smoke,small,baseline,2," in tables[0]
