"""``python -m yolocomp prune``: channel, layer and EagleEye pruning of a Darknet model from the command line
(the seeds' prune scripts in one command, pruning-spec.md §4, §7, §8, §10, §15).

Loads cfg + ``.weights`` (or our ``.pt``), selects what to remove with ``--method``, builds the compact model, writes
``<out>/<stem>.cfg/.weights/.pt`` (stem from :func:`yolocomp.prune.naming.pruned_name`) and prints params, conv MACs
and — with ``--data`` — AP50 of the original, the γ-masked and the compact model on the valid split.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch

from ..errors import InputError, YolocompError
from .naming import METHODS, pruned_name

# the seeds' defaults (SPURS, the only repository with every method; spec §15)
DEFAULT_PERCENT = {"normal": 0.5, "regular": 0.5, "shortcut": 0.6, "slim": 0.8, "layer-channel": 0.6,
                   "eagleeye": 0.5}


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m yolocomp prune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, choices=METHODS,
                    help="normal, regular, shortcut, slim (channels; need a sparsity-trained model), layer "
                         "(residual blocks), layer-channel (slim then layer), eagleeye (random sub-nets, needs --data)")
    ap.add_argument("--cfg", help="Darknet cfg (not needed for a .pt checkpoint)")
    ap.add_argument("--weights", required=True, help=".weights (Darknet) or .pt (yolocomp checkpoint)")
    ap.add_argument("--data", help="darknet .data file: evaluate on valid (EagleEye also draws BN batches from train)")
    ap.add_argument("--percent", "--global_percent", dest="percent", type=_fraction,
                    help="share of the pool's channels to prune (EagleEye: of the MACs), in [0, 1); default per "
                         "method: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_PERCENT.items()))
    ap.add_argument("--layer-keep", "--layer_keep", dest="layer_keep", type=float, default=0.01,
                    help="slim: keep at least this share of every layer (default 0.01)")
    ap.add_argument("--shortcuts", type=int, default=8, help="layer methods: residual blocks to remove (default 8)")
    ap.add_argument("--multiple", "--channel-base", dest="multiple", type=int, default=8,
                    help="regular and eagleeye --pool regular: widths are multiples of this (default 8)")
    ap.add_argument("--img-size", "--img_size", dest="img_size", type=int, default=416,
                    help="MACs and evaluation size (default 416)")
    ap.add_argument("--batch-size", type=int, default=16, help="evaluation / adaptive-BN batch (default 16)")
    ap.add_argument("--out", type=Path, help="output folder (default <cache>/pruned)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-eval", action="store_true", help="skip the AP50 evaluation even with --data")
    ap.add_argument("--pool", default="normal", choices=("normal", "slim", "regular"),
                    help="eagleeye: which layers draw random widths (SPURS EagleEye_<pool>_prune)")
    ap.add_argument("--candidates", "--number", dest="candidates", type=int, default=200,
                    help="eagleeye: sub-nets to evaluate (default 200)")
    ap.add_argument("--delta", type=float, default=0.05, help="eagleeye: MACs budget tolerance (default 0.05)")
    ap.add_argument("--abn-batches", type=int,
                    help="eagleeye: training batches for adaptive BN (default ceil(0.1·N_train/batch) + 2)")
    ap.add_argument("--seed", type=int, default=0, help="eagleeye: sampling seed")
    return ap


def masked_model(model, masks: dict[int, torch.Tensor], blocks=()) -> torch.nn.Module:
    """A copy of ``model`` with γ of every removed channel set to 0 and, for each removed residual block t, γ of
    convs t−1 and t set to 0 (β kept): the seeds' "mAP after masking" model (spec §0, §7.4)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for i, keep in masks.items():
            out.layers[i].bn.weight[~keep.to(out.layers[i].bn.weight.device)] = 0
        for t in blocks:
            out.layers[t - 1].bn.weight.zero_()
            out.layers[t].bn.weight.zero_()
    return out


def _channel_masks(a, model, graph) -> dict[int, torch.Tensor]:
    from . import select

    if not graph.prunable:
        raise InputError(a.cfg or a.weights, "the model has no prunable layer (every BN conv feeds a block that "
                                             "reads its channels as a whole)")
    try:
        if a.method == "regular":
            return select.regular(model, graph, a.percent, a.multiple)
        if a.method == "slim":
            return select.slim(model, graph, a.percent, a.layer_keep)
        return getattr(select, a.method)(model, graph, a.percent)
    except ValueError as e:
        raise InputError(a.cfg or a.weights, str(e)) from None


def _eagleeye(a, model, graph, evaluate_ap50):
    from ..data.dataset import DetectionDataset, make_loader
    from ..data.yolo_txt import read_yolo
    from .eagleeye import eagleeye

    if a.data is None:
        raise InputError(None, "--method eagleeye scores sub-nets on the valid split and recalibrates BN on the "
                               "train split: it needs --data")
    train = read_yolo(Path(a.data), "train")
    loader = make_loader(DetectionDataset(train, a.img_size, augment=True, seed=a.seed), a.batch_size,
                         shuffle=True, seed=a.seed)
    steps = a.abn_batches or math.ceil(0.1 * len(train) / a.batch_size) + 2
    # SPURS scores at conf 0.1 so that bad sub-nets do not flood NMS (spec §10.7)
    result = eagleeye(model, lambda net: evaluate_ap50(net, 0.1), loader, a.candidates, a.percent, a.delta,
                      a.pool, (a.img_size, a.img_size), steps, a.seed, base=a.multiple, graph=graph)
    print(f"eagleeye: best of {a.candidates} candidates: AP50@conf0.1 {result.score:.4f}, "
          f"MACs ratio {result.macs_ratio:.3f}")
    return result.masks, result.model


def run(a: argparse.Namespace) -> dict:
    """Prune as the parsed arguments say, write the files, print the summary.  Returns ``{"cfg", "weights",
    "pt", "rows"}``: the written paths and one dict per model (``model``, ``params``, ``macs``, ``ap50`` or None)."""
    from ..bench.cost import count_params, macs_conv
    from ..data.yolo_txt import read_yolo
    from ..eval.cli import load_model
    from ..eval.evaluate import evaluate
    from ..paths import cache_dir
    from .export import save_pruned
    from .graph import analyze
    from .layers import layer_channel_prune, layer_prune
    from .surgery import compact

    if a.percent is None and a.method != "layer":
        a.percent = DEFAULT_PERCENT[a.method]
    if not 0.0 <= a.layer_keep <= 1.0:
        raise InputError(None, f"--layer-keep must be in [0, 1], got {a.layer_keep}")
    if a.shortcuts < 0 or a.multiple < 1 or a.img_size % 32 or a.candidates < 1:
        raise InputError(None, f"need --shortcuts >= 0, --multiple >= 1, --img-size a multiple of 32, "
                               f"--candidates >= 1; got {a.shortcuts}, {a.multiple}, {a.img_size}, {a.candidates}")
    model = load_model(a.cfg, a.weights, a.device)
    graph = analyze(model)
    valid = read_yolo(Path(a.data), "valid") if a.data else None

    def evaluate_ap50(net, conf_thres: float = 0.001) -> float:
        return float(evaluate(net, valid, a.img_size, a.batch_size, a.device, conf_thres=conf_thres)["ap50"])

    blocks: list[int] = []
    masks: dict[int, torch.Tensor] = {}
    if a.method == "layer":
        result = layer_prune(model, a.shortcuts)
        pruned, blocks = result.model, result.blocks
    elif a.method == "layer-channel":
        masks, result = layer_channel_prune(model, a.shortcuts, a.percent, a.layer_keep)
        pruned, blocks = result.model, result.blocks
    elif a.method == "eagleeye":
        masks, pruned = _eagleeye(a, model, graph, evaluate_ap50)
    else:
        masks = _channel_masks(a, model, graph)
        pruned = compact(model, masks)
    pruned.eval()

    do_eval = valid is not None and not a.no_eval
    models = [("original", model), ("compact", pruned)]
    if do_eval and a.method != "eagleeye":     # EagleEye's winner is recalibrated: no masked counterpart
        models.insert(1, ("masked", masked_model(model, masks, blocks)))
    rows = []
    for label, net in models:
        size = label != "masked"     # same shapes as the original
        rows.append({"model": label, "params": count_params(net) if size else None,
                     "macs": macs_conv(net, a.img_size) if size else None,
                     "ap50": evaluate_ap50(net) if do_eval else None})

    stem = Path(a.cfg).stem if a.cfg else Path(a.weights).stem
    name = pruned_name(a.method, stem, a.percent, a.layer_keep, a.shortcuts, a.pool, a.candidates)
    out = a.out if a.out is not None else cache_dir() / "pruned"
    meta = {"method": a.method, "percent": a.percent, "layer_keep": a.layer_keep, "shortcuts": a.shortcuts,
            "multiple": a.multiple, "source_cfg": a.cfg, "source_weights": str(a.weights),
            "removed_blocks": [int(t) for t in blocks], "img_size": a.img_size,
            "ap50": {r["model"]: r["ap50"] for r in rows}}
    cfg_path, weights_path = save_pruned(pruned.cpu(), out, name, **meta)
    _print_summary(a, rows, len(model.layers), len(pruned.layers))
    print(f"wrote {cfg_path}\n      {weights_path}\n      {cfg_path.with_suffix('.pt')}")
    return {"cfg": cfg_path, "weights": weights_path, "pt": cfg_path.with_suffix(".pt"), "rows": rows}


def _print_summary(a, rows: list[dict], layers_before: int, layers_after: int) -> None:
    base = rows[0]
    settings = "" if a.percent is None else f" percent={a.percent:g}"
    print(f"prune --method {a.method}{settings}  layers {layers_before} -> {layers_after}")
    print(f"{'model':10s} {'params':>12s} {'ratio':>6s} {f'MACs@{a.img_size}':>14s} {'ratio':>6s} {'AP50':>7s}")
    for r in rows:
        p = "-" if r["params"] is None else f"{r['params']:,}"
        pr = "" if r["params"] is None else f"{r['params'] / base['params']:.3f}"
        m = "-" if r["macs"] is None else f"{r['macs']:,}"
        mr = "" if r["macs"] is None else f"{r['macs'] / base['macs']:.3f}"
        ap = "-" if r["ap50"] is None else f"{r['ap50']:.4f}"
        print(f"{r['model']:10s} {p:>12s} {pr:>6s} {m:>14s} {mr:>6s} {ap:>7s}")


def cli_prune(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (argparse exits 2 on a malformed flag) and prune.  Returns 0, or 1 after printing the
    message of a bad-input error (unknown file, percent that empties a layer, nothing prunable) to stderr."""
    a = parser().parse_args(argv)
    try:
        run(a)
    except YolocompError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
