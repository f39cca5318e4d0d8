"""What a trial is scored on: static measures (parameters, FLOPs), latency, validation quality."""

from .latency import Latency, LatencyProtocol, measure_latency, measure_together, time_together
from .onnx import OnnxUnavailable, export_onnx, onnx_runner
from .static import (
    Description, LayerRow, ParamCount, count_flops, count_parameters, describe, kv_cache_bytes, memory_measures,
    weights_bytes,
)

__all__ = ["Latency", "LatencyProtocol", "measure_latency", "measure_together", "time_together", "Description", "LayerRow", "ParamCount", "count_flops", "count_parameters", "describe",
           "kv_cache_bytes", "memory_measures", "weights_bytes", "OnnxUnavailable", "export_onnx", "onnx_runner"]
