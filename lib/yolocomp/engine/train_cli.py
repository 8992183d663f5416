"""``python -m yolocomp train``: command-line front end of :func:`yolocomp.engine.trainer.train` (flag names as the
seed repositories spell them).  Under ``torchrun`` it trains data-parallel (see :mod:`yolocomp.engine.distributed`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m yolocomp train", description=__doc__)
    ap.add_argument("--cfg", required=True, help="Darknet cfg file")
    ap.add_argument("--data", required=True, help="darknet .data file (train/valid/names/classes)")
    ap.add_argument("--weights", help=".weights (full or *.conv.N backbone) or .pt to start from")
    ap.add_argument("--img-size", type=int, default=416, help="train/test size, a multiple of 32 (default 416)")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16, help="per process; global = this x world size")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (torchrun: cuda -> cuda:LOCAL_RANK)")
    ap.add_argument("--hyp", default="default", help="hyp preset: default, uly-v8, spurs, tan, andrey, uly-v9")
    ap.add_argument("--hyp-set", nargs="*", default=[], metavar="NAME=VALUE", help="override hyp fields")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ap.add_argument("--adam", action="store_true", help="Adam instead of SGD (hyp optimizer=adam)")
    ap.add_argument("--multi-scale", action="store_true", help="random size per optimizer step (ULY rule)")
    ap.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP (CUDA only)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    ap.add_argument("--out", type=Path, required=True, help="output directory (last.pt, best.pt, results.csv)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (0: last epoch only)")
    ap.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    sp = ap.add_argument_group("sparsity training (L1 on BN γ, pruning-spec §1)")
    sp.add_argument("-sr", "--sr", "--sparsity-regularization", dest="sr", action="store_true",
                    help="add s·sign(γ) to the BN γ gradients of the --prune set")
    sp.add_argument("--s", type=float, default=0.001, help="L1 strength (default 0.001)")
    sp.add_argument("--prune", type=int, default=1, choices=(0, 1, 2),
                    help="set: 0 normal/regular, 1 shortcut/slim (default), 2 conv before each shortcut")
    sp.add_argument("--s-schedule", default="constant", choices=("constant", "global", "local"),
                    help="TAN's schedules: constant s; global = s/100 after half the epochs; local = s/100 for "
                         "the top 15%% |γ| after half the epochs (--prune 1 only)")
    kd = ap.add_argument_group("distillation (quant-kd-spec §4; yolocomp.distill)")
    kd.add_argument("--t_cfg", help="teacher cfg (not needed for a yolocomp .pt checkpoint)")
    kd.add_argument("--t_weights", help="teacher weights: .weights, .pt state_dict or yolocomp checkpoint")
    kd.add_argument("--KDstr", type=int, choices=(1, 2, 3, 4, 5),
                    help="SPURS strategy: 1 KL on outputs, 2 soft class + teacher-bounded box, 3 soft class + box "
                         "to teacher, 4 = 3 + attention maps, 5 = 4 with the fine-grained mask")
    kd.add_argument("--kd_features", metavar="T[,T...][:S[,S...]]",
                    help="feature layers: teacher indices, optionally ':' student indices (default: the same); "
                         "pairs form after sorting each list. Without --KDstr: ANDREY's classical KD with hints")
    from ..quant.cli import add_arguments

    add_arguments(ap)   # --quantized MODE --qlayers q (SPURS), --quant-heads, --quant-set
    return ap


def sparsity_callback(a: argparse.Namespace):
    """The :class:`yolocomp.prune.sparsity.BNSparsity` callback the parsed flags ask for (None without -sr).
    Its layer set comes from the cfg's graph (class count and weights do not change it)."""
    if not a.sr:
        return None
    from ..models.darknet import Darknet
    from ..prune.graph import analyze
    from ..prune.sparsity import BNSparsity

    return BNSparsity(analyze(Darknet.from_cfg(a.cfg)), mode=a.prune, s=a.s, schedule=a.s_schedule)


def distill_callback(a: argparse.Namespace):
    """The :mod:`yolocomp.distill` callback the parsed flags ask for (None without a teacher flag)."""
    if a.t_weights is None and a.KDstr is None and a.kd_features is None and a.t_cfg is None:
        return None
    from ..distill import make
    from ..distill.teacher import load_teacher, pair_layers
    from ..errors import InputError

    if a.t_weights is None:
        raise InputError(None, "distillation needs the teacher's weights: --t_weights (and --t_cfg for .weights)")
    pairs = None
    if a.kd_features:
        t_part, _, s_part = a.kd_features.partition(":")
        try:
            t_idx = [int(v) for v in t_part.split(",")]
            s_idx = [int(v) for v in s_part.split(",")] if s_part else t_idx
        except ValueError:
            raise InputError(None, f"--kd_features {a.kd_features!r}: expected comma-separated layer indices, "
                                   f"e.g. 36,61 or 36:12") from None
        pairs = pair_layers(t_idx, s_idx)
    kind = f"KDstr{a.KDstr}" if a.KDstr else "hint"
    if kind == "hint" and pairs is None:
        raise InputError(None, "a teacher without --KDstr means ANDREY's classical KD: give its --kd_features")
    if kind == "hint" and a.resume:
        raise InputError(None, "--resume: a run with hint layers cannot be resumed (they are not in last.pt)")
    return make(kind, load_teacher(a.t_cfg, a.t_weights), feature_pairs=pairs)


def _overrides(items: list[str], ap: argparse.ArgumentParser) -> dict:
    import dataclasses

    from .hyp import Hyp

    types = {f.name: f.type for f in dataclasses.fields(Hyp)}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--hyp-set takes NAME=VALUE, got {item!r}")
        t = types.get(name, "str")
        if "tuple" in str(t):
            out[name] = tuple(float(v) for v in value.split(",") if v)
        elif "bool" in str(t):
            out[name] = value.lower() in ("1", "true", "yes")
        elif "int" in str(t) and value.lower() == "none":
            out[name] = None
        elif str(t).startswith("int"):
            out[name] = int(value)
        elif "float" in str(t):
            out[name] = float(value)
        else:
            out[name] = value
    return out


def cli_train(argv: list[str] | None = None):
    """Parse ``argv`` and train; prints the final metrics on rank 0.  Returns the TrainResult."""
    from . import distributed as ddp
    from .hyp import hyp
    from .trainer import train

    ap = parser()
    a = ap.parse_args(argv)
    overrides = _overrides(a.hyp_set, ap)
    if a.adam:
        overrides["optimizer"] = "adam"
    # on resume the checkpoint's hyp wins unless the user set one explicitly
    h = None if a.resume and a.hyp == "default" and not overrides else hyp(a.hyp, **overrides)
    sparsity = sparsity_callback(a)
    kd = distill_callback(a)
    from ..quant.cli import quantized_model

    qmodel = quantized_model(a, h if h is not None else hyp(a.hyp), ap)
    try:
        result = train(a.cfg if qmodel is None else qmodel, a.data, a.epochs, a.batch_size, a.img_size, a.out,
                       weights=a.weights if qmodel is None else None,
                       device=a.device, hyp=h, seed=a.seed, resume=a.resume, eval_every=a.eval_every,
                       amp=False if a.no_amp else None, multi_scale=a.multi_scale, sync_bn=a.sync_bn,
                       workers=a.workers, progress=not a.quiet, callbacks=[c for c in (sparsity, kd) if c is not None])
        if int(os.environ.get("RANK", "0")) == 0:
            m = result.metrics
            print(f"done: last={result.last} best={result.best} ap50={m.get('ap50', float('nan')):.4f} "
                  f"ap={m.get('ap', float('nan')):.4f}")
    finally:
        ddp.cleanup()
    return result
