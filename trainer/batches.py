"""Training batches on the training device, from a split that stays in a memory map.

CPU: windows are gathered from the map each step (only they are read and widened to int64).
CUDA: a split of at most DEVICE_RESIDENT_TOKENS is copied to the device once, as int32 (half of
int64; 256 MiB at the bound), and sampled there with a device generator as before, so no step syncs
with the host. A larger split stays on the host: each batch is gathered there, pinned and copied
with non_blocking=True one step ahead, so the copy overlaps the previous step's compute.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Tokens, sample_batch

DEVICE_RESIDENT_TOKENS = 64 * 2**20


class Batches:
    """`next()` gives (x, y) for one step; the same seed gives the same sequence on the same device kind."""

    def __init__(self, tokens: Tokens, batch_size: int, block_size: int, seed: int, device: torch.device) -> None:
        self._shape = (batch_size, block_size)
        self._device = device
        self._prefetch = device.type == "cuda" and len(tokens) > DEVICE_RESIDENT_TOKENS
        if device.type == "cuda" and not self._prefetch:  # widened on the host: CUDA kernels for uint16 are few
            host = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.array(tokens))
            tokens = host.to(torch.int32).to(device)
        self._tokens = tokens
        self._generator = torch.Generator(device="cpu" if self._prefetch else device).manual_seed(seed)
        self._pending = self._draw() if self._prefetch else None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._prefetch:
            return self._draw()
        batch, self._pending = self._pending, self._draw()
        return batch

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sample_batch(self._tokens, *self._shape, self._generator)
        if self._prefetch:  # fresh pinned buffers each time: one still being copied is never overwritten
            x, y = (t.pin_memory().to(self._device, non_blocking=True) for t in (x, y))
        return x, y
