"""The quantization notebooks' experiments: fine-tuning runs in the artefact cache and their table rows.

A :class:`QuantRun` names everything that determines a quantized fine-tuning (the float baseline recipe it starts
from, the scheme and its options, the layer range, the schedule, and — for stage-wise training — the run whose
weights it starts from); its key is the cache key, so a rerun reuses it and a killed one resumes.  Metrics are the
trainer's last evaluation (pycocotools on the ``valid`` split, the EMA model), kept in ``quant.json``.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..baselines import Recipe, evaluated, trained
from ..bench.cost import count_params, storage_mib
from ..data.yolo_txt import read_yolo
from ..models.checkpoint import load_checkpoint
from ..workbook import cache
from .layers import binary_weight_fraction, conv_units, packed_mib, strip_quantizers
from .schemes import quantize_model, training_forwards

METRIC_KEYS = ("ap50", "ap", "ap75", "ap50_seedstyle", "p_seedstyle", "r_seedstyle")


@dataclass(frozen=True)
class QuantRun:
    """One quantized fine-tuning of ``base``'s best checkpoint (or of ``parent``'s result, stage-wise).

    options: the scheme's keyword options as sorted ``((name, value), ...)``; hyp/overrides: a preset of
    :mod:`yolocomp.engine.hyp` and its overrides; epochs/batch_size of this run (image size, seed, data and device
    are the baseline's)."""

    base: Recipe
    scheme: str
    qlayers: int = 0
    heads: bool | None = None
    options: tuple = ()
    epochs: int = 1
    batch_size: int = 16
    hyp: str = "default"
    overrides: tuple = ()
    parent: QuantRun | None = None

    def key(self) -> dict:
        """Cache key, with the scheme's defaults filled in (the same run however it was spelled)."""
        from .schemes import SCHEMES

        sch = SCHEMES[self.scheme]
        opts = {**sch.options, **dict(self.options)}
        heads = sch.heads if self.heads is None else bool(self.heads)
        return {"base": self.base.key(), "scheme": self.scheme, "qlayers": self.qlayers, "heads": heads,
                "options": sorted([k, v] for k, v in opts.items()), "epochs": self.epochs,
                "batch_size": self.batch_size,
                "hyp": self.hyp, "overrides": [list(o) for o in self.overrides],
                "parent": self.parent.key() if self.parent is not None else None}

    def spec(self) -> dict:
        """Keywords of :func:`quantize_model` for this run."""
        return {"scheme": self.scheme, "qlayers": self.qlayers, "heads": self.heads, **dict(self.options)}


def runs(base: Recipe, scheme: str, qlayers: list[int], stagewise: bool = False, options: dict | None = None,
         heads: bool | None = None, epochs: int = 1, batch_size: int = 16, hyp: str = "default",
         overrides: dict | None = None) -> list[QuantRun]:
    """One :class:`QuantRun` per ``qlayers`` value, in the given order; with ``stagewise`` each starts from the
    previous one's weights (SPURS' recommended schedule: q decreasing, one run per stage)."""
    opts = tuple(sorted((options or {}).items()))
    ov = tuple(sorted((overrides or {}).items()))
    out: list[QuantRun] = []
    for q in qlayers:
        parent = out[-1] if stagewise and out else None
        out.append(QuantRun(base, scheme, q, heads, opts, epochs, batch_size, hyp, ov, parent))
    return out


@functools.lru_cache(maxsize=4)
def _loaded(recipe: Recipe) -> nn.Module:
    model, _ = load_checkpoint(trained(recipe) / "best.pt")
    return model


def float_model(recipe: Recipe) -> nn.Module:
    """The baseline's best checkpoint (trained first if needed), in eval mode (a fresh copy each call)."""
    return copy.deepcopy(_loaded(recipe))


_float_model = float_model


def float_cost(recipe: Recipe) -> dict:
    """``params`` and ``storage_mib`` (fp32 darknet .weights) of the baseline model."""
    m = _loaded(recipe)
    return {"params": count_params(m), "storage_mib": storage_mib(m)}


def start_model(run: QuantRun) -> nn.Module:
    """The float model ``run`` quantizes: the baseline's best checkpoint, or the parent run's latent weights with
    its quantizers removed (stage-wise)."""
    if run.parent is None:
        return _float_model(run.base)
    return strip_quantizers(load_run(run.parent))


def trained_run(run: QuantRun, progress: bool = False) -> Path:
    """The cache folder of ``run`` (``last.pt``, ``best.pt``, ``results.csv``, ``quant.json``), training or
    resuming it first when needed.  ``quant.json`` holds the metrics of ``best.pt`` (the trainer's evaluation of
    the EMA model at its best epoch), the spec, the training forwards ``S`` and the first/last epoch's loss."""
    from ..engine.hyp import hyp as preset
    from ..engine.trainer import train

    def build(folder: Path) -> None:
        t0 = time.monotonic()
        data = Path(run.base.data)
        steps = training_forwards(len(read_yolo(data, "train")), run.batch_size, run.epochs)
        model = quantize_model(start_model(run), total_steps=steps, **run.spec())
        res = train(model, data, run.epochs, run.batch_size, run.base.img_size, folder, device=run.base.device,
                    hyp=preset(run.hyp, **dict(run.overrides)), seed=run.base.seed,
                    resume=(folder / "last.pt").is_file(), progress=progress)
        # the metrics of the checkpoint every later step loads (best.pt), not of the last epoch
        best = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)["metrics"]
        info = {"metrics": {k: best.get(k) for k in METRIC_KEYS}, "train_seconds": time.monotonic() - t0,
                "spec": {k: v for k, v in model.quant_spec.items()}, "total_steps": steps,
                "first_loss": float(res.history.total.iloc[0]), "last_loss": float(res.history.total.iloc[-1])}
        (folder / "quant.json").write_text(json.dumps(info, indent=1, default=str) + "\n")

    return cache.artefact("quant", run.key(), build, resumable=True)


def run_info(run: QuantRun, progress: bool = False) -> dict:
    """``quant.json`` of ``run`` (metrics, spec, seconds), training it first if needed."""
    return json.loads((trained_run(run, progress) / "quant.json").read_text())


def load_run(run: QuantRun) -> nn.Module:
    """The trained quantized model of ``run`` (EMA weights of ``best.pt``), in eval mode."""
    folder = trained_run(run)
    model = quantize_model(start_model(run), **run.spec())
    state = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    return model.eval()


def baseline_row(base: Recipe, dataset: str) -> dict:
    """The float baseline as a table row (method ``baseline``, setting ``fp32``)."""
    m = evaluated(base)
    cost = float_cost(base)
    return {"model": base.model, "dataset": dataset, "method": "baseline", "setting": "fp32", "seeds": 1,
            "ap50": m["ap50"], "ap": m["ap"], "ap50_seedstyle": m["ap50_seedstyle"], "params": cost["params"],
            "storage_mib": cost["storage_mib"], "img_size": base.img_size, "packed_mib": packed_mib(_loaded(base)),
            "epochs": base.epochs}


def run_row(run: QuantRun, dataset: str, setting: str, progress: bool = False) -> dict:
    """A trained run as a table row: metrics, what was quantized, float and packed storage."""
    info = run_info(run, progress)
    model = load_run(run)
    n_units = sum(1 for i in model.quant_spec["layers"] for _ in conv_units(model.layers[i]))
    cost = float_cost(run.base)
    m = info["metrics"]
    return {"model": run.base.model, "dataset": dataset, "method": run.scheme, "setting": setting, "seeds": 1,
            "ap50": m["ap50"], "ap": m["ap"], "ap50_seedstyle": m["ap50_seedstyle"],
            "params": cost["params"], "storage_mib": cost["storage_mib"], "img_size": run.base.img_size,
            "qlayers": run.qlayers, "quantized_layers": len(model.quant_spec["layers"]), "quantized_convs": n_units,
            "binary_fraction": binary_weight_fraction(model), "packed_mib": packed_mib(model),
            "stage_from": "baseline" if run.parent is None else f"qlayers={run.parent.qlayers}",
            "epochs": run.epochs, "train_loss": info["last_loss"]}


@dataclass(frozen=True)
class PlanItem:
    """One row of a notebook's plan: the run, its ``setting`` text and extra columns for the table."""

    run: QuantRun
    setting: str
    extra: tuple = ()


def binary_plan(base: Recipe, schemes: list[str], variants: list[str], qlayers: list[int], stagewise: bool,
                epochs: int, batch_size: int, hyp: str, hyp_set: dict) -> list[PlanItem]:
    """Scheme × variant × stage: ``paper`` = the scheme's defaults (BinaryNet / XNOR-Net), ``seed`` = SPURS'
    options (:data:`yolocomp.quant.SEED_OPTIONS`); one stage-wise chain per scheme and variant."""
    from .schemes import SCHEMES, SEED_OPTIONS

    items = []
    for scheme in schemes:
        for variant in variants:
            if variant not in ("paper", "seed"):
                raise ValueError(f"binary variant must be 'paper' or 'seed', got {variant!r}")
            opts = dict(SEED_OPTIONS.get(scheme, {})) if variant == "seed" else {}
            full = {**SCHEMES[scheme].options, **opts}
            for r in runs(base, scheme, qlayers, stagewise, opts, None, epochs, batch_size, hyp, hyp_set):
                extra = {"variant": variant, "levels": full["levels"],
                         "activations": bool(full.get("activations", False)),
                         "scale": "channel" if full.get("per_channel") else ("tensor" if scheme == "bwn" else "none")}
                items.append(PlanItem(r, f"{variant} q={r.qlayers}", tuple(extra.items())))
    return items


def dorefa_plan(base: Recipe, bits: list[list[int]], heads: bool, epochs: int, batch_size: int, hyp: str,
                hyp_set: dict) -> list[PlanItem]:
    """One DoReFa run per ``[w_bits, a_bits]``, every conv from layer 0 (heads per ``heads``)."""
    items = []
    for w, a in bits:
        r = runs(base, "dorefa", [0], False, {"w_bits": int(w), "a_bits": int(a)}, heads, epochs, batch_size, hyp,
                 hyp_set)[0]
        items.append(PlanItem(r, f"w{w}a{a}", (("w_bits", int(w)), ("a_bits", int(a)))))
    return items


def plan_table(base: Recipe, plan: list[PlanItem], dataset: str, progress: bool = False) -> pd.DataFrame:
    """The baseline row followed by one row per plan item (trained or reused)."""
    rows = [baseline_row(base, dataset)]
    rows += [{**run_row(i.run, dataset, i.setting, progress), **dict(i.extra)} for i in plan]
    return pd.DataFrame(rows)


def published_rows(seed: str, table: str) -> pd.DataFrame:
    """The seed's published figures of one table (``yolocomp.reference.published``), the columns that matter."""
    from ..reference import published

    cols = ["seed", "table", "row", "model", "column", "value", "unit", "dataset", "source"]
    return published(seed, table)[cols]


__all__ = ["METRIC_KEYS", "PlanItem", "QuantRun", "baseline_row", "binary_plan", "dorefa_plan", "float_cost",
           "float_model",
           "load_run", "plan_table", "published_rows", "run_info", "run_row", "runs", "start_model", "trained_run"]
