"""Distillation loss terms as pure functions (quant-kd-spec §4.2-§4.5, acceptance facts 21-29).

Raw head maps are the train-mode outputs of a Darknet: one ``(N, A, H, W, 5+C)`` tensor per ``[yolo]`` layer,
channels (tx, ty, tw, th, obj, cls_1..cls_C).  Boxes compared here are *decoded grid-unit* boxes
``(σ(tx), σ(ty), e^tw·a_w, e^th·a_h)`` at the positives of :func:`yolocomp.engine.targets.build_targets` (anchors in
grid units, as :class:`~yolocomp.engine.targets.HeadTargets` carries them).  Every function returns the term
*before* the trainer's ``batch/64`` factor; the callbacks apply it (the seeds add KD before that factor, §4.1).

``KL(P‖Q)`` below is ``Σ P·(log P − log Q)`` with ``P = softmax(teacher/τ)`` and ``Q = softmax(student/τ)``, what
``nn.KLDivLoss(log Q, P)`` computes in the seeds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou_loss

from ..engine.targets import HeadTargets
from ..errors import InputError

REDUCTIONS = ("sum", "mean")
# e^tw is clamped as in the detection loss (training-recipe §2.1) so an untrained student cannot overflow the L2.
_WH_CLAMP = 1e3


def kl_rows(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Row-wise ``KL(softmax(teacher/τ) ‖ softmax(student/τ))`` over the last dimension: (..., K) -> (...)."""
    log_q = F.log_softmax(student.float() / temperature, -1)
    log_p = F.log_softmax(teacher.float() / temperature, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def _reduce(kl: Tensor, n_values: int, reduction: str) -> Tensor:
    """``sum`` of the row KLs, or their sum divided by the number of summed elements (``mean``: the element-wise
    mean that a legacy ``KLDivLoss('reduction=sum')`` call resolves to, HALO §4.4 — a seed bug kept as option)."""
    if reduction not in REDUCTIONS:
        raise InputError(None, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    total = kl.sum()
    return total if reduction == "sum" else total / max(n_values, 1)


def check_same_outputs(student: list[Tensor], teacher: list[Tensor]) -> None:
    """Output-level KD needs identical head maps (same anchors, classes, levels and grid sizes); SPURS issue #25
    (yolov3 teacher, yolov3-tiny student) fails exactly here."""
    s_shapes = [tuple(p.shape) for p in student]
    t_shapes = [tuple(p.shape) for p in teacher]
    if s_shapes != t_shapes:
        raise InputError(None, f"output-level distillation needs the teacher's head maps to match the student's: "
                               f"student {s_shapes}, teacher {t_shapes} (same classes, anchors per head, number of "
                               f"[yolo] layers and input size; e.g. an unpruned teacher and its pruned student)")


def output_kl(student: list[Tensor], teacher: list[Tensor], temperature: float = 3.0,
              reduction: str = "sum") -> Tensor:
    """KDstr 1 / TAN loss1 before its weight (fact 21): ``τ²/B · Σ_rows KL`` where a row is one (image, anchor,
    cell) vector of all ``5+C`` raw channels (box, objectness and classes in one softmax).

    student, teacher: lists of (N, A, H, W, 5+C) of equal shapes.  ``reduction="mean"`` divides the KL sum by
    rows·(5+C) (HALO's behaviour)."""
    check_same_outputs(student, teacher)
    k = student[0].shape[-1]
    s = torch.cat([p.reshape(-1, k) for p in student])
    t = torch.cat([p.reshape(-1, k) for p in teacher])
    n_img = student[0].shape[0]
    return temperature ** 2 / n_img * _reduce(kl_rows(s, t, temperature), s.numel(), reduction)


def soft_class_kl(student: list[Tensor], teacher: list[Tensor], temperature: float = 3.0,
                  reduction: str = "sum") -> Tensor:
    """The class term of KDstr 2-5: ``Σ_l τ²/B · Σ_rows KL`` over the ``1+C`` channels (objectness and classes)
    of every anchor cell of every level."""
    check_same_outputs(student, teacher)
    n_img = student[0].shape[0]
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher):
        s_rows, t_rows = s[..., 4:].reshape(-1, s.shape[-1] - 4), t[..., 4:].reshape(-1, t.shape[-1] - 4)
        total = total + temperature ** 2 / n_img * _reduce(kl_rows(s_rows, t_rows, temperature), s_rows.numel(),
                                                            reduction)
    return total


def decode_at(raw: Tensor, pos: HeadTargets) -> Tensor:
    """Decoded grid-unit boxes (σ(tx), σ(ty), e^tw·a_w, e^th·a_h) of one head map (N, A, H, W, 5+C) at the
    positives ``pos`` -> (n, 4)."""
    p = raw[pos.b, pos.a, pos.gj, pos.gi].float()
    return torch.cat([p[:, :2].sigmoid(), p[:, 2:4].exp().clamp(max=_WH_CLAMP) * pos.anchors], 1)


def bounded_regression(r_student: Tensor, r_teacher: Tensor, target: Tensor,
                       margin: float = 0.0) -> tuple[Tensor, Tensor]:
    """Chen et al.'s teacher-bounded L2 (KDstr 2, fact 22): ``Σ_pos ‖R_s−y‖² · 1[‖R_s−y‖² + m > ‖R_t−y‖²]``.

    r_student, r_teacher, target: (n, 4) boxes in one unit.  Returns (loss, fraction of positives where the student
    is worse = the seeds' ``reg_ratio``; 0 without positives)."""
    d_s = (r_student - target).pow(2).sum(1)
    d_t = (r_teacher - target).pow(2).sum(1)
    worse = d_s + margin > d_t
    ratio = worse.float().mean() if len(worse) else d_s.new_zeros(())
    return (d_s * worse).sum(), ratio.detach()


def teacher_l2(r_student: Tensor, r_teacher: Tensor) -> Tensor:
    """KDstr 3's box term (fact 23): ``Σ_pos ‖R_s − R_t‖²``, no ground truth."""
    return (r_student - r_teacher).pow(2).sum()


def attention_map(feature: Tensor, p: int = 1) -> Tensor:
    """Spatial attention of a feature map (N, C, H, W) -> (N, H·W): ``Σ_c |F|^p`` (p = 1: SPURS HEAD's "L1" map;
    p = 2: the Era-A "L2" map Σ F²).  Invariant to permuting channels or adding all-zero ones (fact 24)."""
    if p not in (1, 2):
        raise InputError(None, f"attention map exponent must be 1 or 2, got {p}")
    a = feature.float().abs() if p == 1 else feature.float().pow(2)
    return a.sum(1).flatten(1)


def attention_kl(student: Tensor, teacher: Tensor, temperature: float = 3.0, mask: Tensor | None = None,
                 p: int = 1, reduction: str = "sum") -> Tensor:
    """KDstr 4/5 feature term of one feature pair (fact 24): ``τ²/B · Σ_images KL(softmax(A_t/τ) ‖ softmax(A_s/τ))``
    with ``A`` = :func:`attention_map` flattened per image.

    student: (N, C_s, H, W), teacher: (N, C_t, H, W) — channel counts may differ, sizes may not.  mask: (N, H, W)
    0/1 (KDstr 5): multiplied into both maps *before* the softmax, so masked cells enter as logit 0 (SPURS)."""
    if student.shape[0] != teacher.shape[0] or student.shape[2:] != teacher.shape[2:]:
        raise InputError(None, f"feature pair of different sizes: student {tuple(student.shape)}, teacher "
                               f"{tuple(teacher.shape)} (pair layers of equal batch and H×W)")
    a_s, a_t = attention_map(student, p), attention_map(teacher, p)
    if mask is not None:
        m = mask.reshape(mask.shape[0], -1).to(a_s.dtype)
        a_s, a_t = a_s * m, a_t * m
    n_img = student.shape[0]
    return temperature ** 2 / n_img * _reduce(kl_rows(a_s, a_t, temperature), a_s.numel(), reduction)


def hint_l1(adapted_student: Tensor, teacher: Tensor) -> Tensor:
    """FitNets hint term of ANDREY (fact 28): mean absolute difference of the adapted student feature and the
    teacher feature, both (N, C_t, H, W)."""
    if adapted_student.shape != teacher.shape:
        raise InputError(None, f"hint pair of different shapes: adapted student {tuple(adapted_student.shape)}, "
                               f"teacher {tuple(teacher.shape)}")
    return F.l1_loss(adapted_student.float(), teacher.float())


def teacher_bounded(student_loss: Tensor, teacher_loss: float | Tensor, margin: float = 1e-5) -> Tensor:
    """ANDREY's batch-level bounded regression (§4.5 step 3): the student's box loss where ``student + m >
    teacher``, else 0 (a zero that keeps the graph)."""
    worse = float(student_loss.detach()) + margin > float(teacher_loss)
    return student_loss if worse else student_loss * 0.0


def giou_loss(raw: Tensor, pos: HeadTargets, scale_x_y: float = 1.0) -> Tensor:
    """Box term of the detection loss for one head: mean over the positives of 1 − GIoU between the decoded box
    (grid units, the head's ``scale_x_y``) and the target ``pos.tbox``; 0 without positives."""
    if len(pos) == 0:
        return raw.new_zeros(())
    p = raw[pos.b, pos.a, pos.gj, pos.gi].float()
    pxy = p[:, :2].sigmoid() * scale_x_y - (scale_x_y - 1) / 2
    pwh = p[:, 2:4].exp().clamp(max=_WH_CLAMP) * pos.anchors
    pbox = box_convert(torch.cat([pxy, pwh], 1), "cxcywh", "xyxy")
    tbox = box_convert(pos.tbox, "cxcywh", "xyxy")
    return generalized_box_iou_loss(pbox, tbox, reduction="none", eps=1e-16).mean()


def class_bce(raw: Tensor, pos: HeadTargets) -> Tensor:
    """Class term of the detection loss for one head: BCE of the class logits at the positives against one-hot
    ``pos.cls``, mean over positives × classes; 0 without positives or with one class (the seeds skip it)."""
    n_cls = raw.shape[-1] - 5
    if len(pos) == 0 or n_cls <= 1:
        return raw.new_zeros(())
    logits = raw[pos.b, pos.a, pos.gj, pos.gi, 5:].float()
    return F.binary_cross_entropy_with_logits(logits, F.one_hot(pos.cls, n_cls).float())
