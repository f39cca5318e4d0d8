"""What a training step and an evaluation need in memory at least, checked before anything is allocated.

A batch of 10**8 windows asked numpy for 12.7 GiB at once (an internal MemoryError) or, where the
kernel overcommits, swapped the machine for a minute first. The bounds here are lower bounds (the
int64 windows, inputs and targets, and the logits with their gradient or softmax), so a refusal is
never wrong: a request above them cannot run on this device, whatever the model's other activations
and whatever else is running (the device's whole memory is the bound, as search_space's check_memory
bounds a model by the machine's).
"""

from __future__ import annotations

import torch

from search_space.model import physical_memory

from .recipe import FieldError, TrainingRecipe

INT64_BYTES, FLOAT32_BYTES = 8, 4


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory where the tensors live: the GPU's, else the machine's RAM (None if unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return physical_memory()


def batch_bytes(block_size: int, vocab_size: int, windows: int, logits_rows: int) -> int:
    """At least: `windows` token windows widened to int64 with their inputs and targets, and the
    fp32 logits of `logits_rows` of them twice (the logits and their gradient or log-softmax)."""
    tokens = windows * ((block_size + 1) + 2 * block_size) * INT64_BYTES
    return tokens + 2 * logits_rows * block_size * vocab_size * FLOAT32_BYTES


def check_recipe_memory(recipe: TrainingRecipe, block_size: int, vocab_size: int, device: torch.device) -> None:
    """FieldError naming the recipe field (batch_size, eval_windows) whose windows cannot fit: a
    training batch on `device`, and the evaluation's windows. Both depend on the context and the
    vocabulary, not the architecture, so a study checks them once before its first trial."""
    _check(block_size, vocab_size, "batch_size", recipe.batch_size, recipe.batch_size, device)
    check_eval_memory(block_size, vocab_size, recipe.eval_windows, recipe.eval_batch_size)


def check_eval_memory(block_size: int, vocab_size: int, windows: int, batch_size: int) -> None:
    """The evaluation's windows are drawn at once on the host; the device scores batch_size at a time."""
    _check(block_size, vocab_size, "eval_windows", windows, min(batch_size, windows), torch.device("cpu"))


def _check(block_size: int, vocab_size: int, name: str, windows: int, logits_rows: int, device: torch.device) -> None:
    needed, available = batch_bytes(block_size, vocab_size, windows, logits_rows), device_memory(device)
    if available is not None and needed > available:
        where = "this machine has" if device.type == "cpu" else f"{device} has"
        raise FieldError(name, windows, f"{windows} windows of {block_size} tokens need at least "
                                        f"{needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB "
                                        f"{where}; lower it")
