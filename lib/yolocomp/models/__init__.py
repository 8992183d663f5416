"""Darknet-cfg YOLO models: cfg parsing, the graph model, .weights and checkpoint I/O.

Importing this package registers every cfg section type (Darknet's own in ``layers_darknet``, the seed
repositories' in ``layers_seed``) and every zoo model in ``yolocomp.registry.MODELS``.
"""

from . import zoo  # noqa: F401  (fills yolocomp.registry.MODELS)
from .checkpoint import load_checkpoint, save_checkpoint
from .darknet import Darknet, NetInfo
from .parse import parse_cfg, read_cfg
from .weights_io import WeightsInfo, darknet_weights_size, load_darknet_weights, save_darknet_weights

__all__ = ["Darknet", "NetInfo", "WeightsInfo", "darknet_weights_size", "load_checkpoint", "load_darknet_weights",
           "parse_cfg", "read_cfg", "save_checkpoint", "save_darknet_weights"]
