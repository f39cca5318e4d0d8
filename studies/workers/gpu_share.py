"""Several jobs on one GPU: latency is timed while no other job's kernels run.

A job training on a GPU holds that GPU's lock shared; a job timing latency takes it exclusive.
A trainer gives its share back at each progress report, where the training loop has just
synchronised (none of its kernels is in flight), and passes a turnstile before taking it again.
A timer holds the turnstile while it waits, so the trainers queue behind it instead of starving
it. The locks are flock()s on two files per physical GPU in the temporary folder: the kernel
releases them when a process dies. On a CPU nothing is locked: jobs there have cores of their own
(studies/workers/jobs.py) and latency counts only the measuring thread's CPU time. Why: docs/gpu.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

LOCK_FOLDER = "decoder-nas-gpu-locks"


def gpu_key(device: torch.device) -> str:
    """The physical GPU behind `device` as this process sees it: through CUDA_VISIBLE_DEVICES if set."""
    index = device.index or 0
    visible = [entry.strip() for entry in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    physical = visible[index] if index < len(visible) else str(index)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", physical)


def _lock_files(device: torch.device) -> tuple[IO[bytes], IO[bytes]]:
    folder = Path(tempfile.gettempdir()) / LOCK_FOLDER
    folder.mkdir(mode=0o777, exist_ok=True)
    key = gpu_key(device)
    return (folder / f"gpu-{key}.turnstile").open("ab"), (folder / f"gpu-{key}.lock").open("ab")


@contextlib.contextmanager
def timing_turn(device: torch.device) -> Iterator[None]:
    """Held while latency is timed on `device`: every trainer on that GPU waits at its next report."""
    if device.type != "cuda":
        yield
        return
    turnstile, lock = _lock_files(device)
    with turnstile, lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the files releases both


class TrainingShare:
    """Held while a trial trains on a GPU; `pause()` at a synchronised point lets a waiting timer in."""

    def __init__(self, device: torch.device):
        self.device = device
        self._files: tuple[IO[bytes], IO[bytes]] | None = None

    def __enter__(self) -> TrainingShare:
        if self.device.type == "cuda":
            self._files = _lock_files(self.device)
            fcntl.flock(self._files[1], fcntl.LOCK_SH)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._files is not None:
            for file in self._files:
                file.close()
            self._files = None

    def pause(self) -> None:
        if self._files is None:
            return
        turnstile, lock = self._files
        fcntl.flock(lock, fcntl.LOCK_UN)
        fcntl.flock(turnstile, fcntl.LOCK_SH)  # waits while a timer holds the turnstile
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_SH)

    def pausing(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """`callback` for the training loop's progress reports, pausing first (on a CPU: `callback`)."""
        if self._files is None:
            return callback

        def on_progress(progress: Any) -> None:
            self.pause()
            callback(progress)

        return on_progress
