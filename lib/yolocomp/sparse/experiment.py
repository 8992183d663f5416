"""LTH and CS runs over the cached baselines, one artefact per round, and the tables the notebooks write.

Every round is an artefact of :mod:`yolocomp.workbook.cache` keyed by the baseline recipe, the method's settings and
the round index (not the number of rounds), so a longer schedule reuses the rounds a shorter one already trained,
a killed run resumes at the last finished round, and CS with 1 and 3 iterations share their first round when the
rounds have the same length.  An artefact keeps the trained model as a sparse file (:mod:`.storage`), a
``summary.json`` (metrics and costs) and the trainer's ``results.csv``; the trainer's own checkpoints (model,
EMA and optimizer, ≈3× the model) go to a temp folder.

The dense model of a recipe is its baseline's ``best.pt`` (:func:`yolocomp.baselines.trained`).  An early rewind
point θ_k is the raw state after k epochs of that same training, obtained by replaying the recipe (the trainer is
deterministic on CPU) and stopping there; θ_E is read from the baseline's ``last.pt``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .. import baselines
from ..baselines import Recipe
from ..data.yolo_txt import read_yolo
from ..errors import InputError
from ..fileio import atomic_torch_save, atomic_write
from ..models import zoo
from ..models.checkpoint import load_checkpoint
from ..models.darknet import Darknet
from ..models.parse import parse_cfg
from ..registry import PRUNERS
from ..workbook import cache
from . import cs as CS
from . import imp
from . import masks as M
from .costs import sparse_cost_row
from .storage import load_sparse, save_sparse

SPARSE_FILE = "model.sparse.pt"
METRICS = ("ap50", "ap", "ap75", "ap50_seedstyle")


@dataclass(frozen=True)
class IMPPlan:
    """An IMP schedule (defaults: ANDREY's IMP.yaml, but ``rewind="early"``; ``"seed"`` is ANDREY's rule).

    ``scope``: local | global; ``rounds``: prune events; ``rate``: fraction of the alive weights each removes;
    ``epochs``: training epochs per round; ``rewind``: early | seed | none (:data:`yolocomp.sparse.imp.REWIND`);
    ``rewind_epoch``: k of θ_k; ``hyp``: ``((name, value), ...)`` applied over the baseline recipe's
    hyperparameters for the rounds; ``eval_every``: the trainer's evaluation period."""

    scope: str = "local"
    rounds: int = 12
    rate: float = 0.2
    epochs: int = 300
    rewind: str = "early"
    rewind_epoch: int = 9
    hyp: tuple = field(default=())
    eval_every: int = 1

    def round_key(self) -> dict:
        k = asdict(self)
        k.pop("rounds")
        k["hyp"] = [list(h) for h in self.hyp]
        return k


@dataclass(frozen=True)
class CSPlan:
    """A CS schedule (defaults: ANDREY's cs.py with 3 iterations, spec §13).  ``iterations``: search rounds;
    ``round_epochs``: epochs per round (seed: int(300/iterations)); ``ticket_epochs``: training of the rewound ticket
    (seed: 300); ``s0``, ``final_temperature``, ``lam``, ``mask_lr``, ``mask_momentum``, ``anneal``: see
    :mod:`yolocomp.sparse.cs`; ``reset_epoch``: the rewind point in round 0; ``hyp``, ``eval_every``: as IMPPlan."""

    iterations: int = 3
    round_epochs: int = 100
    ticket_epochs: int = 300
    s0: float = -0.1
    final_temperature: float = 200.0
    lam: float = 1e-8
    mask_lr: float = 0.1
    mask_momentum: float = 0.9
    reset_epoch: int = 10
    anneal: str = "epoch"
    hyp: tuple = field(default=())
    eval_every: int = 1

    def search_key(self) -> dict:
        k = asdict(self)
        for name in ("iterations", "ticket_epochs"):
            k.pop(name)
        k["hyp"] = [list(h) for h in self.hyp]
        return k


def _hyp(recipe: Recipe, extra: tuple):
    from ..engine.hyp import hyp as preset

    return preset(recipe.hyp, **{**dict(recipe.overrides), **dict(extra)})


def _train_fn(recipe: Recipe, extra_hyp: tuple, epochs: int, eval_every: int, folder: Path, progress: bool):
    """``(model, callbacks, round_index) -> TrainResult`` training on the recipe's data; the trainer writes into a
    temp folder and only its ``results.csv`` is kept in ``folder``.  Each round draws its own data order
    (seed + 1000·round)."""
    from ..engine.trainer import train

    def run(model, callbacks, round_index):
        with tempfile.TemporaryDirectory() as tmp:
            result = train(model, recipe.data, epochs, recipe.batch_size, recipe.img_size, Path(tmp),
                           device=recipe.device, hyp=_hyp(recipe, extra_hyp), seed=recipe.seed + 1000 * round_index,
                           callbacks=callbacks, eval_every=eval_every, progress=progress)
            shutil.copy(Path(tmp) / "results.csv", folder / "results.csv")
        return result

    return run


def dense_model(recipe: Recipe) -> Darknet:
    """The trained baseline of ``recipe`` (its ``best.pt``, the EMA weights the baseline table reports)."""
    model, _ = load_checkpoint(baselines.trained(recipe) / "best.pt")
    return model


def early_state(recipe: Recipe, epoch: int, progress: bool = False) -> dict:
    """θ_k: the raw state_dict of ``recipe``'s training after ``epoch`` epochs (cached; k = the recipe's epochs
    reads the baseline's ``last.pt``, any other k replays the training up to there)."""
    from ..engine.trainer import train

    if not 0 <= epoch <= recipe.epochs:
        raise InputError(None, f"rewind epoch must be in [0, {recipe.epochs}] for this baseline, got {epoch}")
    if epoch == recipe.epochs:
        ck = torch.load(baselines.trained(recipe) / "last.pt", map_location="cpu", weights_only=True)
        return ck["raw_model"]

    def build(folder: Path) -> None:
        snap = imp.Snapshot(epoch, stop=True)
        cfg = zoo.build(recipe.model, baselines.classes_of(recipe.data)).to_cfg()
        with tempfile.TemporaryDirectory() as tmp:   # exactly baselines.trained()'s call, plus the snapshot
            train(cfg, recipe.data, recipe.epochs, recipe.batch_size, recipe.img_size, Path(tmp),
                  device=recipe.device, hyp=_hyp(recipe, ()), seed=recipe.seed, callbacks=[snap], progress=progress)
        atomic_torch_save(snap.state, folder / "state.pt")

    path = cache.artefact("rewind", {"recipe": recipe.key(), "epoch": epoch}, build)
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def _summary(folder: Path, model, metrics: dict, recipe: Recipe, **extra) -> dict:
    save_sparse(model, folder / SPARSE_FILE)
    row = {**{k: float(metrics[k]) for k in METRICS}, **sparse_cost_row(model, recipe.img_size, folder / SPARSE_FILE),
           **extra}
    atomic_write(folder / "summary.json", json.dumps(row, indent=2, sort_keys=True) + "\n")
    return row


def lth_round(recipe: Recipe, plan: IMPPlan, r: int, progress: bool = False) -> Path:
    """The artefact of IMP round ``r`` (1-based) of ``plan`` on ``recipe``'s baseline (building rounds < r first)."""
    if r < 1:
        raise InputError(None, f"IMP rounds count from 1, got {r}")

    def build(folder: Path) -> None:
        if r == 1:
            model = dense_model(recipe)
            state = early_state(recipe, plan.rewind_epoch, progress) if plan.rewind != "none" else None
        else:
            prev = lth_round(recipe, plan, r - 1, progress)
            model = load_sparse(prev / SPARSE_FILE)
            state = (torch.load(prev / "rewind.pt", map_location="cpu", weights_only=True) if plan.rewind == "seed"
                     else early_state(recipe, plan.rewind_epoch, progress) if plan.rewind == "early" else None)
        fn = _train_fn(recipe, plan.hyp, plan.epochs, plan.eval_every, folder, progress)
        out = imp.imp_round(model, plan.rate, plan.scope, plan.rewind, state, fn, r, plan.rewind_epoch)
        if plan.rewind == "seed":
            atomic_torch_save(out.snapshot if out.snapshot is not None else state, folder / "rewind.pt")
        _summary(folder, out.model, out.metrics, recipe, round=r, kept=out.kept, total=out.total)

    return cache.artefact("lth-round", {"recipe": recipe.key(), "plan": plan.round_key(), "round": r}, build)


def _save_soft(model, s0: float, path: Path) -> None:
    atomic_torch_save({"format": "yolocomp-soft/1", "cfg": model.to_cfg(), "s0": s0,
                       "state_dict": model.state_dict()}, path)


def _load_soft(path: Path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    soft = CS.soften(Darknet(parse_cfg(obj["cfg"], f"{path}[cfg]")), obj["s0"])
    soft.load_state_dict(obj["state_dict"])
    return soft


def cs_round(recipe: Recipe, plan: CSPlan, r: int, progress: bool = False) -> Path:
    """The artefact of CS search round ``r`` (0-based): ``soft.pt`` (weights and scores), ``summary.json`` and, for
    round 0, ``rewind.pt`` (the weight state at the start of epoch ``reset_epoch``)."""

    def build(folder: Path) -> None:
        if r == 0:
            soft = CS.soften(dense_model(recipe), plan.s0)
        else:
            soft = _load_soft(cs_round(recipe, plan, r - 1, progress) / "soft.pt")
        cb = CS.CSCallback(plan.final_temperature, plan.lam, plan.mask_lr, plan.mask_momentum, plan.anneal)
        fn = _train_fn(recipe, plan.hyp, plan.round_epochs, plan.eval_every, folder, progress)
        res = CS.search_round(soft, r, fn, cb, plan.reset_epoch if r == 0 else None)
        if r == 0:
            if res.snapshot is None:
                raise InputError(None, f"reset_epoch {plan.reset_epoch} is past round 0 ({plan.round_epochs} "
                                       "epochs): no rewind state was taken")
            atomic_torch_save(res.snapshot, folder / "rewind.pt")
        _save_soft(res.model, plan.s0, folder / "soft.pt")
        row = {**{k: float(res.metrics[k]) for k in METRICS}, "round": r, "kept": res.kept, "total": res.total,
               "weights_remaining": res.kept / res.total}
        atomic_write(folder / "summary.json", json.dumps(row, indent=2, sort_keys=True) + "\n")

    return cache.artefact("cs-round", {"recipe": recipe.key(), "plan": plan.search_key(), "round": r}, build)


def cs_ticket(recipe: Recipe, plan: CSPlan, progress: bool = False) -> Path:
    """The artefact of the trained CS ticket after ``plan.iterations`` rounds: the hardened model (sparse file),
    evaluated again as saved, and its ``summary.json``."""
    from ..eval import evaluate

    def build(folder: Path) -> None:
        soft = _load_soft(cs_round(recipe, plan, plan.iterations - 1, progress) / "soft.pt")
        rewind = torch.load(cs_round(recipe, plan, 0, progress) / "rewind.pt", map_location="cpu", weights_only=True)
        fn = _train_fn(recipe, plan.hyp, plan.ticket_epochs, plan.eval_every, folder, progress)
        final, _ = CS.train_ticket(soft, rewind, fn, plan.iterations)
        metrics = evaluate(final, read_yolo(Path(recipe.data), "valid"), recipe.img_size, recipe.batch_size,
                           recipe.device)
        kept, total = CS.remaining(soft)
        _summary(folder, final, metrics, recipe, kept=kept, total=total)

    key = {"recipe": recipe.key(), "plan": plan.search_key(), "iterations": plan.iterations,
           "ticket_epochs": plan.ticket_epochs}
    return cache.artefact("cs-ticket", key, build)


def _read(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def dataset_label(dataset: str, size: str) -> str:
    """The ``dataset`` column of a table: ``embedded-<size>`` for the generated set, else the catalogue name."""
    return f"{dataset}-{size}" if dataset == "embedded" else dataset


Runs = dict[str, list[Recipe]]   # dataset label -> the baseline recipes (one per seed) on that dataset


def baseline_rows(runs: Runs, progress: bool = False) -> pd.DataFrame:
    """Per dataset and seed: the dense baseline's metrics (``baselines.evaluated``) and costs, as round 0."""
    rows = []
    for dataset, recipes in runs.items():
        for rec in recipes:
            m = baselines.evaluated(rec, progress)
            cost = sparse_cost_row(dense_model(rec), rec.img_size)
            rows.append({"model": rec.model, "dataset": dataset, "method": "baseline", "stage": "dense", "round": 0,
                         "seed": rec.seed, "img_size": rec.img_size, **{k: m[k] for k in METRICS}, **cost})
    return pd.DataFrame(rows)


def _lth_plan(name: str, plan: IMPPlan) -> IMPPlan:
    meta = PRUNERS.entry(name).meta
    if meta.get("family") != "lth":
        raise InputError(None, f"{name!r} is not an LTH pruner (known: {', '.join(PRUNERS.names(family='lth'))})")
    return IMPPlan(**{**asdict(plan), "scope": meta["scope"]})


def lth_runs(runs: Runs, methods: list[str], plan: IMPPlan, progress: bool = False) -> pd.DataFrame:
    """Per-seed rows: every round of IMP for each of ``methods`` (registry names of
    :data:`~yolocomp.registry.PRUNERS` with ``family="lth"``, whose ``scope`` replaces ``plan.scope``) on every
    dataset, after the dense baselines (round 0).  Columns: model, dataset, method, stage, round, seed, img_size,
    the metrics (ap50, ap, ap75, ap50_seedstyle) and :func:`~yolocomp.sparse.costs.sparse_cost_row`'s costs."""
    rows = []
    for name in methods:
        p = _lth_plan(name, plan)
        for dataset, recipes in runs.items():
            for rec in recipes:
                for r in range(1, p.rounds + 1):
                    rows.append({"model": rec.model, "dataset": dataset, "method": PRUNERS.entry(name).meta["method"],
                                 "stage": "ticket", "seed": rec.seed, "img_size": rec.img_size,
                                 **_read(lth_round(rec, p, r, progress))})
    return pd.concat([baseline_rows(runs, progress), pd.DataFrame(rows)], ignore_index=True)


def _cs_plan(plan: CSPlan, iterations: int, round_epochs: int) -> CSPlan:
    return CSPlan(**{**asdict(plan), "iterations": iterations, "round_epochs": round_epochs})


def cs_runs(runs: Runs, iterations: list[int], round_epochs: list[int], plan: CSPlan,
            progress: bool = False) -> pd.DataFrame:
    """Per-seed rows of CS with each number of ``iterations`` (rounds of ``round_epochs`` epochs, same order):
    the trained tickets (``stage="ticket"``, ``round`` = iterations) and every search round (``stage="search"``:
    the soft model's metrics and the share of weights with s > 0), after the dense baselines."""
    if len(iterations) != len(round_epochs):
        raise InputError(None, f"ITERATIONS {iterations} and ROUND_EPOCHS {round_epochs} must have the same length")
    rows = []
    for it, epochs in zip(iterations, round_epochs):
        p = _cs_plan(plan, it, epochs)
        for dataset, recipes in runs.items():
            for rec in recipes:
                base = {"model": rec.model, "dataset": dataset, "method": CS.method_label(it), "seed": rec.seed,
                        "img_size": rec.img_size}
                for r in range(it):
                    rows.append({**base, "stage": "search", **_read(cs_round(rec, p, r, progress))})
                rows.append({**base, "stage": "ticket", "round": it, **_read(cs_ticket(rec, p, progress))})
    return pd.concat([baseline_rows(runs, progress), pd.DataFrame(rows)], ignore_index=True)


def _std(x: pd.Series) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def summary_table(runs: pd.DataFrame, setting: str = "round") -> pd.DataFrame:
    """Mean ± std over seeds of the per-seed rows of trained models (stages ``dense`` and ``ticket``), one row per
    (model, dataset, method, round).  ``setting="round"`` labels IMP rounds "round r"; ``"none"`` leaves the
    setting empty (one row per method, CS).  Columns: the shared vocabulary with ``params`` = non-zero parameters,
    ``params_ratio`` = params / the baseline's, ``macs_conv`` = MACs of non-zero weights and ``storage_mib`` = the
    sparse file; plus ``round``, ``weights_remaining``, ``params_std``, ``params_dense``, ``macs_dense`` and
    ``dense_mib`` (the fp32 ``.weights`` file)."""
    d = runs[runs["stage"] != "search"]
    dense = d[d["method"] == "baseline"].groupby(["model", "dataset"])["params"].mean()
    rows = []
    for (model, dataset, method, r), g in d.groupby(["model", "dataset", "method", "round"], sort=False):
        rows.append({
            "model": model, "dataset": dataset, "method": method,
            "setting": f"round {r}" if setting == "round" and method != "baseline" else "",
            "seeds": len(g), "ap50": g["ap50"].mean(), "ap": g["ap"].mean(), "ap50_std": _std(g["ap50"]),
            "ap_std": _std(g["ap"]), "ap50_seedstyle": g["ap50_seedstyle"].mean(),
            "params": g["params"].mean(), "params_ratio": g["params"].mean() / dense[(model, dataset)],
            "macs_conv": g["macs_conv"].mean(), "storage_mib": g["storage_mib"].mean(),
            "img_size": int(g["img_size"].iloc[0]), "round": int(r), "weights_remaining": g["weights_remaining"].mean(),
            "params_std": _std(g["params"]), "params_dense": int(g["params_dense"].iloc[0]),
            "macs_dense": int(g["macs_dense"].iloc[0]), "dense_mib": g["dense_mib"].iloc[0],
        })
    return pd.DataFrame(rows)


def search_table(runs: pd.DataFrame) -> pd.DataFrame:
    """CS search rounds, mean ± std over seeds: the soft model's AP at the end of each round (at the final
    temperature, soft masks) and the share of prunable weights its scores would keep (s > 0)."""
    d = runs[runs["stage"] == "search"]
    rows = []
    for (model, dataset, method, r), g in d.groupby(["model", "dataset", "method", "round"], sort=False):
        rows.append({"model": model, "dataset": dataset, "method": method, "setting": f"search round {int(r) + 1}",
                     "seeds": len(g), "ap50": g["ap50"].mean(), "ap": g["ap"].mean(), "ap50_std": _std(g["ap50"]),
                     "ap_std": _std(g["ap"]), "ap50_seedstyle": g["ap50_seedstyle"].mean(),
                     "img_size": int(g["img_size"].iloc[0]), "round": int(r) + 1,
                     "weights_remaining": g["weights_remaining"].mean(),
                     "weights_remaining_std": _std(g["weights_remaining"])})
    return pd.DataFrame(rows)


def layer_table(models: dict[str, torch.nn.Module]) -> pd.DataFrame:
    """Share of each prunable layer's weights kept, per ``{method: masked model}``: one row per (method, layer)
    with ``layer`` (module name), ``weights`` (its size) and ``kept`` (fraction)."""
    rows = []
    for method, model in models.items():
        for name, mask in M.masks_of(model).items():
            rows.append({"method": method, "layer": name, "weights": mask.numel(), "kept": float(mask.float().mean())})
    return pd.DataFrame(rows)


def timing_table(models: dict[str, torch.nn.Module], recipe: Recipe, dataset: str, **latency) -> pd.DataFrame:
    """CPU latency at batch 1 of each ``{method: model}`` (the first one is the dense reference), measured in
    interleaved rounds by :func:`yolocomp.prune.experiment.latencies`; ``speedup`` = reference / this.  Every
    model runs the same dense kernels, zeros included."""
    from ..prune.experiment import latencies

    lat = latencies(models, recipe.img_size, **latency)
    ref = lat[next(iter(models))]["latency_ms"]
    return pd.DataFrame([{"model": recipe.model, "dataset": dataset, "method": m, "latency_ms": v["latency_ms"],
                          "device": v["device_name"], "batch": 1, "img_size": recipe.img_size,
                          "speedup": ref / v["latency_ms"], "threads": v["threads"],
                          "weights_remaining": M.counts(M.masks_of(models[m]))[0] / M.counts(M.masks_of(models[m]))[1]
                          if M.masks_of(models[m]) else 1.0}
                         for m, v in lat.items()])


def lth_finals(recipe: Recipe, methods: list[str], plan: IMPPlan) -> dict[str, Darknet]:
    """``{"baseline": dense model, <method label>: last round's model, ...}`` on ``recipe`` (from the cache)."""
    out = {"baseline": dense_model(recipe)}
    for name in methods:
        p = _lth_plan(name, plan)
        out[PRUNERS.entry(name).meta["method"]] = load_sparse(lth_round(recipe, p, p.rounds) / SPARSE_FILE)
    return out


def cs_finals(recipe: Recipe, iterations: list[int], round_epochs: list[int], plan: CSPlan) -> dict[str, Darknet]:
    """``{"baseline": dense model, "CS n iteration(s)": trained ticket, ...}`` on ``recipe`` (from the cache)."""
    out = {"baseline": dense_model(recipe)}
    for it, epochs in zip(iterations, round_epochs):
        out[CS.method_label(it)] = load_sparse(cs_ticket(recipe, _cs_plan(plan, it, epochs)) / SPARSE_FILE)
    return out


def published_rows(methods: list[str]) -> pd.DataFrame:
    """ANDREY's published YOLOv3 rows for ``methods`` (as printed, e.g. ``"LTH Local"``) and the "Default" row
    they start from, in both tables (VOC2007 test, ExDark test): one row per (table, method), the printed cells as
    columns (mAP, Final Params, MACs, Storage (MB)), values exactly as printed."""
    from ..reference import published

    pub = published(seed="ANDREY")
    pub = pub[(pub["model"] == "YOLOv3") & pub["method"].isin(["Default", *methods])]
    pub = pub.assign(column=pub["column"].replace({"MAC": "MACs"}))
    wide = pub.pivot_table(index=["table", "dataset", "method"], columns="column", values="value", aggfunc="first",
                           sort=False)
    return wide[["mAP", "Final Params", "MACs", "Storage (MB)"]].reset_index()
