"""Turns a DecoderConfig into a torch.nn.Module, read top to bottom like nanoGPT's model.py.

Every module takes an optional DecodeState: during cached generation attention keeps its keys and
values there, and a causal conv keeps its last k-1 inputs, so one token at a time gives the same
logits as the full sequence.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import einsum, rearrange

from .config import ConfigError, DecoderConfig, LayerConfig, Reduction, mlp_hidden


@dataclass
class DecodeState:
    """Per-module caches for incremental decoding; `position` is how many tokens were consumed."""

    position: int = 0
    buffers: dict[nn.Module, Any] = field(default_factory=dict)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_head: int, bias: bool, dropout: float):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.n_head = n_head
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.n_head)
        mask = None
        if state is not None:
            past = state.buffers.get(self)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            state.buffers[self] = (k, v)
            # New queries sit at the end of the key sequence: query i sees keys up to past + i.
            mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=x.device).tril(k.size(2) - q.size(2))
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
        )
        return self.resid_dropout(self.proj(rearrange(y, "b h t d -> b t (h d)")))


class MLP(nn.Module):
    def __init__(self, width: int, mlp_ratio: float, bias: bool, dropout: float):
        super().__init__()
        hidden = mlp_hidden(width, mlp_ratio)
        self.fc = nn.Linear(width, hidden, bias=bias)
        self.proj = nn.Linear(hidden, width, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """`sequential`: x + attn(ln1 x), then + mlp(ln2 x). `parallel`: x + attn(ln x) + mlp(ln x)."""

    def __init__(self, width: int, layer: LayerConfig, bias: bool, dropout: float):
        super().__init__()
        self.parallel = layer.layout == "parallel"
        self.ln_1 = nn.LayerNorm(width, bias=bias)
        self.attn = CausalSelfAttention(width, layer.n_head, bias, dropout)
        self.ln_2 = None if self.parallel else nn.LayerNorm(width, bias=bias)
        self.mlp = MLP(width, layer.mlp_ratio, bias, dropout)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        if self.parallel:
            h = self.ln_1(x)
            return x + self.attn(h, state) + self.mlp(h)
        x = x + self.attn(self.ln_1(x), state)
        return x + self.mlp(self.ln_2(x))


class LinearReduction(nn.Module):
    def __init__(self, width: int, reduction: Reduction, bias: bool):
        super().__init__()
        self.linear = nn.Linear(width, reduction.width, bias=bias)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        return self.linear(x)


class CausalConvReduction(nn.Module):
    """Conv1d over time, padded on the left only, so position t sees inputs t-k+1 .. t."""

    def __init__(self, width: int, reduction: Reduction, bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(width, reduction.width, reduction.kernel_size, bias=bias)
        self.history = reduction.kernel_size - 1

    def forward(self, x: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        x = rearrange(x, "b t c -> b c t")
        past = state.buffers.get(self) if state is not None else None
        if past is None:
            past = x.new_zeros(x.size(0), x.size(1), self.history)
        x = torch.cat([past, x], dim=-1)
        if state is not None:
            state.buffers[self] = x[..., x.size(-1) - self.history :]
        return rearrange(self.conv(x), "b c t -> b t c")


REDUCTIONS = {"linear": LinearReduction, "conv": CausalConvReduction}


class Tower(nn.Module):
    """The layer list: blocks, each optionally followed by a width reduction."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        modules: list[nn.Module] = []
        for layer, width in zip(config.layers, config.widths):
            modules.append(Block(width, layer, config.bias.blocks, config.dropout))
            if layer.reduction is not None:
                modules.append(REDUCTIONS[layer.reduction.kind](width, layer.reduction, config.bias.reductions))
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        for module in self.layers:
            x = module(x, state)
        return x


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.tok_emb = nn.Embedding(config.vocab_size, d)
        self.pos_emb = nn.Embedding(config.block_size, d)
        self.drop = nn.Dropout(config.dropout)
        # One tower is the plain GPT path; with P > 1 each tower is entered through its own Linear(d, d).
        parallel = config.towers > 1
        self.tower_inputs = (
            nn.ModuleList(nn.Linear(d, d, bias=config.bias.tower_inputs) for _ in range(config.towers))
            if parallel
            else None
        )
        self.towers = nn.ModuleList(Tower(config) for _ in range(config.towers))
        # Mixing logits for towers 1..P-1 against tower P fixed at 0: for P = 2 softmax([w, 0]) is
        # exactly the paper's σ(w)·x1 + (1−σ(w))·x2 with w starting at 0.5.
        self.tower_mix = nn.Parameter(torch.full((config.towers - 1,), 0.5)) if parallel else None
        self.ln_f = nn.LayerNorm(config.final_width, bias=config.bias.blocks)
        self.head = nn.Linear(config.final_width, config.vocab_size, bias=False)
        if config.tie_head:
            self.head.weight = self.tok_emb.weight
        if self.head.weight.is_meta:  # shapes only (for counting): meta tensors hold no values to initialise
            return
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2·depth), applied after every block exists
        # (the paper's code ran its init before building blocks, leaving them at PyTorch defaults).
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.proj.weight")):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * len(config.layers)))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def tower_weights(self) -> torch.Tensor:
        if self.tower_mix is None:
            return torch.ones(1, device=self.head.weight.device)
        return torch.softmax(torch.cat([self.tower_mix, self.tower_mix.new_zeros(1)]), dim=0)

    def forward(self, idx: torch.Tensor, state: DecodeState | None = None) -> torch.Tensor:
        """idx [B, T] token ids -> logits [B, T, vocab]. With a state, idx continues its sequence."""
        start = state.position if state is not None else 0
        positions = torch.arange(start, start + idx.size(1), device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(positions))
        if self.tower_inputs is None:
            x = self.towers[0](x, state)
        else:
            outputs = torch.stack([tower(entry(x), state) for entry, tower in zip(self.tower_inputs, self.towers)])
            x = einsum(self.tower_weights(), outputs, "p, p b t c -> b t c")
        if state is not None:
            state.position += idx.size(1)
        return self.head(self.ln_f(x))


def build_decoder(config: DecoderConfig, device: torch.device | str | None = None) -> Decoder:
    """Build the model; on `device="meta"` no memory is allocated (shapes only, for counting)."""
    if torch.device(device or "cpu").type != "meta":
        check_memory(config)
    with torch.device(device or "cpu"):
        return Decoder(config)


def check_memory(config: DecoderConfig) -> None:
    """Refuse, before a byte is allocated, a model whose float32 weights and one full-context forward
    at batch 1 (towers x context x widest layer, kept as float64 by fvcore's FLOP count) need more
    than this machine's memory: building it would end in an out-of-memory kill, or swap for minutes."""
    params = sum(p.numel() for p in build_decoder(config, device="meta").parameters())
    activations = config.towers * config.block_size * max(config.widths)
    needed, available = 4 * params + 8 * activations, physical_memory()
    if available and needed > available:
        raise ConfigError(f"the model needs about {needed / 2**30:,.1f} GiB ({params:,} parameters as float32 and "
                          f"a full-context forward); this machine has {available / 2**30:,.1f} GiB")


def physical_memory() -> int | None:
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
