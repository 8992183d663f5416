"""``python -m yolocomp.bench [MODEL ...]``: cost and latency of zoo models, printed and written as CSV under
``results/bench/`` (atomically)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..fileio import atomic_write
from ..models import zoo
from ..paths import results_dir
from ..registry import MODELS
from .cost import cost_row
from .latency import measure_latency


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(prog="python -m yolocomp.bench", description=__doc__)
    ap.add_argument("models", nargs="*", help=f"zoo names (default: all): {', '.join(MODELS.names())}")
    ap.add_argument("--img-size", type=int, nargs="+", default=[416], metavar="S", help="S or H W (default 416)")
    ap.add_argument("--classes", type=int, help="class count (default: each model's registry default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", type=Path, help="CSV path (default results/bench/bench_<device>_<HxW>.csv)")
    a = ap.parse_args(argv)
    if len(a.img_size) not in (1, 2):
        ap.error("--img-size takes S or H W")
    img = a.img_size[0] if len(a.img_size) == 1 else (a.img_size[0], a.img_size[1])
    rows = []
    for name in a.models or MODELS.names():
        model = zoo.build(name, a.classes)
        lat = measure_latency(model, img, a.batch, a.device, a.threads, a.warmup, a.iters, a.precision)
        rows.append({"model": name, "classes": model.classes, **cost_row(model, img), **lat})
        print(f"{name}: {lat['latency_ms']:.2f} ms", flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    out = a.out or results_dir() / "bench" / f"bench_{a.device.replace(':', '')}_{df.img_size.iloc[0]}.csv"
    atomic_write(out, df.to_csv(index=False))
    print(f"wrote {out}")
    return df


if __name__ == "__main__":
    main()
