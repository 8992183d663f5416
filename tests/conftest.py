"""Fixtures shared by the workbook tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

NOTEBOOK_FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """The fixture notebook tree and a writable copy of its profiles; results and cache under tmp_path."""
    profiles = tmp_path / "profiles"
    shutil.copytree(NOTEBOOK_FIXTURES / "profiles", profiles)
    monkeypatch.setenv("YOLOCOMP_NOTEBOOKS", str(NOTEBOOK_FIXTURES / "tree"))
    monkeypatch.setenv("YOLOCOMP_PROFILES", str(profiles))
    monkeypatch.setenv("YOLOCOMP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("YOLOCOMP_CACHE", str(tmp_path / "cache"))
    return tmp_path
