"""``python -m yolocomp val``: evaluate cfg + weights on a dataset's valid split (flags as the seeds' test.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from yolocomp.data.yolo_txt import read_yolo
from yolocomp.errors import InputError


def load_model(cfg: str | Path | None, weights: str | Path | None, device: str = "cpu") -> nn.Module:
    """A Darknet in eval mode on ``device``: ``weights`` ending in ``.pt`` is our checkpoint (its stored cfg
    builds the graph; ``cfg`` may be None); otherwise ``cfg`` is built and filled from a Darknet ``.weights`` file
    (or left randomly initialised when ``weights`` is None)."""
    from yolocomp.models import Darknet, load_checkpoint, load_darknet_weights
    if weights is not None and Path(weights).suffix == ".pt":
        model, _ = load_checkpoint(weights, map_location=device)
    else:
        if cfg is None:
            raise InputError(weights, "a Darknet .weights file needs --cfg")
        model = Darknet.from_cfg(cfg)
        if weights is not None:
            load_darknet_weights(model, weights)
    return model.to(torch.device(device)).eval()


def cli_val(argv: list[str] | None = None) -> int:
    """Parse ``argv``, evaluate, print one line per metric; with ``--save-json`` write gt/predictions/metrics
    json under ``--output``. Returns 0."""
    from yolocomp.eval.evaluate import evaluate
    ap = argparse.ArgumentParser(prog="python -m yolocomp val", description=cli_val.__doc__)
    ap.add_argument("--cfg", help="Darknet cfg (not needed for a .pt checkpoint)")
    ap.add_argument("--data", required=True, help="darknet .data file; its valid= split is evaluated")
    ap.add_argument("--weights", help=".weights (Darknet) or .pt (yolocomp checkpoint)")
    ap.add_argument("--img-size", type=int, default=416)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--conf-thres", type=float, default=0.001)
    ap.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save-json", action="store_true", help="write gt.json, predictions.json, metrics.json")
    ap.add_argument("--output", default="results/val", help="folder for --save-json")
    ap.add_argument("--backend", default="pycocotools", choices=("pycocotools", "faster-coco-eval"))
    a = ap.parse_args(argv)
    model = load_model(a.cfg, a.weights, a.device)
    ds = read_yolo(Path(a.data), split="valid")
    m = evaluate(model, ds, a.img_size, a.batch_size, a.device, Path(a.output) if a.save_json else None,
                 a.conf_thres, a.iou_thres, a.backend)
    for k in ("ap", "ap50", "ap75", "ap50_seedstyle", "ap50_voc07", "p_seedstyle", "r_seedstyle", "f1_seedstyle"):
        print(f"{k:16s} {m[k]:.4f}")
    for row in m["per_class"]:
        print(f"  {row['class']:14s} gt={row['gt']:<5d} ap50={row['ap50']:.4f} ap={row['ap']:.4f}")
    if a.save_json:
        print(f"wrote {Path(a.output) / 'metrics.json'}")
    return 0
