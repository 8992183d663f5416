"""Run a model over a DetectionSet and return detections in original-image pixels."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from yolocomp.data.canonical import DetectionSet
from yolocomp.data.dataset import DetectionDataset, make_loader
from yolocomp.data.transforms import unletterbox_boxes
from yolocomp.eval.nms import postprocess


def predict(model: nn.Module, ds: DetectionSet, img_size: int, batch_size: int = 16, device: str = "cpu",
            conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300,
            multi_label: bool = True) -> list[dict]:
    """Detections for every image of ``ds``, in dataset order.

    Each image is letterboxed to ``img_size`` x ``img_size`` (no augmentation), run in eval mode under
    ``torch.inference_mode`` on ``device`` (the model must already be there; its train/eval mode is restored
    afterwards), post-processed with :func:`postprocess`, mapped back with the fractional letterbox pad and
    clipped to the image. Returns one dict per image: ``{"image_id": int, "boxes": float32 (k, 4) xyxy
    original-image pixels, "scores": float32 (k,), "labels": int64 (k,)}`` (numpy, descending score).
    """
    loader = make_loader(DetectionDataset(ds, img_size, augment=False), batch_size, shuffle=False, seed=0)
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for images, _, metas in loader:
                preds = model(images.to(device))
                dets = postprocess(preds.float(), conf_thres, iou_thres, max_det, multi_label)
                for d, meta in zip(dets, metas):
                    d = d.cpu()
                    h, w = meta["orig_size"]
                    boxes = unletterbox_boxes(d[:, :4], meta["ratio"], meta["pad"])
                    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
                    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
                    out.append({"image_id": int(meta["image_id"]), "boxes": boxes.numpy().astype(np.float32),
                                "scores": d[:, 4].numpy().astype(np.float32),
                                "labels": d[:, 5].numpy().astype(np.int64)})
    finally:
        model.train(was_training)
    return out
