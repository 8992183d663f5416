"""Trained baselines: a zoo model trained on a dataset once, kept in the artefact cache, reused by every notebook.

A :class:`Recipe` names everything that determines the trained weights; its hash is the cache key, so a later
notebook asking for the same recipe gets the same folder (``.cache/train/<hash>``) without training again, and a
killed training resumes from its last epoch. The folder holds the trainer's ``last.pt`` / ``best.pt`` /
``results.csv`` and, after :func:`evaluated`, ``val/{gt,predictions,metrics}.json`` of the best checkpoint so the
reported numbers can be rechecked with pycocotools.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .bench.cost import cost_row
from .data.canonical import DetectionSet
from .data.yolo_txt import read_data_file, read_yolo
from .models import zoo
from .models.checkpoint import load_checkpoint
from .workbook import cache


@dataclass(frozen=True)
class Recipe:
    """How a baseline is trained. ``data``: a darknet ``.data`` file; ``hyp``: a preset of
    :mod:`yolocomp.engine.hyp` with ``overrides`` as ``((name, value), ...)``. Every field is part of the cache
    key, ``device`` included: a GPU run does not give a CPU run's bytes."""

    model: str
    data: str
    epochs: int
    batch_size: int
    img_size: int
    seed: int = 0
    hyp: str = "default"
    overrides: tuple = field(default=())
    device: str = "cpu"

    def key(self) -> dict:
        k = asdict(self)
        k["overrides"] = [list(o) for o in self.overrides]
        return k


def classes_of(data: str | Path) -> int:
    """The ``classes=`` of a darknet ``.data`` file (the readers check it against the ``.names`` file)."""
    return int(read_data_file(Path(data))["classes"][0])


def trained(recipe: Recipe, progress: bool = False) -> Path:
    """The cache folder of ``recipe``'s training, training (or resuming) first if needed.

    Writes ``train.json`` (wall seconds of the session that finished it, epochs) beside the checkpoints.
    """
    from .engine.hyp import hyp as preset
    from .engine.trainer import train

    def build(folder: Path) -> None:
        t0 = time.monotonic()
        cfg = zoo.build(recipe.model, classes_of(recipe.data)).to_cfg()
        train(cfg, recipe.data, recipe.epochs, recipe.batch_size, recipe.img_size, folder,
              device=recipe.device, hyp=preset(recipe.hyp, **dict(recipe.overrides)), seed=recipe.seed,
              resume=(folder / "last.pt").is_file(), progress=progress)
        (folder / "train.json").write_text(json.dumps({"train_seconds": time.monotonic() - t0,
                                                       "epochs": recipe.epochs}) + "\n")

    return cache.artefact("train", recipe.key(), build, resumable=True)


def evaluated(recipe: Recipe, progress: bool = False) -> dict:
    """Metrics of ``recipe``'s best checkpoint on the ``valid`` split (``yolocomp.eval.evaluate``), with the
    ground truth, predictions and metrics json kept in ``<run>/val/``."""
    from .eval import evaluate

    run = trained(recipe, progress)
    out = run / "val"
    if (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    model, _ = load_checkpoint(run / "best.pt")
    return evaluate(model, read_yolo(Path(recipe.data), "valid"), recipe.img_size, device=recipe.device,
                    out_dir=out)


def detector_rows(recipes: list[Recipe], dataset: str, progress: bool = False) -> pd.DataFrame:
    """One row per model over the seeds of ``recipes``: mean and std of pycocotools AP50 / AP and the seeds'
    own AP50 (``ap50_seedstyle``), with the model's params, MACs (conv+linear and seed-compatible) and
    .weights size at the training size."""
    by_model: dict[str, list[Recipe]] = {}
    for r in recipes:
        by_model.setdefault(r.model, []).append(r)
    rows = []
    for name, rs in by_model.items():
        ms = [evaluated(r, progress) for r in rs]
        ap50, ap = np.array([m["ap50"] for m in ms]), np.array([m["ap"] for m in ms])
        model = zoo.build(name, classes_of(rs[0].data))
        cost = cost_row(model, rs[0].img_size)
        rows.append({"model": name, "dataset": dataset, "method": "baseline", "seeds": len(rs),
                     "ap50": ap50.mean(), "ap": ap.mean(), "ap50_std": ap50.std(ddof=1) if len(rs) > 1 else np.nan,
                     "ap_std": ap.std(ddof=1) if len(rs) > 1 else np.nan,
                     "ap50_seedstyle": float(np.mean([m["ap50_seedstyle"] for m in ms])),
                     "params": cost["params"], "macs_conv": cost["macs_conv"], "macs_seed": cost["macs_seed"],
                     "storage_mib": cost["storage_mib"], "img_size": rs[0].img_size, "epochs": rs[0].epochs})
    return pd.DataFrame(rows)


def training_history(recipes: list[Recipe]) -> pd.DataFrame:
    """The trainer's per-epoch rows (results.csv) of every recipe, with model and seed columns."""
    frames = [pd.read_csv(trained(r) / "results.csv").assign(model=r.model, seed=r.seed) for r in recipes]
    return pd.concat(frames, ignore_index=True)


def timing_rows(recipes: list[Recipe], latency: dict) -> pd.DataFrame:
    """Per model: training wall minutes (mean over seeds, from ``train.json``) and CPU latency at batch 1."""
    from .bench.latency import measure_latency

    rows = []
    for name in dict.fromkeys(r.model for r in recipes):
        rs = [r for r in recipes if r.model == name]
        minutes = [json.loads((trained(r) / "train.json").read_text())["train_seconds"] / 60 for r in rs]
        model = zoo.build(name, classes_of(rs[0].data))
        lat = measure_latency(model, rs[0].img_size, batch=1, **latency)
        rows.append({"model": name, "img_size": rs[0].img_size, "device": lat["device_name"], "batch": 1,
                     "latency_ms": lat["latency_ms"], "train_minutes": float(np.mean(minutes)),
                     "train_device": rs[0].device, "threads": lat["threads"]})
    return pd.DataFrame(rows)


def data_file(dataset: str, size: str = "small", data_root: str | Path | None = None) -> Path:
    """The ``.data`` file of a notebook's DATASET: ``embedded`` is generated (cache), any other name is a
    converted dataset under DATA_ROOT (:func:`yolocomp.data.catalog.require` says what to do if it is missing)."""
    from .data import catalog, synthetic
    from .paths import data_root as root

    if dataset == "embedded":
        return synthetic.embedded(size, seed=0)
    return catalog.require(dataset, root(data_root))


def recipes(models: list[str], seeds: list[int], data: Path, epochs: int, batch_size: int, img_size: int,
            hyp: str = "default", overrides: dict | None = None, device: str = "cpu") -> list[Recipe]:
    """The cross product models × seeds as :class:`Recipe` s (overrides of the hyp preset as a dict)."""
    ov = tuple(sorted((overrides or {}).items()))
    return [Recipe(m, str(data), epochs, batch_size, img_size, s, hyp, ov, device) for m in models for s in seeds]


def predictions(recipe: Recipe) -> tuple[list[dict], DetectionSet]:
    """Predictions of ``recipe``'s best checkpoint on its ``valid`` split (for figures), with that split."""
    from .eval import predict

    model, _ = load_checkpoint(trained(recipe) / "best.pt")
    ds = read_yolo(Path(recipe.data), "valid")
    return predict(model, ds, recipe.img_size, device=recipe.device), ds
