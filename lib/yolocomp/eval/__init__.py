"""Evaluation: post-processing (NMS), prediction in original-image pixels, COCO / seed-style / VOC07 metrics."""

from .cli import cli_val, load_model
from .coco import BACKENDS, STAT_NAMES, coco_eval, gt_document, results_records
from .evaluate import evaluate, evaluate_predictions
from .nms import postprocess
from .predict import predict
from .seed_ap import ap_seedstyle, ap_voc07, match, seed_metrics

__all__ = ["BACKENDS", "STAT_NAMES", "ap_seedstyle", "ap_voc07", "cli_val", "coco_eval", "evaluate",
           "evaluate_predictions", "gt_document", "load_model", "match", "postprocess", "predict",
           "results_records", "seed_metrics"]
