"""GAN-based distillation of ANDREY (``my_kd_gan.py``; paper IEEE 9046859 with the "ganhacks" tricks; quant-kd-spec
§4.6, facts 30-31).

One :class:`Discriminator` per (teacher, student) feature pair tells teacher maps ("real") from student maps ("fake");
the student (the generator) learns to fool it while it learns to detect.  Default pairs: the head convs of equal
H×W (ANDREY pairs YOLOv3's 81/93/105 with YOLO Nano's 44/41/38, the raw 3·(5+C)-channel prediction maps); there is
no channel adaptation, so each student map must have the teacher's channel count.

Per batch in stage 1 (epoch < ``second_stage``): labels ``real ~ U(0.7, 1)``, ``fake ~ U(0, 0.3)`` per image, swapped
for the whole batch with probability 0.05; the discriminator loss ``Σ_pairs BCE(D(F_t), real) + BCE(D(F_s), fake)``
is back-propagated into the discriminators at once, the generator loss ``Σ_pairs BCE(D(F_s), 1)`` is added to the
student's loss, and the detection loss is scaled by ``stage1_det_gain`` (0.05).  The discriminators step with their
own optimizer whenever the student steps (same accumulation, their lr following the student's schedule scaled to
``d_lr0``).  From ``second_stage`` on: plain detection training.

Fixed seed bug (the default) and the seed's behaviour (an option): ``my_kd_gan.py`` passes the student features
*detached* to the generator loss, so the adversarial term gives the student no gradient and instead adds a wrong-sign
gradient to the discriminators (§4.6 item 4).  ``detach_generator=False`` (default) lets the generator loss reach
the student and keeps it away from the discriminators (their parameters are frozen while that graph is built);
``detach_generator=True`` reproduces the seed.  Other seed variants: ``kd_gan.py`` = ``stage1_det_gain=0``, hard
labels ``real_range=(1, 1)``, ``fake_range=(0, 0)``, ``flip_p=0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..engine.callbacks import TrainState
from ..errors import InputError
from ..models.darknet import Darknet
from .callback import EpochMeans, average_grads, batch_factor, batch_images
from .teacher import FeatureTap, Teacher, check_pairs, head_conv_pairs

WIDTHS = (256, 512, 256, 128, 64)


class Discriminator(nn.Module):
    """ANDREY's per-feature discriminator (fact 30): 5 × [Conv k×k (padding 0 for k = 1, else 1) -> BN (momentum
    0.1) -> LeakyReLU(0.1)] with widths C -> 256 -> 512 -> 256 -> 128 -> 64, AdaptiveAvgPool 7×7, then
    Linear 3136 -> 1024 -> 128 -> 1 with LeakyReLU(0.1) between.  (N, C, H, W) -> (N,) logits (no sigmoid)."""

    def __init__(self, channels: int, kernel_size: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for w in WIDTHS:
            layers += [nn.Conv2d(c, w, kernel_size, padding=0 if kernel_size == 1 else 1),
                       nn.BatchNorm2d(w, momentum=0.1), nn.LeakyReLU(0.1)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(WIDTHS[-1] * 49, 1024), nn.LeakyReLU(0.1), nn.Linear(1024, 128),
                                        nn.LeakyReLU(0.1), nn.Linear(128, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1)).squeeze(1)


def gan_labels(n: int, generator: torch.Generator, real_range=(0.7, 1.0), fake_range=(0.0, 0.3),
               flip_p: float = 0.05) -> tuple[Tensor, Tensor]:
    """Smoothed per-image targets (real (n,), fake (n,)) drawn uniformly from the ranges; with probability
    ``flip_p`` the two are swapped for the whole batch (fact 31)."""
    u = torch.rand(2 * n + 1, generator=generator)
    real = real_range[0] + (real_range[1] - real_range[0]) * u[:n]
    fake = fake_range[0] + (fake_range[1] - fake_range[0]) * u[n:2 * n]
    return (fake, real) if float(u[-1]) < flip_p else (real, fake)


class GANDistiller(EpochMeans):
    """GAN-based distillation of ``teacher`` into the model being trained (module docstring).

    feature_pairs: [(teacher layer, student layer)] (default :func:`~yolocomp.distill.teacher.head_conv_pairs`);
    second_stage: first epoch of plain training (ANDREY 200 of 300); stage1_det_gain: detection-loss factor before it
    (0.05); d_lr0: discriminator base lr (0.01); d_kernel_size: 1 (ANDREY's ``D_kernel_size``); g_weight: factor on
    the generator loss (1); real_range / fake_range / flip_p: label smoothing and flipping; detach_generator: the
    seed's bug as an option; teacher_mode: ``eval`` (default) or the seeds' ``train``; seed: label sampling."""

    def __init__(self, teacher: Darknet, feature_pairs: list[tuple[int, int]] | None = None, second_stage: int = 200,
                 stage1_det_gain: float = 0.05, d_lr0: float = 0.01, d_kernel_size: int = 1, g_weight: float = 1.0,
                 real_range=(0.7, 1.0), fake_range=(0.0, 0.3), flip_p: float = 0.05, detach_generator: bool = False,
                 teacher_mode: str = "eval", seed: int = 0):
        if d_kernel_size not in (1, 3):
            raise InputError(None, f"d_kernel_size must be 1 or 3, got {d_kernel_size}")
        super().__init__()
        self.teacher_model = teacher
        self.pairs = [(int(t), int(s)) for t, s in feature_pairs] if feature_pairs else None
        self.second_stage = second_stage
        self.stage1_det_gain = stage1_det_gain
        self.d_lr0, self.d_kernel_size, self.g_weight = d_lr0, d_kernel_size, g_weight
        self.real_range, self.fake_range, self.flip_p = tuple(real_range), tuple(fake_range), flip_p
        self.detach_generator = detach_generator
        self.teacher_mode = teacher_mode
        self.generator = torch.Generator().manual_seed(seed)
        self.discriminators: nn.ModuleList | None = None
        self.d_optimizer: torch.optim.Optimizer | None = None

    def on_train_start(self, state: TrainState) -> None:
        student = state.raw_model
        self.teacher_model.to(state.device)
        img = state.args["img_size"]
        pairs = self.pairs or head_conv_pairs(self.teacher_model, student, img)
        channels = check_pairs(self.teacher_model, student, pairs, img)
        bad = [(p, c) for p, c in zip(pairs, channels) if c[0] != c[1]]
        if bad:
            raise InputError(None, f"GAN distillation has no channel adaptation: each student map needs the "
                                   f"teacher's channel count; (teacher, student) pairs {[p for p, _ in bad]} have "
                                   f"(C_t, C_s) = {[c for _, c in bad]}")
        self.pairs = pairs
        self.teacher = Teacher(self.teacher_model, [t for t, _ in pairs], self.teacher_mode)
        self.tap = FeatureTap(student, [s for _, s in pairs])
        self.discriminators = nn.ModuleList(Discriminator(ct, self.d_kernel_size) for ct, _ in channels)
        self.discriminators.to(state.device).train()
        h = state.hyp
        params = list(self.discriminators.parameters())
        if h.optimizer == "adam":
            self.d_optimizer = torch.optim.Adam(params, lr=self.d_lr0)
        else:
            self.d_optimizer = torch.optim.SGD(params, lr=self.d_lr0, momentum=h.momentum, nesterov=h.nesterov)

    def on_epoch_start(self, state: TrainState) -> None:
        state.extra["det_loss_gain"] = self.stage1_det_gain if self._stage1(state) else 1.0

    def _stage1(self, state: TrainState) -> bool:
        return state.epoch < self.second_stage

    def extra_loss(self, state: TrainState, outputs: list[Tensor], targets: Tensor) -> Tensor | None:
        if not self._stage1(state):
            self.tap.clear()
            return None
        imgs = batch_images(state)
        n = imgs.shape[0]
        factor = batch_factor(state.hyp, n)
        _, _, t_feats = self.teacher(imgs)
        s_feats = self.tap.features()
        self.tap.clear()
        real, fake = (t.to(imgs.device) for t in gan_labels(n, self.generator, self.real_range, self.fake_range,
                                                             self.flip_p))
        self.discriminators.requires_grad_(True)
        d_loss = imgs.new_zeros(())
        for d, fs, ft in zip(self.discriminators, s_feats, t_feats):
            d_loss = d_loss + F.binary_cross_entropy_with_logits(d(ft.float()), real)
            d_loss = d_loss + F.binary_cross_entropy_with_logits(d(fs.detach().float()), fake)
        (d_loss * factor).backward()
        if not self.detach_generator:
            self.discriminators.requires_grad_(False)   # the generator loss must not move the discriminators
        ones = torch.ones(n, device=imgs.device)
        g_loss = imgs.new_zeros(())
        for d, fs in zip(self.discriminators, s_feats):
            x = fs.detach() if self.detach_generator else fs
            g_loss = g_loss + F.binary_cross_entropy_with_logits(d(x.float()), ones)
        self._log({"d_loss": float(d_loss.detach()), "g_loss": float(g_loss.detach())})
        return self.g_weight * g_loss * factor

    def after_backward(self, state: TrainState) -> None:
        if self.discriminators is not None and state.world_size > 1 and self._stage1(state):
            average_grads(self.discriminators.parameters(), state.world_size)

    def after_optimizer_step(self, state: TrainState) -> None:
        if not self._stage1(state):
            return
        g0 = state.optimizer.param_groups[0]
        scale = g0["lr"] / g0["initial_lr"] if g0.get("initial_lr") else 1.0
        for g in self.d_optimizer.param_groups:
            g["lr"] = self.d_lr0 * scale
        self.d_optimizer.step()
        self.d_optimizer.zero_grad(set_to_none=True)

    def on_train_end(self, state: TrainState) -> None:
        state.extra.pop("det_loss_gain", None)
        self.teacher.remove()
        self.tap.remove()
