"""Cfg section types that the seed repositories add to Darknet's set; importing this module registers them all.

| section | module | from |
|---|---|---|
| ``[depthwise]`` | layers_mobile.DepthwiseLayer | SPURS (MobileNetV3) |
| ``[mobile]`` | layers_mobile.MobileLayer | ANDREY (YOLOv3-Mobile) |
| ``[pep]``, ``[ep]`` | layers_mobile.PEPLayer | ANDREY (YOLO Nano) |
| ``[se]`` | layers_attention.SELayer | SPURS (default), HALO GhostNet (``bias=1 gate=sigmoid``), tiny-SE |
| ``[fca]`` | layers_attention.FCALayer | ANDREY (YOLO Nano) |
| ``[ca]``, ``[sa]`` | layers_attention.ChannelAttention / SpatialAttention | HALO-old CBAM |
| ``[eca]`` | layers_attention.ECALayer | HALO-old |
| ``[shuffle]`` | layers_shuffle.ShuffleStage | ours, = HALO-old ``[stage2/3/4]`` |
"""

from .layers_attention import ChannelAttention, ECALayer, FCALayer, SELayer, SpatialAttention
from .layers_mobile import ConvBN, DepthwiseLayer, MobileLayer, PEPLayer, SqueezeExcite, make_divisible
from .layers_shuffle import ShuffleStage, ShuffleUnit, channel_shuffle

__all__ = ["ChannelAttention", "ConvBN", "DepthwiseLayer", "ECALayer", "FCALayer", "MobileLayer", "PEPLayer",
           "SELayer", "ShuffleStage", "ShuffleUnit", "SpatialAttention", "SqueezeExcite", "channel_shuffle",
           "make_divisible"]
