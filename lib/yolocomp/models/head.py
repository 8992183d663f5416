"""The ``[yolo]`` layer and Darknet's head decoding (DK ``get_yolo_box`` semantics, including ``scale_x_y`` and
``new_coords``)."""

from __future__ import annotations

import torch

from .layer import BuildContext, DarknetLayer, Section, register_layer
from .layers_darknet import _positive

# [yolo] keys that only the loss / NMS use; kept in YoloLayer.loss_options for the trainer.
YOLO_LOSS_KEYS = (
    "jitter", "ignore_thresh", "truth_thresh", "random", "iou_thresh", "iou_thresh_kind", "iou_loss",
    "iou_normalizer", "cls_normalizer", "obj_normalizer", "delta_normalizer", "max_delta", "beta_nms", "nms_kind",
    "resize", "label_smooth_eps", "counters_per_class", "focal_loss", "objectness_smooth", "max", "map",
    "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm", "show_details",
)


def decode_yolo(raw: torch.Tensor, anchors: torch.Tensor, img_hw: tuple[int, int], scale_x_y: float = 1.0,
                new_coords: bool = False) -> torch.Tensor:
    """Decode one head.

    raw: (N, A, H, W, 5+C) conv outputs (tx, ty, tw, th, objectness, classes...).  anchors: (A, 2) w, h in input
    pixels.  img_hw: the network input (height, width); the head stride is input size / grid size per axis.
    Returns (N, A·H·W, 5+C) ordered by anchor, then grid row, then grid column: cx, cy, w, h in input pixels,
    objectness and class probabilities.

    With s = scale_x_y: cx = (col + σ(tx)·s − (s−1)/2)·stride_x, w = anchor_w·exp(tw).  With ``new_coords`` the
    conv before the head already applied a logistic, so: cx = (col + tx·s − (s−1)/2)·stride_x, w = 4·tw²·anchor_w,
    and objectness/classes are taken as they are.
    """
    n, a, h, w, e = raw.shape
    stride_y, stride_x = img_hw[0] / h, img_hw[1] / w
    ys = torch.arange(h, dtype=raw.dtype, device=raw.device).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=raw.dtype, device=raw.device).view(1, 1, 1, w)
    anchor_w = anchors[:, 0].to(raw).view(1, a, 1, 1)
    anchor_h = anchors[:, 1].to(raw).view(1, a, 1, 1)
    t = raw if new_coords else raw[..., :2].sigmoid()
    shift = (scale_x_y - 1) / 2
    cx = (xs + t[..., 0] * scale_x_y - shift) * stride_x
    cy = (ys + t[..., 1] * scale_x_y - shift) * stride_y
    if new_coords:
        bw = 4 * raw[..., 2] ** 2 * anchor_w
        bh = 4 * raw[..., 3] ** 2 * anchor_h
        rest = raw[..., 4:]
    else:
        bw = raw[..., 2].exp() * anchor_w
        bh = raw[..., 3].exp() * anchor_h
        rest = raw[..., 4:].sigmoid()
    out = torch.cat([torch.stack([cx, cy, bw, bh], -1), rest], -1)
    return out.view(n, a * h * w, e)


class YoloLayer(DarknetLayer):
    """``[yolo]`` head.  forward: (N, A·(5+C), H, W) -> raw map (N, A, H, W, 5+C), anchor-major channel layout
    (channel a·(5+C)+e; e = tx, ty, tw, th, objectness, classes...).  :meth:`decode` turns it into boxes.

    ``anchors``: all (w, h) pairs in input pixels; ``mask``: the ones this head uses; ``loss_options``: the
    loss-only keys as numbers (or strings) for the trainer."""

    section_type = "yolo"

    def __init__(self, channels: int, mask: list[int], anchors: list[tuple[float, float]], classes: int,
                 scale_x_y: float = 1.0, new_coords: int = 0, loss_options: dict | None = None):
        super().__init__()
        self.out_channels = channels
        self.mask = list(mask)
        self.all_anchors = [tuple(a) for a in anchors]
        self.classes = classes
        self.scale_x_y = scale_x_y
        self.new_coords = new_coords
        self.loss_options = dict(loss_options or {})
        self.register_buffer("anchors", torch.tensor([self.all_anchors[m] for m in mask], dtype=torch.float32),
                             persistent=False)

    @property
    def num_anchors(self) -> int:
        return len(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        return x.view(n, self.num_anchors, 5 + self.classes, h, w).permute(0, 1, 3, 4, 2).contiguous()

    def decode(self, raw: torch.Tensor, img_hw: tuple[int, int]) -> torch.Tensor:
        """Raw map (N, A, H, W, 5+C) -> (N, A·H·W, 5+C): cx, cy, w, h in input pixels, objectness, class probs."""
        return decode_yolo(raw, self.anchors, img_hw, self.scale_x_y, bool(self.new_coords))

    def cfg_options(self) -> list[tuple[str, str]]:
        anchors = ", ".join(f"{_num(w)},{_num(h)}" for w, h in self.all_anchors)
        opts = [("mask", ",".join(map(str, self.mask))), ("anchors", anchors), ("classes", str(self.classes)),
                ("num", str(len(self.all_anchors)))]
        if self.scale_x_y != 1.0:
            opts.append(("scale_x_y", _num(self.scale_x_y)))
        if self.new_coords:
            opts.append(("new_coords", str(self.new_coords)))
        return opts + [(k, _num(v) if isinstance(v, float) else str(v)) for k, v in self.loss_options.items()]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _parse_loose(v: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


@register_layer("yolo")
def build_yolo(s: Section, ctx: BuildContext) -> YoloLayer:
    classes = _positive(s, "classes", 20)
    num = _positive(s, "num", 1)
    mask = s.ints("mask", list(range(num)))
    flat = s.floats("anchors", [])
    if len(flat) != 2 * num:
        raise s.error(f"expected num={num} anchor pairs ({2 * num} numbers), got {len(flat)} numbers", "anchors")
    if not mask or any(not 0 <= m < num for m in mask):
        raise s.error(f"every mask index must be in [0, num={num}), got {mask}", "mask")
    scale_x_y = s.float("scale_x_y", 1.0)
    new_coords = s.int("new_coords", 0)
    loss = {k: _parse_loose(s.str(k)) for k in YOLO_LOSS_KEYS if k in s.options}
    anchors = [(flat[2 * i], flat[2 * i + 1]) for i in range(num)]
    return YoloLayer(ctx.in_channels, mask, anchors, classes, scale_x_y, new_coords, loss)
