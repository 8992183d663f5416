"""Every training hyperparameter in one place, with the seed and recipe section it comes from.

"§" references are to ``/work/shared/reference/training-recipe.md``.  Seeds: ULY = ultralytics/yolov3 archive (= v8),
SPURS, TAN, ANDREY, v9 = ultralytics/yolov3 v9.1 (§10).  :data:`PRESETS` reproduces each seed's settings (§11 list of
selectable differences); ``default`` is the §11 recommendation (= ``uly-v8``, with EMA decay stored for resume).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError

# Allowed values of the string-valued fields; checked in Hyp.__post_init__ so a typo fails at once.
CHOICES = {
    "assign": ("wh-iou", "wh-ratio"),
    "box_loss": ("giou", "ciou"),
    "gr_schedule": ("burn-in", "epoch-cosine", "fixed"),
    "focal_style": ("tf", "exp"),
    "loss_scale": ("bs/nominal", "bs"),
    "bias_init": ("uly", "tan", "andrey"),
    "optimizer": ("sgd", "adam"),
    "lr_schedule": ("cosine", "tan-step", "inverse-exp", "multistep"),
    "warmup": ("burn-in", "tan", "prebias", "none"),
    "fitness": ("v8", "map", "v9"),
    "mosaic_style": ("uly", "tan", "andrey"),
    "hsv_style": ("lut", "mult", "mult-per-tile"),
    "multi_scale_rule": ("uly", "tan", "andrey"),
}


@dataclass(frozen=True)
class Hyp:
    """Training hyperparameters.  Defaults = ULY v8 / SPURS-2020 (§11); each field names its source."""

    # --- target assignment (§1) ---
    assign: str = "wh-iou"          # ULY/SPURS/TAN/ANDREY: anchor-shape IoU > iou_t; v9: wh ratio < anchor_t (§10)
    iou_t: float = 0.20             # ULY/SPURS 0.20, TAN 0.2635, ANDREY 0.225 (CLI default wins over YAML, §1/§7.4)
    anchor_t: float = 4.0           # v9 hyp.scratch anchor_t, used only with assign="wh-ratio" (§10)
    # --- loss (§2) ---
    box_loss: str = "giou"          # v8-era seeds GIoU (§2.1); v9 CIoU (§10)
    giou: float = 3.54              # box gain: ULY/SPURS/ANDREY 3.54, TAN 1.582, v9 0.05 (§2.3, §10)
    obj: float = 64.3               # objectness gain: ULY/SPURS/ANDREY 64.3, TAN 21.35, v9 1.0
    cls: float = 37.4               # class gain: ULY/SPURS/ANDREY 37.4, TAN 27.76, v9 0.5
    cls_nc_scale: bool = True       # cls × nc/80 (ULY/SPURS train.py, v9); TAN/ANDREY no rescale (§2.3)
    head_scaled_gains: bool = False  # v9.1: box, cls × 3/n_heads; obj × (S/640)²·3/n_heads (§10)
    obj_balance: tuple[float, ...] = ()  # per-head obj weight, smallest stride first; v9 (4.0, 1.0, 0.4, 0.1) (§10)
    cls_pw: float = 1.0             # BCE pos_weight of classes: TAN 1.446 (arc "defaultpw"), others 1 (§2.3)
    obj_pw: float = 1.0             # BCE pos_weight of objectness: TAN 3.941, others 1 (§2.3)
    gr_schedule: str = "burn-in"    # obj target ratio g_r: ULY/SPURS linear 0→1 over burn-in, ANDREY per-epoch
    #                                 cosine ramp, TAN and v9 fixed (§2.3, §10)
    gr: float = 1.0                 # g_r with gr_schedule="fixed": TAN 0 (target 1), v9 1
    fl_gamma: float = 0.0           # focal γ; 0 = off in every seed's default run (TAN/ANDREY hyp 0.5 unused, §2.3)
    focal_style: str = "tf"         # "tf": α_t·(1−p_t)^γ, α 0.25 (ULY/SPURS); "exp": (1.000001−e^{−L})^γ (TAN/ANDREY)
    label_smoothing: float = 0.0    # ε: positives 1−ε/2, negatives ε/2 (ULY/SPURS hook, ε = 0, §2.1)
    loss_scale: str = "bs/nominal"  # total × bs/nominal_batch before backward (all v8-era seeds); v9: × bs (§2.2, §10)
    nominal_batch: int = 64         # all seeds (§3.3)
    bias_init: str = "uly"          # head output biases: ULY/SPURS add −4.5 / log(0.6/(nc−0.99)); TAN mean −4.0/−3.6;
    #                                 ANDREY mean −4.5 / log(1/(nc−0.99)) (§2.4)
    # --- optimizer and schedule (§3) ---
    optimizer: str = "sgd"          # SGD nesterov in all seeds; Adam option (§3.2)
    lr0: float = 0.01               # ULY/SPURS/ANDREY 0.01, TAN 0.002324; SPURS quantised Adam 5e-5 (§3.2)
    momentum: float = 0.937         # ULY/SPURS/ANDREY 0.937, TAN 0.97 (§3.2)
    nesterov: bool = True           # all seeds (§3.2)
    weight_decay: float = 5e-4      # conv weights only: ULY/SPURS 5e-4, TAN 4.569e-4, ANDREY 4.84e-4 (§3.1)
    param_groups: int = 3           # ULY/SPURS/ANDREY: other / conv weights / biases; TAN 2 (biases in "other") (§3.1)
    lr_schedule: str = "cosine"     # ULY/SPURS per-epoch cosine; TAN per-batch step; ANDREY inverse-exp (§3.2)
    lrf: float = 0.05               # schedule parameter: cosine floor (ULY 0.05 — hyp lrf 5e-4 is unused —, v9 0.2);
    #                                 inverse-exp exponent (ANDREY −4)
    lr_milestones: tuple[float, ...] = (0.2, 0.5, 0.8)  # multistep at ⌊E·m⌋ (SPURS quantised: E/5, E/2, E/1.25)
    lr_gamma: float = 0.3           # multistep factor (SPURS quantised 0.3; ANDREY multi-step 0.8) (§3.2)
    warmup: str = "burn-in"         # ULY/SPURS burn-in; TAN 6-epoch ramp; ANDREY bias "prebias"; none (§3.4)
    warmup_epochs: float = 3.0      # burn-in length max(warmup_epochs·nb, warmup_iters) batches (ULY/SPURS, v9) (§3.4)
    warmup_iters: int = 500         # ULY/SPURS 500, v9 1000 (§3.4, §10)
    warmup_bias_lr: float = 0.1     # bias-group lr at burn-in start (ULY/SPURS, v9; ANDREY prebias) (§3.4)
    warmup_momentum: float = 0.9    # momentum at burn-in start: ULY/SPURS 0.9, v9 0.8 (§3.4, §10)
    accumulate: int | None = None   # None = max(1, round(nominal_batch/bs)) (ULY/SPURS); TAN fixed 2, ANDREY 8 (§3.3)
    # --- EMA (§4) ---
    ema: bool = True                # ULY on; SPURS opt-in (off at HEAD); TAN/ANDREY none (§4)
    ema_decay: float = 0.9999       # d(u) = ema_decay·(1 − exp(−u/ema_tau)) (ULY, §4)
    ema_tau: float = 2000.0
    # --- model selection ---
    fitness: str = "v8"             # best.pt: 0.01·R + 0.99·mAP50 (ULY/ANDREY); mAP50 (SPURS/TAN); v9 0.1/0.9 (§3.5)
    patience: int | None = None     # early stop after this many epochs without a new best: ANDREY 75 (§3.5)
    # --- data and augmentation (§5) ---
    input_divisor: float = 255.0    # pixels / 255 (all seeds; SPURS HEAD 256) (§9)
    shuffle: bool = True            # ANDREY's train loader does not shuffle (§3.5)
    mosaic: float = 1.0             # probability; 1 in ULY/SPURS/TAN/ANDREY (always on when augmenting), v9 1.0 (§5.2)
    mosaic_style: str = "uly"       # ULY/SPURS fill 114 + affine crop; TAN fill 128 centre crop; ANDREY fill 128 (§5.2)
    degrees: float = 0.0            # ULY/SPURS 1.98 × 0; ANDREY-VOC 1.98; TAN unused (§5.3)
    translate: float = 0.0          # ANDREY-VOC 0.05; v9 0.1
    scale: float = 0.0              # ANDREY-VOC 0.05; v9 0.5
    shear: float = 0.0              # ANDREY-VOC 0.641
    hsv_h: float = 0.0138           # ULY/SPURS/ANDREY 0.0138, TAN 0.10, v9 0.015 (§5.4)
    hsv_s: float = 0.678            # ULY/SPURS/ANDREY 0.678, TAN 0.5703, v9 0.7
    hsv_v: float = 0.36             # ULY/SPURS/ANDREY 0.36, TAN 0.3174, v9 0.4
    hsv_style: str = "lut"          # ULY/SPURS look-up tables; ANDREY multiplicative; TAN multiplicative per tile
    fliplr: float = 0.5             # all seeds (§5.5)
    flipud: float = 0.0             # present but off in all seeds
    multi_scale_rule: str = "uly"   # size range and change frequency with multi-scale on (§5.8)
    # --- evaluation during training (§6) ---
    conf_thres: float = 0.001       # all seeds for mAP (§6.2)
    iou_thres: float = 0.6          # NMS IoU: ULY/SPURS/ANDREY 0.6, TAN 0.5 (§6.2)

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise InputError(None, f"hyp {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        for name in ("iou_t", "anchor_t", "giou", "obj", "cls", "cls_pw", "obj_pw", "lr0", "nominal_batch"):
            if not getattr(self, name) > 0:
                raise InputError(None, f"hyp {name} must be > 0, got {getattr(self, name)!r}")
        if self.accumulate is not None and self.accumulate < 1:
            raise InputError(None, f"hyp accumulate must be >= 1 or None, got {self.accumulate!r}")

    def replace(self, **overrides) -> Hyp:
        """A copy with ``overrides`` applied; unknown names raise InputError listing the valid ones."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputError(None, f"unknown hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


_ULY = {}
_SPURS = {"ema": False, "fitness": "map"}  # HEAD: EMA opt-in (§4); best.pt on mAP only (§3.5)
_TAN = {
    "iou_t": 0.2635, "giou": 1.582, "obj": 21.35, "cls": 27.76, "cls_nc_scale": False, "cls_pw": 1.446,
    "obj_pw": 3.941, "gr_schedule": "fixed", "gr": 0.0, "focal_style": "exp", "bias_init": "tan",
    "lr0": 0.002324, "momentum": 0.97, "weight_decay": 4.569e-4, "param_groups": 2, "lr_schedule": "tan-step",
    "warmup": "tan", "accumulate": 2, "ema": False, "fitness": "map", "mosaic_style": "tan", "hsv_h": 0.10,
    "hsv_s": 0.5703, "hsv_v": 0.3174, "hsv_style": "mult-per-tile", "multi_scale_rule": "tan", "iou_thres": 0.5,
}
_ANDREY = {
    "iou_t": 0.225, "cls_nc_scale": False, "gr_schedule": "epoch-cosine", "focal_style": "exp",
    "bias_init": "andrey", "weight_decay": 4.84e-4, "lr_schedule": "inverse-exp", "lrf": -4.0, "warmup": "prebias",
    "accumulate": 8, "ema": False, "patience": 75, "shuffle": False, "mosaic_style": "andrey", "degrees": 1.98,
    "translate": 0.05, "scale": 0.05, "shear": 0.641, "hsv_style": "mult", "multi_scale_rule": "andrey",
}
_V9 = {
    "assign": "wh-ratio", "box_loss": "ciou", "giou": 0.05, "obj": 1.0, "cls": 0.5, "head_scaled_gains": True,
    "obj_balance": (4.0, 1.0, 0.4, 0.1), "gr_schedule": "fixed", "gr": 1.0, "loss_scale": "bs", "lrf": 0.2,
    "warmup_iters": 1000, "warmup_momentum": 0.8, "fitness": "v9", "translate": 0.1, "scale": 0.5,
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4,
}

PRESETS: dict[str, dict] = {"default": _ULY, "uly-v8": _ULY, "spurs": _SPURS, "tan": _TAN, "andrey": _ANDREY,
                            "uly-v9": _V9}


def hyp(preset: str = "default", **overrides) -> Hyp:
    """The hyperparameters of ``preset`` (one of :data:`PRESETS`) with ``overrides`` applied."""
    if preset not in PRESETS:
        raise InputError(None, f"unknown hyp preset {preset!r}; valid: {', '.join(PRESETS)}")
    return Hyp().replace(**PRESETS[preset]).replace(**overrides)


def accumulate_steps(h: Hyp, batch_size: int) -> int:
    """Batches per optimizer step: ``h.accumulate`` if set, else max(1, round(nominal_batch / batch_size)) with
    Python's round-half-even, as ULY/SPURS (§3.3: bs 16→4, 20→3, 24→3, 32→2, ≥52→1)."""
    if batch_size < 1:
        raise InputError(None, f"batch_size must be >= 1, got {batch_size}")
    return h.accumulate if h.accumulate is not None else max(1, round(h.nominal_batch / batch_size))
