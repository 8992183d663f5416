"""Quantization: the seeds' fake-quant schemes (BNN, BWN, DoReFa, 8-bit affine QAT, SPURS' power-of-two QAT),
stage-wise layer selection, post-training calibration, and real int8 inference through ONNX + onnxruntime.

``quantize_model(model, "bwn", qlayers=8)`` returns a quantized copy of a Darknet; train it with
:func:`yolocomp.engine.train` (pass the module), evaluate it with :func:`yolocomp.eval.evaluate`.
:mod:`yolocomp.quant.onnx_int8` exports float / QAT / PTQ models to a real int8 ONNX model and scores it with the
same evaluation.  Scheme names are registered in :data:`yolocomp.registry.QUANTIZERS`.
"""

from .layers import FoldedQConv2d, QConv2d, QuantAct, conv_units, dequantized, fold_conv_bn
from .ptq import calibrate, calibration_batches
from .schemes import (
    SCHEMES,
    SEED_OPTIONS,
    quantize_model,
    scheme_name,
    set_schedule,
    spec_options,
    spurs_quant_hyp,
    training_forwards,
)
from .select import backbone_end, quantizable_layers, select_layers

__all__ = ["SCHEMES", "SEED_OPTIONS", "FoldedQConv2d", "QConv2d", "QuantAct", "backbone_end", "calibrate",
           "calibration_batches", "conv_units", "dequantized", "fold_conv_bn", "quantizable_layers",
           "quantize_model", "scheme_name", "select_layers", "set_schedule", "spec_options", "spurs_quant_hyp",
           "training_forwards"]
