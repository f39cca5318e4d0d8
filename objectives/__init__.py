"""What a trial is scored on: static measures (parameters, FLOPs), latency, validation quality."""

from .latency import Latency, LatencyProtocol, measure_latency
from .static import Description, LayerRow, ParamCount, count_flops, count_parameters, describe

__all__ = ["Latency", "LatencyProtocol", "measure_latency", "Description", "LayerRow", "ParamCount", "count_flops", "count_parameters", "describe"]
