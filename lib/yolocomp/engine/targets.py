"""Target assignment to anchors and grid cells of one YOLO head (training-recipe §1, ``build_targets``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert, box_iou

from ..errors import InputError


@dataclass
class HeadTargets:
    """The positives of one head, n pairs (target, anchor).

    ``b, a, gj, gi``: (n,) long — image index, anchor index within the head, grid row, grid column (clamped into the
    grid).  ``tbox``: (n, 4) float — target centre relative to the cell and target w, h, all in grid units
    (x − gi, y − gj, w, h).  ``anchors``: (n, 2) the matched anchor's w, h in grid units.  ``cls``: (n,) long.
    ``target_index``: (n,) long — row of the input targets tensor each pair came from.
    """

    b: torch.Tensor
    a: torch.Tensor
    gj: torch.Tensor
    gi: torch.Tensor
    tbox: torch.Tensor
    anchors: torch.Tensor
    cls: torch.Tensor
    target_index: torch.Tensor

    def __len__(self) -> int:
        return self.b.numel()


def check_targets(targets: torch.Tensor, classes: int) -> None:
    """Raise InputError unless ``targets`` is (M, 6) [batch_idx, cls, x1, y1, x2, y2] with integral batch indices,
    classes in [0, classes) and x2 >= x1, y2 >= y1 (the collate layout, pixels)."""
    if targets.ndim != 2 or targets.shape[1] != 6:
        raise InputError(None, f"targets must be (M, 6) [batch_idx, cls, x1, y1, x2, y2], got {tuple(targets.shape)}")
    if targets.numel() == 0:
        return
    idx_cls = targets[:, :2]
    if not torch.isfinite(targets).all() or (idx_cls != idx_cls.round()).any() or (idx_cls < 0).any():
        raise InputError(None, "targets: batch index and class must be non-negative integers and all values finite")
    if (targets[:, 1] >= classes).any():
        raise InputError(None, f"targets: class {int(targets[:, 1].max())} out of range for a {classes}-class model")
    if ((targets[:, 4] < targets[:, 2]) | (targets[:, 5] < targets[:, 3])).any():
        raise InputError(None, "targets: boxes must be xyxy with x2 >= x1 and y2 >= y1")


def build_targets(targets: torch.Tensor, anchors: torch.Tensor, grid_hw: tuple[int, int], img_hw: tuple[int, int],
                  *, iou_t: float = 0.20, anchor_t: float | None = None) -> HeadTargets:
    """Assign targets to the anchors and cells of one head.

    targets: (M, 6) [batch_idx, cls, x1, y1, x2, y2] in input pixels.  anchors: (A, 2) w, h in input pixels.
    grid_hw: the head's (H, W); img_hw: the network input (height, width); stride = input / grid per axis.

    Every (anchor, target) pair whose anchor-shape IoU (both boxes centred at one point) is strictly > ``iou_t`` is
    a positive — so one target may match 0..A anchors (ULY/SPURS/TAN/ANDREY, §1).  With ``anchor_t`` set the v9 rule
    is used instead: max(r, 1/r) of the w and h ratios < anchor_t (§10).  Each pair gets the cell containing the
    target centre, clamped into the grid (ULY v8; the other seeds crash on a centre at exactly the far edge).
    Pairs are ordered anchor-major, then by target row.
    """
    h, w = grid_hw
    device = targets.device
    stride = torch.tensor([img_hw[1] / w, img_hw[0] / h], device=device)
    t = targets.float()
    cxcywh = box_convert(t[:, 2:6], "xyxy", "cxcywh")
    gxy = cxcywh[:, :2] / stride                          # (M, 2) grid units
    gwh = cxcywh[:, 2:] / stride
    anc = anchors.to(device=device, dtype=torch.float32) / stride    # (A, 2)
    if anchor_t is None:
        # IoU of two boxes sharing a corner at the origin = the shape-only IoU of §1 step 2
        zeros_a = torch.zeros_like(anc)
        iou = box_iou(torch.cat([zeros_a, anc], 1), torch.cat([torch.zeros_like(gwh), gwh], 1))  # (A, M)
        match = iou > iou_t
    else:
        r = gwh[None] / anc[:, None]                      # (A, M, 2)
        match = torch.max(r, 1 / r).amax(2) < anchor_t
    a, ti = match.nonzero(as_tuple=True)
    gxy_m = gxy[ti]
    gij = gxy_m.long()                                    # truncation == floor for the non-negative centres
    gi = gij[:, 0].clamp(0, w - 1)
    gj = gij[:, 1].clamp(0, h - 1)
    tbox = torch.cat([gxy_m - torch.stack([gi, gj], 1), gwh[ti]], 1)
    return HeadTargets(b=t[ti, 0].long(), a=a, gj=gj, gi=gi, tbox=tbox, anchors=anc[a], cls=t[ti, 1].long(),
                       target_index=ti)
