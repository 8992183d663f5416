"""Results tables: one deterministic CSV per key plus a ``.meta.json`` provenance sidecar.

The CSV is the artefact (byte-identical across runs with the same inputs); everything that varies between runs
(timestamps, versions, machine, wall time) goes into the sidecar, which tests and diffs ignore.

CSV format: columns of :data:`VOCABULARY` first in that order, then the others as given; rows sorted by the
key columns; floats written with ``%.6g`` (six significant digits); NaN written as an empty field; ``\\n``
line ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from yolocomp.errors import ParameterError
from yolocomp.fileio import atomic_write
from yolocomp.paths import repo_root, results_dir
from yolocomp.workbook.params import current_run

FLOAT_FORMAT = "%.6g"

# The shared column vocabulary, in table order. Method-specific columns extend it (they come after these).
VOCABULARY: list[tuple[str, str]] = [
    ("model", "detector or backbone name as registered in yolocomp.registry"),
    ("dataset", "dataset name as registered in yolocomp.registry"),
    ("profile", "run profile: smoke, small or paper"),
    ("method", "compression method (pruner, quantisation scheme, distillation loss); 'baseline' for none"),
    ("setting", "the method's setting that varies along a table (ratio, bit width, ...), as text"),
    ("seeds", "number of seeds the metric columns are averaged over"),
    ("ap50", "pycocotools AP@0.5, mean over seeds"),
    ("ap", "pycocotools AP@0.5:0.95, mean over seeds"),
    ("ap50_std", "standard deviation of ap50 over seeds"),
    ("ap_std", "standard deviation of ap over seeds"),
    ("ap50_seedstyle", "the seed repositories' own 101-point AP50, for comparison with their READMEs"),
    ("params", "parameter count"),
    ("params_ratio", "params of this model / params of its baseline"),
    ("macs_conv", "multiply-adds of conv and linear layers, counted by yolocomp"),
    ("macs_seed", "multiply-adds as the seed repositories count them (thop)"),
    ("storage_mib", "size of the stored weights in MiB"),
    ("latency_ms", "median forward latency per batch in ms (hardware-dependent)"),
    ("device", "device the latency was measured on"),
    ("batch", "batch size of the latency measurement"),
    ("img_size", "square input size in pixels"),
    ("speedup", "baseline latency / this latency, measured in the same run"),
]
COLUMNS: list[str] = [name for name, _ in VOCABULARY]
# Columns that identify a row; the present ones are the default sort key.
KEY_COLUMNS: list[str] = ["model", "dataset", "method", "setting", "device", "batch", "img_size"]

_ABS_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "pycocotools", "thop", "yolocomp")


def vocabulary_markdown() -> str:
    """:data:`VOCABULARY` as a Markdown table (column | meaning), for ``results/README.md``."""
    rows = ["| column | meaning |", "|---|---|"] + [f"| `{name}` | {text} |" for name, text in VOCABULARY]
    return "\n".join(rows) + "\n"


def results_root(profile: str) -> Path:
    """Folder the tables of ``profile`` go to: ``YOLOCOMP_RESULTS`` when set, else the committed
    ``results/``; except that ``smoke`` never writes into the committed tables: without ``YOLOCOMP_RESULTS``
    it goes to ``results/runs/smoke/results/``."""
    if profile == "smoke" and not os.environ.get("YOLOCOMP_RESULTS"):
        return repo_root() / "results" / "runs" / "smoke" / "results"
    return results_dir()


def _check_key(key: str) -> None:
    parts = key.split("/")
    if key.startswith("/") or key.endswith(".csv") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"results key {key!r} must look like '<band>/<name>' (relative, no .csv)")


def _ordered(df: pd.DataFrame, keys: list[str] | None) -> pd.DataFrame:
    """Columns in vocabulary order then as given; rows stably sorted by ``keys`` (default: the present
    KEY_COLUMNS)."""
    if df.columns.duplicated().any():
        raise ValueError(f"duplicate columns: {sorted(df.columns[df.columns.duplicated()])}")
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS]
    df = df[cols]
    if keys is None:
        keys = [c for c in KEY_COLUMNS if c in df.columns]
    else:
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise ValueError(f"key columns {missing} not in table columns {cols}")
        dup = df.duplicated(subset=keys, keep=False)
        if dup.any():
            raise ValueError(f"rows with duplicate keys {keys}:\n{df[dup][keys].to_string(index=False)}")
    if keys:
        df = df.sort_values(keys, kind="mergesort", na_position="last")
    return df.reset_index(drop=True)


def _refuse_unstable(df: pd.DataFrame) -> None:
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]) or pd.api.types.is_timedelta64_dtype(df[col]):
            raise ValueError(f"column {col!r} holds timestamps; put wall-clock data in the .meta.json")
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            for i, v in enumerate(df[col]):
                if isinstance(v, (str, os.PathLike)) and _ABS_PATH.match(os.fspath(v)):
                    raise ValueError(
                        f"column {col!r} row {i} holds an absolute path {os.fspath(v)!r}; "
                        "results must not depend on where the checkout lives"
                    )


def to_csv_bytes(df: pd.DataFrame, keys: list[str] | None = None) -> bytes:
    """The exact bytes :func:`write_results` writes for ``df`` (see the module docstring for the format)."""
    _refuse_unstable(df)
    text = _ordered(df, keys).to_csv(index=False, float_format=FLOAT_FORMAT, na_rep="", lineterminator="\n")
    return text.encode("utf-8")


def _git() -> dict[str, object]:
    def run(*args: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", "-C", str(repo_root()), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    # the tables a run rewrites are its output, not its provenance: only code, notebooks and profiles count as dirty
    status = run("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return {
        "commit": commit.strip() if commit else None,
        "dirty": None if status is None else bool(status.strip()),
    }


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device() -> dict[str, object]:
    import torch  # imported here so that writing a table does not pay for torch unless provenance needs it

    cuda = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    return {"cpu": _cpu_name(), "cuda": cuda, "torch_threads": torch.get_num_threads()}


def write_results(df: pd.DataFrame, key: str, keys: list[str] | None = None) -> Path:
    """Write ``df`` to ``results_root(profile)/<key>.csv`` atomically, provenance to ``<key>.meta.json``.

    ``key`` is ``"<band>/<name>"``; ``keys`` are the columns that identify a row (default: the present
    :data:`KEY_COLUMNS`; given explicitly they must be unique). Needs a prior ``workbook.parameters(...)``
    call in this process (it supplies profile, parameters and start time). Refuses timestamp columns and
    absolute paths. A ``profile`` column holding the run's profile is added when absent. Returns the CSV path.
    """
    run = current_run()
    if run is None:
        raise ParameterError("write_results needs the run context: call workbook.parameters(...) first")
    _check_key(key)
    profile = run.params.profile
    if "profile" not in df.columns:
        df = df.assign(profile=profile)
    elif set(df["profile"].unique()) != {profile}:
        raise ValueError(f"{key}: the profile column holds {sorted(df['profile'].unique())}, "
                         f"but this run's profile is {profile!r}")
    data = to_csv_bytes(df, keys)
    path = results_root(profile) / f"{key}.csv"
    atomic_write(path, data)
    meta = {
        "key": key,
        "notebook_id": run.notebook_id,
        "profile": run.params.profile,
        "seed": run.params.get("SEED"),
        "parameters": dict(run.params),
        "git": _git(),
        "versions": _versions(),
        "device": _device(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run.started_wall)),
        "wall_s": round(time.monotonic() - run.started_monotonic, 3),
        "csv_sha256": hashlib.sha256(data).hexdigest(),
        "rows": len(df),
        "columns": list(_ordered(df, keys).columns),
    }
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(path.with_suffix(".meta.json"), text.encode("utf-8"))
    return path


def read_results(key: str, profile: str | None = None) -> pd.DataFrame:
    """The table written under ``key`` for ``profile`` (default: the current run's profile, else
    ``small``)."""
    _check_key(key)
    if profile is None:
        run = current_run()
        profile = run.params.profile if run else "small"
    path = results_root(profile) / f"{key}.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no results table {key!r} for profile {profile!r}; run its notebook first"
        )
    return pd.read_csv(path)


def list_results(root: Path | None = None) -> list[Path]:
    """All ``*.csv`` tables under ``root`` (default: ``results_dir()``), sorted, skipping ``runs/`` (logs
    and smoke outputs)."""
    root = Path(root) if root is not None else results_dir()
    return sorted(p for p in root.rglob("*.csv") if "runs" not in p.relative_to(root).parts[:-1])
