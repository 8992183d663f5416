"""SPURS's distillation strategies ``--KDstr 1..5`` as compositions of :mod:`yolocomp.distill.losses`
(quant-kd-spec §4.2, HEAD ``0202ec6``; facts 21-25).

Each strategy is ``fn(batch: KDBatch, opts: KDOptions) -> (loss, logs)``: ``loss`` a scalar tensor before the
trainer's batch/64 factor, ``logs`` floats for the training log.  Default weights (HEAD):

==========  ===================================================================  =======================
KDstr       terms                                                                weights
==========  ===================================================================  =======================
1           ``out``: KL over every (image, anchor, cell) row of all 5+C channels  out 1e-3
2           ``cls``: KL over obj+classes, all cells; ``box``: teacher-bounded L2  cls 1e-4, box 1e-3
3           ``cls`` as 2; ``box``: Σ_pos ‖R_s − R_t‖²                              cls 1e-4, box 1e-3
4           3's terms + ``feat``: KL of spatial attention maps per feature pair   cls, box, feat 1e-3
5           4 with the fine-grained mask applied to the attention maps           cls, box, feat 1e-3
==========  ===================================================================  =======================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..engine.targets import HeadTargets
from ..errors import InputError
from . import losses
from .masks import fine_grained_mask

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "KDstr1": {"out": 1e-3},
    "KDstr2": {"cls": 1e-4, "box": 1e-3},
    "KDstr3": {"cls": 1e-4, "box": 1e-3},
    "KDstr4": {"cls": 1e-3, "box": 1e-3, "feat": 1e-3},
    "KDstr5": {"cls": 1e-3, "box": 1e-3, "feat": 1e-3},
}


@dataclass
class KDBatch:
    """One batch as the strategies see it.  student / teacher: raw head maps [(N, A, H, W, 5+C)] of equal shapes;
    positives: the student's positives per level (ground truth assigned by ``build_targets``); img_hw: the input
    size; student_features / teacher_features: the paired feature maps [(N, C, H, W)] (KDstr 4/5)."""

    student: list[Tensor]
    teacher: list[Tensor]
    positives: list[HeadTargets]
    img_hw: tuple[int, int]
    student_features: list[Tensor] = field(default_factory=list)
    teacher_features: list[Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class KDOptions:
    """temperature τ (3.0 in every seed); weights: overrides of :data:`DEFAULT_WEIGHTS` by term name; reduction of
    the KL sums (``sum``; ``mean`` = HALO's element-wise mean); attention_p: 1 (Σ|F|, "L1", HEAD) or 2 (Σ F², "L2");
    mask: fine-grained mask mode (``full`` k×k, or the seed's ``diagonal``); margin m of the bounded regression."""

    temperature: float = 3.0
    weights: dict = field(default_factory=dict)
    reduction: str = "sum"
    attention_p: int = 1
    mask: str = "full"
    margin: float = 0.0

    def weight(self, strategy: str, term: str) -> float:
        return float(self.weights.get(term, DEFAULT_WEIGHTS[strategy][term]))


def _boxes(b: KDBatch):
    """Decoded (student, teacher, target) grid-unit boxes at all positives of all levels."""
    rs, rt, y = [], [], []
    for s, t, pos in zip(b.student, b.teacher, b.positives):
        if len(pos):
            rs.append(losses.decode_at(s, pos))
            rt.append(losses.decode_at(t, pos))
            y.append(pos.tbox)
    if not rs:
        z = b.student[0].new_zeros(0, 4)
        return z, z, z
    return torch.cat(rs), torch.cat(rt), torch.cat(y)


def kdstr1(b: KDBatch, o: KDOptions) -> tuple[Tensor, dict]:
    out = losses.output_kl(b.student, b.teacher, o.temperature, o.reduction)
    return o.weight("KDstr1", "out") * out, {"kd_out": float(out.detach())}


def kdstr2(b: KDBatch, o: KDOptions) -> tuple[Tensor, dict]:
    cls = losses.soft_class_kl(b.student, b.teacher, o.temperature, o.reduction)
    rs, rt, y = _boxes(b)
    box, ratio = losses.bounded_regression(rs, rt, y, o.margin)
    loss = o.weight("KDstr2", "cls") * cls + o.weight("KDstr2", "box") * box
    return loss, {"kd_cls": float(cls.detach()), "kd_box": float(box.detach()), "reg_ratio": float(ratio.detach())}


def kdstr3(b: KDBatch, o: KDOptions, name: str = "KDstr3") -> tuple[Tensor, dict]:
    cls = losses.soft_class_kl(b.student, b.teacher, o.temperature, o.reduction)
    rs, rt, _ = _boxes(b)
    box = losses.teacher_l2(rs, rt)
    loss = o.weight(name, "cls") * cls + o.weight(name, "box") * box
    return loss, {"kd_cls": float(cls.detach()), "kd_box": float(box.detach())}


def _feature_term(b: KDBatch, o: KDOptions, masked: bool) -> Tensor:
    if not b.student_features:
        raise InputError(None, "KDstr 4/5 need feature pairs (none were given or found)")
    total = b.student[0].new_zeros(())
    h_img = b.img_hw[0]
    level_strides = [h_img / p.shape[2] for p in b.student]
    for fs, ft in zip(b.student_features, b.teacher_features):
        mask = None
        if masked:
            mask = fine_grained_mask(b.positives, level_strides, tuple(fs.shape[2:]), h_img / fs.shape[2],
                                     fs.shape[0], o.mask)
        total = total + losses.attention_kl(fs, ft, o.temperature, mask, o.attention_p, o.reduction)
    return total


def kdstr4(b: KDBatch, o: KDOptions, name: str = "KDstr4") -> tuple[Tensor, dict]:
    base, logs = kdstr3(b, o, name)
    feat = _feature_term(b, o, masked=name == "KDstr5")
    return base + o.weight(name, "feat") * feat, {**logs, "kd_feat": float(feat.detach())}


def kdstr5(b: KDBatch, o: KDOptions) -> tuple[Tensor, dict]:
    return kdstr4(b, o, "KDstr5")


STRATEGIES = {"KDstr1": kdstr1, "KDstr2": kdstr2, "KDstr3": kdstr3, "KDstr4": kdstr4, "KDstr5": kdstr5}
NEEDS_FEATURES = {"KDstr4", "KDstr5"}
