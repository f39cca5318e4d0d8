"""The latency protocol: how a model is timed, fixed per study (objectives/latency.py times it).

Kept free of torch so a study's settings can be read without loading a model stack.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

LatencyMode = Literal["forward", "decode"]
# Where decode mode's timed token stands: "last", the last context position (the cache full, so KV heads
# and windows show in the time); "middle", after half the context, as studies created before it time on.
DECODE_POSITIONS = ("last", "middle")
BACKENDS = ("torch", "onnxruntime")
# "thread": CPU time of the measuring thread, which time spent waiting for a core does not count
# (only meaningful at cpu_threads 1, where every op runs on that thread); "wall": perf_counter.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}
TRIM = 0.2  # trimmed_mean drops this fraction of the repeats at each end
MAX_COUNT = 10_000  # repeats, warm-ups, threads: more only makes every trial's timing take longer


def trimmed_mean(timings: Sequence[float]) -> float:
    ordered = sorted(timings)
    cut = int(len(ordered) * TRIM)
    return statistics.fmean(ordered[cut: len(ordered) - cut])


# Load only ever adds time to a run, so the low end of the repeats is the part that repeats.
ESTIMATORS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": statistics.median,
    "min": min,
    "trimmed_mean": trimmed_mean,
}


@dataclass(frozen=True)
class LatencyProtocol:
    # Dicts stored before estimator/pin_cpu/backend existed construct unchanged (new keys default).
    mode: LatencyMode = "forward"
    warmup: int = 5
    repeats: int = 30
    cpu_threads: int = 1
    estimator: str = "min"
    pin_cpu: bool = False
    backend: str = "torch"
    clock: str | None = None  # CPU only (CUDA is timed with events); None: "thread" at cpu_threads 1, else "wall"
    decode_at: str | None = None  # decode mode only (DECODE_POSITIONS; None: "last"); forward mode keeps None

    def __post_init__(self) -> None:
        for name, lowest in (("warmup", 0), ("repeats", 1), ("cpu_threads", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= MAX_COUNT:
                raise ValueError(f"latency {name}: {value!r} must be a whole number from {lowest} to {MAX_COUNT:,}")
        if not isinstance(self.pin_cpu, bool):
            raise ValueError(f"latency pin_cpu: expected true or false, got {self.pin_cpu!r}")
        if self.clock is None:
            object.__setattr__(self, "clock", "thread" if self.cpu_threads == 1 else "wall")
        if self.mode not in ("forward", "decode"):
            raise ValueError(f"latency mode: {self.mode!r} must be 'forward' or 'decode'")
        if self.decode_at not in (None, *DECODE_POSITIONS):
            raise ValueError(f"latency decode_at: unknown {self.decode_at!r} (known: {', '.join(DECODE_POSITIONS)})")
        # Forward mode has no timed position: None there, so forward protocols compare equal across versions.
        object.__setattr__(self, "decode_at", None if self.mode == "forward" else self.decode_at or "last")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"latency estimator: unknown {self.estimator!r} (known: {', '.join(ESTIMATORS)})")
        if self.backend not in BACKENDS:
            raise ValueError(f"latency backend: unknown {self.backend!r} (known: {', '.join(BACKENDS)})")
        if self.backend == "onnxruntime" and self.mode == "decode":
            raise ValueError("latency mode 'decode' needs the torch backend: the ONNX export has no KV cache; "
                             "use mode 'forward' with onnxruntime")
        if self.clock not in CLOCKS:
            raise ValueError(f"latency clock: unknown {self.clock!r} (known: {', '.join(CLOCKS)})")
        if self.clock == "thread" and self.cpu_threads != 1:
            raise ValueError("latency clock 'thread' counts one thread's CPU time: it needs cpu_threads 1 "
                             "(use clock 'wall' for more threads)")

    def to_dict(self) -> dict:
        return asdict(self)
