"""The teacher side of distillation: a frozen teacher, features taken by forward hooks, hint (adaptation) layers and
the rules that pair teacher and student layers (quant-kd-spec §4.1, §4.2, §4.5).

Layer indices are Darknet layer indices (position of a section after ``[net]``, 0-based), as the seeds' ``--KDstr``
feature lists and ANDREY's ``teacher_indexes`` / ``student_indexes`` use them.

**Pairing rule** (:func:`pair_layers`): each index list is sorted ascending and the lists are zipped (ANDREY's model
forward collects features in layer order, so its pairs are formed this way, fact 28); both lists must have the same
length (SPURS stops with "feature mismatch!", fact 26) and each pair the same H×W — a mismatched pair is an error
here (ANDREY silently skips it, which mis-aligns every later pair).  Defaults when no layers are given:

* :func:`feature_layers` — SPURS's list for KDstr 4/5: every ``[convolutional]`` layer except the head convs (the conv
  feeding a ``[yolo]``); for a teacher and its channel-pruned student the two lists are the same indices.
* :func:`match_layers` — for a student of another architecture: for each teacher layer, the student layer (not a
  head conv or ``[yolo]``) with the same output H×W whose relative depth (index / number of layers) is closest (ties:
  the earlier layer).
* :func:`head_conv_pairs` — GAN-KD: head convs of equal H×W (ANDREY pairs the 13/26/52 maps, §4.6).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..models.darknet import Darknet
from ..models.layers_darknet import ConvLayer

TEACHER_MODES = ("eval", "train")


class FeatureTap:
    """Forward hooks keeping the outputs of layers ``indices`` of a Darknet from its latest forward.

    ``tap.features()`` -> list of (N, C, H, W) tensors in the order of ``indices`` (with their autograd graph when
    the forward had one).  ``tap.remove()`` detaches the hooks."""

    def __init__(self, model: Darknet, indices: list[int]):
        n = len(model.layers)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise InputError(getattr(model, "path", None), f"feature layer(s) {bad} out of range: the model has "
                                                           f"layers 0..{n - 1}")
        self.indices = list(indices)
        self._out: dict[int, Tensor] = {}
        self._handles = [model.layers[i].register_forward_hook(self._hook(i)) for i in self.indices]

    def _hook(self, i: int):
        def keep(module, inputs, output):
            self._out[i] = output
        return keep

    def features(self) -> list[Tensor]:
        missing = [i for i in self.indices if i not in self._out]
        if missing:
            raise RuntimeError(f"no forward has run through layer(s) {missing} since the tap was attached")
        return [self._out[i] for i in self.indices]

    def clear(self) -> None:
        self._out.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._out.clear()


class Teacher:
    """A frozen teacher: parameters never require grad, forward under ``torch.no_grad``.

    ``mode="eval"`` (default, the correct use: BN on running statistics, which never change) or ``"train"`` (the
    seeds' behaviour in ANDREY's kd_classical/kd_gan scripts and SPURS/TAN/HALO with apex: BN on batch statistics;
    the running statistics then drift every batch, §4.1 — an option for bit-compatibility, not a recommendation).

    ``teacher(imgs)`` -> (raw head maps [(N, A, H, W, 5+C)], decoded (N, Σ A·H·W, 5+C) or None in train mode,
    features of ``feature_layers`` [(N, C, H, W)])."""

    def __init__(self, model: Darknet, feature_layers: list[int] = (), mode: str = "eval"):
        if mode not in TEACHER_MODES:
            raise InputError(None, f"teacher mode must be one of {TEACHER_MODES}, got {mode!r}")
        self.model = model
        self.mode = mode
        model.requires_grad_(False)
        model.train(mode == "train")
        self.tap = FeatureTap(model, list(feature_layers))
        self._heads = FeatureTap(model, list(model.yolo_indices))

    def to(self, device) -> Teacher:
        self.model.to(device)
        return self

    def __call__(self, imgs: Tensor) -> tuple[list[Tensor], Tensor | None, list[Tensor]]:
        self.model.train(self.mode == "train")
        with torch.no_grad():
            out = self.model(imgs)
        raw = self._heads.features()
        feats = self.tap.features() if self.tap.indices else []
        self._heads.clear()
        self.tap.clear()
        return raw, (None if self.mode == "train" else out), feats

    def remove(self) -> None:
        self.tap.remove()
        self._heads.remove()


def load_teacher(cfg: str | Path | None, weights: str | Path, classes: int | None = None) -> Darknet:
    """The teacher model: a yolocomp checkpoint (``weights`` alone, or with its ``cfg``), or ``cfg`` + Darknet
    ``.weights`` / state-dict ``.pt``."""
    from ..engine.trainer import load_weights
    from ..models.checkpoint import load_checkpoint

    weights = Path(weights)
    if cfg is None:
        if weights.suffix not in (".pt", ".pth"):
            raise InputError(weights, "a teacher from .weights needs its cfg (--t_cfg)")
        model, _ = load_checkpoint(weights)
        return model
    model = Darknet.from_cfg(cfg, classes=classes)
    load_weights(model, weights)
    return model


def feature_layers(model: Darknet) -> list[int]:
    """SPURS's feature list (KDstr 4/5): every ``[convolutional]`` layer that does not feed a ``[yolo]`` layer."""
    heads = {i - 1 for i in model.yolo_indices}
    return [i for i, m in enumerate(model.layers) if isinstance(m, ConvLayer) and i not in heads]


def head_convs(model: Darknet) -> list[int]:
    """The conv layer feeding each ``[yolo]`` layer (its raw prediction map), in cfg order."""
    return [i - 1 for i in model.yolo_indices]


def layer_shapes(model: Darknet, img_size: int) -> list[tuple[int, ...]]:
    """Output shape (C, H, W) of every layer for one ``img_size`` × ``img_size`` input (a probe forward of zeros in
    eval mode; the model's mode is restored)."""
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:]))) for m in model.layers]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, model.net.channels, img_size, img_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def pair_layers(teacher_layers: list[int], student_layers: list[int]) -> list[tuple[int, int]]:
    """(teacher, student) pairs by the rule of the module docstring: both lists sorted ascending, then zipped."""
    t, s = sorted(teacher_layers), sorted(student_layers)
    if len(t) != len(s):
        raise InputError(None, f"feature mismatch: {len(t)} teacher layers {t} but {len(s)} student layers {s} "
                               f"(pairs are formed after sorting each list; give the same number of each)")
    return list(zip(t, s))


def check_pairs(teacher: Darknet, student: Darknet, pairs: list[tuple[int, int]],
                img_size: int) -> list[tuple[int, int]]:
    """Raise InputError unless every pair has the same H×W at ``img_size``; return the (C_teacher, C_student)
    channel counts of each pair."""
    t_shapes, s_shapes = layer_shapes(teacher, img_size), layer_shapes(student, img_size)
    out = []
    for ti, si in pairs:
        for name, idx, shapes in (("teacher", ti, t_shapes), ("student", si, s_shapes)):
            if not 0 <= idx < len(shapes) or len(shapes[idx]) != 3:
                raise InputError(None, f"{name} layer {idx} is not a feature map layer (the model has "
                                       f"{len(shapes)} layers)")
        if t_shapes[ti][1:] != s_shapes[si][1:]:
            raise InputError(None, f"feature pair (teacher {ti}, student {si}) differs in size at {img_size} px: "
                                   f"teacher {t_shapes[ti]}, student {s_shapes[si]} (C, H, W)")
        out.append((t_shapes[ti][0], s_shapes[si][0]))
    return out


def match_layers(teacher: Darknet, student: Darknet, teacher_layers: list[int], img_size: int) -> list[int]:
    """For each teacher layer, the student layer of the same output H×W with the closest relative depth."""
    t_shapes, s_shapes = layer_shapes(teacher, img_size), layer_shapes(student, img_size)
    skip = set(student.yolo_indices) | set(head_convs(student))
    out = []
    for ti in teacher_layers:
        depth = ti / len(t_shapes)
        cands = [i for i, sh in enumerate(s_shapes) if len(sh) == 3 and sh[1:] == t_shapes[ti][1:] and i not in skip]
        if not cands:
            raise InputError(None, f"the student has no layer of the teacher layer {ti}'s size {t_shapes[ti][1:]} "
                                   f"at {img_size} px")
        out.append(min(cands, key=lambda i: (abs(i / len(s_shapes) - depth), i)))
    return out


def head_conv_pairs(teacher: Darknet, student: Darknet, img_size: int) -> list[tuple[int, int]]:
    """(teacher, student) head convs of equal H×W, in the teacher's cfg order (GAN-KD, §4.6)."""
    t_shapes, s_shapes = layer_shapes(teacher, img_size), layer_shapes(student, img_size)
    by_size = {s_shapes[i][1:]: i for i in head_convs(student)}
    pairs = [(ti, by_size[t_shapes[ti][1:]]) for ti in head_convs(teacher) if t_shapes[ti][1:] in by_size]
    if not pairs:
        raise InputError(None, "teacher and student have no head maps of the same size")
    return pairs


class HintLayers(nn.Module):
    """ANDREY's ``HintModel``: per pair a 1×1 conv (C_s -> C_t, with bias) + LeakyReLU(0.1) mapping the student
    feature onto the teacher's channel count (fact 28).

    channels: (C_teacher, C_student) per pair.  ``always=False`` (default) creates a layer only where the counts
    differ and passes the others through unchanged; ``always=True`` creates one for every pair, as ANDREY does.
    ``forward(features)`` maps a list of student features (N, C_s, H, W) to (N, C_t, H, W)."""

    def __init__(self, channels: list[tuple[int, int]], always: bool = False):
        super().__init__()
        self.adapt = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cs, ct, 1, bias=True), nn.LeakyReLU(0.1)) if always or cs != ct
            else nn.Identity() for ct, cs in channels)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        if len(features) != len(self.adapt):
            raise InputError(None, f"{len(features)} student features for {len(self.adapt)} hint layers")
        return [m(f) for m, f in zip(self.adapt, features)]
