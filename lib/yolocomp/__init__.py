"""yolocomp: Darknet-cfg YOLO detectors and their compression, driven by parameterized notebooks.

Conventions used across the library:
  * boxes are ``xyxy`` in pixels of the image they belong to; ``xywh`` appears only at the COCO json boundary;
  * images are float tensors ``(N, 3, H, W)`` in [0, 1], RGB;
  * every public name that a notebook or table loops over is listed in :mod:`yolocomp.registry`.
"""

__version__ = "0.1.0"
