"""Turn decoded network outputs into final detections: score, filter, per-class NMS, cap.

Follows the seeds' ``non_max_suppression`` (training-recipe §6.2, ULY/SPURS/ANDREY column) minus merge-NMS: score =
objectness x class probability, multi-label by default, per-class NMS in one ``torchvision.ops.batched_nms`` call.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert

MIN_WH, MAX_WH = 2.0, 4096.0   # seeds' box-size pre-filter (pixels): drop degenerate and absurd boxes


def postprocess(preds: Tensor, conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300,
                multi_label: bool = True) -> list[Tensor]:
    """Detections per image from eval-mode outputs.

    preds: ``(N, B, 5 + C)`` rows ``cx, cy, w, h`` (network-input pixels), sigmoid objectness, sigmoid class scores.
    Returns N tensors ``(k, 6)``: ``x1, y1, x2, y2`` (network-input pixels, xyxy, not clipped), score, class (as
    float), sorted by descending score, ``k <= max_det``.

    A box is a candidate when obj > conf_thres, 2 < w, h < 4096 and all values are finite. With ``multi_label``
    every class whose obj * cls exceeds conf_thres becomes its own detection (the seeds' mAP setting); otherwise
    only the best class is kept. IoU > iou_thres between same-class boxes suppresses the lower score.
    """
    if preds.ndim != 3 or preds.shape[-1] < 6:
        raise ValueError(f"postprocess expects (N, B, 5 + C) predictions, got {tuple(preds.shape)}")
    out = []
    for p in preds:
        wh = p[:, 2:4]
        keep = (p[:, 4] > conf_thres) & (wh > MIN_WH).all(1) & (wh < MAX_WH).all(1) & torch.isfinite(p).all(1)
        p = p[keep]
        boxes = box_convert(p[:, :4], "cxcywh", "xyxy")
        scores = p[:, 5:] * p[:, 4:5]
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            boxes, conf, cls = boxes[i], scores[i, j], j
        else:
            conf, cls = scores.max(1)
            ok = conf > conf_thres
            boxes, conf, cls = boxes[ok], conf[ok], cls[ok]
        kept = batched_nms(boxes.float(), conf.float(), cls, iou_thres)[:max_det]   # sorted by score
        out.append(torch.cat([boxes[kept], conf[kept, None], cls[kept, None].to(boxes.dtype)], 1))
    return out
