"""Cost (params, MACs under three conventions, .weights size) and latency of models; ``python -m yolocomp.bench``
prints and writes a table for zoo models."""

from .cost import cost_row, count_params, macs_conv, macs_seed, macs_thop, storage_mib
from .latency import measure_latency

__all__ = ["cost_row", "count_params", "macs_conv", "macs_seed", "macs_thop", "measure_latency", "storage_mib"]
