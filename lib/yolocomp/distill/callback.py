"""Distillation as a trainer callback: :class:`Distiller` (KDstr 1-5 and ANDREY's classical hint KD).

Per batch, inside :meth:`Distiller.extra_loss`: the frozen :class:`~yolocomp.distill.teacher.Teacher` runs on the
same (augmented, resized) images the student just saw — the trainer puts them in ``state.extra["imgs"]`` —; the
student's features come from forward hooks placed on its layers at ``on_train_start``; the strategy's loss is
multiplied by the trainer's batch factor (N/64 with ``hyp.loss_scale="bs/nominal"``) and added to the detection loss,
which is where the seeds add it (quant-kd-spec §4.1).

Hint layers (classical KD) join the student's optimizer as one extra parameter group (lr schedule, warm-up,
accumulation and AMP unscaling as the student's, no weight decay — ANDREY's hint weights are not in the decay
group).  They are not stored in the checkpoint, so a hint run cannot be resumed; KDstr 1-5 add no parameters and
resume like plain training.  The teacher's weights and BN statistics never change (eval mode, no grad).

Per epoch the mean of each logged term is added to the results.csv row (``kd`` = the added loss, then the
strategy's terms, e.g. ``reg_ratio`` for KDstr 2).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor, nn

from ..engine.callbacks import Callback, TrainState
from ..errors import InputError
from ..models.darknet import Darknet
from . import classical, losses
from .strategies import NEEDS_FEATURES, STRATEGIES, KDBatch, KDOptions
from .teacher import FeatureTap, HintLayers, Teacher, check_pairs, feature_layers, pair_layers

KINDS = (*STRATEGIES, "hint")


def batch_factor(hyp, n_img: int) -> float:
    """The factor the trainer's detection loss carries: N/nominal_batch (``bs/nominal``) or N (``bs``)."""
    return n_img / hyp.nominal_batch if hyp.loss_scale == "bs/nominal" else float(n_img)


def batch_images(state: TrainState) -> Tensor:
    imgs = state.extra.get("imgs")
    if imgs is None:
        raise RuntimeError("the trainer did not expose the batch images (state.extra['imgs']); distillation "
                           "needs yolocomp.engine.trainer.train")
    return imgs


def check_same_heads(teacher: Darknet, student: Darknet) -> None:
    """Output-level strategies compare head maps cell by cell: same number of heads, anchors and classes."""
    t = [(tuple(h.anchors.flatten().tolist()), h.classes) for h in teacher.yolo_layers]
    s = [(tuple(h.anchors.flatten().tolist()), h.classes) for h in student.yolo_layers]
    if t != s:
        raise InputError(getattr(teacher, "path", None),
                         f"KDstr 1-5 need teacher and student heads with the same anchors and classes (SPURS issue "
                         f"#25: a yolov3 teacher cannot teach yolov3-tiny this way); teacher heads {t}, student "
                         f"{s}. Use the classical (hint) distiller for students of another architecture")


class EpochMeans(Callback):
    """Logged loss terms averaged over an epoch's batches and added to the epoch's metrics (results.csv)."""

    def __init__(self):
        self._sums: dict[str, float] = defaultdict(float)
        self._n = 0

    def _log(self, logs: dict) -> None:
        for k, v in logs.items():
            self._sums[k] += v
        self._n += 1

    def on_epoch_end(self, state: TrainState, metrics: dict) -> None:
        for k, v in self._sums.items():
            metrics[k] = v / max(self._n, 1)
        self._sums.clear()
        self._n = 0


class Distiller(EpochMeans):
    """Distil ``teacher`` into the model being trained.

    kind: ``KDstr1`` .. ``KDstr5`` or ``hint`` (ANDREY's classical KD).  feature_pairs: [(teacher layer, student
    layer)] — KDstr 4/5 default to :func:`~yolocomp.distill.teacher.feature_layers` of both models paired by
    :func:`~yolocomp.distill.teacher.pair_layers`; ``hint`` needs them given.  options: :class:`KDOptions` for
    KDstr; mu, nu, margin, hint_always (a hint layer on every pair, not only where channels differ),
    pseudo_conf / pseudo_iou (teacher NMS) for ``hint``.  teacher_mode: ``eval`` (default) or the seeds' ``train``.
    """

    def __init__(self, teacher: Darknet, kind: str = "KDstr1", feature_pairs: list[tuple[int, int]] | None = None,
                 options: KDOptions | None = None, teacher_mode: str = "eval", mu: float = 0.7, nu: float = 0.5,
                 margin: float = 1e-5, hint_always: bool = False, pseudo_conf: float = 0.1,
                 pseudo_iou: float = 0.6):
        if kind not in KINDS:
            raise InputError(None, f"unknown distillation kind {kind!r}; known: {', '.join(KINDS)}")
        if kind == "hint" and not feature_pairs:
            raise InputError(None, "classical (hint) distillation needs feature pairs (teacher layer, student layer)")
        super().__init__()
        self.teacher_model = teacher
        self.kind = kind
        self.pairs = [(int(t), int(s)) for t, s in feature_pairs] if feature_pairs else None
        self.options = options or KDOptions()
        self.teacher_mode = teacher_mode
        self.mu, self.nu, self.margin = mu, nu, margin
        self.hint_always = hint_always
        self.pseudo = (pseudo_conf, pseudo_iou)
        self.hints: nn.Module | None = None
        self.teacher: Teacher | None = None
        self.tap: FeatureTap | None = None

    # --- set-up -------------------------------------------------------------------------------------------------
    def _resolve_pairs(self, student: Darknet) -> list[tuple[int, int]]:
        if self.pairs is not None:
            return self.pairs
        if self.kind in NEEDS_FEATURES:
            return pair_layers(feature_layers(self.teacher_model), feature_layers(student))
        return []

    def on_train_start(self, state: TrainState) -> None:
        from ..engine.loss import YoloLoss

        student = state.raw_model
        if student.classes != self.teacher_model.classes:
            raise InputError(getattr(self.teacher_model, "path", None),
                             f"the teacher has {self.teacher_model.classes} classes, the student {student.classes}")
        if self.kind != "hint":
            check_same_heads(self.teacher_model, student)
        self.teacher_model.to(state.device)
        pairs = self._resolve_pairs(student)
        channels = check_pairs(self.teacher_model, student, pairs, state.args["img_size"]) if pairs else []
        self.pairs = pairs
        self.teacher = Teacher(self.teacher_model, [t for t, _ in pairs], self.teacher_mode)
        self.tap = FeatureTap(student, [s for _, s in pairs])
        self.student_loss = YoloLoss(student, state.hyp)
        if self.kind == "hint":
            self.teacher_loss = YoloLoss(self.teacher_model, state.hyp)
            self.hints = HintLayers(channels, always=self.hint_always).to(state.device)
            params = list(self.hints.parameters())
            if params:
                opt = state.optimizer
                opt.add_param_group({"params": params, "weight_decay": 0.0, "lr": opt.param_groups[0]["lr"],
                                     "initial_lr": opt.param_groups[0]["initial_lr"]})

    # --- per batch ----------------------------------------------------------------------------------------------
    def extra_loss(self, state: TrainState, outputs: list[Tensor], targets: Tensor) -> Tensor:
        imgs = batch_images(state)
        img_hw = tuple(imgs.shape[2:])
        t_raw, t_decoded, t_feats = self.teacher(imgs)
        s_raw = [o.float() for o in outputs]
        s_feats = self.tap.features() if self.pairs else []
        if self.kind == "hint":
            loss, logs = self._classical(state, s_raw, t_raw, t_decoded, s_feats, t_feats, targets, img_hw)
        else:
            pos = self.student_loss.build_targets(s_raw, targets, img_hw)
            batch = KDBatch(s_raw, [t.float() for t in t_raw], pos, img_hw, s_feats, t_feats)
            loss, logs = STRATEGIES[self.kind](batch, self.options)
        loss = loss * batch_factor(state.hyp, imgs.shape[0])
        self._log({"kd": float(loss.detach()), **logs})
        self.tap.clear()
        return loss

    def _classical(self, state, s_raw, t_raw, t_decoded, s_feats, t_feats, targets, img_hw):
        h = state.hyp
        if t_decoded is None:      # teacher in train mode: decode its raw maps for the pseudo-labels
            t_decoded = torch.cat([m.decode(p, img_hw) for m, p in zip(self.teacher_model.yolo_layers, t_raw)], 1)
        s_heads = [m.scale_x_y for m in state.raw_model.yolo_layers]
        t_heads = [m.scale_x_y for m in self.teacher_model.yolo_layers]
        pos = self.student_loss.build_targets(s_raw, targets, img_hw)
        t_pos = self.teacher_loss.build_targets(t_raw, targets, img_hw)
        labels = classical.pseudo_labels(t_decoded, img_hw, *self.pseudo)
        soft_pos = self.student_loss.build_targets(s_raw, labels, img_hw)
        hint = None
        if self.pairs:
            adapted = self.hints(s_feats)
            hint = sum(losses.hint_l1(a, t) for a, t in zip(adapted, t_feats))
        g_cls = h.cls * (state.raw_model.classes / 80 if h.cls_nc_scale else 1.0)
        return classical.classical_terms(
            classical.box_loss(s_raw, pos, s_heads), float(classical.box_loss(t_raw, t_pos, t_heads)),
            classical.class_loss(s_raw, pos), classical.class_loss(s_raw, soft_pos), hint, h.giou, g_cls,
            self.mu, self.nu, self.margin)

    def after_backward(self, state: TrainState) -> None:
        if self.hints is not None and state.world_size > 1:
            average_grads(self.hints.parameters(), state.world_size)

    def on_train_end(self, state: TrainState) -> None:
        if self.teacher is not None:
            self.teacher.remove()
        if self.tap is not None:
            self.tap.remove()


def average_grads(params, world_size: int) -> None:
    """Average the gradients of modules outside DDP over the ranks (hint layers, discriminators)."""
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size
