"""How a training process waits for and uses its CPU threads, chosen from the load it measures.

The one home of thread settings (docs/threads.md has the measurements). Importing a module never
changes anything; two calls do:

- `configure_process()`, first thing in a process that trains, before torch is imported (the
  `decoder-nas` entry does it for the commands that train), chooses the wait policy. Busy cores at
  the start: OMP_WAIT_POLICY=PASSIVE (threads sleep while they wait); libgomp reads it once, when
  torch loads, so such a process keeps it for its life. Idle cores: torch's default, whose OpenMP
  threads spin while they wait (full speed alone).
- `governed_threads()`, around every training run (trainer.loop does it), in any process whose
  threads spin: the command line's, and a notebook or script that imported torch itself, where the
  wait policy can no longer change. A `ThreadGovernor` measures the load as the run starts and every
  few seconds after, and drops to as many threads as there are idle cores when other work is there
  (spinning threads that wait for a descheduled sibling are what made training crawl, 10x in a
  notebook), and back up when it leaves; the thread count the run started with is its ceiling and
  is restored when it ends.

A user's own OMP_WAIT_POLICY, GOMP_SPINCOUNT or OMP_NUM_THREADS wins: then nothing is changed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
BUSY_CORES = 0.5  # other processes using this much CPU (in cores) make a spinning thread lose its sibling
IDLE_CORES = 0.25  # below this, a reduced thread count goes back up (apart from BUSY_CORES: no flapping)
START_SAMPLE_SECONDS = 0.25
CHECK_SECONDS = 2.0
RECENT_SECONDS = 10.0  # a load sample older than this is not used to judge the load now
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
        self.most = threads  # the run's ceiling: torch's own choice (one per core), or the program's
        self.threads = threads

    def check(self) -> None:
        """Cheap enough to call every step: it samples the load only every CHECK_SECONDS."""
        if _last is not None and time.monotonic() - _last.wall >= CHECK_SECONDS:
            self.adapt(_load_since_last())

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


_passive = False  # configure_process chose passive waiting: fewer threads would only lose speed
_last: CpuSample | None = None  # the latest load sample, carried from one run to the next
_governor: ThreadGovernor | None = None  # the running training's


def configure_process() -> str:
    """Choose this process's wait policy from the load now, before torch loads; returns what was
    chosen ("user", "spinning", "passive", or "unchanged" once torch is loaded by someone else)."""
    global _passive, _last
    if user_chose():
        return "user"
    if "torch" in sys.modules:  # too late for a wait policy; governed_threads still adapts the threads
        return "unchanged"
    before = cpu_sample()
    if before is None:
        return "unchanged"
    time.sleep(START_SAMPLE_SECONDS)
    _last = cpu_sample()
    _passive = _last is not None and other_load(before, _last) >= BUSY_CORES
    if _passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "passive" if _passive else "spinning"


@contextmanager
def governed_threads() -> Iterator[None]:
    """Around one training run: the intra-op threads follow the load (see the module's docstring);
    the count the run started with is restored after it."""
    global _governor
    import torch

    ceiling = torch.get_num_threads()
    if _passive or user_chose() or ceiling == 1 or cpu_sample() is None:
        yield
        return
    _governor = ThreadGovernor(ceiling)
    try:
        _governor.adapt(_load_since_last(at_least=START_SAMPLE_SECONDS))
        yield
    finally:
        _governor = None
        torch.set_num_threads(ceiling)


def check_threads() -> None:
    """Called by the training loop each step: adapts the threads inside `governed_threads`."""
    if _governor is not None:
        _governor.check()


def _load_since_last(at_least: float = 0.0) -> float:
    """Other processes' load (cores) since the latest sample, waiting until the window spans
    `at_least` seconds. A sample older than RECENT_SECONDS says nothing about now: then the window
    starts afresh."""
    global _last
    now = cpu_sample()
    if _last is None or now.wall - _last.wall > RECENT_SECONDS:
        _last = now
    if now.wall - _last.wall < at_least:
        time.sleep(at_least - (now.wall - _last.wall))
        now = cpu_sample()
    load, _last = other_load(_last, now), now
    return load


def job_threads(jobs: int) -> dict[str, str]:
    """The environment of one of `jobs` worker processes on this machine: the cores split evenly, so
    N jobs running one thread per core only wait for each other."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
