"""The quantization schemes, registered in :data:`yolocomp.registry.QUANTIZERS`, and :func:`quantize_model`.

=========  =====================================================================  =================================
name       what                                                                   seed / spec (quant-kd-spec)
=========  =====================================================================  =================================
bnn        binary weights {−1,+1}, binary unit outputs sign(BN(conv)) (BinaryNet);  SPURS Era A mode 0, §1.2.2
           ``levels="01", activations=False`` = SPURS' {0,1} weights only
bwn        binary weights × α = mean|W| (per tensor; ``per_channel`` = XNOR-Net);  SPURS Era A mode 1, §1.2.3
           ``levels="01"`` = SPURS' {0, α}
dorefa     k-bit tanh-normalised weights, k-bit clamp(0.1·x, 0, 1) conv inputs    SPURS Era A mode 2, HALO, §1.2.4
qat8       8-bit affine QAT: int8 symmetric per-channel weights, uint8 per-tensor  SPURS Era A mode 3 ("Google"),
           conv inputs and outputs (EMA ranges), BN folded torch-style (running-σ  GUMP/MQBench; §1.2.5, §3, §7
           fold + batch-stat correction until 90 %, then running; ``fold="spurs"``
           = HEAD's float-conv batch statistics)
pow2       SPURS HEAD "FPGA" QAT: power-of-two symmetric 8-bit weights, bias and   SPURS HEAD mode 1, §1.3-1.4
           block outputs (after the activation), BN folded (batch -> running)
ptq8       post-training 8 bit: the qat8 modules calibrated on a few batches       SPURS PTQ.py (§1.7) / ORT, §7
           (min-max or percentile), BN folded with running statistics
=========  =====================================================================  =================================

Layers: ``qlayers`` and ``heads`` as :func:`yolocomp.quant.select.select_layers`.  Binary schemes default to the
backbone only (SPURS keeps the YOLO head convs float); the others quantize every conv (the seeds do).  Not
reproduced: SPURS HEAD's quantized shortcut/concat re-quantization (§1.5; our adds and concats stay float on
already-quantized inputs), its 8-bit-bias-with-own-scale for qat8 (bias stays float as in Era A), TPSQ and
COS-PTQ as whole-model schemes (their quantizers are in :mod:`yolocomp.quant.fake`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from ..errors import InputError
from ..registry import QUANTIZERS
from .fake import AffineFakeQuant, BinaryAct, BinaryWeight, DoReFaAct, DoReFaWeight, Pow2FakeQuant
from .layers import FoldedBN, FoldedQConv2d, QConv2d, QuantAct, conv_units
from .select import select_layers

SPURS = "000_6b059ec5ad982426.txt"
HALO = "002_bd3f0b5c69dd93d7.txt"
GUMP = "003_4d82b48ab83c9f0e.txt"


@dataclass(frozen=True)
class Scheme:
    """How a scheme rewrites one conv unit: ``convert(unit, options, reads_image)``; ``options`` are its defaults
    (every accepted keyword); ``heads``: quantize the head convs by default; ``fold``: BN folded into the conv
    (the schedule of :func:`set_schedule` applies)."""

    name: str
    convert: Callable[[nn.Module, dict, bool], None]
    options: dict = field(default_factory=dict)
    heads: bool = False
    fold: bool = False


def _bnn(unit: nn.Module, o: dict, reads_image: bool) -> None:
    unit.conv = QConv2d(unit.conv, BinaryWeight(o["levels"]))
    if o["activations"]:
        # BinaryNet: the activation *is* the binarization, sign(BN output); binarizing a post-ReLU input instead
        # would give +1 everywhere (and zero-variance BN, exploding gradients)
        unit.act = BinaryAct(o["levels"], replaces=unit.act)


def _bwn(unit: nn.Module, o: dict, reads_image: bool) -> None:
    unit.conv = QConv2d(unit.conv, BinaryWeight(o["levels"], "channel" if o["per_channel"] else "tensor"))


def _dorefa(unit: nn.Module, o: dict, reads_image: bool) -> None:
    aq = (DoReFaAct(o["a_bits"], o["prescale"], o["undo_prescale"])
          if o["quantize_image"] or not reads_image else None)
    unit.conv = QConv2d(unit.conv, DoReFaWeight(o["w_bits"]), aq)


def _affine(unit: nn.Module, o: dict, reads_image: bool) -> None:
    bits, tracker = o["bits"], o["tracker"]
    conv = unit.conv
    bn = unit.bn if isinstance(unit.bn, nn.BatchNorm2d) else None

    def act() -> AffineFakeQuant:
        return AffineFakeQuant(bits, tracker=tracker, momentum=o["momentum"], percentile=o["percentile"])

    unit.conv = FoldedQConv2d(conv, bn, wq=AffineFakeQuant(bits, symmetric=True, channels=conv.out_channels,
                                                           tracker="global"),
                              aq_in=act(), aq_out=act() if o["quantize_output"] else None, mode=o["fold"])
    unit.bn = FoldedBN() if bn is not None else None


def _pow2(unit: nn.Module, o: dict, reads_image: bool) -> None:
    conv = unit.conv
    bn = unit.bn if isinstance(unit.bn, nn.BatchNorm2d) else None
    unit.conv = FoldedQConv2d(conv, bn, wq=Pow2FakeQuant(o["w_bits"], "global"),
                              bq=Pow2FakeQuant(o["w_bits"], "global"))
    unit.bn = FoldedBN() if bn is not None else None
    unit.act = QuantAct(unit.act, Pow2FakeQuant(o["a_bits"], "ema", momentum=0.1))


_FOLD_OPTS = {"bn_freeze": 0.9, "range_freeze": None, "fold": "correct"}
SCHEMES: dict[str, Scheme] = {
    "bnn": Scheme("bnn", _bnn, {"levels": "pm1", "activations": True}),
    "bwn": Scheme("bwn", _bwn, {"levels": "pm1", "per_channel": False}),
    "dorefa": Scheme("dorefa", _dorefa, {"w_bits": 8, "a_bits": 8, "prescale": 0.1, "undo_prescale": False,
                                         "quantize_image": True}, heads=True),
    "qat8": Scheme("qat8", _affine, {"bits": 8, "tracker": "ema", "momentum": 0.1, "percentile": 99.99,
                                     "quantize_output": True, **_FOLD_OPTS}, heads=True, fold=True),
    "pow2": Scheme("pow2", _pow2, {"w_bits": 8, "a_bits": 8, "bn_freeze": 0.9, "range_freeze": 0.1},
                   heads=True, fold=True),
    "ptq8": Scheme("ptq8", _affine, {"bits": 8, "tracker": "minmax", "momentum": 0.1, "percentile": 99.99,
                                     "quantize_output": True, **_FOLD_OPTS}, heads=True, fold=True),
}
# SPURS' seed-faithful option sets, for tables and the CLI (``--quantized bnn --seed-options``)
SEED_OPTIONS = {"bnn": {"levels": "01", "activations": False}, "bwn": {"levels": "01"}}

QUANTIZERS.register("bnn", SCHEMES["bnn"], origin="SPURS", seed_file=SPURS, seed_mode="0 (Era A)",
                    spec="quant-kd-spec §1.2.2, §5", kind="binary", paper="BinaryNet (arXiv 1602.02830)",
                    real_int8=False)
QUANTIZERS.register("bwn", SCHEMES["bwn"], origin="SPURS", seed_file=SPURS, seed_mode="1 (Era A)",
                    spec="quant-kd-spec §1.2.3, §5", kind="binary", paper="XNOR-Net (arXiv 1603.05279)",
                    real_int8=False)
QUANTIZERS.register("dorefa", SCHEMES["dorefa"], origin="SPURS, HALO", seed_file=SPURS, seed_mode="2 (Era A)",
                    spec="quant-kd-spec §1.2.4, §2", kind="low-bit", paper="DoReFa-Net (arXiv 1606.06160)",
                    real_int8=False)
QUANTIZERS.register("qat8", SCHEMES["qat8"], origin="SPURS, HALO, GUMP", seed_file=SPURS, seed_mode="3 (Era A)",
                    spec="quant-kd-spec §1.2.5, §3, §7", kind="int8", paper="Jacob et al. 2018 / Krishnamoorthi 2018",
                    real_int8=True)
QUANTIZERS.register("pow2", SCHEMES["pow2"], origin="SPURS", seed_file=SPURS, seed_mode="1 (HEAD 0202ec6)",
                    spec="quant-kd-spec §1.3, §1.4", kind="int8", paper="SPURS HEAD BNFold_QuantizedConv2d_For_FPGA",
                    real_int8=False)
QUANTIZERS.register("ptq8", SCHEMES["ptq8"], origin="SPURS", seed_file=SPURS, seed_mode="3 (HEAD) / PTQ.py",
                    spec="quant-kd-spec §1.7, §7", kind="int8", paper="post-training calibration (min-max, percentile)",
                    real_int8=True)

# ``--quantized N`` of SPURS Era A (reference commit d4e558f), the README's numbering
ERA_A_MODES = {-1: None, 0: "bnn", 1: "bwn", 2: "dorefa", 3: "qat8"}


def scheme_name(scheme: str | int) -> str | None:
    """A registered name, or SPURS' Era-A number (−1 float -> None, 0 bnn, 1 bwn, 2 dorefa, 3 qat8)."""
    if isinstance(scheme, str) and scheme.lstrip("-").isdigit():
        scheme = int(scheme)
    if isinstance(scheme, int):
        if scheme not in ERA_A_MODES:
            raise InputError(None, f"--quantized {scheme}: SPURS modes are -1..3 ({ERA_A_MODES})")
        return ERA_A_MODES[scheme]
    if scheme not in QUANTIZERS:
        raise InputError(None, f"unknown quantization scheme {scheme!r}; known: {', '.join(QUANTIZERS.names())}")
    return scheme


def quantize_model(model: nn.Module, scheme: str | int, qlayers: int = 0, heads: bool | None = None,
                   end: int | None = None, total_steps: int | None = None, inplace: bool = False,
                   **options) -> nn.Module:
    """A copy of the Darknet ``model`` (or ``model`` itself with ``inplace``) with the conv units of the selected
    layers quantized by ``scheme``.

    scheme: a :data:`QUANTIZERS` name or a SPURS Era-A number.  qlayers/heads/end: :func:`select_layers`
    (``heads`` defaults to the scheme's).  total_steps: training forwards of the coming run, for the BN-fold and
    range-freeze schedule of folding schemes (:func:`set_schedule`; None = no switch).  options: the scheme's
    (:data:`SCHEMES` ``[name].options``); an unknown one is an InputError.  The result carries
    ``quant_spec`` (a plain dict that :func:`quantize_model` accepts back as keywords) and keeps float weights'
    names for non-folding schemes.  Load weights before quantizing."""
    name = scheme_name(scheme)
    out = model if inplace else copy.deepcopy(model)
    if name is None:
        return out
    sch = SCHEMES[name]
    unknown = sorted(set(options) - set(sch.options))
    if unknown:
        raise InputError(None, f"scheme {name!r} has no option(s) {', '.join(unknown)}; valid: "
                               f"{', '.join(sch.options) or 'none'}")
    opts = {**sch.options, **options}
    heads = sch.heads if heads is None else bool(heads)
    layers = select_layers(out, qlayers, heads, end)
    for i in layers:
        for k, (_, unit) in enumerate(list(conv_units(out.layers[i]))):
            sch.convert(unit, opts, reads_image=(i == 0 and k == 0))
    out.quant_spec = {"scheme": name, "qlayers": qlayers, "heads": heads, "end": end, "layers": layers, **opts}
    if sch.fold:
        set_schedule(out, total_steps, opts["bn_freeze"], opts["range_freeze"])
    return out


def spec_options(spec: dict) -> dict:
    """The keywords of :func:`quantize_model` held in a model's ``quant_spec``."""
    return {k: v for k, v in spec.items() if k != "layers"}


def set_schedule(model: nn.Module, total_steps: int | None, bn_freeze: float | None = 0.9,
                 range_freeze: float | None = None) -> None:
    """SPURS HEAD schedule (fact 17) for ``total_steps`` training forwards ``S``: BN folding switches from batch
    to running statistics after ``int(bn_freeze·S)`` forwards; range trackers stop after ``int(range_freeze·S)``
    (None: never).  ``total_steps=None`` clears both (batch statistics and live ranges throughout training)."""
    from .fake import _Observed

    def at(frac: float | None) -> int:
        return -1 if total_steps is None or frac is None else int(frac * total_steps)

    for m in model.modules():
        if isinstance(m, FoldedQConv2d):
            m.bn_freeze_step.fill_(at(bn_freeze))
            for q in (m.wq, m.bq, m.aq_in, m.aq_out):
                if isinstance(q, _Observed):
                    q.freeze_step.fill_(at(range_freeze))
        elif isinstance(m, QuantAct) and isinstance(m.aq, _Observed):
            m.aq.freeze_step.fill_(at(range_freeze))


def training_forwards(n_images: int, batch_size: int, epochs: int) -> int:
    """SPURS' ``S = ceil(N_train / batch)·epochs``: training forwards of a run (the trainer keeps the last,
    partial batch)."""
    return -(-n_images // batch_size) * epochs


def spurs_quant_hyp(**overrides):
    """SPURS HEAD's optimizer under quantization (fact 20): Adam, lr 5e-5, MultiStepLR γ = 0.3 at E//5, E//2,
    E//1.25, no burn-in; weight decay on conv weights only (our param groups); the rest as the ``spurs`` preset."""
    from ..engine.hyp import hyp

    base = {"optimizer": "adam", "lr0": 5e-5, "lr_schedule": "multistep", "lr_milestones": (0.2, 0.5, 0.8),
            "lr_gamma": 0.3, "warmup": "none"}
    return hyp("spurs", **{**base, **overrides})
