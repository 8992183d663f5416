"""Where things live: repository root, results, artefact cache, user datasets.

Every location can be moved with an environment variable so that tests, parallel runs and cluster jobs do not
write into each other's folders.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout that holds ``notebooks/`` and ``results/`` (``YOLOCOMP_ROOT`` overrides).

    Found from the installed package (editable installs live in ``<root>/lib/yolocomp``), else from the
    working directory upwards.
    """
    env = os.environ.get("YOLOCOMP_ROOT")
    if env:
        return Path(env).resolve()
    for start in (_PKG, Path.cwd().resolve()):
        for p in (start, *start.parents):
            if (p / "notebooks").is_dir() and (p / "pyproject.toml").is_file():
                return p
    raise FileNotFoundError(
        "cannot find the yolocomp checkout (a folder with notebooks/ and pyproject.toml); set YOLOCOMP_ROOT")


def package_dir() -> Path:
    """The installed ``yolocomp`` package folder (holds cfgs, profiles and reference data)."""
    return _PKG


def results_dir() -> Path:
    """Root of the results tables (``YOLOCOMP_RESULTS`` overrides; default ``<root>/results``)."""
    env = os.environ.get("YOLOCOMP_RESULTS")
    return Path(env).resolve() if env else repo_root() / "results"


def cache_dir() -> Path:
    """Artefact cache: generated datasets, trained weights (``YOLOCOMP_CACHE`` overrides; default ``<root>/.cache``)."""
    env = os.environ.get("YOLOCOMP_CACHE")
    return Path(env).resolve() if env else repo_root() / ".cache"


def data_root(value: str | os.PathLike | None = None) -> Path:
    """User datasets for the ``paper`` profile: ``value`` (a notebook's DATA_ROOT), else ``YOLOCOMP_DATA_ROOT``,
    else ``<root>/data``. Relative paths are taken from the repository root."""
    raw = value or os.environ.get("YOLOCOMP_DATA_ROOT") or "data"
    p = Path(raw).expanduser()
    return p if p.is_absolute() else repo_root() / p
