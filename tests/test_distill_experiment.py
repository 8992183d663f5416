"""Distillation experiment bookkeeping: run specs, cache keys, settings and the verdict against the control (no
training here; the notebooks' smoke runs exercise the trained path)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from yolocomp.baselines import Recipe
from yolocomp.distill import experiment as kd
from yolocomp.errors import InputError
from yolocomp.workbook.cache import canonical_json

T = [Recipe("yolov3-tiny", "x.data", 6, 16, 192, s) for s in (0, 1, 2)]


def test_runs_are_seed_matched_and_hashable():
    runs = kd.runs(T, "pruned:normal:0.5", ["finetune", "KDstr5", "hint"], 1,
                   {"KDstr5": [{"mask": "full"}, {"mask": "diagonal", "weights": {"feat": 0.01}}],
                    "hint": {"feature_pairs": [[13, 13]]}}, {"warmup_epochs": 0.0})
    assert [(r.method, r.seed, r.teacher.seed) for r in runs[:3]] == [("finetune", s, s) for s in (0, 1, 2)]
    assert len(runs) == 3 * 4 and len({r.group() for r in runs}) == 4
    keys = {canonical_json(r.key()) for r in runs}              # JSON-able, one cache entry per run
    assert len(keys) == len(runs)
    diag = next(r for r in runs if dict(r.options).get("mask") == "diagonal")
    assert kd.setting(diag) == "mask=diagonal; weights feat=0.01"
    hint = next(r for r in runs if r.method == "hint")
    assert kd.setting(hint) == "fts 13 -> 13"


def test_bad_specs_are_refused():
    for spec in ("pruned:random:0.5", "pruned:normal:1.5", "zoo:no-such-model", "nano"):
        with pytest.raises(InputError, match="student"):
            kd.KDRun(T[0], spec)
    with pytest.raises(InputError, match="unknown method"):
        kd.KDRun(T[0], "pruned:normal:0.5", "KDstr9")


def test_verdict_reads_the_paired_differences():
    tab = pd.DataFrame({"method": ["finetune", "KDstr1", "KDstr2", "KDstr3", "gan"], "setting": "",
                        "seeds": [3, 3, 3, 3, 1], "ap50_delta": [math.nan, 0.05, 0.01, -0.05, 0.02],
                        "ap50_delta_std": [math.nan, 0.01, 0.03, 0.01, math.nan], "wins": [0, 3, 2, 0, 1]})
    v = kd.verdict(tab).set_index("method")["beats_finetune"]
    assert v.to_dict() == {"KDstr1": "yes", "KDstr2": "no (within noise)", "KDstr3": "worse", "gan": "yes?"}
