"""The fine-grained feature-imitation mask of KDstr 5 (quant-kd-spec §4.2, acceptance fact 25).

Wang et al. (CVPR 2019) imitate the teacher only near objects.  SPURS marks, on a feature map of stride ``s_f``, the
cells covered by each positive (image, anchor, cell) of a YOLO level of stride ``s_l >= s_f``: one level cell spans
``k = s_l / s_f`` feature cells per axis, starting at ``(gj·k, gi·k)``.  Levels finer than the map are skipped.

* ``mode="full"`` (default): the whole k×k block — what the covered region is.
* ``mode="diagonal"``: SPURS's code, which sets only ``(gj·k + t, gi·k + t)`` for t = 0..k−1 (k cells instead of k²,
  an indexing slip of the seed kept as an option).

Deviations from the seed, both fixes: the level strides come from the actual map sizes (the seed hard-codes 32, 16, 8
for levels 0, 1, 2, the wrong order for YOLOv4 cfgs), and each finer level is skipped on its own (the seed stops
at the first one, which is the same thing for levels ordered coarse to fine).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..engine.targets import HeadTargets
from ..errors import InputError

MODES = ("full", "diagonal")


def fine_grained_mask(positives: list[HeadTargets], level_strides: list[float], feature_hw: tuple[int, int],
                      feature_stride: float, batch: int, mode: str = "full") -> Tensor:
    """0/1 mask (batch, H_f, W_f) float for one feature map.

    positives: the student's positives of each YOLO level (``HeadTargets.b, gj, gi``); level_strides: each level's
    stride in input pixels (input size / grid size); feature_hw, feature_stride: the feature map's (H, W) and
    stride.  Cells beyond the map (a level grid that does not tile it exactly) are dropped."""
    if mode not in MODES:
        raise InputError(None, f"fine-grained mask mode must be one of {MODES}, got {mode!r}")
    if len(positives) != len(level_strides):
        raise InputError(None, f"{len(positives)} levels of positives but {len(level_strides)} level strides")
    h, w = feature_hw
    device = positives[0].b.device if positives else "cpu"
    mask = torch.zeros(batch, h, w, device=device)
    for pos, stride in zip(positives, level_strides):
        if stride < feature_stride or len(pos) == 0:
            continue
        k = round(stride / feature_stride)
        offsets = torch.arange(k, device=device)
        if mode == "full":
            dy, dx = (o.reshape(-1) for o in torch.meshgrid(offsets, offsets, indexing="ij"))
        else:
            dy = dx = offsets
        rows = (pos.gj[:, None] * k + dy[None]).reshape(-1)
        cols = (pos.gi[:, None] * k + dx[None]).reshape(-1)
        b = pos.b[:, None].expand(-1, len(dy)).reshape(-1)
        inside = (rows < h) & (cols < w)
        mask[b[inside], rows[inside], cols[inside]] = 1.0
    return mask
