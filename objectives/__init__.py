"""What a trial is scored on: static measures (parameters, FLOPs, memory), latency, validation quality.

Names load on first use (PEP 562): reading a study's latency protocol does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF = {
    "BACKENDS": "protocol", "LatencyProtocol": "protocol",
    "Latency": "latency", "measure_latency": "latency", "measure_together": "latency", "time_together": "latency",
    "OnnxUnavailable": "onnx", "export_onnx": "onnx", "onnx_max_difference": "onnx", "onnx_runner": "onnx",
    "require_onnx": "onnx",
    "Description": "static", "LayerRow": "static", "ParamCount": "static", "count_flops": "static",
    "count_parameters": "static", "decode_state_bytes": "static", "describe": "static", "kv_cache_bytes": "static",
    "memory_measures": "static", "weights_bytes": "static",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
