"""Notebook parameters: the tagged ``parameters`` cell, per-profile diffs, and strict overrides.

A notebook declares its defaults as UPPER_CASE literals in its one ``parameters`` cell (those defaults
*are* the ``small`` profile). Each profile is a YAML diff against them in
``<profiles dir>/<notebook id>/<profile>.yaml``. Precedence: notebook defaults <- profile file <- overrides
(papermill ``-p``/``-y`` injection or names edited interactively). Unknown names and wrong types raise
:class:`~yolocomp.errors.ParameterError` because papermill itself only warns about them.
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from yolocomp.errors import ParameterError
from yolocomp.paths import package_dir, repo_root

PROFILES = ("smoke", "small", "paper")
# papermill writes its injected cell as this comment followed by one ``NAME = literal`` line per parameter.
INJECTED_HEADER = "# Parameters"


def notebooks_root() -> Path:
    """Folder holding ``<band>/<stem>.ipynb`` (``YOLOCOMP_NOTEBOOKS`` overrides; default
    ``<root>/notebooks``)."""
    env = os.environ.get("YOLOCOMP_NOTEBOOKS")
    return Path(env).resolve() if env else repo_root() / "notebooks"


def profiles_root() -> Path:
    """Folder of profile diffs (``YOLOCOMP_PROFILES`` overrides; default ``yolocomp/workbook/profiles``)."""
    env = os.environ.get("YOLOCOMP_PROFILES")
    return Path(env).resolve() if env else package_dir() / "workbook" / "profiles"


def notebook_path(notebook_id: str) -> Path:
    """``notebooks_root()/<notebook_id>.ipynb``; raises ParameterError when it does not exist."""
    path = notebooks_root() / f"{notebook_id}.ipynb"
    if not path.is_file():
        raise ParameterError(f"{path}: no such notebook (notebook id {notebook_id!r})")
    return path


def profile_path(notebook_id: str, profile: str) -> Path:
    """Where the ``profile`` diff of ``notebook_id`` lives (the file may not exist)."""
    return profiles_root() / notebook_id / f"{profile}.yaml"


def _parameters_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = [
        c
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise ParameterError(
            f"{path}: expected exactly one code cell tagged 'parameters', found {len(cells)}"
        )
    src = cells[0]["source"]
    return "".join(src) if isinstance(src, list) else src


def parse_assignments(source: str, where: str) -> dict[str, object]:
    """``NAME = <literal>`` statements of ``source`` as a dict; anything else raises ParameterError
    ``where:line: ...`` (line counted inside ``source``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{where}:{exc.lineno}: syntax error: {exc.msg}") from None
    values: dict[str, object] = {}
    for stmt in tree.body:
        if not (
            isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
        ):
            raise ParameterError(
                f"{where}:{stmt.lineno}: only `NAME = <literal>` assignments are allowed here"
            )
        name = stmt.targets[0].id
        try:
            values[name] = ast.literal_eval(stmt.value)
        except ValueError:
            raise ParameterError(
                f"{where}:{stmt.lineno}: {name} must be a literal (number, string, bool, None, list, tuple, "
                "dict); derive values in the next cell"
            ) from None
    return values


def declared(notebook_path: str | os.PathLike) -> dict[str, object]:
    """The defaults of the notebook's ``parameters`` cell, in cell order. Line numbers in errors count
    inside that cell."""
    path = Path(notebook_path)
    return parse_assignments(_parameters_cell(path), f"{path} (parameters cell)")


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_type(name: str, default: object, value: object, where: str) -> object:
    """``value`` converted to the default's type, or ParameterError. ``None`` defaults accept anything; an
    int is accepted (and converted) where a float is expected; a bool is never an int."""
    if default is None:
        return value
    expected = type(default)
    if expected is float and type(value) is int:
        return float(value)
    if type(value) is not expected and not (expected is tuple and type(value) is list):
        raise ParameterError(
            f"{where}: parameter {name} expects {expected.__name__}, got {_type_name(value)} ({value!r})"
        )
    return tuple(value) if expected is tuple else value


def _profile_diff(notebook_id: str, profile: str) -> tuple[dict[str, object], dict[str, int], Path]:
    """The profile file's mapping, and each key's line for error messages."""
    path = profile_path(notebook_id, profile)
    if not path.is_file():
        raise ParameterError(f"{path}: missing profile file (write `{{}}` for no changes)")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParameterError(f"{path}:1: a profile file must be a mapping of NAME: value")
    lines = {}
    if isinstance(node, yaml.MappingNode):
        lines = {k.value: k.start_mark.line + 1 for k, _ in node.value}
    return data, lines, path


def resolve(
    notebook_id: str,
    profile: str,
    overrides: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Resolved parameters of ``notebook_id``: notebook defaults <- ``profile`` file <- ``overrides``.

    ``defaults`` (the notebook's declared values) is read from the notebook when not given. The result is in
    declaration order and has ``PROFILE == profile``. Raises ParameterError for an unknown profile, unknown
    names (listing the valid ones) and values whose type differs from the default's.
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    if defaults is None:
        defaults = declared(notebook_path(notebook_id))
    valid = ", ".join(defaults)
    diff, lines, ppath = _profile_diff(notebook_id, profile)
    out = dict(defaults)
    for name, value in diff.items():
        where = f"{ppath}:{lines.get(name, 1)}"
        if name not in defaults:
            raise ParameterError(f"{where}: unknown parameter {name!r} for {notebook_id}; valid: {valid}")
        if name == "PROFILE":
            raise ParameterError(f"{where}: a profile file must not set PROFILE")
        out[name] = _check_type(name, defaults[name], value, where)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ParameterError(f"{notebook_id}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    for name, value in overrides.items():
        out[name] = _check_type(name, defaults[name], value, f"{notebook_id} (override)")
    if overrides.get("PROFILE", profile) != profile:
        raise ParameterError(
            f"{notebook_id}: PROFILE override {overrides['PROFILE']!r} disagrees with profile {profile!r}"
        )
    if "PROFILE" in defaults:
        out["PROFILE"] = profile
    return out


class Params(Mapping):
    """Read-only resolved parameters: ``P.SEED`` and ``P["SEED"]``; ``P.profile``, ``P.notebook_id``."""

    def __init__(self, notebook_id: str, profile: str, values: Mapping[str, object]):
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "notebook_id", notebook_id)
        object.__setattr__(self, "profile", profile)

    def __getitem__(self, name: str) -> object:
        return self._values[name]

    def __getattr__(self, name: str) -> object:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"{self.notebook_id} has no parameter {name!r}; valid: {', '.join(self._values)}"
            ) from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Params is read-only; change the parameters cell or pass -p NAME VALUE")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Params[{self.notebook_id}, {self.profile}]({body})"


@dataclass(frozen=True)
class RunContext:
    """What :func:`parameters` records for provenance: which notebook, with what, since when."""

    notebook_id: str
    params: Params
    started_monotonic: float
    started_wall: float


_RUN: RunContext | None = None


def current_run() -> RunContext | None:
    """The context recorded by the last :func:`parameters` call in this process, or None."""
    return _RUN


def _history(namespace: Mapping[str, object]) -> list[str]:
    try:
        ip = get_ipython()  # type: ignore[name-defined]  # a builtin inside IPython only
        return list(ip.history_manager.input_hist_raw)
    except NameError:
        return list(namespace.get("In", []) or [])


def injected(namespace: Mapping[str, object], parameters_source: str | None = None) -> dict[str, object]:
    """Names and values of papermill's injected cell, found in the kernel's input history (the last
    cell starting with ``# Parameters`` that is not the notebook's own parameters cell); ``{}`` outside
    papermill."""
    own = (parameters_source or "").strip()
    for i, src in reversed(list(enumerate(_history(namespace)))):
        if src.lstrip().startswith(INJECTED_HEADER) and src.strip() != own:
            return parse_assignments(src, f"injected parameters (input cell {i})")
    return {}


def parameters(notebook_id: str, namespace: dict) -> Params:
    """Resolve this notebook's parameters; call as ``P = workbook.parameters("<band>/<stem>", globals())``.

    Overrides are papermill's injected names (unknown ones raise ParameterError) plus declared names whose
    value in ``namespace`` differs from the notebook file's default (edited interactively). The result is
    ``resolve(notebook_id, namespace["PROFILE"], overrides)``. Records the run context used by
    :func:`yolocomp.workbook.results.write_results` for provenance.
    """
    global _RUN
    path = notebook_path(notebook_id)
    defaults = declared(path)
    inj = injected(namespace, _parameters_cell(path))
    unknown = sorted(set(inj) - set(defaults))
    if unknown:
        raise ParameterError(
            f"{path}: injected parameter(s) {', '.join(unknown)} not declared in the parameters "
            f"cell; valid: {', '.join(defaults)}"
        )
    overrides = dict(inj)
    for name, default in defaults.items():
        if name in namespace and name not in overrides and namespace[name] != default:
            overrides[name] = namespace[name]
    if "PROFILE" not in defaults:
        raise ParameterError(f"{path}: the parameters cell must declare PROFILE")
    profile = overrides.get("PROFILE", defaults["PROFILE"])
    values = resolve(notebook_id, profile, overrides, defaults)
    params = Params(notebook_id, profile, values)
    _RUN = RunContext(notebook_id, params, time.monotonic(), time.time())
    return params


def latency_options(params) -> dict:
    """The latency keywords (``threads``, ``warmup``, ``iters``, ``rounds`` of the library's latency measurements)
    from a notebook's ``LATENCY_THREADS`` (0 = the torch default), ``LATENCY_WARMUP``, ``LATENCY_ITERS`` and
    ``LATENCY_ROUNDS``."""
    return {"threads": params.LATENCY_THREADS or None, "warmup": params.LATENCY_WARMUP,
            "iters": params.LATENCY_ITERS, "rounds": params.LATENCY_ROUNDS}
