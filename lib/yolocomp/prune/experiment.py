"""The pruning workbook's pipeline (notebooks ``03_pruning``): a trained baseline, its sparsity training, then for
every pruning case the γ-masked, compact and fine-tuned models with their AP50, cost and measured CPU speed-up.

Every expensive step is an artefact of :mod:`yolocomp.workbook.cache`, keyed by everything that determines it, so a
rerun reuses it, a killed run resumes, and two notebooks asking for the same step share it:

* ``train/<hash>``: the baseline, :func:`yolocomp.baselines.trained` (or a width-narrowed zoo model, same recipe);
* ``sparse/<hash>``: the baseline trained on with the L1 on BN γ (:class:`~yolocomp.prune.sparsity.BNSparsity`,
  the seeds' ``-sr --s``), with the |γ| statistics of every epoch in ``sparsity.json``;
* ``pruned/<hash>``: one case: metrics of the γ-masked model (``masked.json``) and of the compact model before
  fine-tuning (``pruned.json``), the compact model as ``pruned.cfg/.weights/.pt``, ``info.json`` (what was
  removed) and ``finetune/`` (the trainer's folder: ``last.pt`` holds the final model and its evaluation).

Latency is never cached: :func:`latencies` measures the compact models interleaved with their baseline in the
calling process, so ``speedup`` = baseline latency / compact latency comes from one run on one machine.

The three AP50 of a row (pruning-spec §0): ``ap50_masked`` = the original shapes with γ of every removed channel
(and, for a removed residual block, of its two convs) set to 0, β kept; ``ap50_pruned`` = the compact model, removed
channels' constants folded into their consumers (EagleEye: recalibrated by adaptive BN instead), before any
training; ``ap50_finetuned`` (= ``ap50``) = the compact model after ``Finetune.epochs`` epochs of training.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
from torch import nn

from .. import baselines
from ..baselines import Recipe
from ..bench.cost import cost_row
from ..bench.latency import measure_latency
from ..data.canonical import DetectionSet
from ..data.yolo_txt import read_yolo
from ..errors import InputError
from ..fileio import atomic_write
from ..models import zoo
from ..models.checkpoint import load_checkpoint
from ..models.darknet import Darknet
from ..models.parse import read_cfg
from ..registry import PRUNERS
from ..workbook import cache
from . import select as _select  # noqa: F401  (registers the channel pruners in PRUNERS)
from .graph import analyze
from .sparsity import BNSparsity, gamma_stats, sparsity_set

LAYER_METHODS = ("layer", "layer-channel")
SEARCH_METHODS = ("eagleeye",)
METRIC_KEYS = ("ap50", "ap", "ap50_seedstyle")


# ----------------------------------------------------------------------------------------------- what is pruned
def narrow_cfg(model: str, classes: int, divisor: int) -> str:
    """The cfg text of zoo ``model`` with every batch-normalized conv's ``filters`` divided by ``divisor`` (at
    least 1; a depthwise conv's ``groups`` follows).  The output convs (no BN) keep their width, so the head still
    predicts ``classes``.  Used to make a deep residual model (yolov3's 23 Darknet blocks) cheap enough for a CPU
    run; ``divisor`` 1 gives the zoo cfg itself."""
    if divisor < 1:
        raise InputError(None, f"width divisor must be >= 1, got {divisor}")
    if divisor == 1:
        return zoo.build(model, classes).to_cfg()
    sections = read_cfg(zoo.cfg_path(model))
    for s in sections[1:]:
        if s.type == "convolutional" and s.options.get("batch_normalize", "0") == "1":
            old = int(s.options["filters"])
            new = max(old // divisor, 1)
            s.options["filters"] = str(new)
            if int(s.options.get("groups", "1")) == old > 1:
                s.options["groups"] = str(new)
    return Darknet(sections, classes).to_cfg()


@dataclass(frozen=True)
class Sparsity:
    """How a baseline is sparsity-trained (pruning-spec §1): ``epochs`` more epochs from its ``best.pt`` with
    ``γ.grad += s·sign(γ)`` on the BN set ``mode`` (0 normal, 1 shortcut/slim, 2 convs before shortcuts) under the
    ``schedule`` (constant, global, local) whose second phase starts after ``decay_at`` of the epochs (TAN: 0.5).
    ``lr0``: the initial learning rate of this run (None = the recipe's; TAN's README: a large learning rate
    sparsifies faster, the decaying one lets the accuracy recover).
    ``overrides``: other hyperparameters changed from the baseline recipe's, as ``((name, value), ...)``; the
    default drops the burn-in, because this run continues a trained model."""

    epochs: int
    s: float
    mode: int = 1
    schedule: str = "constant"
    lr0: float | None = None
    decay_at: float = 0.5
    overrides: tuple = (("warmup", "none"),)

    def key(self) -> dict:
        k = asdict(self)
        k["overrides"] = [list(o) for o in self.overrides]
        return k

    def hyp_overrides(self) -> tuple:
        return self.overrides + ((("lr0", self.lr0),) if self.lr0 is not None else ())

    def setting(self) -> str:
        lr = f", lr0 {self.lr0:g}" if self.lr0 is not None else ""
        phase = f" after {self.decay_at:g}" if self.schedule != "constant" else ""
        return f"s={self.s:g}, {self.epochs} epochs{lr}, set {self.mode}, {self.schedule}{phase}"

    @classmethod
    def from_params(cls, params, prefix: str = "") -> Sparsity:
        """The sparsity run a pruning notebook's parameters describe: ``SPARSITY_EPOCHS``, ``SPARSITY_DECAY_AT``
        and ``<prefix>SPARSITY_S`` / ``_MODE`` / ``_SCHEDULE`` / ``_LR0`` (0 = the recipe's lr0), so a notebook can
        describe a second run (``prefix="LAYER_"``) beside the first."""
        def get(name):
            return getattr(params, f"{prefix}SPARSITY_{name}")

        return cls(params.SPARSITY_EPOCHS, get("S"), get("MODE"), get("SCHEDULE"), get("LR0") or None,
                   params.SPARSITY_DECAY_AT)


@dataclass(frozen=True)
class Source:
    """A trained model to prune: the baseline of ``recipe`` (its zoo model with widths divided by ``divisor``),
    sparsity-trained when ``sparsity`` is given."""

    recipe: Recipe
    divisor: int = 1
    sparsity: Sparsity | None = None

    def baseline(self) -> Source:
        """The same model without sparsity training."""
        return replace(self, sparsity=None)

    def key(self) -> dict:
        k = {"baseline": self.recipe.key()}
        if self.divisor != 1:
            k["width_divisor"] = self.divisor
        if self.sparsity is not None:
            k["sparsity"] = self.sparsity.key()
        return k

    @property
    def width(self) -> float:
        return 1.0 / self.divisor

    def classes(self) -> int:
        return baselines.classes_of(self.recipe.data)

    def run(self, progress: bool = False) -> Path:
        """The artefact folder of this model, training it (or resuming) first if needed."""
        if self.sparsity is not None:
            return _sparse_run(self, progress)
        if self.divisor == 1:
            return baselines.trained(self.recipe, progress)
        return _narrow_run(self, progress)

    def checkpoint(self, progress: bool = False) -> Path:
        """The checkpoint that is pruned: the baseline's ``best.pt``; after sparsity training its ``last.pt``
        (the end of the sparsity run, as the seeds prune it; its best-fitness epoch is the least sparse one)."""
        return self.run(progress) / ("last.pt" if self.sparsity is not None else "best.pt")

    def model(self, progress: bool = False) -> Darknet:
        """The trained model, in eval mode, on the CPU."""
        return load_checkpoint(self.checkpoint(progress))[0]

    def valid(self) -> DetectionSet:
        return read_yolo(Path(self.recipe.data), "valid")

    def metrics(self, progress: bool = False) -> dict:
        """AP50, AP and seed-style AP50 on the valid split: the baseline's from ``baselines.evaluated`` (or, for a
        narrowed model, the same evaluation kept in ``<run>/val``); a sparse model's from the trainer's
        evaluation of its last epoch."""
        if self.sparsity is not None:
            return _checkpoint_metrics(self.checkpoint(progress))
        if self.divisor == 1:
            return baselines.evaluated(self.recipe, progress)
        out = self.run(progress) / "val"
        if (out / "metrics.json").is_file():
            return json.loads((out / "metrics.json").read_text())
        return _evaluate(self.model(), self, out_dir=out)

    def pool(self, model: Darknet | None = None) -> list[int]:
        """The BN convs whose γ matter here: the sparsity set (mode 1, the prunable convs, for a baseline)."""
        mode = self.sparsity.mode if self.sparsity is not None else 1
        return sparsity_set(analyze(model if model is not None else self.model()), mode)


def _hyp(recipe: Recipe, extra: tuple):
    from ..engine.hyp import hyp as preset

    return preset(recipe.hyp, **{**dict(recipe.overrides), **dict(extra)})


def _narrow_run(src: Source, progress: bool) -> Path:
    from ..engine.trainer import train

    r = src.recipe

    def build(folder: Path) -> None:
        t0 = time.monotonic()
        cfg = narrow_cfg(r.model, src.classes(), src.divisor)
        train(cfg, r.data, r.epochs, r.batch_size, r.img_size, folder, device=r.device, hyp=_hyp(r, ()),
              seed=r.seed, resume=(folder / "last.pt").is_file(), progress=progress)
        atomic_write(folder / "train.json", json.dumps({"train_seconds": time.monotonic() - t0,
                                                        "epochs": r.epochs}) + "\n")

    return cache.artefact("train", src.key(), build, resumable=True)


class _LoggedSparsity(BNSparsity):
    """BNSparsity that keeps its per-epoch |γ| statistics (and the epoch's AP50) in a json file, so a resumed run
    continues the history instead of losing the epochs before the kill."""

    def __init__(self, graph, path: Path, **kwargs):
        super().__init__(graph, **kwargs)
        self.path = path
        if path.is_file():
            self.history = json.loads(path.read_text())

    def save(self) -> None:
        by_epoch = {r["epoch"]: r for r in self.history}      # a redone epoch replaces its earlier record
        self.history = [by_epoch[e] for e in sorted(by_epoch)]
        atomic_write(self.path, json.dumps(self.history, indent=1) + "\n")

    def on_epoch_end(self, state, metrics: dict) -> None:
        row = self.record(state.raw_model, state.epoch)
        row["ap50"] = metrics.get("ap50")
        self.save()


def _sparse_run(src: Source, progress: bool) -> Path:
    from ..engine.trainer import train

    r, sp = src.recipe, src.sparsity
    base = src.baseline()

    def build(folder: Path) -> None:
        weights = base.checkpoint(progress)
        model = load_checkpoint(weights)[0]
        cb = _LoggedSparsity(analyze(model), folder / "sparsity.json", mode=sp.mode, s=sp.s, schedule=sp.schedule,
                             decay_at=sp.decay_at)
        if not any(row["epoch"] == -1 for row in cb.history):       # epoch -1: the baseline
            cb.history.append({"epoch": -1, "s": 0.0, **gamma_stats(model, cb.layers),
                               "ap50": base.metrics(progress)["ap50"]})
            cb.save()
        t0 = time.monotonic()
        train(model, r.data, sp.epochs, r.batch_size, r.img_size, folder, weights=weights, device=r.device,
              hyp=_hyp(r, sp.hyp_overrides()), seed=r.seed, resume=(folder / "last.pt").is_file(), callbacks=[cb],
              progress=progress)
        atomic_write(folder / "train.json", json.dumps({"train_seconds": time.monotonic() - t0,
                                                        "epochs": sp.epochs}) + "\n")

    return cache.artefact("sparse", src.key(), build, resumable=True)


def sparsity_history(src: Source) -> list[dict]:
    """The per-epoch |γ| statistics of ``src``'s sparsity run (epoch -1 = the baseline), each
    ``{"epoch", "s", "ap50", "channels", "mean", "max", "p1" … "p99", "below_0.001", "below_0.01", "below_0.1"}``:
    the input of :func:`yolocomp.prune.sparsity.gamma_histogram_figure`."""
    if src.sparsity is None:
        raise InputError(None, "sparsity_history needs a Source with sparsity training")
    return json.loads((src.run() / "sparsity.json").read_text())


# ---------------------------------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class Case:
    """One pruning of a source model.  ``method``: a channel pruner of ``PRUNERS`` (kind ``channel``: normal,
    regular, shortcut, slim), ``layer`` (residual blocks, spec §7), ``layer-channel`` (slim then layer, §8) or
    ``eagleeye`` (§10).  ``percent``: the pool share whose |γ| falls below the global threshold (EagleEye: the
    share of MACs to remove).  ``options`` as ``((name, value), ...)``: ``layer_keep`` (slim, layer-channel),
    ``multiple`` (regular), ``blocks`` (layer methods), and for EagleEye ``candidates``, ``delta``, ``pool``,
    ``abn_steps`` (adaptive-BN batches), ``score_images`` (valid images that score a candidate, 0 = all)."""

    method: str
    percent: float | None = None
    options: tuple = ()

    @classmethod
    def of(cls, method: str, percent: float | None = None, **options) -> Case:
        known = PRUNERS.names(kind="channel") + list(LAYER_METHODS + SEARCH_METHODS)
        if method not in known:
            raise InputError(None, f"unknown pruning method {method!r}; choose one of {', '.join(known)}")
        if method != "layer" and (percent is None or not 0.0 <= float(percent) < 1.0):
            raise InputError(None, f"{method}: percent must be in [0, 1), got {percent!r}")
        if method in LAYER_METHODS and int(options.get("blocks", -1)) < 0:
            raise InputError(None, f"{method}: give the number of residual blocks to remove as blocks=")
        return cls(method, None if percent is None else float(percent), tuple(sorted(options.items())))

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def key(self) -> dict:
        return {"method": self.method, "percent": self.percent, "options": {k: v for k, v in self.options}}

    def setting(self) -> str:
        """The table's ``setting`` text: percent, then the method's options (``0.7 keep 0.01, 8 blocks``)."""
        parts = [] if self.percent is None else [f"{self.percent:g}"]
        if self.method in ("slim", "layer-channel"):
            parts.append(f"keep {self.option('layer_keep', 0.01):g}")
        if self.method == "regular":
            parts.append(f"x{self.option('multiple', 8)}")
        text = " ".join(parts)
        if self.method in LAYER_METHODS:
            text = ", ".join(t for t in (text, f"{self.option('blocks')} blocks") if t)
        if self.method == "eagleeye":
            text += f" of MACs, {self.option('pool', 'normal')}, {self.option('candidates', 200)} candidates"
        return text


def cases(methods: dict, **options) -> list[Case]:
    """``{"method": [percent, ...]}`` (layer: ``[blocks, ...]``; layer-channel: ``[[percent, blocks], ...]``)
    as :class:`Case` s; each method takes the ``options`` it knows (layer_keep, multiple)."""
    wanted = {"slim": ("layer_keep",), "layer-channel": ("layer_keep",), "regular": ("multiple",)}
    out = []
    for method, values in methods.items():
        opts = {k: v for k, v in options.items() if k in wanted.get(method, ())}
        for v in values:
            if method == "layer":
                out.append(Case.of(method, None, blocks=int(v), **opts))
            elif method == "layer-channel":
                out.append(Case.of(method, float(v[0]), blocks=int(v[1]), **opts))
            else:
                out.append(Case.of(method, float(v), **opts))
    return out


@dataclass
class Pruned:
    """A pruned model and its provenance: ``masks`` (conv index -> keep mask over its output channels, original
    indices), ``blocks`` (removed residual blocks, by their 3×3 conv), ``masked`` (original shapes, γ zeroed),
    ``compact`` (the pruned network, eval mode), ``info`` (json-able facts for ``info.json``), ``history`` (an
    EagleEye search's candidates)."""

    masks: dict
    blocks: list[int]
    masked: Darknet
    compact: Darknet
    info: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def prune(src: Source, case: Case, model: Darknet | None = None) -> Pruned:
    """Apply ``case`` to ``src``'s trained model (or the given ``model``).  ValueError/InputError when the case
    cannot be applied (a percent that empties a layer, more blocks than the model has)."""
    from .cli import masked_model
    from .layers import layer_channel_prune, layer_prune
    from .surgery import compact

    model = model if model is not None else src.model()
    info: dict = {"layers_before": len(model.layers)}
    history: list[dict] = []
    blocks: list[int] = []
    if case.method == "layer":
        res = layer_prune(model, int(case.option("blocks")))
        masks, blocks, pruned = {}, res.blocks, res.model
    elif case.method == "layer-channel":
        masks, res = layer_channel_prune(model, int(case.option("blocks")), case.percent,
                                         float(case.option("layer_keep", 0.01)))
        blocks, pruned = res.blocks, res.model
    elif case.method == "eagleeye":
        masks, pruned, history, info["macs_ratio_search"] = _eagleeye(src, case, model)
    else:
        graph = analyze(model)
        kwargs = {k: v for k, v in case.options if k in ("layer_keep", "multiple")}
        masks = PRUNERS.get(case.method)(model, graph, case.percent, **kwargs)
        pruned = compact(model, masks)
    info.update({"layers": len(pruned.layers), "blocks": [int(t) for t in blocks],
                 "channels_kept": {str(i): int(m.sum()) for i, m in masks.items() if not bool(m.all())}})
    return Pruned(masks, blocks, masked_model(model, masks, blocks).eval(), pruned.eval(), info, history)


def _eagleeye(src: Source, case: Case, model: Darknet):
    from ..data.dataset import DetectionDataset, make_loader
    from .eagleeye import eagleeye

    r = src.recipe
    train_set = read_yolo(Path(r.data), "train")
    loader = make_loader(DetectionDataset(train_set, r.img_size, augment=True, seed=r.seed), r.batch_size,
                         shuffle=True, seed=r.seed)
    steps = case.option("abn_steps") or math.ceil(0.1 * len(train_set) / r.batch_size) + 2
    valid = src.valid()
    n = int(case.option("score_images", 0))
    scored = replace(valid, images=valid.images[:n]) if n else valid

    def score(net: nn.Module) -> float:
        # SPURS scores candidates at conf 0.1 so that bad sub-nets do not flood NMS (spec §10.7)
        return float(_evaluate(net, src, ds=scored, conf_thres=0.1)["ap50"])

    res = eagleeye(model, score, loader, int(case.option("candidates", 200)), case.percent,
                   float(case.option("delta", 0.05)), case.option("pool", "normal"), r.img_size, steps, r.seed,
                   base=int(case.option("multiple", 8)))
    return res.masks, res.model, res.history, res.macs_ratio


def _evaluate(model: nn.Module, src: Source, ds: DetectionSet | None = None, out_dir: Path | None = None,
              conf_thres: float = 0.001) -> dict:
    from ..eval import evaluate

    r = src.recipe
    m = evaluate(model, ds if ds is not None else src.valid(), r.img_size, r.batch_size, r.device, out_dir,
                 conf_thres=conf_thres)
    return {k: float(m[k]) for k in METRIC_KEYS} if out_dir is None else m


def _checkpoint_metrics(path: Path) -> dict:
    _, meta = load_checkpoint(path)
    return {k: float(meta["metrics"][k]) for k in METRIC_KEYS}


@dataclass(frozen=True)
class Finetune:
    """Training of a compact model: ``epochs`` (0 = none) with the source recipe's hyperparameters changed by
    ``overrides`` (default: no burn-in, the model is trained already)."""

    epochs: int
    overrides: tuple = (("warmup", "none"),)

    def key(self) -> dict:
        return {"epochs": self.epochs, "overrides": [list(o) for o in self.overrides]}


def pruned_run(src: Source, case: Case, finetune: Finetune, progress: bool = False) -> Path:
    """The artefact folder of ``case`` applied to ``src`` and fine-tuned (see the module docstring for its
    files), computing what is missing; a killed run resumes at the step it was in."""
    from ..engine.trainer import train
    from .export import save_pruned

    r = src.recipe

    def build(folder: Path) -> None:
        if not (folder / "info.json").is_file():
            p = prune(src, case, src.model(progress))
            atomic_write(folder / "masked.json", json.dumps(_evaluate(p.masked, src)) + "\n")
            atomic_write(folder / "pruned.json", json.dumps(_evaluate(p.compact, src)) + "\n")
            if p.history:
                atomic_write(folder / "candidates.csv", pd.DataFrame(p.history).to_csv(index=False))
            save_pruned(p.compact, folder, "pruned", method=case.method, setting=case.setting())
            atomic_write(folder / "info.json", json.dumps(p.info, indent=1) + "\n")
        if finetune.epochs > 0:
            model = load_checkpoint(folder / "pruned.pt")[0]
            ft = folder / "finetune"
            train(model, r.data, finetune.epochs, r.batch_size, r.img_size, ft, device=r.device,
                  hyp=_hyp(r, finetune.overrides), seed=r.seed, resume=(ft / "last.pt").is_file(), eval_every=0,
                  progress=progress)

    config = {"source": src.key(), "case": case.key(), "finetune": finetune.key()}
    return cache.artefact("pruned", config, build, resumable=True)


def final_model(folder: Path) -> Darknet:
    """The model a :func:`pruned_run` folder ends with: the fine-tuned one, else the compact one."""
    ft = folder / "finetune" / "last.pt"
    return load_checkpoint(ft if ft.is_file() else folder / "pruned.pt")[0]


def candidates(folder: Path) -> pd.DataFrame:
    """The EagleEye candidates of a :func:`pruned_run` folder (``candidate, draws, macs_ratio, score,
    channels_kept``); empty for other methods."""
    path = folder / "candidates.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


# ------------------------------------------------------------------------------------------------ measurements
def latencies(models: dict[str, nn.Module], img_size: int, threads: int | None = 1, warmup: int = 3,
              iters: int = 20, rounds: int = 3) -> dict[str, dict]:
    """CPU latency at batch 1 of every model, measured in ``rounds`` interleaved passes (each pass times every
    model once with :func:`yolocomp.bench.latency.measure_latency`, ``warmup`` + ``iters`` forwards), so a load
    change on a shared machine hits all models alike.  Per model: ``latency_ms`` = median over the rounds of
    each round's median, ``device_name``, ``threads``."""
    if rounds < 1:
        raise InputError(None, f"latency rounds must be >= 1, got {rounds}")
    per: dict[str, list[float]] = {k: [] for k in models}
    last: dict = {}
    for _ in range(rounds):
        for name, m in models.items():
            last = measure_latency(m, img_size, batch=1, threads=threads, warmup=warmup, iters=iters)
            per[name].append(last["latency_ms"])
    return {k: {"latency_ms": float(pd.Series(v).median()), "device_name": last["device_name"],
                "threads": last["threads"]} for k, v in per.items()}


def _bn_channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.layers if getattr(m, "bn", None) is not None)


def _cost(model: nn.Module, img_size: int) -> dict:
    c = cost_row(model, img_size)
    return {k: c[k] for k in ("params", "macs_conv", "macs_seed", "storage_mib")}


def pruning_table(rows: list[tuple[Source, Case]], finetune: Finetune, dataset: str, latency: dict | None = None,
                  progress: bool = False) -> pd.DataFrame:
    """One row per ``(source, case)``: the pruned model fine-tuned, against the baseline of its source.

    Runs (or reuses) every :func:`pruned_run`; a case that cannot be applied (a percent that would empty a layer)
    is skipped with a warning.  Columns: the shared vocabulary (``ap50``, ``ap``, ``ap50_seedstyle`` of the
    fine-tuned model; cost of the compact model; ``params_ratio`` against the baseline; ``latency_ms`` and
    ``speedup`` = baseline latency / compact latency at batch 1, measured now by :func:`latencies` with
    ``latency``'s keywords) plus ``percent``, ``sparsity`` (the source's sparsity training, ``none`` for the
    baseline), ``ap50_masked``, ``ap50_pruned``, ``ap50_finetuned``,
    ``macs_ratio``, ``channels_ratio`` (BN-conv channels kept), ``layers``, ``blocks_removed``,
    ``finetune_epochs``, ``baseline_ap50``, ``baseline_latency_ms``, ``threads``, and ``width`` when a source
    is narrowed."""
    done = []
    for src, case in rows:
        try:
            done.append((src, case, pruned_run(src, case, finetune, progress)))
        except ValueError as e:       # select.* says which percent would be usable
            warnings.warn(f"skipped {case.method} {case.setting()}: {e}", stacklevel=2)
    bases = {}
    for src, _, _ in done:
        b = src.baseline()
        key = json.dumps(b.key(), sort_keys=True)
        if key not in bases:
            bases[key] = (b, b.model(), b.metrics())
    models = {f"b{k}": m for k, (_, m, _) in enumerate(bases.values())}
    finals = [final_model(f) for _, _, f in done]
    models.update({f"c{k}": m for k, m in enumerate(finals)})
    lat = latencies(models, rows[0][0].recipe.img_size, **(latency or {})) if done else {}
    base_index = {key: k for k, key in enumerate(bases)}
    base_cost = {key: _cost(m, b.recipe.img_size) | {"channels": _bn_channels(m)}
                 for key, (b, m, _) in bases.items()}
    out = []
    for k, ((src, case, folder), model) in enumerate(zip(done, finals)):
        key = json.dumps(src.baseline().key(), sort_keys=True)
        b_lat = lat[f"b{base_index[key]}"]
        c_lat = lat[f"c{k}"]
        bc = base_cost[key]
        r = src.recipe
        info = json.loads((folder / "info.json").read_text())
        masked = json.loads((folder / "masked.json").read_text())
        pruned = json.loads((folder / "pruned.json").read_text())
        final = _checkpoint_metrics(folder / "finetune" / "last.pt") if finetune.epochs > 0 else pruned
        cost = _cost(model, r.img_size)
        row = {"model": r.model, "dataset": dataset, "method": case.method, "setting": case.setting(), "seeds": 1,
               "ap50": final["ap50"], "ap": final["ap"], "ap50_seedstyle": final["ap50_seedstyle"], **cost,
               "params_ratio": cost["params"] / bc["params"], "latency_ms": c_lat["latency_ms"],
               "device": c_lat["device_name"], "batch": 1, "img_size": r.img_size,
               "speedup": b_lat["latency_ms"] / c_lat["latency_ms"],
               "percent": case.percent if case.percent is not None else float("nan"),
               "sparsity": src.sparsity.setting() if src.sparsity is not None else "none",
               "ap50_masked": masked["ap50"], "ap50_pruned": pruned["ap50"], "ap50_finetuned": final["ap50"],
               "macs_ratio": cost["macs_conv"] / bc["macs_conv"],
               "channels_ratio": _bn_channels(model) / bc["channels"], "layers": info["layers"],
               "blocks_removed": len(info["blocks"]), "finetune_epochs": finetune.epochs,
               "baseline_ap50": bases[key][2]["ap50"], "baseline_latency_ms": b_lat["latency_ms"],
               "threads": c_lat["threads"]}
        if src.divisor != 1:
            row["width"] = src.width
        out.append(row)
    return pd.DataFrame(out)


def source_table(sources: list[Source], dataset: str, progress: bool = False) -> pd.DataFrame:
    """The models the cases start from, one row each: ``method`` ``baseline`` or ``sparsity`` (``setting`` =
    :meth:`Sparsity.setting`), metrics on the valid split, cost, and over the pool of prunable convs
    (:meth:`Source.pool`) ``gamma_p50``, ``gamma_below_0.01`` (share of |γ| < 0.01) and ``percent_limit_normal``
    (the largest percent normal pruning accepts, spec §2.2)."""
    from .select import gammas, normal_pool, percent_limit

    rows = []
    for src in sources:
        model = src.model(progress)
        m = src.metrics(progress)
        st = gamma_stats(model, src.pool(model))
        normal = normal_pool(analyze(model))
        row = {"model": src.recipe.model, "dataset": dataset,
               "method": "sparsity" if src.sparsity is not None else "baseline",
               "setting": src.sparsity.setting() if src.sparsity is not None else "", "seeds": 1,
               **{k: float(m[k]) for k in METRIC_KEYS}, **_cost(model, src.recipe.img_size),
               "img_size": src.recipe.img_size, "gamma_p50": st["p50"], "gamma_below_0.01": st["below_0.01"],
               "percent_limit_normal": percent_limit(gammas(model, normal)) if normal else float("nan")}
        if src.divisor != 1:
            row["width"] = src.width
        rows.append(row)
    return pd.DataFrame(rows)


def matched_percent(src: Source, method: str, macs_ratio: float, tol: float = 1e-3, **options) -> float:
    """The percent (4 decimals) at which channel pruner ``method`` leaves ``src``'s model with the conv MACs ratio
    closest to ``macs_ratio`` (bisection; MACs fall as the percent grows), e.g. slim at an EagleEye budget."""
    from .eagleeye import MacsCounter

    model = src.model()
    graph = analyze(model)
    counter = MacsCounter(model, src.recipe.img_size)
    fn = PRUNERS.get(method)

    def ratio(p: float) -> float:
        return counter(fn(model, graph, p, **options)) / counter.full

    lo, hi = 0.0, 0.9999
    best = (abs(ratio(lo) - macs_ratio), lo)
    for _ in range(30):
        mid = round((lo + hi) / 2, 4)
        try:
            r = ratio(mid)
        except ValueError:            # this pruner cannot go that far: search below
            hi = mid
            continue
        best = min(best, (abs(r - macs_ratio), mid))
        if abs(r - macs_ratio) <= tol or hi - lo < 1e-4:
            break
        lo, hi = (mid, hi) if r > macs_ratio else (lo, mid)
    return best[1]


def compact_macs_ratio(folder: Path, src: Source) -> float:
    """Conv MACs of a :func:`pruned_run` folder's compact model / those of ``src``'s baseline."""
    from ..bench.cost import macs_conv

    compact = load_checkpoint(folder / "pruned.pt")[0]
    return macs_conv(compact, src.recipe.img_size) / macs_conv(src.baseline().model(), src.recipe.img_size)


def eagleeye_vs_slim(base: Source, sparse: Source, percents, finetune: Finetune, search: dict,
                     layer_keep: float = 0.01, progress: bool = False) -> list[tuple[Source, Case]]:
    """Per MACs budget in ``percents``: the EagleEye case on ``base`` (``search``: its options, see :class:`Case`),
    searched now or taken from the cache, and the slim case on ``sparse`` whose compact model has the winner's
    conv MACs ratio (:func:`matched_percent`).  Returns ``[(base, eagleeye), (sparse, slim), ...]`` for
    :func:`pruning_table`."""
    pairs = []
    for p in percents:
        ee = Case.of("eagleeye", p, **search)
        target = compact_macs_ratio(pruned_run(base, ee, finetune, progress), base)
        pct = matched_percent(sparse, "slim", target, layer_keep=layer_keep)
        pairs += [(base, ee), (sparse, Case.of("slim", pct, layer_keep=layer_keep))]
    return pairs
