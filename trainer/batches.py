"""Training batches on the training device, from a split that stays in a memory map.

CPU: windows are gathered from the map each step (only they are read and widened to int64).
CUDA: a split of at most DEVICE_RESIDENT_TOKENS is copied to the device once, as int32 (half of
int64; 256 MiB at the bound), and sampled there with a device generator as before, so no step syncs
with the host. A larger split stays on the host: each batch is gathered there, pinned and copied
with non_blocking=True one step ahead, so the copy overlaps the previous step's compute.

Every id a batch carries is checked against the vocabulary where it is still on the host (each
gathered batch; a device-resident split once, as it is copied), so a damaged token store is named
rather than reaching the embedding as an IndexError (or a device assert).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import DataError, require_window

DEVICE_RESIDENT_TOKENS = 64 * 2**20

Tokens = np.ndarray | torch.Tensor  # a split as a memory map (prepared data) or a 1-D integer tensor


class Batches:
    """`next()` gives (x, y) for one step; the same seed gives the same sequence on the same device kind."""

    def __init__(self, tokens: Tokens, batch_size: int, block_size: int, seed: int, device: torch.device,
                 vocab_size: int | None = None) -> None:
        self._shape = (batch_size, block_size)
        self._device = device
        self._vocab_size = vocab_size
        self._prefetch = device.type == "cuda" and len(tokens) > DEVICE_RESIDENT_TOKENS
        if device.type == "cuda" and not self._prefetch:  # widened on the host: CUDA kernels for uint16 are few
            if isinstance(tokens, np.ndarray) and vocab_size is not None:
                check_ids(tokens, vocab_size, tokens)  # whole, once: the device never sees a wrong id
            host = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(np.array(tokens))
            tokens = host.to(torch.int32).to(device)
            self._vocab_size = None
        self._tokens = tokens
        self._generator = torch.Generator(device="cpu" if self._prefetch else device).manual_seed(seed)
        self._pending = self._draw() if self._prefetch else None

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._prefetch:
            return self._draw()
        batch, self._pending = self._pending, self._draw()
        return batch

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = sample_batch(self._tokens, *self._shape, self._generator, self._vocab_size)
        if self._prefetch:  # fresh pinned buffers each time: one still being copied is never overwritten
            x, y = (t.pin_memory().to(self._device, non_blocking=True) for t in (x, y))
        return x, y


def sample_batch(
    tokens: Tokens, batch_size: int, block_size: int, generator: torch.Generator, vocab_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `tokens`: inputs x and targets y = x shifted left by one, int64.
    A memory map and a tensor of the same ids give the same batches for the same generator state.
    With `vocab_size`, a map's windows are checked to hold only ids below it (`check_ids`)."""
    require_window(len(tokens), block_size, "token stream")
    # Offsets are drawn where the generator lives (the tokens' device), so a GPU run never syncs here.
    offsets = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator, device=generator.device)
    if isinstance(tokens, np.ndarray):  # gather from the map: only these windows are read and widened
        gathered = tokens[offsets.numpy()[:, None] + np.arange(block_size + 1)]
        if vocab_size is not None:
            check_ids(gathered, vocab_size, tokens)
        windows = torch.from_numpy(gathered.astype(np.int64))
    else:
        windows = tokens[offsets[:, None] + torch.arange(block_size + 1, device=generator.device)].long()
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def validation_windows(
    tokens: Tokens, block_size: int, n_windows: int, seed: int, vocab_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of windows: the same seed gives the same (x, y), so every trial is scored alike."""
    return sample_batch(tokens, n_windows, block_size, torch.Generator().manual_seed(seed), vocab_size)


def check_ids(ids: np.ndarray, vocab_size: int, split: np.ndarray) -> None:
    """DataError when an id of `ids` (read from `split`) is not below `vocab_size`: a token store's
    .bin overwritten where its sampled digest does not look. Names the file and what to do."""
    largest = int(ids.max(initial=0))
    if largest < vocab_size:
        return
    problem = f"token id {largest} is outside the vocabulary of {vocab_size} tokens"
    filename = getattr(split, "filename", None)
    if filename is None:
        raise DataError(f"{problem}: the tokens were not made by this vocabulary's tokenizer")
    raise DataError(f"{filename}: {problem}; the token store is damaged: delete {Path(filename).parent} and it is "
                    "prepared again from the corpus")
