"""What a trial is scored on: static measures (parameters, FLOPs), latency, validation quality."""

from .static import Description, LayerRow, ParamCount, count_flops, count_parameters, describe

__all__ = ["Description", "LayerRow", "ParamCount", "count_flops", "count_parameters", "describe"]
