"""Training engine: hyperparameters (:mod:`.hyp`), target assignment (:mod:`.targets`), the YOLO loss (:mod:`.loss`)
and the training loop (:mod:`.trainer`; its names are imported on first access so that importing the loss does not
pull in the data pipeline)."""

from .hyp import PRESETS, Hyp, accumulate_steps, hyp
from .loss import YoloLoss, class_bias_prior, init_head_biases, objectness_ratio
from .targets import HeadTargets, build_targets, check_targets

_LAZY = {"train": "trainer", "TrainResult": "trainer", "Callback": "callbacks", "TrainState": "callbacks"}

__all__ = ["PRESETS", "Callback", "HeadTargets", "Hyp", "TrainResult", "TrainState", "YoloLoss", "accumulate_steps",
           "build_targets", "check_targets", "class_bias_prior", "hyp", "init_head_biases", "objectness_ratio",
           "train"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
