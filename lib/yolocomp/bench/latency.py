"""Forward-pass latency of a model on a zero image batch, CPU or CUDA, fp32/fp16/bf16."""

from __future__ import annotations

import copy
import platform
import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from .cost import ImgSize, image_hw, input_channels

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def _quantile(sorted_ms: list[float], q: float) -> float:
    """Linear-interpolated quantile of an ascending list."""
    pos = q * (len(sorted_ms) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_ms) - 1)
    return sorted_ms[lo] + (sorted_ms[hi] - sorted_ms[lo]) * (pos - lo)


def measure_latency(model: nn.Module, img_size: ImgSize, batch: int = 1, device: str = "cpu",
                    threads: int | None = None, warmup: int = 5, iters: int = 20, precision: str = "fp32") -> dict:
    """Time ``iters`` forward passes of a ``(batch, C, H, W)`` zero batch after ``warmup`` untimed ones.

    The model is copied (the caller's keeps its device, dtype and train/eval mode) and run in eval mode under
    ``torch.inference_mode``. CUDA passes are timed with CUDA events around each forward and a synchronize; CPU
    passes with ``time.perf_counter``. ``threads`` sets torch's intra-op threads for the run (restored after).

    Returns ``latency_ms`` (median), ``p10_ms``, ``p90_ms``, ``device`` (``cpu``/``cuda:N``), ``device_name``,
    ``batch``, ``img_size`` (``"HxW"``), ``threads``, ``precision``, ``iters``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters={iters}, warmup={warmup}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("measure_latency(device='cuda'): CUDA is not available on this machine")
    h, w = image_hw(img_size)
    m = copy.deepcopy(model).to(dev, PRECISIONS[precision]).eval()
    x = torch.zeros(batch, input_channels(model), h, w, device=dev, dtype=PRECISIONS[precision])
    times: list[float] = []
    with _threads(threads) as n_threads, torch.inference_mode():
        for _ in range(warmup):
            m(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            for _ in range(iters):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                m(x)
                end.record()
                torch.cuda.synchronize(dev)
                times.append(start.elapsed_time(end))
            name = torch.cuda.get_device_name(dev)
            dev_str = f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
        else:
            for _ in range(iters):
                t0 = time.perf_counter()
                m(x)
                times.append((time.perf_counter() - t0) * 1e3)
            name, dev_str = cpu_name(), str(dev)
    times.sort()
    return {"latency_ms": statistics.median(times), "p10_ms": _quantile(times, 0.1), "p90_ms": _quantile(times, 0.9),
            "device": dev_str, "device_name": name, "batch": batch, "img_size": f"{h}x{w}", "threads": n_threads,
            "precision": precision, "iters": iters}
