"""A plain PyTorch training loop, written from scratch in nanoGPT's style: the yardstick for trainer.loop.

Nothing here imports decoder-nas. The model is architecturally the `gpt` preset: pre-LN blocks
without biases, causal SDPA attention, a GELU MLP of 4x width, an untied head and GPT-2
initialisation (residual projections scaled by 1/sqrt(2 * n_layer)). The loop is nanoGPT's
train.py: get_batch with torch.randint + stack, its warm-up + cosine get_lr, plain AdamW with
decayed matrices only, gradient clipping, and loss.item() every step for logging.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTShape:
    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.c_attn = nn.Linear(shape.n_embd, 3 * shape.n_embd, bias=False)
        self.c_proj = nn.Linear(shape.n_embd, shape.n_embd, bias=False)
        self.n_head = shape.n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time_steps, channels = x.size()
        q, k, v = self.c_attn(x).split(channels, dim=2)
        q, k, v = (t.view(batch, time_steps, self.n_head, channels // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(batch, time_steps, channels))


class MLP(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.c_fc = nn.Linear(shape.n_embd, 4 * shape.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * shape.n_embd, shape.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd, bias=False)
        self.attn = CausalSelfAttention(shape)
        self.ln_2 = nn.LayerNorm(shape.n_embd, bias=False)
        self.mlp = MLP(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.wte = nn.Embedding(shape.vocab_size, shape.n_embd)
        self.wpe = nn.Embedding(shape.block_size, shape.n_embd)
        self.h = nn.ModuleList(Block(shape) for _ in range(shape.n_layer))
        self.ln_f = nn.LayerNorm(shape.n_embd, bias=False)
        self.lm_head = nn.Linear(shape.n_embd, shape.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * shape.n_layer))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def configure_optimizer(
    model: nn.Module, weight_decay: float, lr: float, betas: tuple[float, float], device: torch.device
) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device.type == "cuda")  # nanoGPT: fused on CUDA


def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix])
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y


@dataclass(frozen=True)
class Schedule:
    """nanoGPT's get_lr: linear warm-up, cosine decay to min_lr at lr_decay_iters."""

    lr: float
    min_lr: float
    warmup_iters: int
    lr_decay_iters: int

    def __call__(self, it: int) -> float:
        if it < self.warmup_iters:
            return self.lr * (it + 1) / (self.warmup_iters + 1)
        if it > self.lr_decay_iters:
            return self.min_lr
        decay_ratio = (it - self.warmup_iters) / (self.lr_decay_iters - self.warmup_iters)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) * (self.lr - self.min_lr)


def train_steps(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    data: np.ndarray,
    schedule: Schedule,
    first_step: int,
    steps: int,
    batch_size: int,
    grad_clip: float,
) -> float:
    """Train `steps` iterations from iteration `first_step`; returns their wall seconds."""
    model.train()
    device = model.wpe.weight.device
    block_size = model.wpe.num_embeddings
    # nanoGPT's mixed precision: bf16 autocast on CUDA, full precision on CPU.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    started = time.perf_counter()
    x, y = get_batch(data, batch_size, block_size, device)
    for it in range(first_step, first_step + steps):
        for group in optimizer.param_groups:
            group["lr"] = schedule(it)
        with autocast:
            _, loss = model(x, y)
        x, y = get_batch(data, batch_size, block_size, device)  # nanoGPT prefetches the next batch here
        loss.backward()
        if grad_clip != 0.0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # nanoGPT's logging: one host sync per step
    return time.perf_counter() - started
