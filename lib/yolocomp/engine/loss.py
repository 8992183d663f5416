"""The YOLOv3-family training loss of the seed repositories (training-recipe §1–§2, v9 options from §10).

Per head: box loss 1 − GIoU (or CIoU) averaged over positives; objectness BCE averaged over every cell with target
(1 − g_r) + g_r·max(IoU, 0) on positives (IoU detached); class BCE averaged over positives × classes (none when
nc = 1).  Heads are summed, then weighted by the gains.  The predicted box follows the model's own decode
(:func:`yolocomp.models.head.decode_yolo`) including each head's ``scale_x_y``, so training optimises what evaluation
reads; with scale_x_y = 1 (every YOLOv3 cfg) this is exactly the seeds' σ(t) + cell, e^t·anchor.  The cfg's own loss
keys (``iou_loss``, ``iou_normalizer``, ``ignore_thresh`` …) are *not* read: none of the PyTorch seeds do
(arch-anchors §9); CIoU is chosen with ``hyp.box_loss``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, complete_box_iou_loss, generalized_box_iou_loss

from ..errors import CfgError, InputError
from .hyp import Hyp
from .targets import HeadTargets, build_targets, check_targets

# §2.1: 1e-16 guards in the seeds' GIoU; exp(t_w), exp(t_h) clamped at 1000 (ULY/SPURS/ANDREY).
_EPS = 1e-16
_WH_CLAMP = 1e3


class YoloLoss(nn.Module):
    """``YoloLoss(model, hyp)(outputs, targets, img_hw) -> (total, items)``.

    ``outputs``: the train-mode model output, one raw map (N, A, H, W, 5+C) per ``[yolo]`` layer in cfg order.
    ``targets``: (M, 6) [batch_idx, cls, x1, y1, x2, y2] in input (letterboxed) pixels.  ``img_hw``: input (H, W).

    ``total`` (scalar tensor) is ready for ``backward()``: the seeds' loss g_box·ΣL_box + g_obj·ΣL_obj + g_cls·ΣL_cls
    multiplied by N/nominal_batch (``hyp.loss_scale="bs/nominal"``, all v8-era seeds, §2.2) or by N (v9); the trainer
    must not rescale it again.  ``items`` (floats) are the three weighted terms and their sum *before* that factor,
    as the seeds log them.

    ``gr`` (objectness IoU ratio g_r) is an attribute the trainer updates (see :func:`objectness_ratio`).
    ``img_size``: the nominal training size S for v9's obj × (S/640)² gain; default: max(img_hw) of each call.
    """

    def __init__(self, model: nn.Module, hyp: Hyp, *, img_size: int | None = None):
        super().__init__()
        self.hyp = hyp
        self.heads = list(model.yolo_layers)
        for head in self.heads:
            if head.new_coords:
                raise CfgError(getattr(model, "path", None), "new_coords=1 heads are not supported by the loss "
                               "(their outputs are already activated)")
        self.nc = model.classes
        self.img_size = img_size
        self.gr = objectness_ratio(hyp, epoch=0, epochs=1, ni=0, n_burn=1)

    def build_targets(self, outputs: list[torch.Tensor], targets: torch.Tensor,
                      img_hw: tuple[int, int]) -> list[HeadTargets]:
        """Positives of every head (see :func:`yolocomp.engine.targets.build_targets`)."""
        anchor_t = self.hyp.anchor_t if self.hyp.assign == "wh-ratio" else None
        return [build_targets(targets, head.anchors, p.shape[2:4], img_hw, iou_t=self.hyp.iou_t, anchor_t=anchor_t)
                for head, p in zip(self.heads, outputs)]

    def forward(self, outputs: list[torch.Tensor], targets: torch.Tensor,
                img_hw: tuple[int, int]) -> tuple[torch.Tensor, dict[str, float]]:
        self._check(outputs, targets)
        h = self.hyp
        n_img = outputs[0].shape[0]
        device = outputs[0].device
        assigned = self.build_targets(outputs, targets.to(device), img_hw)
        balance = self._balance(outputs, img_hw)
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        for head, p, tg, bal in zip(self.heads, outputs, assigned, balance):
            p = p.float()
            tobj = torch.zeros(p.shape[:4], device=device)
            if len(tg):
                ps = p[tg.b, tg.a, tg.gj, tg.gi]                      # (n, 5+C)
                iou = self._box_iou_term(ps, tg, head.scale_x_y)      # (n,) GIoU or CIoU
                lbox = lbox + (1.0 - iou).mean()
                score = (1.0 - self.gr) + self.gr * iou.detach().clamp(min=0)
                _assign_last_wins(tobj, (tg.b, tg.a, tg.gj, tg.gi), score)
                if self.nc > 1:
                    eps = h.label_smoothing
                    tcls = torch.full_like(ps[:, 5:], eps / 2)
                    tcls[torch.arange(len(tg), device=device), tg.cls] = 1.0 - eps / 2
                    lcls = lcls + self._bce(ps[:, 5:], tcls, h.cls_pw).mean()
            lobj = lobj + bal * self._bce(p[..., 4], tobj, h.obj_pw).mean()

        g_box, g_obj, g_cls = self._gains(img_hw)
        lbox, lobj, lcls = g_box * lbox, g_obj * lobj, g_cls * lcls
        loss = lbox + lobj + lcls
        factor = n_img / h.nominal_batch if h.loss_scale == "bs/nominal" else float(n_img)
        items = {k: float(v.detach()) for k, v in (("box", lbox), ("obj", lobj), ("cls", lcls), ("total", loss))}
        return loss * factor, items

    def _box_iou_term(self, ps: torch.Tensor, tg: HeadTargets, scale_x_y: float) -> torch.Tensor:
        pxy = ps[:, :2].sigmoid() * scale_x_y - (scale_x_y - 1) / 2
        pwh = ps[:, 2:4].exp().clamp(max=_WH_CLAMP) * tg.anchors
        pbox = box_convert(torch.cat([pxy, pwh], 1), "cxcywh", "xyxy")
        tbox = box_convert(tg.tbox, "cxcywh", "xyxy")
        if self.hyp.box_loss == "giou":
            return 1.0 - generalized_box_iou_loss(pbox, tbox, reduction="none", eps=_EPS)
        return 1.0 - complete_box_iou_loss(pbox, tbox, reduction="none", eps=1e-7)

    def _bce(self, logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
        """Elementwise BCE with ``pos_weight``, focal-modulated when ``hyp.fl_gamma`` > 0 (§2.3).  The focal part is
        hand-written because torchvision's sigmoid_focal_loss has no pos_weight and no "exp" (TAN/ANDREY) form."""
        loss = F.binary_cross_entropy_with_logits(
            logits, target, reduction="none", pos_weight=torch.tensor(pos_weight, device=logits.device))
        gamma = self.hyp.fl_gamma
        if gamma == 0:
            return loss
        if self.hyp.focal_style == "exp":
            return loss * (1.000001 - torch.exp(-loss)) ** gamma
        prob = logits.sigmoid()
        p_t = target * prob + (1 - target) * (1 - prob)
        alpha_t = target * 0.25 + (1 - target) * 0.75
        return loss * alpha_t * (1.0 - p_t) ** gamma

    def _gains(self, img_hw: tuple[int, int]) -> tuple[float, float, float]:
        h = self.hyp
        g_box, g_obj, g_cls = h.giou, h.obj, h.cls
        if h.cls_nc_scale:
            g_cls *= self.nc / 80
        if h.head_scaled_gains:        # v9.1 train.py (§10)
            k = 3 / len(self.heads)
            size = self.img_size if self.img_size is not None else max(img_hw)
            g_box, g_cls, g_obj = g_box * k, g_cls * k, g_obj * k * (size / 640) ** 2
        return g_box, g_obj, g_cls

    def _balance(self, outputs: list[torch.Tensor], img_hw: tuple[int, int]) -> list[float]:
        """Per-head objectness weight: ``hyp.obj_balance`` by stride rank (smallest stride first, as v9 lists P3, P4,
        P5); 1 for every head when empty (v8-era seeds have none, §2.2)."""
        bal = self.hyp.obj_balance
        if not bal:
            return [1.0] * len(outputs)
        if len(bal) < len(outputs):
            raise InputError(None, f"hyp.obj_balance has {len(bal)} values for {len(outputs)} heads")
        strides = [img_hw[0] / p.shape[2] for p in outputs]
        order = sorted(range(len(outputs)), key=lambda i: strides[i])
        rank = {head: r for r, head in enumerate(order)}
        return [bal[rank[i]] for i in range(len(outputs))]

    def _check(self, outputs: list[torch.Tensor], targets: torch.Tensor) -> None:
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(self.heads):
            raise InputError(None, f"expected the train-mode output: a list of {len(self.heads)} raw head maps")
        for head, p in zip(self.heads, outputs):
            if p.ndim != 5 or p.shape[1] != head.num_anchors or p.shape[4] != 5 + self.nc:
                raise InputError(None, f"head output shape {tuple(p.shape)} is not (N, {head.num_anchors}, H, W, "
                                 f"{5 + self.nc})")
        check_targets(targets, self.nc)
        if targets.numel() and int(targets[:, 0].max()) >= outputs[0].shape[0]:
            raise InputError(None, f"targets: batch index {int(targets[:, 0].max())} >= batch size "
                             f"{outputs[0].shape[0]}")


def _assign_last_wins(tobj: torch.Tensor, index: tuple[torch.Tensor, ...], value: torch.Tensor) -> None:
    """tobj[index] = value where, for repeated cells, the last pair wins — the seeds' CPU semantics (§1), made
    deterministic on every device by writing only each cell's last occurrence."""
    lin = torch.zeros_like(index[0])
    for idx, size in zip(index, tobj.shape):
        lin = lin * size + idx
    order = torch.arange(lin.numel(), device=lin.device)
    last = torch.full((tobj.numel(),), -1, dtype=torch.long, device=lin.device)
    last.scatter_reduce_(0, lin, order, reduce="amax")
    keep = last[lin] == order
    tobj.view(-1)[lin[keep]] = value[keep].to(tobj.dtype)


def objectness_ratio(hyp: Hyp, epoch: int, epochs: int, ni: int, n_burn: int) -> float:
    """g_r for the objectness target (§2.3).  ``burn-in`` (ULY/SPURS): linear 0 → 1 over global batches
    [0, n_burn]; ``epoch-cosine`` (ANDREY): 1 − [1 + cos(min(2e, E)·π/E)]/2; ``fixed``: ``hyp.gr``."""
    if hyp.gr_schedule == "burn-in":
        return float(min(max(ni / max(n_burn, 1), 0.0), 1.0))
    if hyp.gr_schedule == "epoch-cosine":
        return 1.0 - (1.0 + math.cos(min(2 * epoch, epochs) * math.pi / epochs)) / 2
    return float(hyp.gr)


def class_bias_prior(nc: int, style: str = "uly") -> float:
    """Class-logit bias of §2.4: ULY/SPURS log(0.6/(nc − 0.99)) (added), ANDREY log(1/(nc − 0.99)) (mean), TAN −3.6."""
    if style == "uly":
        return math.log(0.6 / (nc - 0.99))
    if style == "andrey":
        return math.log(1.0 / (nc - 0.99))
    if style == "tan":
        return -3.6
    raise InputError(None, f"unknown bias_init style {style!r}; valid: uly, tan, andrey")


def init_head_biases(model: nn.Module, style: str = "uly", heads: list[int] | None = None) -> None:
    """Initialise the output biases of the conv feeding each ``[yolo]`` layer (§2.4), for heads not loaded from a
    checkpoint.  ``heads``: indices into ``model.yolo_layers`` (default: all).

    ``uly`` (ULY/SPURS): objectness += −4.5, classes += log(0.6/(nc − 0.99)) on top of the current (default) init.
    ``tan``: shift so the mean objectness bias is −4.0 and the mean class bias −3.6.
    ``andrey``: shift so the means are −4.5 and log(1/(nc − 0.99)).
    """
    cls_prior = class_bias_prior(model.classes, style)
    indices = range(len(model.yolo_indices)) if heads is None else heads
    for k in indices:
        li = model.yolo_indices[k]
        yolo = model.layers[li]
        conv = getattr(model.layers[li - 1], "conv", None)
        if not isinstance(conv, nn.Conv2d) or conv.bias is None:
            raise CfgError(getattr(model, "path", None), f"the layer before [yolo] layer {li} has no conv bias "
                           "to initialise")
        with torch.no_grad():
            b = conv.bias.view(yolo.num_anchors, -1)
            if style == "uly":
                b[:, 4] += -4.5
                b[:, 5:] += cls_prior
            else:
                obj = -4.0 if style == "tan" else -4.5
                b[:, 4] += obj - b[:, 4].mean()
                b[:, 5:] += cls_prior - b[:, 5:].mean()
