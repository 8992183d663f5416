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


# Which published rows each of our tables reproduces: our table key -> [(seed, published table, regex on the
# method in one spelling (:func:`method_key`); empty = every row), ...]. The seeds
# ran on VOC / COCO / VisDrone at 416-640 px, the small profile on the embedded set at 192 px, so these rows sit
# beside each other as reference (same experiment, other data), never as a match.
EXPERIMENTS: dict[str, list[tuple[str, str, str]]] = {
    "02_backbones/detectors": [("ANDREY", "voc2007", "^baseline$"), ("ANDREY", "exdark", "^baseline$")],
    "02_backbones/attention": [("HALO", "attention-yolov3-tiny", "")],
    "03_pruning/channel_pruning": [("SPURS", "prune-normal", ""), ("SPURS", "prune-regular", "")],
    "03_pruning/lth": [("ANDREY", "voc2007", "^(?:baseline|LTH)"), ("ANDREY", "exdark", "^(?:baseline|LTH)")],
    "03_pruning/cs": [("ANDREY", "voc2007", "^(?:baseline|CS)"), ("ANDREY", "exdark", "^(?:baseline|CS)")],
    "05_distill/kd_strategies": [("SPURS", "distillation", "")],
    "05_distill/kd_features": [("ANDREY", "voc2007", "^(?:hint|baseline)$"), ("ANDREY", "exdark", "^(?:hint|baseline)$")],
    "05_distill/kd_gan": [("ANDREY", "voc2007", "^(?:gan|baseline)$"), ("ANDREY", "exdark", "^(?:gan|baseline)$")],
}

# Published method labels -> ours (lower-cased, spaces squeezed before lookup).
METHOD_ALIASES = {
    "default": "baseline", "直接微调": "finetune", "teacher模型map": "teacher", "lth local": "LTH local", "lth global": "LTH global",
    "cs 1 it": "CS 1 iteration", "cs 3 it": "CS 3 iterations", "kd gan": "gan",
    "normal pruning (正常剪植)": "normal", "regular pruning (规则剪植)": "regular",
}


# Labels whose meaning depends on the table.  SPURS's distillation table is printed with the Era-A numbering
# (quant-kd-spec §4.2): its "KDstr 5"/"6" are HEAD's (our) KDstr 4/5, its "KDstr 4" is Era A's own L1-mean attention
# term, which we do not implement; "(L2)" squares the activations of the attention map (our ``attention_p=2``).
TABLE_METHOD_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("SPURS", "distillation"): {"KDstr 4(L1)": "KDstr4 Era A", "KDstr 4(L2)": "KDstr4 Era A (L2)",
                                "KDstr 5(L1)": "KDstr4", "KDstr 5(L2)": "KDstr4 (L2)",
                                "KDstr 6(L1)": "KDstr5", "KDstr 6(L2)": "KDstr5 (L2)"},
}


def method_key(label: str, table: tuple[str, str] | None = None) -> str:
    """A published or our method label in one spelling: ``"KDstr 3"`` -> ``"KDstr3"``, ``"LTH Local"`` ->
    ``"LTH local"``, ``"Default"`` -> ``"baseline"``, ``"KD fts 36, 61"`` -> ``"hint"`` (the layers are the
    setting); ``table`` = ``(seed, table id)`` applies that table's own numbering first
    (:data:`TABLE_METHOD_ALIASES`).  Unknown labels come back unchanged."""
    text = re.sub(r"\s+", " ", str(label)).strip()
    if table is not None and text in TABLE_METHOD_ALIASES.get(table, {}):
        return TABLE_METHOD_ALIASES[table][text]
    if re.match(r"KD fts\b", text):
        return "hint"
    kd = re.match(r"KDstr ?(\d)", text)
    if kd:
        return f"KDstr{kd.group(1)}"
    return METHOD_ALIASES.get(text.lower(), text)


# The columns that identify a row of :func:`experiments` (for ``write_results(..., keys=)``).
EXPERIMENT_KEYS = ["experiment", "source", "seed", "table", "model", "dataset", "label", "setting", "metric"]


def experiments(ours: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every row of our experiment tables and every published row of the same experiment, one long table.

    Columns: ``experiment`` (our table key), ``source`` ("ours" or "published"), ``seed`` / ``table`` (the published
    table; empty for ours), ``model``, ``dataset``, ``method`` (one spelling, :func:`method_key`), ``label`` (the
    row's own spelling), ``setting``, ``metric`` (ap50 for ours; the published column), ``value`` (as printed /
    written), ``std`` (ours: ap50_std).  Only accuracy figures are listed (published columns of quantity ``map``);
    an experiment whose table is not there yet still lists its published rows.
    """
    pub = published().astype(str)
    frames = []
    for key, sources in EXPERIMENTS.items():
        t = ours.get(key)
        if t is not None:   # not run yet: the published rows still show what the experiment is
            row_cols = {c: t.get(c, "") for c in ("model", "dataset", "method", "setting")}
            frames.append(pd.DataFrame({
                "experiment": key, "source": "ours", "seed": "", "table": "", **row_cols,
                "label": row_cols["method"], "metric": "ap50", "value": t["ap50"],
                "std": t.get("ap50_std", "")}).assign(method=lambda d: d["method"].map(method_key)))
        for seed, table, pattern in sources:
            p = pub[(pub["seed"] == seed) & (pub["table"] == table) & (pub["quantity"] == "map")]
            method = p["method"].where(p["method"] != "", "baseline")   # a backbone table: every row is one
            if pattern:
                keep = method.map(lambda m, t=(seed, table): method_key(m, t)).str.contains(pattern, regex=True)
                p, method = p[keep], method[keep]
            frames.append(pd.DataFrame({
                "experiment": key, "source": "published", "seed": seed, "table": table, "model": p["model"],
                "dataset": p["dataset"], "method": method.map(lambda m, t=(seed, table): method_key(m, t)), "label": method,
                "setting": p["setting"], "metric": p["column"], "value": p["value"], "std": ""}))
    cols = ["experiment", "source", "seed", "table", "model", "dataset", "method", "label", "setting", "metric",
            "value", "std"]
    out = pd.concat(frames, ignore_index=True)[cols].fillna("")
    return out.astype(str)


def experiment_view(long: pd.DataFrame, key: str) -> pd.DataFrame:
    """One experiment as a reading table: a row per method (ours first; baselines one row per model),
    ``ours`` = ap50 ± std with our dataset, ``published`` = the seeds' figures for that method, each
    ``value (seed table, model, column, dataset)``."""
    t = long[long["experiment"] == key]
    row = t["method"].where(t["method"] != "baseline",
                            "baseline " + t["model"].map(lambda m: ALIASES.get(m, m)))
    ours, pub = t[t["source"] == "ours"], t[t["source"] == "published"]
    rows = []
    for method in dict.fromkeys([*row[ours.index], *row[pub.index]]):
        o = ours[row[ours.index] == method]
        p = pub[row[pub.index] == method]
        rows.append({
            "method": method,
            "ours": "; ".join(f"{r.model} {r.setting} {_pm(r.value, r.std)} ({r.dataset})".replace("  ", " ")
                              for r in o.itertuples()),
            "published": "; ".join(f"{r.value} ({r.seed} {r.table}, {r.model}, {r.metric}, {r.dataset})"
                                   for r in p.itertuples()),
        })
    return pd.DataFrame(rows, columns=["method", "ours", "published"])


def _pm(value: str, std: str) -> str:
    v = f"{float(value):.3f}" if value not in ("", "nan") else "–"
    return v if std in ("", "nan") else f"{v} ± {float(std):.3f}"
