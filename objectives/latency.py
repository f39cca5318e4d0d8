"""Latency, measured under a fixed protocol so that trials compare.

Protocol: the model in eval mode under inference_mode, batch 1; `forward` mode feeds the full
context in one call, `decode` mode reads half the context and then times each single-token step
with the KV cache. `warmup` untimed runs, then `repeats` timed ones; the median is the figure and
the 10th/90th percentiles record the spread. CUDA is timed with events after a synchronize; the CPU
with perf_counter at a fixed thread count (default 1: the least noisy on a shared machine), restored
afterwards.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch

from search_space import DecodeState, Decoder

LatencyMode = Literal["forward", "decode"]


@dataclass(frozen=True)
class LatencyProtocol:
    mode: LatencyMode = "forward"
    warmup: int = 5
    repeats: int = 30
    cpu_threads: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def measure_latency(model: Decoder, protocol: LatencyProtocol = LatencyProtocol()) -> Latency:
    model.eval()
    device = next(model.parameters()).device
    block_size = model.config.block_size
    idx = torch.zeros(1, block_size, dtype=torch.long, device=device)

    def one_timing() -> float:
        if protocol.mode == "forward":
            return _milliseconds(device, lambda: model(idx))
        state = DecodeState()
        model(idx[:, : max(1, block_size // 2)], state)  # the prefill is not timed
        return _milliseconds(device, lambda: model(idx[:, :1], state))

    previous_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(protocol.cpu_threads)
    try:
        for _ in range(protocol.warmup):
            one_timing()
        timings = [one_timing() for _ in range(protocol.repeats)]
    finally:
        torch.set_num_threads(previous_threads)
    deciles = statistics.quantiles(timings, n=10) if len(timings) > 1 else timings * 9
    return Latency(statistics.median(timings), deciles[0], deciles[-1], len(timings), str(device))


def _milliseconds(device: torch.device, work: Callable[[], object]) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        work()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    started = time.perf_counter()
    work()
    return 1000 * (time.perf_counter() - started)
