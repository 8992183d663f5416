"""The model-zoo tables: our cost figures per zoo model and input size, and every published figure beside ours.

Used by ``02_backbones/01_model_zoo``. Each published figure is recomputed under the convention its seed used
(:mod:`yolocomp.models.zoo` lists them), so a match means the architecture is exact, not just close.
"""

from __future__ import annotations

import math

import pandas as pd
from tqdm.auto import tqdm

from ..models import zoo
from ..registry import MODELS
from .cost import cost_row, count_params, macs_seed, storage_mib, weights_floats
from .latency import measure_latency


def zoo_costs(names: list[str] | None = None, img_sizes: tuple[int, ...] = (416,)) -> pd.DataFrame:
    """One row per (model, img_size): params, macs_conv / macs_thop / macs_seed and storage_mib.

    Models are built at their registry class count (the one their headline published figures use).
    """
    rows = []
    for name in tqdm(list(names or MODELS.names()), desc="cost", leave=False):
        model = zoo.build(name)
        for s in img_sizes:
            rows.append({"model": name, "img_size": s, "classes": model.classes,
                         "origin": MODELS.entry(name).meta["origin"], **cost_row(model, s)})
    return pd.DataFrame(rows)


def zoo_timing(names: list[str] | None = None, img_sizes: tuple[int, ...] = (416,),
               devices: tuple[str, ...] = ("cpu",), batch: int = 1, **latency) -> pd.DataFrame:
    """One row per (model, img_size, device): median latency at ``batch`` (``measure_latency(**latency)``), with
    the 10th/90th percentiles, device name, threads and precision. Devices that are not present (``cuda``
    without a GPU) are left out. Kept apart from :func:`zoo_costs` because timings are measurements of this
    machine, not reproducible bytes."""
    import torch

    devices = [d for d in devices if d == "cpu" or (d.startswith("cuda") and torch.cuda.is_available())]
    rows = []
    for name in tqdm(list(names or MODELS.names()), desc="latency", leave=False):
        model = zoo.build(name)
        for s in img_sizes:
            for device in devices:
                lat = measure_latency(model, s, batch=batch, device=device, **latency)
                rows.append({"model": name, "img_size": s, "device": lat["device_name"], "batch": batch,
                             "latency_ms": lat["latency_ms"], "p10_ms": lat["p10_ms"], "p90_ms": lat["p90_ms"],
                             "threads": lat["threads"], "precision": lat["precision"], "iters": lat["iters"]})
    return pd.DataFrame(rows)


def _printed(x: float, printed: str) -> tuple[str, bool]:
    """``x`` written with the printed number's decimals; a match if rounding or truncation gives the print."""
    d = len(printed.partition(".")[2])
    rounded, truncated = f"{x:.{d}f}", f"{math.floor(x * 10**d) / 10**d:.{d}f}"
    return (truncated, True) if printed == truncated else (rounded, printed == rounded)


def recompute(name: str, fig: dict) -> tuple[str | None, bool | None]:
    """Our value for one published figure of zoo model ``name``, written like the print, and whether it matches.
    ``(None, None)`` for conventions we do not recompute (torch.save sizes, darknet's BFLOPS line)."""
    conv = fig["convention"]
    if conv in ("torch.save-MiB", "darknet-bflops"):
        return None, None
    m = zoo.build(name, fig["classes"])
    p, floats = count_params(m), weights_floats(m)
    if conv == "numel":
        return f"{p:,}", fig["value"].replace(" ", "") == f"{p:,}"
    if conv == "thop-0.0.31":
        v = macs_seed(m, tuple(fig["img_size"]))
        return f"{v:,}", fig["value"].replace(" ", "") == f"{v:,}"
    if conv == "2*thop-0.0.31/1e9":
        return _printed(2 * macs_seed(m, tuple(fig["img_size"])) / 1e9, fig["value"])
    if conv == "unreproducible":   # the seed counted a branch that never runs: show ours, never a match
        return f"{p / 1e6:.3f}", False
    bn = (floats - p) // 2
    value = {"numel/2^20": p / 2**20, "(P+2BNch)/2^20": floats / 2**20, "(P-BNch)/2^20": (p - bn) / 2**20,
             "numel/1e6": p / 1e6, "weights-MiB": storage_mib(m)}[conv]
    return _printed(value, fig["value"])


def published_beside_ours(names: list[str] | None = None) -> pd.DataFrame:
    """One row per published figure of the zoo models: where it was published, the value as printed, ours under the
    same convention, and whether they agree (``match`` empty where the convention is not recomputed)."""
    rows = []
    for name in names or MODELS.names():
        for fig in MODELS.entry(name).meta["published"]:
            ours, match = recompute(name, fig)
            size = fig["img_size"]
            rows.append({"model": name, "setting": fig["quantity"], "classes": fig["classes"],
                         "img_size": "" if size is None else f"{size[0]}x{size[1]}",
                         "convention": fig["convention"], "published": fig["value"], "ours": ours,
                         "match": match, "source": fig["source"]})
    return pd.DataFrame(rows)
