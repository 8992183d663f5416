"""Finding notebooks: ids, bands, run order and ``--only`` selection."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from yolocomp.workbook.params import notebooks_root

_BAND = re.compile(r"^\d\d_")


def discover(root: Path | None = None) -> list[str]:
    """Notebook ids under ``root`` (default :func:`notebooks_root`) in run order: band folders ``01_*``
    ... ``05_*`` in name order (notebooks inside sorted by name), then top-level notebooks such as
    ``00_overview``, which summarise all bands and therefore run last."""
    root = Path(root) if root is not None else notebooks_root()
    ids = []
    for band in sorted(p for p in root.iterdir() if p.is_dir() and _BAND.match(p.name)):
        ids += [f"{band.name}/{nb.stem}" for nb in sorted(band.glob("*.ipynb"))]
    ids += [nb.stem for nb in sorted(root.glob("*.ipynb"))]
    return ids


def band(notebook_id: str) -> str:
    """The band folder of a notebook id; a top-level notebook is its own band."""
    return notebook_id.split("/", 1)[0]


def bands(ids: list[str]) -> list[list[str]]:
    """``ids`` grouped into consecutive bands, keeping their order (the runner runs band after band)."""
    groups: list[list[str]] = []
    for nid in ids:
        if groups and band(groups[-1][0]) == band(nid):
            groups[-1].append(nid)
        else:
            groups.append([nid])
    return groups


def select(ids: list[str], patterns: list[str]) -> list[str]:
    """The ids matching any fnmatch ``pattern``, either as a whole or through one of their folder prefixes
    (``03_pruning`` selects the band, as do ``03_pruning/*`` and ``*``)."""

    def matches(nid: str, pat: str) -> bool:
        parts = nid.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatchcase(p, pat) for p in prefixes)

    return [nid for nid in ids if any(matches(nid, pat) for pat in patterns)]
