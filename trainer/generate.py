"""Sampling with a KV cache: the prompt is read once, then each new token costs one position."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from search_space import Decoder, DecodeState

from .tokenizers import Tokenizer, TokenizerError


@dataclass
class Generation:
    text: str  # the prompt followed by the sampled continuation
    new_tokens: list[int]
    ms_per_token: float  # median wall time of one cached decoding step


@torch.no_grad()
def generate(
    model: Decoder,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int | None = None,
) -> Generation:
    check_sampling(max_new_tokens, temperature, top_k)
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    ids = tokenizer.encode(prompt) if prompt else [0]  # an empty prompt starts from token 0
    block_size = model.config.block_size
    state = DecodeState()
    logits = model(torch.tensor([ids[-block_size:]], device=device), state)
    new_tokens, step_seconds = [], []
    for _ in range(max_new_tokens):
        next_id = _sample(logits[0, -1], temperature, top_k, generator)
        new_tokens.append(next_id)
        started = time.perf_counter()
        if state.position >= block_size:
            # The cache is full: re-read the last half context and continue from there.
            state = DecodeState()
            window = (ids + new_tokens)[-(block_size // 2):]
            logits = model(torch.tensor([window], device=device), state)
        else:
            logits = model(torch.tensor([[next_id]], device=device), state)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the step's kernels run after the call returns: wait for them
        step_seconds.append(time.perf_counter() - started)
    text = (prompt if prompt else "") + tokenizer.decode(new_tokens)
    return Generation(text=text, new_tokens=new_tokens, ms_per_token=1000 * sorted(step_seconds)[len(step_seconds) // 2])


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    """Refuse settings that would crash or sample from NaN probabilities partway through."""
    if max_new_tokens < 1:
        raise TokenizerError(f"max_new_tokens: {max_new_tokens} must be at least 1")
    if not (math.isfinite(temperature) and temperature > 0):
        raise TokenizerError(f"temperature: {temperature} must be a finite number above 0")
    if top_k is not None and top_k < 1:
        raise TokenizerError(f"top_k: {top_k} must be at least 1 (or None to sample from every token)")


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.numel():
        threshold = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))
