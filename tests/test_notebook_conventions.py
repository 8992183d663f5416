"""Every committed notebook follows the workbook conventions (see yolocomp.workbook)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from yolocomp.workbook import params

ROOT = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(ROOT.rglob("*.ipynb")) if ROOT.is_dir() else []
IDS = [
    p.relative_to(ROOT).with_suffix("").as_posix() for p in NOTEBOOKS if ".ipynb_checkpoints" not in p.parts
]
PROFILES_ROOT = Path(params.__file__).parent / "profiles"


@pytest.fixture(autouse=True)
def committed_locations(monkeypatch):
    for var in ("YOLOCOMP_NOTEBOOKS", "YOLOCOMP_PROFILES"):
        monkeypatch.delenv(var, raising=False)


def _nb(nid: str) -> dict:
    return json.loads((ROOT / f"{nid}.ipynb").read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("nid", IDS)
def test_parameters_cell(nid):
    defaults = params.declared(ROOT / f"{nid}.ipynb")  # exactly one tagged cell, literals only
    assert defaults.get("PROFILE") == "small"
    assert all(name.isupper() for name in defaults), f"{nid}: parameter names must be UPPER_CASE"


@pytest.mark.parametrize("nid", IDS)
def test_kernel_and_no_outputs(nid):
    nb = _nb(nid)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(_code_cells(nb)):
        assert cell.get("outputs") == [] and cell.get("execution_count") is None, (
            f"{nid}: code cell {i} has outputs"
        )


@pytest.mark.parametrize("nid", IDS)
def test_profile_files_match_declared_parameters(nid):
    defaults = params.declared(ROOT / f"{nid}.ipynb")
    for profile in params.PROFILES:
        assert (PROFILES_ROOT / nid / f"{profile}.yaml").is_file(), f"missing profiles/{nid}/{profile}.yaml"
        resolved = params.resolve(nid, profile, {}, defaults)  # raises on unknown names or wrong types
        assert resolved["PROFILE"] == profile
    assert params.resolve(nid, "small", {}, defaults) == defaults, (
        "the small profile must be the notebook defaults"
    )


@pytest.mark.parametrize("nid", IDS)
def test_second_code_cell_calls_parameters_with_own_id(nid):
    cells = _code_cells(_nb(nid))
    assert len(cells) >= 2 and "parameters" in cells[0].get("metadata", {}).get("tags", []), (
        f"{nid}: the parameters cell must be the first code cell"
    )
    calls = [
        n
        for n in ast.walk(ast.parse(_source(cells[1])))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == "parameters"
    ]
    assert calls, f"{nid}: second code cell must call workbook.parameters({nid!r}, globals())"
    args = calls[0].args
    assert len(args) == 2 and isinstance(args[0], ast.Constant) and args[0].value == nid
    assert isinstance(args[1], ast.Call) and getattr(args[1].func, "id", None) == "globals"


def test_no_orphan_profiles():
    have = {p.parent.relative_to(PROFILES_ROOT).as_posix() for p in PROFILES_ROOT.rglob("*.yaml")}
    assert sorted(have - set(IDS)) == [], "profile folders without a notebook"
