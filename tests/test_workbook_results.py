"""Results tables (deterministic CSV + meta sidecar) and the artefact cache."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from yolocomp.workbook import cache, params, results

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
OK = "01_alpha/ok"
NS = {"PROFILE": "small", "SEED": 0, "IMG_SIZE": 320, "LR": 0.01, "MODEL": "tiny", "EXTRA": None}


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "extra": ["x", "y", "z", "w"],
            "ap50": [0.123456789, np.nan, 1e-7, 12345678.9],
            "dataset": ["voc", "coco", "voc", "coco"],
            "model": ["b", "a", "a", "b"],
            "params": [10, 20, 30, 40],
        }
    )


def test_csv_sorted_ordered_formatted(env):
    params.parameters(OK, dict(NS))
    path = results.write_results(_table(), "01_alpha/table")
    assert path == env / "results" / "01_alpha" / "table.csv"
    raw = path.read_bytes()
    assert b"\r" not in raw
    assert raw.decode() == (
        "model,dataset,profile,ap50,params,extra\n"
        "a,coco,small,,20,y\n"
        "a,voc,small,1e-07,30,z\n"
        "b,coco,small,1.23457e+07,40,w\n"
        "b,voc,small,0.123457,10,x\n"
    )


def test_profile_column_must_match_the_run(env):
    params.parameters(OK, dict(NS))
    with pytest.raises(ValueError, match="profile column"):
        results.write_results(_table().assign(profile="paper"), "01_alpha/table")


def test_csv_is_byte_identical_for_same_rows_in_any_order(env):
    params.parameters(OK, dict(NS))
    p = results.write_results(_table(), "01_alpha/t")
    first = p.read_bytes()
    results.write_results(_table().sample(frac=1.0, random_state=3), "01_alpha/t")
    assert p.read_bytes() == first
    meta = json.loads(p.with_name("t.meta.json").read_text())
    assert meta["csv_sha256"] == hashlib.sha256(first).hexdigest()


def test_meta_fields(env):
    params.parameters(OK, dict(NS, SEED=4))
    p = results.write_results(_table(), "01_alpha/t")
    meta = json.loads(p.with_name("t.meta.json").read_text())
    assert meta["notebook_id"] == OK and meta["profile"] == "small" and meta["seed"] == 4
    assert meta["parameters"] == dict(NS, SEED=4)
    assert meta["rows"] == 4 and meta["columns"] == ["model", "dataset", "profile", "ap50", "params", "extra"]
    assert set(meta["versions"]) == {
        "python",
        "torch",
        "torchvision",
        "numpy",
        "pandas",
        "pycocotools",
        "thop",
        "yolocomp",
    }
    assert meta["versions"]["pandas"] == pd.__version__
    assert set(meta["git"]) == {"commit", "dirty"} and set(meta["device"]) == {"cpu", "cuda", "torch_threads"}
    assert 0 <= meta["wall_s"] < 60


def test_atomic_write_keeps_old_file_on_failure(env, monkeypatch):
    params.parameters(OK, dict(NS))
    p = results.write_results(_table(), "01_alpha/t")
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        results.write_results(_table().iloc[:1], "01_alpha/t")
    assert p.read_bytes() == before
    assert sorted(f.name for f in p.parent.iterdir()) == ["t.csv", "t.meta.json"]  # no temp files left


def test_refuses_unstable_values(env):
    params.parameters(OK, dict(NS))
    with pytest.raises(ValueError, match="absolute path '/home/me/w.pt'"):
        results.write_results(pd.DataFrame({"model": ["a"], "weights": ["/home/me/w.pt"]}), "01_alpha/t")
    with pytest.raises(ValueError, match="timestamps"):
        results.write_results(
            pd.DataFrame({"model": ["a"], "when": pd.to_datetime(["2024-01-01"])}), "01_alpha/t"
        )
    with pytest.raises(ValueError, match="duplicate keys"):
        results.write_results(
            pd.DataFrame({"model": ["a", "a"], "ap": [1.0, 2.0]}), "01_alpha/t", keys=["model"]
        )
    with pytest.raises(ValueError, match="relative, no .csv"):
        results.write_results(pd.DataFrame({"model": ["a"]}), "../t")


def test_vocabulary_markdown():
    lines = results.vocabulary_markdown().splitlines()
    assert len(lines) == 2 + len(results.VOCABULARY) == 23
    assert lines[2] == "| `model` | detector or backbone name as registered in yolocomp.registry |"
    assert [line.split("`")[1] for line in lines[2:]] == results.COLUMNS


def test_write_needs_parameters_first(env, monkeypatch):
    monkeypatch.setattr(params, "_RUN", None)
    with pytest.raises(params.ParameterError, match="call workbook.parameters"):
        results.write_results(_table(), "01_alpha/t")


def test_smoke_never_writes_committed_results(env, monkeypatch):
    monkeypatch.delenv("YOLOCOMP_RESULTS")
    monkeypatch.setenv("YOLOCOMP_ROOT", str(env))
    assert results.results_root("smoke") == env / "results" / "runs" / "smoke" / "results"
    assert results.results_root("small") == env / "results"
    params.parameters(OK, dict(NS, PROFILE="smoke"))
    p = results.write_results(_table(), "01_alpha/t")
    assert p == env / "results" / "runs" / "smoke" / "results" / "01_alpha" / "t.csv"
    assert list(results.list_results(env / "results")) == []  # runs/ is not a results table
    assert results.read_results("01_alpha/t")["params"].tolist() == [20, 30, 40, 10]


def test_read_and_list(env):
    params.parameters(OK, dict(NS))
    results.write_results(_table(), "02_b/second")
    results.write_results(_table(), "01_a/first")
    assert results.list_results() == [
        env / "results" / "01_a" / "first.csv",
        env / "results" / "02_b" / "second.csv",
    ]
    df = results.read_results("01_a/first", profile="small")
    assert df["model"].tolist() == ["a", "a", "b", "b"] and np.isnan(df["ap50"][0])
    with pytest.raises(FileNotFoundError, match="run its notebook first"):
        results.read_results("01_a/missing")


# -- artefact cache --


def test_artefact_built_once_and_keyed_by_config(env):
    calls = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "data.txt").write_text("hello")

    a = cache.artefact("toy", {"n": 1, "name": "x"}, build)
    b = cache.artefact("toy", {"name": "x", "n": 1}, build)  # same config, other key order
    assert a == b and len(calls) == 1 and calls[0] != a
    assert a.parent == env / "cache" / "toy" and len(a.name) == 16
    assert (a / "data.txt").read_text() == "hello"
    assert json.loads((a / cache.CONFIG).read_text()) == {"n": 1, "name": "x"}
    assert cache.lookup("toy", {"n": 1, "name": "x"}) == a
    assert cache.lookup("toy", {"n": 2, "name": "x"}) is None
    c = cache.artefact("toy", {"n": 2, "name": "x"}, build)
    assert c != a and len(calls) == 2


def test_failed_build_leaves_nothing_and_is_retried(env):
    def bad(d: Path) -> None:
        (d / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.artefact("toy", {"n": 1}, bad)
    assert cache.lookup("toy", {"n": 1}) is None
    assert [p.name for p in (env / "cache" / "toy").iterdir() if not p.name.endswith(".lock")] == []
    out = cache.artefact("toy", {"n": 1}, lambda d: (d / "ok").write_text("y"))
    assert sorted(p.name for p in out.iterdir()) == sorted([cache.CONFIG, cache.MARKER, "ok"])


def test_killed_build_is_rebuilt(env):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from yolocomp.workbook.cache import artefact\n"
        "def build(d):\n"
        "    (d / 'half').write_text('x')\n"
        "    print('building', flush=True)\n"
        "    time.sleep(60)\n"
        "artefact('toy', {'n': 1}, build)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout.readline().strip() == "building"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert cache.lookup("toy", {"n": 1}) is None
    t0 = time.monotonic()
    out = cache.artefact("toy", {"n": 1}, lambda d: (d / "full").write_text("y"))
    assert time.monotonic() - t0 < 5  # the dead builder's lock did not block us
    assert sorted(p.name for p in out.iterdir()) == sorted([cache.CONFIG, cache.MARKER, "full"])
    assert not list((env / "cache" / "toy").glob(".*.tmp-*"))  # the killed build's leftovers are gone


def test_concurrent_requests_build_once(env):
    calls = []

    def slow(d: Path) -> None:
        calls.append(1)
        time.sleep(0.3)
        (d / "f").write_text("z")

    got = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.artefact("toy", {"k": 0}, slow))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(got)) == 1 and len(got) == 3


def test_resumable_artefact_keeps_what_a_killed_build_left(env):
    calls = []

    def killed(folder):
        (folder / "last.pt").write_text("epoch 1")
        raise KeyboardInterrupt

    def resumed(folder):
        calls.append((folder / "last.pt").read_text())
        (folder / "best.pt").write_text("done")

    with pytest.raises(KeyboardInterrupt):
        cache.artefact("train", {"a": 1}, killed, resumable=True)
    assert cache.lookup("train", {"a": 1}) is None
    out = cache.artefact("train", {"a": 1}, resumed, resumable=True)
    assert calls == ["epoch 1"] and (out / "best.pt").read_text() == "done"
    assert cache.lookup("train", {"a": 1}) == out
