"""Published figures of the five seed projects (shared/seeds/), one row per printed number.

``published.csv`` columns:

* ``seed`` (SPURS, HALO, GUMP, ANDREY; TAN's README has no tables), ``table`` (short id), ``row`` (1-based data row of
  that table), ``column`` (header as printed; ``[part]`` appended when a cell holds several numbers, e.g. speed
  ``inference/NMS/total``);
* ``value``: the number exactly as printed (markdown removed, unit suffix split off; ANDREY's ``8, 713, 766`` and
  ``0.379 ± 0.003`` kept whole); ``number``: its numeric value (the mean for ``±`` cells); ``unit`` (``M``, ``MB``,
  ``ms``, ``s``, ``fps``, ``GFLOPS``, ``count``, ``MACs``, ``%``, ``fraction`` ...) and ``quantity`` (params, macs,
  gflops, storage, latency, fps, map, map50, map50_95, prune_ratio, ...);
* ``dataset``, ``model``, ``method``, ``setting``: the row's context; ``source``: seed file, line of the table and
  the heading above it.

How the seeds counted (M = 2**20 or 1e6, MACs by which thop release, ...) is in shared/reference/arch-anchors.md §3
and in :mod:`yolocomp.models.zoo`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CSV = Path(__file__).with_name("published.csv")
_STR = ["seed", "table", "column", "value", "unit", "quantity", "dataset", "model", "method", "setting", "source"]


def published(seed: str | None = None, table: str | None = None) -> pd.DataFrame:
    """The published figures, optionally only one seed's (``"ANDREY"``) and/or one table's (``"voc2007"``).
    Text columns are strings (empty where the README gives nothing), ``row`` int, ``number`` float."""
    df = pd.read_csv(CSV, dtype={c: str for c in _STR} | {"row": int, "number": float}, keep_default_na=False)
    for key, want in (("seed", seed), ("table", table)):
        if want is not None:
            if want not in set(df[key]):
                raise KeyError(f"no {key} {want!r} in {CSV.name}; known: {', '.join(sorted(set(df[key])))}")
            df = df[df[key] == want]
    return df.reset_index(drop=True)
