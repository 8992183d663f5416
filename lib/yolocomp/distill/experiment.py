"""Distillation experiments for the notebooks: students, cached runs and the mean ± std tables.

A :class:`KDRun` names everything that determines one student training — the teacher (a
:class:`~yolocomp.baselines.Recipe`: the trained baseline, whose data, batch, size, hyp and device the student
reuses), the student, the method (``finetune`` = plain training, the control; or a name of
:data:`yolocomp.registry.DISTILLERS`), its options, epochs and seed.  Its hash is the cache key
(``.cache/distill/<hash>``): a rerun, another notebook and the overview reuse the run.

Students (``student`` field):

* ``"pruned:<method>:<percent>"`` — the teacher channel-pruned by :mod:`yolocomp.prune.select` ``<method>`` (normal,
  regular, shortcut, slim) at ``<percent>`` of its BN γ, compacted by :func:`yolocomp.prune.surgery.compact`; the
  seeds' pairing (SPURS's table: a yolov3-tiny teacher and its normal-pruned student).  Cached as ``kd-student``.
* ``"zoo:<name>"`` — a zoo model trained from scratch (ANDREY's YOLO Nano / YOLO Mobile students).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import baselines
from ..baselines import Recipe
from ..errors import InputError
from ..registry import DISTILLERS
from ..workbook import cache

CONTROL = "finetune"
PRUNE_METHODS = ("normal", "regular", "shortcut", "slim")


def _parse_student(spec: str) -> tuple[str, ...]:
    parts = spec.split(":")
    if parts[0] == "pruned" and len(parts) == 3 and parts[1] in PRUNE_METHODS:
        try:
            percent = float(parts[2])
        except ValueError:
            percent = -1.0
        if 0.0 <= percent < 1.0:
            return ("pruned", parts[1], parts[2])
    if parts[0] == "zoo" and len(parts) == 2:
        from ..registry import MODELS

        if parts[1] in MODELS:
            return ("zoo", parts[1])
    raise InputError(None, f"student {spec!r}: expected 'pruned:<{'|'.join(PRUNE_METHODS)}>:<percent in [0, 1)>' "
                           f"or 'zoo:<registered model name>'")


def pruned_student(teacher: Recipe, method: str = "normal", percent: float = 0.5) -> Path:
    """The cached pruned copy of ``teacher``'s best checkpoint: folder with ``<name>.cfg``, ``.weights`` and ``.pt``
    (:func:`yolocomp.prune.export.save_pruned`) and ``student.json`` (name, params of teacher and student)."""
    from ..bench.cost import count_params
    from ..models.checkpoint import load_checkpoint
    from ..prune import select
    from ..prune.export import save_pruned
    from ..prune.graph import analyze
    from ..prune.naming import pruned_name
    from ..prune.surgery import compact

    def build(folder: Path) -> None:
        model, _ = load_checkpoint(baselines.trained(teacher) / "best.pt")
        masks = getattr(select, method)(model, analyze(model), percent)
        student = compact(model, masks)
        name = pruned_name(method, teacher.model, percent)
        save_pruned(student, folder, "student", method=method, percent=percent, teacher=teacher.key())
        (folder / "student.json").write_text(json.dumps(
            {"name": name, "params": count_params(student), "teacher_params": count_params(model)}) + "\n")

    config = {"teacher": teacher.key(), "method": method, "percent": percent}
    return cache.artefact("kd-student", config, build)


@dataclass(frozen=True)
class KDRun:
    """One student training (module docstring).  options: the method's options as sorted ``((name, value), ...)``
    of JSON values (feature pairs as lists); hyp_overrides: on top of the teacher recipe's, e.g.
    ``(("warmup_epochs", 0.0),)`` for fine-tuning without burn-in."""

    teacher: Recipe
    student: str
    method: str = CONTROL
    options: tuple = field(default=())
    epochs: int = 1
    hyp_overrides: tuple = field(default=())
    seed: int = 0

    def __post_init__(self):
        _parse_student(self.student)
        if self.method != CONTROL and self.method not in DISTILLERS:
            raise InputError(None, f"unknown method {self.method!r}; known: {CONTROL}, "
                                   f"{', '.join(DISTILLERS.names())}")

    def key(self) -> dict:
        k = asdict(self)
        k["teacher"] = self.teacher.key()
        k["options"] = [[n, v] for n, v in self.options]
        k["hyp_overrides"] = [list(o) for o in self.hyp_overrides]
        return k

    def group(self) -> tuple:
        """What identifies a table row: everything but the seeds (teacher seed and run seed)."""
        return (self.student, self.method, self.options, self.epochs, self.hyp_overrides)


def runs(teachers: list[Recipe], student: str, methods: list[str], epochs: int, options: dict | None = None,
         hyp_overrides: dict | None = None) -> list[KDRun]:
    """methods × teachers (seed-matched: the run with teacher seed s trains with seed s).  options: per method name
    a dict of options (or a list of dicts: one run per entry)."""
    out = []
    ov = tuple(sorted((hyp_overrides or {}).items()))
    for m in methods:
        variants = (options or {}).get(m, {})
        for opt in variants if isinstance(variants, list) else [variants]:
            frozen = tuple(sorted((k, _freeze(v)) for k, v in opt.items()))
            out += [KDRun(t, student, m, frozen, epochs, ov, t.seed) for t in teachers]
    return out


def _freeze(v):
    """Lists as tuples, so that options hash (the cache key writes them as JSON arrays all the same)."""
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _student_model(run: KDRun, classes: int):
    """The model train() starts from: a built module (pruned: its weights) or cfg text (zoo: from scratch)."""
    from ..models import zoo
    from ..models.checkpoint import load_checkpoint

    kind = _parse_student(run.student)
    if kind[0] == "pruned":
        model, _ = load_checkpoint(pruned_student(run.teacher, kind[1], float(kind[2])) / "student.pt")
        return model.train()
    return zoo.build(kind[1], classes).to_cfg()


def student_name(run: KDRun) -> str:
    kind = _parse_student(run.student)
    if kind[0] == "pruned":
        folder = pruned_student(run.teacher, kind[1], float(kind[2]))
        return json.loads((folder / "student.json").read_text())["name"]
    return kind[1]


def _callback(run: KDRun, teacher_model):
    opts = dict(run.options)
    if "feature_pairs" in opts:
        opts["feature_pairs"] = [tuple(p) for p in opts["feature_pairs"]]
    if "weights" in opts:
        opts["weights"] = dict(opts["weights"])
    if run.method == "gan":
        opts.setdefault("seed", run.seed)
    return DISTILLERS.get(run.method)(teacher_model, **opts)


def trained(run: KDRun, progress: bool = False) -> Path:
    """The cache folder of ``run`` (``last.pt``, ``best.pt``, ``results.csv``, ``metrics.json``, ``train.json``),
    training first if needed.  Runs with extra trainable modules (``hint``, ``gan``) restart from scratch when
    killed; the others resume from their last epoch."""
    from ..engine.hyp import hyp as preset
    from ..engine.trainer import train
    from ..models.checkpoint import load_checkpoint

    t = run.teacher
    resumable = run.method not in ("hint", "gan")

    def build(folder: Path) -> None:
        t0, c0 = time.monotonic(), time.process_time()
        teacher_model = None
        callbacks = []
        if run.method != CONTROL:
            teacher_model, _ = load_checkpoint(baselines.trained(t) / "best.pt")
            callbacks = [_callback(run, teacher_model)]
        h = preset(t.hyp, **{**dict(t.overrides), **dict(run.hyp_overrides)})
        student = _student_model(run, baselines.classes_of(t.data))
        res = train(student, t.data, run.epochs, t.batch_size, t.img_size, folder, device=t.device, hyp=h,
                    seed=run.seed, resume=resumable and (folder / "last.pt").is_file(), eval_every=0,
                    callbacks=callbacks, progress=progress)
        plain = {k: v for k, v in res.metrics.items() if isinstance(v, (int, float))}
        (folder / "metrics.json").write_text(json.dumps(plain, sort_keys=True) + "\n")
        (folder / "train.json").write_text(json.dumps({"train_seconds": time.monotonic() - t0,
                                                       "cpu_seconds": time.process_time() - c0,
                                                       "epochs": run.epochs}) + "\n")

    return cache.artefact("distill", run.key(), build, resumable=resumable)


def metrics(run: KDRun, progress: bool = False) -> dict:
    """The evaluation metrics (``ap50``, ``ap``, ``ap50_seedstyle``, ...) of ``run``'s final EMA model."""
    return json.loads((trained(run, progress) / "metrics.json").read_text())


def timing(kd_runs: list[KDRun]) -> pd.DataFrame:
    """Wall and process CPU seconds of each run's training and evaluation, as recorded when it was built (machine
    and load dependent: for reading, not for the results tables)."""
    rows = []
    for r in kd_runs:
        t = json.loads((trained(r) / "train.json").read_text())
        rows.append({"method": r.method, "setting": setting(r), "seed": r.seed, "epochs": r.epochs,
                     "wall_s": t["train_seconds"], "cpu_s": t.get("cpu_seconds", float("nan"))})
    return pd.DataFrame(rows)


def setting(run: KDRun) -> str:
    """A row's setting as text: the options, feature pairs as ``fts <teacher layers> -> <student layers>``."""
    parts = []
    for k, v in run.options:
        if k == "feature_pairs":
            parts.append("fts " + ",".join(str(p[0]) for p in v) + " -> " + ",".join(str(p[1]) for p in v))
        elif k == "weights":
            parts.append("weights " + ",".join(f"{n}={w:g}" for n, w in v))
        else:
            parts.append(f"{k}={v}")
    return "; ".join(parts)


def _mean_std(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1)) if len(a) > 1 else float("nan"))


def table(kd_runs: list[KDRun], dataset: str, progress: bool = False) -> pd.DataFrame:
    """One row per (student, method, options): AP50 / AP mean ± std over the seeds, the paired difference to the
    ``finetune`` control of the same student and schedule (``ap50_delta`` mean ± std over the common seeds, ``wins``
    = seeds where the method beats the control), the student's size, and one ``teacher`` row (the baselines).

    Columns beyond the shared vocabulary: ``student`` (the student spec), ``teacher`` (teacher model),
    ``teacher_ap50`` (its mean AP50 over the seeds used), ``epochs`` (training epochs of the row's model),
    ``kd_share`` (:func:`kd_share`, mean over seeds), ``ap50_delta``, ``ap50_delta_std``, ``wins``."""
    groups: dict[tuple, list[KDRun]] = {}
    for r in kd_runs:
        groups.setdefault(r.group(), []).append(r)
    per_seed = {g: {r.seed: metrics(r, progress) for r in rs} for g, rs in groups.items()}
    teachers = {r.teacher.seed: r.teacher for r in kd_runs}
    t_metrics = {s: baselines.evaluated(t, progress) for s, t in sorted(teachers.items())}
    first = kd_runs[0].teacher
    teacher_ap50 = float(np.mean([m["ap50"] for m in t_metrics.values()]))
    t_cost = _cost(first, None)
    rows = [_row(first.model, dataset, "teacher", "", list(t_metrics.values()), t_cost, t_cost["params"], first)
            | {"student": "", "teacher": first.model, "teacher_ap50": teacher_ap50, "epochs": first.epochs}]
    for g, rs in groups.items():
        ms = per_seed[g]
        control = per_seed.get((g[0], CONTROL, (), *g[3:]))
        cost = _cost(first, rs[0])
        method = rs[0].method
        if method == CONTROL and _parse_student(rs[0].student)[0] == "zoo":
            method = "baseline"         # a zoo student starts from scratch: its control is plain training
        row = _row(student_name(rs[0]), dataset, method, setting(rs[0]), [ms[s] for s in sorted(ms)], cost,
                   t_cost["params"], first)
        row |= {"student": rs[0].student, "teacher": first.model, "teacher_ap50": teacher_ap50, "epochs": g[3]}
        if rs[0].method not in (CONTROL, "gan"):
            row["kd_share"] = float(np.mean([kd_share(r) for r in rs]))
        if control is not None and rs[0].method != CONTROL:
            common = sorted(set(ms) & set(control))
            deltas = [ms[s]["ap50"] - control[s]["ap50"] for s in common]
            row["ap50_delta"], row["ap50_delta_std"] = _mean_std(deltas) if deltas else (np.nan, np.nan)
            row["wins"] = int(sum(d > 0 for d in deltas))
        rows.append(row)
    out = pd.DataFrame(rows)
    if "wins" in out:
        out["wins"] = out["wins"].astype("Int64")
    return out


def kd_share(run: KDRun) -> float:
    """Size of the distillation term relative to the detection loss over ``run``: the mean over epochs of the
    logged ``kd`` (as added) divided by the detection loss as added (``total`` × the batch factor)."""
    from ..engine.hyp import hyp as preset

    t = run.teacher
    h = preset(t.hyp, **{**dict(t.overrides), **dict(run.hyp_overrides)})
    log = pd.read_csv(trained(run) / "results.csv")
    factor = t.batch_size / h.nominal_batch if h.loss_scale == "bs/nominal" else float(t.batch_size)
    return float((log["kd"] / (log["total"] * factor)).mean()) if "kd" in log else float("nan")


def _cost(teacher: Recipe, run: KDRun | None) -> dict:
    """Size and MACs of the teacher (run None) or of ``run``'s student at the training size."""
    from ..bench.cost import cost_row
    from ..models import Darknet, zoo

    classes = baselines.classes_of(teacher.data)
    if run is None:
        return cost_row(zoo.build(teacher.model, classes), teacher.img_size)
    m = _student_model(run, classes)
    return cost_row(Darknet.from_cfg(m) if isinstance(m, str) else m, teacher.img_size)


def _row(model: str, dataset: str, method: str, setting_text: str, ms: list[dict], cost: dict, teacher_params: int,
         t: Recipe) -> dict:
    ap50, ap50_std = _mean_std([m["ap50"] for m in ms])
    ap, ap_std = _mean_std([m["ap"] for m in ms])
    return {"model": model, "dataset": dataset, "method": method, "setting": setting_text, "seeds": len(ms),
            "ap50": ap50, "ap": ap, "ap50_std": ap50_std, "ap_std": ap_std,
            "ap50_seedstyle": float(np.mean([m["ap50_seedstyle"] for m in ms])), "params": cost["params"],
            "params_ratio": cost["params"] / teacher_params, "macs_conv": cost["macs_conv"],
            "macs_seed": cost["macs_seed"], "storage_mib": cost["storage_mib"], "img_size": t.img_size}


def verdict(tab: pd.DataFrame) -> pd.DataFrame:
    """Per distillation row: did it beat the ``finetune`` control?  ``beats`` = mean paired difference > its standard
    error·2 ("yes"), < −2·SE ("worse"), else "no (within noise)"; with one seed, the sign only ("yes?"/"no?")."""
    out = []
    for r in tab[tab["ap50_delta"].notna()].itertuples():
        n = int(r.seeds)
        se = r.ap50_delta_std / np.sqrt(n) if n > 1 and not np.isnan(r.ap50_delta_std) else np.nan
        if np.isnan(se):
            word = "yes?" if r.ap50_delta > 0 else "no?"
        elif r.ap50_delta > 2 * se:
            word = "yes"
        elif r.ap50_delta < -2 * se:
            word = "worse"
        else:
            word = "no (within noise)"
        out.append({"method": r.method, "setting": r.setting, "ap50_delta": r.ap50_delta,
                    "ap50_delta_std": r.ap50_delta_std, "wins": f"{int(r.wins)}/{n}", "beats_finetune": word})
    return pd.DataFrame(out)


def student_model(spec: str, teacher: Recipe):
    """The student ``spec`` as a model (architecture only for zoo students; the pruned student with its weights)."""
    from ..models import Darknet

    m = _student_model(KDRun(teacher, spec), baselines.classes_of(teacher.data))
    return Darknet.from_cfg(m) if isinstance(m, str) else m


def feature_pairs(teacher: Recipe, student: str, teacher_layers: list[int]) -> list[list[int]]:
    """[teacher layer, student layer] pairs for ``teacher_layers``: the same indices for a pruned student (same cfg
    topology), else :func:`yolocomp.distill.teacher.match_layers` (same H×W, nearest relative depth)."""
    from ..models import zoo
    from .teacher import match_layers, pair_layers

    if _parse_student(student)[0] == "pruned":
        return [list(p) for p in pair_layers(teacher_layers, teacher_layers)]
    t_model = zoo.build(teacher.model, baselines.classes_of(teacher.data))
    s_layers = match_layers(t_model, student_model(student, teacher), sorted(teacher_layers), teacher.img_size)
    return [list(p) for p in pair_layers(teacher_layers, s_layers)]


def hint_runs(teachers: list[Recipe], students: list[str], features: dict, epochs: int,
              hyp_overrides: dict | None = None, options: dict | None = None) -> list[KDRun]:
    """Per student: the control (``finetune``; for a zoo student, training from scratch) and one ``hint`` run per
    teacher-layer list of ``features[student]``, each over all teachers (seed-matched)."""
    out = []
    for s in students:
        variants = [{**(options or {}), "feature_pairs": feature_pairs(teachers[0], s, layers)}
                    for layers in features.get(s, [])]
        out += runs(teachers, s, [CONTROL], epochs, None, hyp_overrides)
        out += runs(teachers, s, ["hint"], epochs, {"hint": variants}, hyp_overrides)
    return out


def published_table(seed: str, table_id: str) -> pd.DataFrame:
    """A seed's published accuracy figures of one table as printed (rows × columns)
    (:func:`yolocomp.reference.published`)."""
    from ..reference import published

    p = published(seed, table_id)
    p = p[p["quantity"] == "map"]
    if seed == "SPURS":        # one printed row per student size, the methods are its columns
        wide = p.pivot_table(index="model", columns="column", values="value", aggfunc="first", sort=False)
        return wide[p["column"].drop_duplicates().tolist()].reset_index()
    return p[["model", "method", "value", "dataset"]].reset_index(drop=True)


def delta_figure(tab: pd.DataFrame, title: str = "AP50 change over fine-tuning (mean ± std over seeds)"):
    """Bar chart of ``ap50_delta`` ± ``ap50_delta_std`` per distillation row of :func:`table`."""
    import matplotlib.pyplot as plt

    d = tab[tab["ap50_delta"].notna()]
    labels = [m if not s else f"{m}\n{s}" for m, s in zip(d["method"], d["setting"].fillna(""))]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(d)), 3.2))
    ax.bar(range(len(d)), d["ap50_delta"], yerr=d["ap50_delta_std"].fillna(0), capsize=4,
           color=["tab:green" if v > 0 else "tab:red" for v in d["ap50_delta"]])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(d)), labels, fontsize=8)
    ax.set(ylabel="AP50 − finetune", title=title)
    fig.tight_layout()
    return fig


def history(kd_runs: list[KDRun]) -> pd.DataFrame:
    """The trainer's per-epoch rows (results.csv, with the distillers' logged terms) of every run, with ``method``,
    ``setting`` and ``seed`` columns."""
    frames = [pd.read_csv(trained(r) / "results.csv").assign(method=r.method, setting=setting(r), seed=r.seed)
              for r in kd_runs]
    return pd.concat(frames, ignore_index=True)
