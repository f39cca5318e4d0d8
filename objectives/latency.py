"""Latency, measured under a fixed protocol so that trials compare.

Protocol: the model in eval mode under inference_mode, batch 1; `forward` mode feeds the full
context in one call, `decode` mode times one KV-cached token step at the last context position,
where the cache is full (`decode_at="last"`; "middle": after half the context, as older studies do). `warmup` untimed runs, then `repeats` timed ones, reduced to one figure by the
protocol's `estimator` (default: the minimum); the 10th/90th percentiles record the spread and the
load average what else ran. CUDA is timed with events on the model's device and stream after a
synchronize (ONNX Runtime on CUDA by the wall clock); the CPU at a fixed
thread count (default 1), restored afterwards, by the measuring thread's CPU time (default at one
thread: waiting for a core does not count), pinned to one CPU if `pin_cpu`. `measure_together`
re-times several models interleaved so that they see the same load. Why: docs/latency.md.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from search_space import Decoder, DecodeState

from .protocol import CLOCKS, ESTIMATORS, LatencyProtocol

DEFAULT_PROTOCOL = LatencyProtocol()


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    device: str
    ms: float | None = None  # the protocol's estimate; None (code predating estimators) means the median
    estimator: str = "median"
    min_ms: float | None = None
    relative_spread: float | None = None  # (p90 - p10) / median
    load_average: float | None = None  # 1-minute load average right after timing: what else ran
    procs_running: int | None = None  # runnable processes then, this one included
    peak_memory_bytes: int | None = None  # CUDA only
    backend: str = "torch"

    def __post_init__(self) -> None:
        if self.ms is None:
            object.__setattr__(self, "ms", self.median_ms)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Timer:
    """One model's timed call on its device, and the timings taken so far."""

    run: Callable[[], float]
    device: torch.device
    timings: list[float] = field(default_factory=list)
    peak_memory_bytes: int | None = None  # CUDA: the most allocated during its blocks, all resident tensors

    def take(self, warmup: int, repeats: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        for _ in range(warmup):
            self.run()
        self.timings.extend(self.run() for _ in range(repeats))
        if self.device.type == "cuda":
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, torch.cuda.max_memory_allocated(self.device))


def measure_latency(model: Decoder, protocol: LatencyProtocol = DEFAULT_PROTOCOL) -> Latency:
    return measure_together({"model": model}, protocol, rounds=1)["model"]


def measure_together(models: Mapping[str, Decoder], protocol: LatencyProtocol = DEFAULT_PROTOCOL,
                     rounds: int = 5) -> dict[str, Latency]:
    """Re-time several models interleaved (see `time_together`): measurements under the same load compare."""
    timers = _time_together(models, protocol, rounds)
    load_average, procs_running = system_load()
    return {name: _summary(timer, protocol, load_average, procs_running) for name, timer in timers.items()}


def time_together(models: Mapping[str, Decoder], protocol: LatencyProtocol = DEFAULT_PROTOCOL,
                  rounds: int = 5) -> dict[str, list[float]]:
    """Every model's raw timings in ms: `rounds` interleaved rounds of `protocol.repeats` each.

    Each round times every model for its block of repeats, the order rotated each round, so that
    a burst of load lands on all of them. One untimed run opens each later block: the model timed
    before evicted this one's weights from the caches.
    """
    return {name: timer.timings for name, timer in _time_together(models, protocol, rounds).items()}


def _time_together(models: Mapping[str, Decoder], protocol: LatencyProtocol, rounds: int) -> dict[str, _Timer]:
    if rounds < 1:
        raise ValueError(f"rounds: {rounds!r} must be >= 1")
    timers = {name: _timer(model, protocol) for name, model in models.items()}
    names = list(timers)
    with _cpu_settings(protocol), torch.inference_mode():
        for timer in timers.values():
            timer.take(protocol.warmup, 0)
        for round_index in range(rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                timers[name].take(1 if round_index else 0, protocol.repeats)
    return timers


def _timer(model: Decoder, protocol: LatencyProtocol) -> _Timer:
    model.eval()
    device = next(model.parameters()).device
    block_size = model.config.block_size
    idx = torch.zeros(1, block_size, dtype=torch.long, device=device)
    clock = CLOCKS[protocol.clock]
    if protocol.backend == "onnxruntime":
        # onnxruntime is an optional dependency: imported only when asked for.
        from objectives.onnx import onnx_runner

        cpu = torch.device("cpu")
        session_run = onnx_runner(model, idx, protocol.cpu_threads)
        # On CUDA the session waits for the GPU, which no thread's CPU time counts: the wall clock.
        run_clock = CLOCKS["wall"] if device.type == "cuda" else clock
        return _Timer(lambda: _milliseconds(cpu, session_run, run_clock), cpu)
    if protocol.mode == "forward":
        return _Timer(lambda: _milliseconds(device, lambda: model(idx), clock), device)

    prefill = block_size - 1 if protocol.decode_at == "last" else block_size // 2

    def decode_step() -> float:
        state = DecodeState()
        if prefill:  # not timed
            model(idx[:, :prefill], state)
        return _milliseconds(device, lambda: model(idx[:, :1], state), clock)

    return _Timer(decode_step, device)


def _summary(timer: _Timer, protocol: LatencyProtocol, load_average: float, procs_running: int | None) -> Latency:
    timings = timer.timings
    deciles = statistics.quantiles(timings, n=10) if len(timings) > 1 else timings * 9
    median = statistics.median(timings)
    return Latency(
        median_ms=median, p10_ms=deciles[0], p90_ms=deciles[-1], repeats=len(timings), device=str(timer.device),
        ms=ESTIMATORS[protocol.estimator](timings), estimator=protocol.estimator, min_ms=min(timings),
        relative_spread=(deciles[-1] - deciles[0]) / median if median > 0 else math.nan,
        load_average=load_average, procs_running=procs_running, peak_memory_bytes=timer.peak_memory_bytes,
        backend=protocol.backend,
    )


@contextmanager
def _cpu_settings(protocol: LatencyProtocol) -> Iterator[None]:
    """The protocol's thread count (and CPU pin), restored afterwards."""
    previous_threads = torch.get_num_threads()
    previous_cpus = _pin_to_one_cpu() if protocol.pin_cpu else None
    torch.set_num_threads(protocol.cpu_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        if previous_cpus is not None:
            os.sched_setaffinity(0, previous_cpus)


def _pin_to_one_cpu() -> set[int] | None:
    """Pins the calling thread to the last CPU it may use; None where the OS has no affinity call."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(allowed)})
    return allowed


def system_load() -> tuple[float, int | None]:
    """1-minute load average and runnable processes (Linux /proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            running = next((int(line.split()[1]) for line in stat if line.startswith("procs_running")), None)
    except OSError:
        running = None
    return os.getloadavg()[0], running


def _milliseconds(device: torch.device, work: Callable[[], object], clock: Callable[[], float]) -> float:
    if device.type == "cuda":
        # The model's own device and stream: on the current device's stream a model on cuda:1 would
        # time an idle stream of cuda:0 (only the host's enqueueing) and open a context there.
        with torch.cuda.device(device):
            stream = torch.cuda.current_stream(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record(stream)
            work()
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end)
    started = clock()
    work()
    return 1000 * (clock() - started)
