"""The overview: the seeds' published tables with our measured values beside them.

Published figures come from :func:`yolocomp.reference.published` (every number of the five seed READMEs, as printed,
with its source). Ours come from the results tables present under ``results/``; a published cell gets an "ours" value
when some results table holds the same quantity for the same model and setting. Which of our tables answer which
published cells is the list :data:`MATCHERS`: each later notebook adds its matcher when it starts producing numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd

from .reference import published
from .workbook.results import list_results, results_root

# Published model names (as the seed READMEs print them) -> our zoo names.
ALIASES = {
    "YOLOv3": "yolov3", "YOLOv3-Tiny": "yolov3-tiny", "YOLOv3-tiny": "yolov3-tiny", "YOLOv3tiny": "yolov3-tiny",
    "YOLOv4": "yolov4", "YOLOv4-tiny": "yolov4-tiny", "YOLO Nano": "yolo-nano", "YOLO Nano_leaky": "yolo-nano-leaky",
    "YOLOv3-Mobile": "yolov3-mobile", "YOLO Mobile_leaky": "yolov3-mobile-leaky",
    "YOLOv3-mobilenet": "yolov3-mobilenetv3", "YOLOv3-mobilenetv3": "yolov3-mobilenetv3",
    "YOLOv3tiny-mobilenetv3-small": "yolov3tiny-mobilenetv3-small", "GhostNet+YOLOv3": "yolov3-ghostnet",
    "ShuffleNetV2 1.5x": "yolov3-shufflenetv2", "YOLOv3-tiny + SE": "yolov3-tiny-se",
    "YOLOv3-tiny + CBAM": "yolov3-tiny-cbam", "YOLOv3-tiny + ECA": "yolov3-tiny-eca",
}


def collect(profile: str = "small") -> dict[str, pd.DataFrame]:
    """Every results table present for ``profile``: ``{"<band>/<name>": DataFrame}`` (benchmarks excluded)."""
    root = results_root(profile)
    out = {}
    for csv in list_results(root):
        key = csv.relative_to(root).with_suffix("").as_posix()
        if not key.startswith(("bench/", "00_overview/")):
            out[key] = pd.read_csv(csv, dtype=str, keep_default_na=False)
    return out


def _zoo_figures(pub: pd.DataFrame, ours: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Params / MACs / GFLOPS / storage cells answered by ``02_backbones/model_zoo_published`` (the same printed
    figure, recomputed under the seed's counting convention)."""
    zoo = ours.get("02_backbones/model_zoo_published")
    if zoo is None:
        return pub.iloc[:0].assign(ours="", match="", answered_by="")
    z = zoo[zoo["match"] != ""][["model", "published", "ours", "match"]]
    z = z.assign(key=z["published"].map(_bare)).drop_duplicates(["model", "key"])
    cand = pub.assign(zoo_model=pub["model"].map(ALIASES), key=pub["value"].map(_bare))
    m = cand.merge(z, left_on=["zoo_model", "key"], right_on=["model", "key"], suffixes=("", "_z"))
    return m.assign(answered_by="02_backbones/model_zoo_published")[[*pub.columns, "ours", "match", "answered_by"]]


def _bare(value: str) -> str:
    """A printed number without its digit-group spaces (ANDREY prints thin spaces, our tables ', ')."""
    return re.sub(r"\s", "", str(value))


Matcher = Callable[[pd.DataFrame, dict[str, pd.DataFrame]], pd.DataFrame]
MATCHERS: list[Matcher] = [_zoo_figures]


def beside(ours: dict[str, pd.DataFrame], seed: str | None = None) -> pd.DataFrame:
    """Every published figure (long format) with ``ours``, ``match`` and ``answered_by`` filled where one of our
    tables answers it (empty otherwise)."""
    pub = published(seed=seed).reset_index(drop=True)
    pub["value"] = pub["value"].astype(str)
    answered = pd.concat([m(pub, ours) for m in MATCHERS], ignore_index=True)
    keys = ["seed", "table", "row", "column"]
    answered = answered.drop_duplicates(keys)[[*keys, "ours", "match", "answered_by"]]
    out = pub.merge(answered, on=keys, how="left")
    return out.fillna({"ours": "", "match": "", "answered_by": ""})


def seed_table(long: pd.DataFrame, seed: str, table: str) -> pd.DataFrame:
    """One published table as printed (rows x columns), each answered cell written ``published → ours ✓|✗``."""
    t = long[(long["seed"] == seed) & (long["table"] == table)]
    mark = t["match"].map({"True": " ✓", "False": " ✗"}).fillna("")
    cell = t["value"].where(t["ours"] == "", t["value"] + " → " + t["ours"] + mark)
    wide = t.assign(cell=cell).pivot_table(index="row", columns="column", values="cell", aggfunc="first",
                                           sort=False)
    labels = t.drop_duplicates("row").set_index("row")[["model", "method", "setting"]]
    wide = labels.join(wide[t["column"].drop_duplicates().tolist()])
    return wide.loc[:, (wide != "").any()].fillna("").reset_index(drop=True)


def coverage(long: pd.DataFrame) -> pd.DataFrame:
    """Per seed table: published figures, how many of them our tables answer, and how many agree."""
    g = long.assign(answered=long["ours"] != "", agrees=long["match"] == "True")
    out = g.groupby(["seed", "table"], sort=True).agg(figures=("value", "size"), answered=("answered", "sum"),
                                                      agree=("agrees", "sum")).reset_index()
    return out.rename(columns={"table": "setting"}).assign(method="published figures")
