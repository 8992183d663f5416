"""The training loop: :func:`train` (single process or under torchrun), checkpoints and exact resume.

Reproducibility: data order comes from a DistributedSampler seeded with ``seed`` and reshuffled by epoch, and
augmentation from ``(seed, epoch, index)`` (DetectionDataset), multi-scale sizes from ``(seed, batch index)``;
learning rates are a pure function of (epoch, batch index); the last batch of every epoch always takes an optimizer
step, so no gradient straddles a checkpoint; checkpoints hold model, EMA (with its update count), optimizer,
scaler and the torch/numpy/random RNG states.  A CPU run killed after any epoch and resumed therefore ends with the
same bytes as an uninterrupted run.

Checkpoint (``last.pt`` every epoch, ``best.pt`` on a new best fitness, both atomic; ``torch.load(weights_only=
True)``): the recipe's keys ``epoch``, ``best_fitness``, ``training_results`` (results.csv text), ``model`` (EMA
state_dict when EMA is on, else the raw one — what ULY stores), ``optimizer``; plus ``format``/``cfg``/
``state_dict``/``metadata`` so :func:`yolocomp.models.checkpoint.load_checkpoint` rebuilds the trained model
from it, and ``raw_model``, ``ema_updates``, ``scaler``, ``step``, ``ni``, ``rng``, ``hyp``, ``metrics``.

Best-model fitness (hyp ``fitness``): ``v8`` 0.01·R + 0.99·AP50 with the seeds' 101-point AP50 and recall at
score 0.1 (``ap50_seedstyle``, ``r_seedstyle``; ULY/ANDREY), ``map`` AP50 only (SPURS/TAN), ``v9`` 0.1·AP50 +
0.9·AP@[.5:.95].
"""

from __future__ import annotations

import contextlib
import io
import math
import pickle
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from .. import seed as seeding
from ..data.dataset import DetectionDataset, collate
from ..data.yolo_txt import read_yolo
from ..errors import InputError, WeightsError
from ..fileio import atomic_torch_save, atomic_write
from ..models.checkpoint import _FORMAT
from ..models.darknet import Darknet
from ..models.weights_io import load_darknet_weights
from . import distributed as ddp
from . import optim
from .callbacks import CallbackList, TrainState
from .ema import ModelEMA


@dataclass
class TrainResult:
    """``model``: the trained (raw) Darknet; ``ema_model``: its EMA (None with EMA off); ``last``/``best``: checkpoint
    paths; ``history``: the results.csv rows; ``metrics``: the last evaluation's metrics dict."""

    model: nn.Module
    ema_model: nn.Module | None
    last: Path
    best: Path
    history: pd.DataFrame
    metrics: dict


def train(cfg: str | Path | nn.Module, data: str | Path, epochs: int, batch_size: int, img_size: int,
          out_dir: Path, weights: str | Path | None = None, device: str = "cpu", hyp=None, seed: int = 0,
          resume: bool = False, callbacks=(), eval_every: int = 1, amp: bool | None = None,
          multi_scale: bool = False, sync_bn: bool = False, workers: int = 0, progress: bool = True,
          find_unused_parameters: bool = False) -> TrainResult:
    """Train a Darknet model on the ``train`` split of a darknet ``.data`` file, evaluating on ``valid``.

    cfg: cfg path/text or a built model (e.g. a pruned one, trained in place).  weights: ``.weights`` (full, or a
    backbone file such as ``yolov3-tiny.conv.15``) or a ``.pt`` (ours or a bare state_dict); head convs whose shape
    differs (another class count) are skipped, any other mismatch is a WeightsError.  batch_size: per rank (global
    = batch_size × world size; see :mod:`yolocomp.engine.distributed`).  img_size: square training/eval size,
    a multiple of 32.  hyp: a :class:`yolocomp.engine.hyp.Hyp` (default preset when None; on resume the
    checkpoint's).  resume: continue from ``out_dir/last.pt`` up to ``epochs``.  eval_every: evaluate the EMA model
    every that many epochs (and always after the last; 0 = last only).  amp: autocast (bf16 where supported, else
    fp16 with a GradScaler) — CUDA only, default on there.  Rank 0 writes ``last.pt``, ``best.pt``,
    ``results.csv`` (and TensorBoard events when tensorboard imports) into ``out_dir``.

    For callbacks, ``state.extra["imgs"]`` holds the current batch (N, 3, H, W) as the model sees it (after any
    multi-scale resize), and a hook may set ``state.extra["det_loss_gain"]`` (default 1) to scale the detection loss
    of the following batches (two-stage schedules such as GAN distillation's); the logged items stay unscaled.
    """
    from .hyp import Hyp, accumulate_steps
    from .hyp import hyp as preset
    from .loss import YoloLoss, init_head_biases, objectness_ratio

    info, dev = ddp.setup(device)
    out_dir = Path(out_dir)
    cbs = CallbackList(callbacks)
    if img_size % 32:
        raise InputError(None, f"img_size must be a multiple of 32, got {img_size}")
    last_pt, best_pt = out_dir / "last.pt", out_dir / "best.pt"
    ckpt = _read_checkpoint(last_pt) if resume else None
    if ckpt is not None and hyp is None:
        hyp = Hyp(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["hyp"].items()})
    hyp = hyp if hyp is not None else preset("default")
    seeding.set_all(seed)

    model = cfg if isinstance(cfg, nn.Module) else Darknet.from_cfg(cfg)
    cfg_name = getattr(model, "path", None) or (cfg if not isinstance(cfg, nn.Module) else "<model>")
    train_set, val_set = read_yolo(Path(data), "train"), read_yolo(Path(data), "valid")
    if len(train_set.names) != model.classes:
        raise InputError(data, f"the data has {len(train_set.names)} classes but the model ({cfg_name}) has "
                               f"{model.classes}; build it with classes={len(train_set.names)}")
    if ckpt is None:
        # §2.4: output-bias priors only for heads that no file initialised (a passed-in module is kept as is)
        fresh = load_weights(model, weights) if weights is not None else (
            [] if isinstance(cfg, nn.Module) else list(range(len(model.yolo_indices))))
        if fresh:
            init_head_biases(model, hyp.bias_init, fresh)
    model.to(dev)
    ema = ModelEMA(model, hyp.ema_decay, hyp.ema_tau) if hyp.ema else None
    opt = optim.build_optimizer(model, hyp.lr0, hyp.momentum, hyp.weight_decay, hyp.optimizer == "adam",
                                hyp.param_groups, hyp.nesterov)
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    if use_amp and dev.type != "cuda":
        raise InputError(None, "amp=True needs a CUDA device")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    loss_fn = YoloLoss(model, hyp)
    net = ddp.wrap(model, info, dev, sync_bn, find_unused_parameters)

    args = {"cfg": str(cfg_name), "data": str(data), "epochs": epochs, "batch_size": batch_size,
            "img_size": img_size, "seed": seed, "weights": None if weights is None else str(weights),
            "eval_every": eval_every, "multi_scale": multi_scale, "amp": use_amp, "world_size": info.world_size}
    state = TrainState(net, model, ema, opt, scaler, hyp, dev, args, rank=info.rank, world_size=info.world_size)
    history: list[dict] = []
    metrics: dict = {}
    start = 0
    if ckpt is not None:
        start, history, metrics = _restore(ckpt, state, last_pt)

    hi = optim.multi_scale_range(img_size)[1] if multi_scale else img_size
    dataset = DetectionDataset(train_set, hi, augment=True, mosaic=hyp.mosaic, seed=seed)
    sampler = DistributedSampler(dataset, info.world_size, info.rank, shuffle=hyp.shuffle, seed=seed)
    loader = DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
                        worker_init_fn=seeding.worker_init_fn if workers else None)
    nb = len(loader)
    global_bs = batch_size * info.world_size
    accumulate = accumulate_steps(hyp, global_bs)
    n_burn = optim.warmup_batches(nb, hyp.warmup_epochs, hyp.warmup_iters) if hyp.warmup == "burn-in" else 0
    writer = _tensorboard(out_dir) if info.is_main else None
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    cbs.fire("on_train_start", state)
    size = img_size
    for epoch in range(start, epochs):
        state.epoch = epoch
        t0 = time.time()
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        net.train()
        factor = optim.lr_factor(hyp.lr_schedule, epoch, epochs, hyp.lrf, hyp.lr_milestones, hyp.lr_gamma)
        cbs.fire("on_epoch_start", state)
        sums = torch.zeros(4, dtype=torch.float64)
        bar = _progress(loader, progress and info.is_main, epoch, epochs)
        for i, (imgs, targets, _) in enumerate(bar):
            ni = state.ni
            acc = optim.warmup_accumulate(ni, n_burn, accumulate) if hyp.warmup == "burn-in" else accumulate
            lr = _set_lr(state, ni, n_burn, nb, factor, epoch)
            loss_fn.gr = objectness_ratio(hyp, epoch, epochs, ni, n_burn)
            imgs, targets = imgs.to(dev, non_blocking=True), targets.to(dev)
            if multi_scale:
                if state.accumulated == 0:
                    size = _random_size(seed, ni, img_size)
                if size != hi:
                    imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", align_corners=False)
                    targets = torch.cat([targets[:, :2], targets[:, 2:] * (size / hi)], 1)
            steps_now = state.accumulated + 1 >= acc or i == nb - 1
            sync = contextlib.nullcontext() if steps_now or not info.enabled else net.no_sync()
            state.extra["imgs"] = imgs      # the batch as the model sees it, for hooks (a distillation teacher)
            with sync:
                with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
                    outputs = net(imgs)
                loss, items = loss_fn([o.float() for o in outputs], targets, tuple(imgs.shape[2:]))
                if state.extra.get("det_loss_gain", 1.0) != 1.0:
                    loss = loss * state.extra["det_loss_gain"]
                extra = cbs.extra_loss(state, outputs, targets)
                if extra is not None:
                    loss = loss + extra
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {items} at epoch {epoch}, batch {i}")
                # the loss already carries bs/64 (per rank); DDP averages gradients over ranks, so × world size
                # makes the step that of one process with the global batch
                scaler.scale(loss * info.world_size).backward()
            state.accumulated += 1
            if steps_now:
                _step(state, cbs)
            state.ni += 1
            sums += torch.tensor([items["box"], items["obj"], items["cls"], items["total"]], dtype=torch.float64)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(lr=f"{lr:.2e}", box=f"{items['box']:.3f}", obj=f"{items['obj']:.3f}",
                                cls=f"{items['cls']:.3f}", size=imgs.shape[-1])
        means = ddp.all_mean(sums / nb, info).tolist()
        row = {"epoch": epoch, "lr": lr, "box": means[0], "obj": means[1], "cls": means[2], "total": means[3]}
        final = epoch == epochs - 1
        if final or (eval_every and (epoch + 1) % eval_every == 0):
            metrics = _evaluate(ema.ema if ema else model, val_set, img_size, batch_size, dev, hyp, info)
            fit = ddp.broadcast(fitness(metrics, hyp.fitness) if info.is_main else None, info)
            row.update({k: metrics.get(k, float("nan")) for k in ("ap50", "ap", "ap75", "ap50_seedstyle",
                                                                   "p_seedstyle", "r_seedstyle")})
            row["fitness"] = fit
        else:
            fit = None
        row["time_s"] = time.time() - t0
        improved = fit is not None and fit > state.best_fitness
        if improved:
            state.best_fitness, state.extra["best_epoch"] = fit, epoch
        history.append(row)
        cbs.fire("on_epoch_end", state, row)
        if info.is_main:
            ck = _checkpoint(state, history, metrics)
            atomic_torch_save(ck, last_pt)
            if improved:
                atomic_torch_save(ck, best_pt)
            atomic_write(out_dir / "results.csv", pd.DataFrame(history).to_csv(index=False))
            if writer is not None:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, float) and not math.isnan(v):
                        writer.add_scalar(k, v, epoch)
        if hyp.patience and "best_epoch" in state.extra and epoch - state.extra["best_epoch"] >= hyp.patience:
            state.stop = True
        if ddp.broadcast(state.stop, info):
            break
    state.extra.pop("imgs", None)
    cbs.fire("on_train_end", state)
    if writer is not None:
        writer.close()
    return TrainResult(model, ema.ema if ema else None, last_pt, best_pt, pd.DataFrame(history), metrics)


def fitness(metrics: dict, kind: str = "v8") -> float:
    """Best-model score of an evaluation (see the module docstring for ``kind``)."""
    if kind == "v8":
        return 0.01 * metrics["r_seedstyle"] + 0.99 * metrics["ap50_seedstyle"]
    if kind == "map":
        return metrics["ap50_seedstyle"]
    if kind == "v9":
        return 0.1 * metrics["ap50"] + 0.9 * metrics["ap"]
    raise ValueError(f"unknown fitness {kind!r} (known: v8, map, v9)")


def load_weights(model: nn.Module, path: str | Path) -> list[int]:
    """Load ``path`` into ``model`` in place: a Darknet ``.weights`` (a ``*.conv.N`` name loads layers [0, N)) or a
    ``.pt``/``.pth`` (our checkpoint, a ULY-style ``{"model": state_dict}`` or a bare state_dict).

    Head convs (the conv before each ``[yolo]``) whose shape differs are skipped with a warning (another class
    count, as the seeds do); any other missing, unexpected or differently shaped tensor raises WeightsError.
    Returns the positions (in ``model.yolo_layers``) of the heads whose conv was not loaded.
    """
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        m = re.search(r"\.conv\.(\d+)$", path.name)
        info = load_darknet_weights(model, path, int(m.group(1)) if m else None)
        return [k for k, i in enumerate(model.yolo_indices) if i - 1 >= info.layers_loaded]
    obj = _torch_load(path)
    state = obj.get("state_dict") if obj.get("format") == _FORMAT else obj.get("model", obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(path, "no state_dict found (expected a yolocomp checkpoint, {'model': state_dict} "
                                 "or a state_dict)")
    own = model.state_dict()
    heads = tuple(f"layers.{i - 1}." for i in model.yolo_indices)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    bad = [k for k in wrong if not k.startswith(heads)]
    if missing or unexpected or bad:
        parts = [(f"{len(bad)} tensors of another shape (first {bad[0]}: file {tuple(state[bad[0]].shape)}, "
                  f"model {tuple(own[bad[0]].shape)})")] if bad else []
        parts += [f"{len(missing)} missing (first {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (first {unexpected[0]})"] if unexpected else []
        raise WeightsError(path, "weights do not match the model architecture: " + "; ".join(parts))
    if wrong:
        warnings.warn(f"{path}: head convs of another shape not loaded: {', '.join(wrong)}", stacklevel=2)
    model.load_state_dict({k: v for k, v in state.items() if k not in wrong}, strict=False)
    return sorted({k for k, p in enumerate(heads) for w in wrong if w.startswith(p)})


def _torch_load(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise WeightsError(path, f"cannot load checkpoint (truncated or not a torch file?): {e}") from None
    if not isinstance(obj, dict):
        raise WeightsError(path, f"expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "resume=True but there is no last.pt in the output directory")
    ck = _torch_load(path)
    need = {"epoch", "raw_model", "optimizer", "rng", "hyp", "step", "ni"}
    if not need <= set(ck):
        raise WeightsError(path, f"not a resumable training checkpoint (missing {', '.join(sorted(need - set(ck)))})")
    return ck


def _restore(ck: dict, state: TrainState, path: Path) -> tuple[int, list[dict], dict]:
    try:
        state.raw_model.load_state_dict(ck["raw_model"])
        if state.ema is not None:
            state.ema.load_state_dict({"state_dict": ck["model"], "updates": ck["ema_updates"]})
    except RuntimeError as e:
        raise WeightsError(path, f"checkpoint does not match the model architecture: {e}") from None
    state.optimizer.load_state_dict(ck["optimizer"])
    if ck.get("scaler"):
        state.scaler.load_state_dict(ck["scaler"])
    state.step, state.ni, state.best_fitness = int(ck["step"]), int(ck["ni"]), float(ck["best_fitness"])
    if ck.get("best_epoch") is not None:
        state.extra["best_epoch"] = int(ck["best_epoch"])
    _set_rng(ck["rng"])
    history = pd.read_csv(io.StringIO(ck["training_results"])).to_dict("records") if ck["training_results"] else []
    return int(ck["epoch"]) + 1, history, ck.get("metrics", {})


def _checkpoint(state: TrainState, history: list[dict], metrics: dict) -> dict:
    raw = state.raw_model.state_dict()
    shown = state.ema.ema.state_dict() if state.ema is not None else raw
    plain = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, list, dict)) or v is None}
    return {"format": _FORMAT, "cfg": state.raw_model.to_cfg(), "state_dict": shown,
            "metadata": {"epoch": state.epoch, "best_fitness": state.best_fitness, "hyp": state.hyp.as_dict(),
                         "metrics": plain, "args": state.args},
            "epoch": state.epoch, "best_fitness": state.best_fitness, "best_epoch": state.extra.get("best_epoch"),
            "training_results": pd.DataFrame(history).to_csv(index=False), "model": shown, "raw_model": raw,
            "ema_updates": state.ema.updates if state.ema is not None else 0,
            "optimizer": state.optimizer.state_dict(), "scaler": state.scaler.state_dict(),
            "step": state.step, "ni": state.ni, "rng": _get_rng(), "hyp": state.hyp.as_dict(), "metrics": plain}


def _get_rng() -> dict:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss = random.getstate()
    out = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(keys.astype(np.int64)),
           "numpy_pos": int(pos), "numpy_gauss": [int(has_gauss), float(cached)],
           "python": [version, list(py_state), gauss]}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng(r: dict) -> None:
    torch.set_rng_state(r["torch"])
    np.random.set_state(("MT19937", r["numpy"].numpy().astype(np.uint32), r["numpy_pos"], *r["numpy_gauss"]))
    version, py_state, gauss = r["python"]
    random.setstate((version, tuple(py_state), gauss))
    if "cuda" in r and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(r["cuda"])


def _set_lr(state: TrainState, ni: int, n_burn: int, nb: int, factor: float, epoch: int) -> float:
    h, opt = state.hyp, state.optimizer
    if h.warmup == "tan" and epoch < 6:
        lr = optim.tan_warmup_lr(h.lr0, ni, nb)
        for g in opt.param_groups:
            g["lr"] = lr
        return lr
    lr = optim.apply_lr(opt, ni, n_burn, factor, h.weight_decay, h.momentum, h.warmup_bias_lr, h.warmup_momentum)
    if h.warmup == "prebias":
        optim.prebias(opt, epoch, nb, h.lr0, h.momentum, h.warmup_bias_lr, h.warmup_momentum)
    return lr


def _step(state: TrainState, cbs: CallbackList) -> None:
    """Unscale, hooks, optimizer step, EMA update (only here, after the masks of after_optimizer_step)."""
    scaler, opt = state.scaler, state.optimizer
    if scaler.is_enabled():
        scaler.unscale_(opt)
    cbs.fire("after_backward", state)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)
    cbs.fire("after_optimizer_step", state)
    if state.ema is not None:
        state.ema.update(state.raw_model)
    state.step += 1
    state.accumulated = 0


def _random_size(seed: int, ni: int, img_size: int) -> int:
    """ULY multi-scale: a multiple of 32 in :func:`optim.multi_scale_range`, drawn from (seed, ni) only."""
    lo, hi = optim.multi_scale_range(img_size)
    return int(np.random.default_rng([seed, ni]).integers(lo // 32, hi // 32 + 1)) * 32


def _evaluate(model: nn.Module, ds, img_size: int, batch_size: int, dev, hyp, info: ddp.DistInfo) -> dict:
    """Evaluate on every rank's shard; gathered predictions are scored on rank 0 (other ranks get {})."""
    from .. import eval as yeval

    if not info.enabled:
        return yeval.evaluate(model, ds, img_size, batch_size, str(dev), conf_thres=hyp.conf_thres,
                              iou_thres=hyp.iou_thres)
    preds = yeval.predict(model, ddp.shard(ds, info), img_size, batch_size, str(dev), hyp.conf_thres, hyp.iou_thres)
    gathered = ddp.gather(preds, info)
    if not info.is_main:
        return {}
    return yeval.evaluate_predictions([p for part in gathered for p in part], ds)


def _progress(loader: DataLoader, show: bool, epoch: int, epochs: int):
    if not show:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", leave=False)


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))
