"""Content-addressed artefact cache: generated datasets, trained weights, anything a later notebook reuses.

An artefact is a folder ``cache_dir()/<kind>/<sha256(canonical json of config)[:16]>``. It is built into a
temp folder beside it and renamed into place only when complete, so a killed build never looks finished. A
``fcntl.flock`` on ``<hash>.lock`` keeps two processes (parallel notebooks) from building the same artefact at
once; the kernel drops the lock when its holder dies, so a killed builder leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from yolocomp.paths import cache_dir

MARKER = ".complete"
CONFIG = ".config.json"


def canonical_json(config: dict) -> str:
    """``config`` as sorted, compact JSON (``Path`` values as strings); non-JSON values raise TypeError."""

    def default(value: object) -> object:
        if isinstance(value, Path):
            return str(value)
        raise TypeError(
            f"artefact config value {value!r} ({type(value).__name__}) is not JSON; pass plain data"
        )

    return json.dumps(
        config, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=default, allow_nan=False
    )


def artefact_dir(kind: str, config: dict) -> Path:
    """Where the artefact of ``kind`` built from ``config`` lives (it may not exist yet)."""
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"artefact kind {kind!r} must be a plain folder name")
    digest = hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:16]
    return cache_dir() / kind / digest


def lookup(kind: str, config: dict) -> Path | None:
    """The completed artefact folder for ``(kind, config)``, or None."""
    path = artefact_dir(kind, config)
    return path if (path / MARKER).is_file() else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def artefact(kind: str, config: dict, build: Callable[[Path], None], resumable: bool = False) -> Path:
    """The artefact folder for ``(kind, config)``, calling ``build(folder)`` to fill it first if it is not cached.

    ``config`` must hold every input that changes the result (it is hashed as canonical JSON and stored in the
    folder as ``.config.json``). By default ``build`` writes into a fresh temp folder that is renamed into place
    when it returns, so an exception or a kill leaves nothing that counts as built. With ``resumable`` (long
    trainings) ``build`` gets the final folder itself, with whatever a killed earlier build left there, and must
    continue from it (e.g. ``train(..., resume=True)``); the folder only counts as built once ``build`` returns.
    """
    final = artefact_dir(kind, config)
    if (final / MARKER).is_file():
        return final
    with _locked(final):
        if (final / MARKER).is_file():  # another process built it while we waited for the lock
            return final
        # Leftovers of killed builds: holding the lock means nobody else is writing them.
        for stale in final.parent.glob(f".{final.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if resumable:
            final.mkdir(parents=True, exist_ok=True)
            build(final)
            (final / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
            (final / MARKER).write_text("")
            return final
        if final.exists():
            shutil.rmtree(final)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        tmp.mkdir()
        try:
            build(tmp)
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
            (tmp / MARKER).write_text("")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final
