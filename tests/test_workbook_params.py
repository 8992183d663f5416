"""Notebook parameters: parsing the parameters cell, profile diffs, strict overrides, papermill injection."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest
from yolocomp.errors import ParameterError
from yolocomp.workbook import params as wp

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
OK = "01_alpha/ok"
OK_DEFAULTS = {"PROFILE": "small", "SEED": 0, "IMG_SIZE": 320, "LR": 0.01, "MODEL": "tiny", "EXTRA": None}


def _notebook(path: Path, params_src: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("x"), cell]
    nbformat.write(nb, path)
    return path


def test_declared_reads_literals_in_order():
    got = wp.declared(FIXTURES / "tree" / "01_alpha" / "ok.ipynb")
    assert got == OK_DEFAULTS
    assert list(got) == list(OK_DEFAULTS)


@pytest.mark.parametrize(
    "src, line, words",
    [
        ("A = 1\nB = A * 2\n", 2, "B must be a literal"),
        ("A = 1\nimport os\n", 2, "only `NAME = <literal>`"),
        ("A, B = 1, 2\n", 1, "only `NAME = <literal>`"),
        ("A = 1\nB = (\n", 2, "syntax error"),
    ],
)
def test_declared_rejects_non_literals_with_line(tmp_path, src, line, words):
    path = _notebook(tmp_path / "nb.ipynb", src)
    with pytest.raises(ParameterError) as err:
        wp.declared(path)
    assert f"{path} (parameters cell):{line}:" in str(err.value)
    assert words in str(err.value)


def test_declared_needs_exactly_one_parameters_cell(tmp_path):
    path = _notebook(tmp_path / "nb.ipynb", "A = 1")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("B = 2", metadata={"tags": ["parameters"]}))
    nbformat.write(nb, path)
    with pytest.raises(ParameterError, match="exactly one code cell tagged 'parameters', found 2"):
        wp.declared(path)


def test_resolve_applies_profile_diff(env):
    assert wp.resolve(OK, "small", {}) == OK_DEFAULTS
    smoke = wp.resolve(OK, "smoke", {})
    assert smoke == {**OK_DEFAULTS, "PROFILE": "smoke", "IMG_SIZE": 64, "LR": 1.0}
    assert type(smoke["LR"]) is float  # the profile file's int 1 is converted to the declared float
    assert wp.resolve(OK, "paper", {"SEED": 7}) == {
        **OK_DEFAULTS,
        "PROFILE": "paper",
        "IMG_SIZE": 640,
        "SEED": 7,
    }


def test_resolve_unknown_override_lists_valid_names(env):
    with pytest.raises(ParameterError) as err:
        wp.resolve(OK, "small", {"IMG_SZ": 64})
    assert "IMG_SZ" in str(err.value)
    assert "valid: PROFILE, SEED, IMG_SIZE, LR, MODEL, EXTRA" in str(err.value)


@pytest.mark.parametrize(
    "name, value, expected, got",
    [
        ("IMG_SIZE", "big", "int", "str"),
        ("SEED", True, "int", "bool"),
        ("LR", "0.1", "float", "str"),
        ("MODEL", 3, "str", "int"),
    ],
)
def test_resolve_type_errors_name_parameter_and_types(env, name, value, expected, got):
    with pytest.raises(ParameterError) as err:
        wp.resolve(OK, "small", {name: value})
    assert f"parameter {name} expects {expected}, got {got}" in str(err.value)


def test_resolve_accepts_int_for_float_and_anything_for_none(env):
    out = wp.resolve(OK, "small", {"LR": 2, "EXTRA": [1, 2]})
    assert out["LR"] == 2.0 and type(out["LR"]) is float
    assert out["EXTRA"] == [1, 2]


def test_resolve_unknown_profile_lists_profiles(env):
    with pytest.raises(ParameterError, match="unknown profile 'full'; profiles: smoke, small, paper"):
        wp.resolve(OK, "full", {})


def test_profile_file_errors_name_file_and_line(env):
    bad = env / "profiles" / OK / "paper.yaml"
    bad.write_text("IMG_SIZE: 640\nIMGSIZE: 10\n")
    with pytest.raises(ParameterError) as err:
        wp.resolve(OK, "paper", {})
    assert f"{bad}:2: unknown parameter 'IMGSIZE'" in str(err.value)
    assert "valid: PROFILE, SEED" in str(err.value)
    bad.write_text("SEED: 1\nIMG_SIZE: '640'\n")
    with pytest.raises(ParameterError, match=r"paper.yaml:2: parameter IMG_SIZE expects int, got str"):
        wp.resolve(OK, "paper", {})
    bad.unlink()
    with pytest.raises(ParameterError, match="missing profile file"):
        wp.resolve(OK, "paper", {})


def test_parameters_edited_names_and_injected_cell(env):
    ns = dict(OK_DEFAULTS, SEED=5)  # SEED edited interactively
    P = wp.parameters(OK, ns)
    assert P.SEED == 5 and P["SEED"] == 5 and P.profile == "small" and P.notebook_id == OK
    # papermill's injected cell: PROFILE switches profile; IMG_SIZE, although equal to the default, still
    # beats the profile file
    injected = '# Parameters\nPROFILE = "smoke"\nIMG_SIZE = 320\n'
    ns = dict(
        OK_DEFAULTS, PROFILE="smoke", In=["", "PROFILE = 'small'", injected, "from yolocomp import workbook"]
    )
    P = wp.parameters(OK, ns)
    assert dict(P) == {**OK_DEFAULTS, "PROFILE": "smoke", "LR": 1.0}
    assert wp.current_run().params is P
    with pytest.raises(AttributeError, match="read-only"):
        P.SEED = 1
    ns["In"] = ["", '# Parameters\nPROFILE = "smoke"\nBOGUS = 3\n']
    with pytest.raises(ParameterError, match="injected parameter\\(s\\) BOGUS not declared"):
        wp.parameters(OK, ns)


def _execute(env, parameters):
    out = env / "out.ipynb"
    src = FIXTURES / "tree" / f"{OK}.ipynb"
    pm.execute_notebook(
        str(src),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        progress_bar=False,
        cwd=str(src.parent),
        execution_timeout=60,
    )
    return out


def test_papermill_injection_is_seen_by_the_kernel(env):
    _execute(env, {"PROFILE": "smoke", "IMG_SIZE": 320})
    df = pd.read_csv(env / "results" / f"{OK}.csv")
    # smoke.yaml sets IMG_SIZE 64 and LR 1: the injected IMG_SIZE must win although it equals the default
    assert df.to_dict("records") == [{"model": "tiny", "profile": "smoke", "seeds": 0, "ap": 1, "img_size": 320}]
    meta = json.loads((env / "results" / f"{OK}.meta.json").read_text())
    assert meta["parameters"]["IMG_SIZE"] == 320 and meta["profile"] == "smoke"


def test_papermill_unknown_injected_name_fails(env):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _execute(env, {"PROFILE": "smoke", "BOGUS": 3})
    assert err.value.ename == "ParameterError"
    assert "BOGUS" in err.value.evalue
    assert not (env / "results" / f"{OK}.csv").exists()
