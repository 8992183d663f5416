"""The int8 notebook's table: 8-bit QAT against PTQ, simulated (torch fake-quant) and real (onnxruntime int8).

Rows (``runtime``, ``precision``): the float baseline in torch and in onnxruntime (fp32); PTQ with each calibration
method simulated in torch (``fake-int8``) and as a real int8 ONNX model; the QAT run simulated and real; SPURS'
power-of-two QAT simulated only (onnxruntime has no power-of-two constraint; its real counterpart would be an FPGA
dump).  ONNX files, their evaluations and the simulated PTQ evaluations are cached as one artefact; latencies are
measured at every run (they describe this machine, now) with the same warm-up / iterations / threads for torch and
onnxruntime.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pandas as pd
import torch

from ..baselines import Recipe, evaluated
from ..bench.latency import measure_latency
from ..data.yolo_txt import read_yolo
from ..eval import evaluate
from ..fileio import atomic_write
from ..workbook import cache
from . import onnx_int8 as oi
from .experiment import QuantRun, float_cost, load_run, run_info
from .experiment import float_model as _float_model
from .layers import packed_mib
from .ptq import calibrate, calibration_batches
from .schemes import quantize_model

_KEEP = ("ap50", "ap", "ap50_seedstyle")


def _metrics(m: dict) -> dict:
    return {k: m[k] for k in _KEEP}


def ptq_model(base: Recipe, method: str, batches: list[torch.Tensor]) -> torch.nn.Module:
    """The baseline quantized with ``ptq8`` (tracker ``method``) and calibrated on ``batches``."""
    return calibrate(quantize_model(_float_model(base), "ptq8", tracker=method), batches, base.device)


def onnx_artefacts(base: Recipe, methods: list[str], n_batches: int, batch_size: int, qat: QuantRun | None,
                   exclude_heads: bool = True, progress: bool = False) -> Path:
    """Cache folder with ``fp32.onnx``, ``int8-<method>.onnx`` per calibration method, ``qat8-fp32.onnx`` and
    ``int8-qat8.onnx`` (QAT ranges as overrides), and ``metrics.json``: the evaluation of every ONNX model
    (onnxruntime, same post-processing) and of every simulated PTQ model (torch)."""
    config = {"base": base.key(), "methods": list(methods), "n_batches": n_batches, "batch_size": batch_size,
              "qat": qat.key() if qat is not None else None, "exclude_heads": exclude_heads, "opset": oi.OPSET,
              "version": 2}

    def build(folder: Path) -> None:
        # resumable: every step leaves its files and a part-<key>.json; a killed build redoes only missing steps
        data = Path(base.data)
        val = read_yolo(data, "valid")
        batches = calibration_batches(data, base.img_size, n_batches, batch_size)
        model = _float_model(base)

        def step(key: str, compute) -> None:
            part = folder / f"part-{key.replace(':', '-')}.json"
            if not part.is_file():
                atomic_write(part, (json.dumps(_metrics(compute())) + "\n").encode())

        def fp32_path() -> Path:
            path = folder / "fp32.onnx"
            return path if path.is_file() else oi.export_onnx(model, path, base.img_size)

        step("onnx:fp32", lambda: evaluate(oi.OrtDetector(fp32_path(), model), val, base.img_size))
        for method in methods:
            step(f"torch:ptq8-{method}", lambda m=method: evaluate(ptq_model(base, m, batches), val, base.img_size))

            def real(m=method):
                path = oi.quantize_onnx(fp32_path(), folder / f"int8-{m}.onnx", batches, m,
                                        exclude_heads=exclude_heads)
                return evaluate(oi.OrtDetector(path, model), val, base.img_size)

            step(f"onnx:ptq8-{method}", real)
        if qat is not None:
            def real_qat():
                qmodel = load_run(qat)
                qfp32 = oi.export_onnx(qmodel, folder / "qat8-fp32.onnx", base.img_size)
                path = oi.quantize_onnx(qfp32, folder / "int8-qat8.onnx", batches, "minmax",
                                        exclude_heads=exclude_heads, overrides=oi.qat_overrides(qmodel, qfp32))
                return evaluate(oi.OrtDetector(path, model), val, base.img_size)

            step("onnx:qat8", real_qat)
        out = {json_key: json.loads((folder / f"part-{json_key.replace(':', '-')}.json").read_text())
               for json_key in ["onnx:fp32"] + [f"{k}:ptq8-{m}" for m in methods for k in ("torch", "onnx")]
               + (["onnx:qat8"] if qat is not None else [])}
        (folder / "metrics.json").write_text(json.dumps(out, indent=1) + "\n")

    return cache.artefact("int8", config, build, resumable=True)


def _interleaved(timers: dict, rounds: int) -> dict:
    """Run every timer once per round, all timers in each round (so a slow minute of a shared machine hits all
    models alike); each result is the first round's dict with ``latency_ms`` = the median over rounds."""
    got: dict = {k: [] for k in timers}
    for _ in range(max(1, rounds)):
        for k, fn in timers.items():
            got[k].append(fn())
    return {k: {**v[0], "latency_ms": statistics.median(d["latency_ms"] for d in v), "rounds": len(v)}
            for k, v in got.items()}


def graph_ops(base: Recipe, methods: list[str], n_batches: int, batch_size: int, qat: QuantRun | None,
              exclude_heads: bool = True) -> pd.DataFrame:
    """Per ONNX file of :func:`onnx_artefacts`: size and the node types onnxruntime runs after its optimisations
    (``QLinearConv`` = integer convolution)."""
    folder = onnx_artefacts(base, methods, n_batches, batch_size, qat, exclude_heads)
    rows = []
    for path in sorted(folder.glob("*.onnx")):
        ops = oi.op_counts(path)
        rows.append({"file": path.name, "mib": oi.file_mib(path), **dict(sorted(ops.items()))})
    return pd.DataFrame(rows).fillna(0)


def int8_table(base: Recipe, dataset: str, methods: list[str], n_batches: int, batch_size: int,
               qat: QuantRun | None, pow2: QuantRun | None, latency: dict, exclude_heads: bool = True,
               progress: bool = False) -> pd.DataFrame:
    """The int8 comparison table (see the module docstring).  ``latency``: keywords ``threads``, ``warmup``,
    ``iters`` used for every torch and onnxruntime measurement (batch 1, CPU) and ``rounds`` (all models timed once
    per round, the median over rounds kept).  ``speedup`` = fp32 latency of the
    same runtime / this row's latency; ``speedup_vs_torch`` = torch fp32 latency / this row's latency."""
    folder = onnx_artefacts(base, methods, n_batches, batch_size, qat, exclude_heads, progress)
    metrics = json.loads((folder / "metrics.json").read_text())
    model = _float_model(base)
    img = base.img_size
    fp32_cost = float_cost(base)
    lat = {"threads": latency.get("threads"), "warmup": latency.get("warmup", 5), "iters": latency.get("iters", 20)}
    rounds = int(latency.get("rounds", 1))
    batches = calibration_batches(Path(base.data), img, n_batches, batch_size)

    onnx = {"fp32": folder / "fp32.onnx", **{m: folder / f"int8-{m}.onnx" for m in methods}}
    if qat is not None:
        onnx["qat8"] = folder / "int8-qat8.onnx"
    sims = {f"ptq8-{m}": ptq_model(base, m, batches) for m in methods}
    for run in (qat, pow2):
        if run is not None:
            sims[run.scheme] = load_run(run)
    timers = {("onnx", k): (lambda p=p: oi.ort_latency(p, img, batch=1, **lat)) for k, p in onnx.items()}
    timers[("torch", "fp32")] = lambda: measure_latency(model, img, batch=1, **lat)
    timers.update({("torch", k): (lambda m=m: measure_latency(m, img, batch=1, **lat)) for k, m in sims.items()})
    timed = _interleaved(timers, rounds)
    t_ort = {k: v for (rt, k), v in timed.items() if rt == "onnx"}
    t_torch = {k: v for (rt, k), v in timed.items() if rt == "torch"}

    rows: list[dict] = []

    def row(method: str, setting: str, runtime: str, precision: str, m: dict, t: dict, storage: float,
            packed: float, extra: dict | None = None) -> None:
        ref = (t_ort if runtime == "onnxruntime" else t_torch)["fp32"]["latency_ms"]
        rows.append({"model": base.model, "dataset": dataset, "method": method, "setting": setting, "seeds": 1,
                     **m, "params": fp32_cost["params"], "storage_mib": storage, "latency_ms": t["latency_ms"],
                     "device": t["device_name"], "batch": 1, "img_size": img, "speedup": ref / t["latency_ms"],
                     "runtime": runtime, "precision": precision, "packed_mib": packed, "threads": t["threads"],
                     "speedup_vs_torch": t_torch["fp32"]["latency_ms"] / t["latency_ms"], **(extra or {})})

    def real(key: str) -> dict:
        path = onnx[key]
        return {"size_ratio": oi.file_mib(path) / oi.file_mib(onnx["fp32"]),
                "qlinear_convs": oi.op_counts(path).get("QLinearConv", 0)}

    row("baseline", "fp32", "torch", "fp32", _metrics(evaluated(base)), t_torch["fp32"], fp32_cost["storage_mib"],
        packed_mib(model))
    row("baseline", "fp32", "onnxruntime", "fp32", metrics["onnx:fp32"], t_ort["fp32"], oi.file_mib(onnx["fp32"]),
        oi.file_mib(onnx["fp32"]), real("fp32"))
    for m in methods:
        sim = sims[f"ptq8-{m}"]
        row("ptq8", m, "torch", "fake-int8", metrics[f"torch:ptq8-{m}"], t_torch[f"ptq8-{m}"],
            fp32_cost["storage_mib"], packed_mib(sim))
        row("ptq8", m, "onnxruntime", "int8", metrics[f"onnx:ptq8-{m}"], t_ort[m], oi.file_mib(onnx[m]),
            oi.file_mib(onnx[m]), real(m))
    for run in (qat, pow2):
        if run is None:
            continue
        setting = f"QAT {run.epochs} ep"
        info = run_info(run, progress)
        row(run.scheme, setting, "torch", "fake-int8", _metrics(info["metrics"]), t_torch[run.scheme],
            fp32_cost["storage_mib"], packed_mib(sims[run.scheme]), {"epochs": run.epochs})
        if run is qat:
            row("qat8", setting, "onnxruntime", "int8", metrics["onnx:qat8"], t_ort["qat8"], oi.file_mib(onnx["qat8"]),
                oi.file_mib(onnx["qat8"]), {**real("qat8"), "epochs": run.epochs})
    return pd.DataFrame(rows)


__all__ = ["graph_ops", "int8_table", "onnx_artefacts", "ptq_model"]
