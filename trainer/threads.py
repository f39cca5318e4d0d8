"""How a training process waits for and uses its CPU threads, chosen from the load it measures.

The one home of thread settings (docs/threads.md has the measurements). A process that trains calls
`configure_process()` once, first thing, before torch is imported (the `decoder-nas` entry does it
for the commands that train); importing a module never changes anything.

- Idle cores at the start: torch's default, whose OpenMP threads spin while they wait (full speed
  alone); a `ThreadGovernor` then re-measures the load every few seconds of training and drops to
  as many threads as there are idle cores when other work arrives (spinning threads that wait for a
  descheduled sibling are what made training crawl), and back up when it leaves.
- Busy cores at the start: OMP_WAIT_POLICY=PASSIVE (threads sleep while they wait). libgomp reads it
  once, when torch loads, so such a process keeps it for its life.

A user's own OMP_WAIT_POLICY, GOMP_SPINCOUNT or OMP_NUM_THREADS wins: then nothing is changed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
BUSY_CORES = 0.5  # other processes using this much CPU (in cores) make a spinning thread lose its sibling
IDLE_CORES = 0.25  # below this, a reduced thread count goes back up (apart from BUSY_CORES: no flapping)
START_SAMPLE_SECONDS = 0.25
CHECK_SECONDS = 2.0
PROC_STAT = Path("/proc/stat")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    """All cores' busy time and this process's CPU time (both seconds), at a wall-clock time."""

    wall: float
    busy: float
    own: float


def cpu_sample() -> CpuSample | None:
    """None where there is no /proc/stat (not Linux): then nothing is adapted."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy
    ticks = [int(value) for value in fields[:8]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return CpuSample(time.monotonic(), busy / CLOCK_TICKS, time.process_time())


def other_load(before: CpuSample, after: CpuSample) -> float:
    """Cores other processes kept busy between two samples (this process's own threads left out,
    spinning included)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / wall)


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def user_chose() -> bool:
    return any(name in os.environ for name in USER_SETTINGS)


class ThreadGovernor:
    """Sets torch's intra-op threads to the idle cores, re-measured every CHECK_SECONDS of training."""

    def __init__(self, threads: int):
        self.most = threads  # torch's own choice: one per core
        self.threads = threads
        self.last = cpu_sample()

    def check(self) -> None:
        """Cheap enough to call every step: it samples the load only every CHECK_SECONDS."""
        if self.last is None or time.monotonic() - self.last.wall < CHECK_SECONDS:
            return
        now = cpu_sample()
        if now is None:
            return
        self.adapt(other_load(self.last, now))
        self.last = now

    def adapt(self, others: float) -> None:
        free = usable_cores() - others
        if others >= BUSY_CORES:
            wanted = max(1, min(self.most, int(free + 0.5)))
        elif others < IDLE_CORES:
            wanted = self.most
        else:
            wanted = self.threads
        if wanted != self.threads:
            import torch

            torch.set_num_threads(wanted)
            self.threads = wanted


_governor: ThreadGovernor | None = None


def configure_process() -> str:
    """Choose this process's wait policy from the load now, before torch loads; returns what was
    chosen ("user", "spinning", "passive", or "unchanged" once torch is loaded by someone else)."""
    global _governor
    if user_chose():
        return "user"
    if "torch" in sys.modules:  # an embedding program (a notebook, a test) owns the threads
        return "unchanged"
    before = cpu_sample()
    if before is None:
        return "unchanged"
    time.sleep(START_SAMPLE_SECONDS)
    after = cpu_sample()
    if after is not None and other_load(before, after) >= BUSY_CORES:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return "passive"
    import torch

    _governor = ThreadGovernor(torch.get_num_threads())
    return "spinning"


def check_threads() -> None:
    """Called by the training loop each step: adapts the threads if `configure_process` asked for it."""
    if _governor is not None:
        _governor.check()


def job_threads(jobs: int) -> dict[str, str]:
    """The environment of one of `jobs` worker processes on this machine: the cores split evenly, so
    N jobs running one thread per core only wait for each other."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
