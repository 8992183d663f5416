"""``python -m yolocomp train --quantized MODE --qlayers q``: the quantized model the training CLI trains.

MODE is a scheme name of :data:`yolocomp.registry.QUANTIZERS` (bnn, bwn, dorefa, qat8, pow2, ptq8) or SPURS' Era-A
number (−1 float, 0 BNN, 1 BWN, 2 DoReFa, 3 8-bit); ``--qlayers q`` quantizes the layers q .. end of backbone
(−1: none, SPURS' default; omitted: the scheme's default range, 0); ``--quant-set NAME=VALUE`` sets a scheme
option (``levels=01 activations=0`` is SPURS' BNN).  Float weights are loaded before quantizing, so a float
``.weights``/``.pt`` starts a quantized run, as in SPURS Era A.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from torch import nn


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The quantization flags, as one argument group of the training parser."""
    g = ap.add_argument_group("quantization (quant-kd-spec §1; yolocomp.quant)")
    g.add_argument("--quantized", default=None, metavar="MODE",
                   help="scheme: bnn, bwn, dorefa, qat8, pow2, ptq8, or SPURS' -1/0/1/2/3 (default: float)")
    g.add_argument("--qlayers", type=int, default=None,
                   help="quantize layers q .. end of backbone (-1 none; default: the scheme's, 0)")
    g.add_argument("--quant-heads", action="store_true", help="also quantize the head convs (binary schemes)")
    g.add_argument("--quant-set", nargs="*", default=[], metavar="NAME=VALUE", help="scheme options")


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def quant_options(items: list[str], ap: argparse.ArgumentParser | None = None) -> dict:
    """``["levels=01", "activations=0"]`` -> ``{"levels": "01", "activations": 0}`` (ints, floats, true/false,
    none converted)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            msg = f"--quant-set takes NAME=VALUE, got {item!r}"
            if ap is not None:
                ap.error(msg)
            raise ValueError(msg)
        # levels are strings even when they look like numbers ("01")
        out[name] = value if name == "levels" else _value(value)
    return out


def quantized_model(a: argparse.Namespace, hyp, ap: argparse.ArgumentParser | None = None) -> nn.Module | None:
    """The quantized Darknet the parsed flags ask for (None without ``--quantized`` or with mode −1): built from
    ``--cfg``, float ``--weights`` loaded (unless resuming: the checkpoint holds the quantized state), fresh head
    biases initialised as the trainer does, then :func:`yolocomp.quant.quantize_model` with the BN-fold schedule
    for this run's training forwards."""
    from .. import seed as seeding
    from ..data.yolo_txt import read_yolo
    from ..engine.loss import init_head_biases
    from ..engine.trainer import load_weights
    from ..models.darknet import Darknet
    from .schemes import quantize_model, scheme_name, training_forwards

    if a.quantized is None or scheme_name(a.quantized) is None:
        return None
    train_set = read_yolo(Path(a.data), "train")
    seeding.set_all(a.seed)   # fresh layers initialise as they would inside train()
    model = Darknet.from_cfg(a.cfg)
    if not a.resume:
        fresh = load_weights(model, a.weights) if a.weights else list(range(len(model.yolo_indices)))
        if fresh:
            init_head_biases(model, hyp.bias_init, fresh)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = training_forwards(math.ceil(len(train_set) / world), a.batch_size, a.epochs)
    qlayers = 0 if a.qlayers is None else a.qlayers
    heads = True if a.quant_heads else None
    return quantize_model(model, a.quantized, qlayers, heads, total_steps=steps,
                          **quant_options(a.quant_set, ap))
