"""ANDREY's classical distillation (Chen et al. 2017 + FitNets hints), ``my_kd_classical.py`` (quant-kd-spec §4.5,
facts 28-29).

The seed's per-batch loss, with the detection losses gain-weighted (GIoU gain g_box, class gain g_cls):

* ``lbox = hard.lbox + ν·(hard.lbox if hard.lbox + m > tch.lbox else 0)`` — the teacher-bounded regression on the
  batch-level GIoU loss; ``tch`` = the teacher's own detection loss against the ground truth;
* ``lcls = μ·hard.lcls + (1−μ)·soft.lcls`` — ``soft`` = the student's class loss against the teacher's detections
  (NMS on the teacher output, conf 0.1, IoU 0.6) used as labels;
* ``lobj = hard.lobj``; ``lhint = Σ_pairs L1_mean(hint(F_s), F_t)``.

The trainer already adds the hard detection loss (``hard.lbox + hard.lobj + hard.lcls``), so :func:`classical_terms`
returns only the difference ``ν·bounded + (1−μ)·(soft.lcls − hard.lcls) + lhint``; summed, the two are the seed's
loss exactly when the trainer's class term is plain BCE (pos_weight 1, no smoothing or focal term — every preset but
``tan``).  Teacher and student need only the same classes: each side's loss uses its own anchors and positives, so
a YOLOv3 teacher can teach YOLO Nano, or a two-head yolov3-tiny a three-head student.

Fixed seed bugs (both would stop the HEAD script, §4.5 item 4): μ, ν, m are arguments (the seed reads them from an
undefined name), and the teacher's loss needs no ``gr`` attribute (box terms only).  Defaults μ = 0.7, ν = 0.5,
m = 1e-5, as ANDREY's ``default.yaml``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..engine.targets import HeadTargets
from ..eval.nms import postprocess
from . import losses


def pseudo_labels(decoded: Tensor, img_hw: tuple[int, int], conf_thres: float = 0.1,
                  iou_thres: float = 0.6) -> Tensor:
    """The teacher's detections as training targets: decoded eval output (N, B, 5+C) -> (M, 6)
    ``[batch_idx, cls, x1, y1, x2, y2]`` in input pixels, boxes clipped to the image (NMS as in evaluation)."""
    rows = []
    for b, det in enumerate(postprocess(decoded.float(), conf_thres, iou_thres)):
        if len(det):
            xyxy = det[:, :4].clone()
            xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, img_hw[1])
            xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, img_hw[0])
            rows.append(torch.cat([torch.full_like(det[:, :1], b), det[:, 5:6], xyxy], 1))
    return torch.cat(rows) if rows else decoded.new_zeros(0, 6)


def box_loss(raw: list[Tensor], positives: list[HeadTargets], scale_x_y: list[float]) -> Tensor:
    """Σ over heads of mean(1 − GIoU) at the positives (the detection loss's box term before its gain)."""
    return sum((losses.giou_loss(p, pos, s) for p, pos, s in zip(raw, positives, scale_x_y)), raw[0].new_zeros(()))


def class_loss(raw: list[Tensor], positives: list[HeadTargets]) -> Tensor:
    """Σ over heads of the class BCE at the positives (the detection loss's class term before its gain)."""
    return sum((losses.class_bce(p, pos) for p, pos in zip(raw, positives)), raw[0].new_zeros(()))


def classical_terms(student_box: Tensor, teacher_box: float, hard_cls: Tensor, soft_cls: Tensor,
                    hint: Tensor | None, g_box: float, g_cls: float, mu: float = 0.7, nu: float = 0.5,
                    margin: float = 1e-5) -> tuple[Tensor, dict]:
    """What ANDREY's loss adds to the plain detection loss (module docstring), before the batch/64 factor.

    student_box, teacher_box: un-weighted box losses (Σ_heads mean 1 − GIoU) of student and teacher against the
    ground truth; hard_cls / soft_cls: the student's class losses against the ground truth / the teacher's
    detections; hint: Σ_pairs L1 (None without pairs); g_box, g_cls: the detection-loss gains."""
    bounded = losses.teacher_bounded(g_box * student_box, g_box * teacher_box, margin)
    extra = nu * bounded + (1.0 - mu) * g_cls * (soft_cls - hard_cls)
    logs = {"kd_box": float(bounded.detach()), "kd_cls_soft": float(soft_cls.detach()),
            "teacher_box": float(teacher_box)}
    if hint is not None:
        extra = extra + hint
        logs["kd_hint"] = float(hint.detach())
    return extra, logs
