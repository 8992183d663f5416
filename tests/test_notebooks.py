"""Every notebook in the repository runs end to end in the smoke profile and writes a well-formed table; the paper
profile without its data stops within seconds, saying what to put where.

The notebooks are executed exactly as the runner executes them (papermill, kernel ``python3``), with results and the
artefact cache redirected into a temp folder shared by the session, so later notebooks reuse earlier artefacts.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import papermill as pm
import pytest
from yolocomp.workbook.notebooks import discover
from yolocomp.workbook.params import notebook_path
from yolocomp.workbook.results import COLUMNS

NOTEBOOKS = discover()
pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbook")
    env = {"YOLOCOMP_RESULTS": str(root / "results"), "YOLOCOMP_CACHE": str(root / "cache")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)   # the kernel inherits the environment of this process
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _run(notebook_id: str, out_dir, **parameters):
    path = notebook_path(notebook_id)
    return pm.execute_notebook(str(path), str(out_dir / (notebook_id.replace("/", "__") + ".ipynb")),
                               parameters=parameters, kernel_name="python3", cwd=str(path.parent),
                               progress_bar=False, execution_timeout=600)


@pytest.mark.parametrize("notebook_id", NOTEBOOKS)
def test_runs_in_smoke_profile(notebook_id, workspace):
    before = {p: p.stat().st_mtime_ns for p in (workspace / "results").rglob("*.csv")}
    _run(notebook_id, workspace, PROFILE="smoke")
    written = [p for p in (workspace / "results").rglob("*.csv") if before.get(p) != p.stat().st_mtime_ns]
    assert written, f"{notebook_id} wrote no results table"
    for csv in written:
        df = pd.read_csv(csv)
        assert len(df) > 0, csv
        assert set(df["profile"]) == {"smoke"}, csv
        assert csv.with_suffix(".meta.json").is_file(), csv
        ours = [c for c in df.columns if c in COLUMNS]
        assert ours == [c for c in COLUMNS if c in df.columns], f"{csv}: shared columns out of order"


def test_paper_profile_without_data_fails_fast_and_says_what_to_do(workspace, tmp_path):
    start = time.monotonic()
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run("01_datasets/02_dataset_formats", tmp_path, PROFILE="paper", DATA_ROOT=str(tmp_path / "nothing"))
    elapsed = time.monotonic() - start
    msg = str(err.value)
    assert "DatasetMissing" in msg and "'voc2007'" in msg
    assert "Expected layout" in msg and "voc2007/" in msg and "voc2007.data" in msg
    assert "python -m yolocomp.data.convert.voc" in msg
    assert elapsed < 60, f"took {elapsed:.0f} s"   # kernel start dominates; the check itself takes milliseconds
