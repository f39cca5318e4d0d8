"""Turns a DecoderConfig into a torch.nn.Module, read top to bottom like nanoGPT's model.py.

Every module of a tower takes an optional DecodeState: during cached generation attention keeps its
keys and values there (a windowed layer the last W), and a causal conv (a conv mixer or reduction)
keeps its last k-1 inputs, so one token at a time gives the same logits as the full sequence. With
rope they also take the call's Rotary, which attention alone uses.
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


NORM_EPS = 1e-5  # every norm's epsilon: torch's LayerNorm default, and what the transformers exports declare


class RMSNorm(nn.RMSNorm):
    """Computed in float32 whatever the input's dtype, as transformers' Llama and LFM2 compute it (and a
    bf16 input under autocast would miss torch's fused kernel), returned in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def make_norm(kind: str, width: int, bias: bool) -> nn.Module:
    # RMSNorm has no bias (Llama, LFM2); `bias.blocks` decides it for LayerNorm only.
    return nn.LayerNorm(width, eps=NORM_EPS, bias=bias) if kind == "layernorm" else RMSNorm(width, eps=NORM_EPS)


class Rotary:
    """Rotary positions for one forward call: cos and sin of its positions, computed once per head
    dimension and shared by every attention layer (computed per layer they cost more than the turn).
    Channel i pairs with i + d/2 (Llama's rotate_half layout), turned by position × theta^(-2i/d); the
    angles are float32 whatever the input's dtype, as transformers computes them."""

    def __init__(self, positions: torch.Tensor, theta: float):
        self.positions, self.theta = positions, theta
        self.tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [b, h, t, d] turned by its positions."""
        head_dim = x.size(-1)
        if head_dim not in self.tables:
            exponents = torch.arange(0, head_dim, 2, device=x.device, dtype=torch.float32) / head_dim
            angles = self.positions.float()[:, None] * self.theta ** -exponents
            angles = torch.cat([angles, angles], dim=-1)
            self.tables[head_dim] = angles.cos(), angles.sin()
        cos, sin = (table.to(x.dtype) for table in self.tables[head_dim])
        first, second = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-second, first], dim=-1) * sin


def attention_mask(queries: int, keys: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Which keys each query sees, the queries being the last of the keys: earlier or itself, and with a
    window W only the last W of those."""
    distance = torch.arange(keys - queries, keys, device=device)[:, None] - torch.arange(keys, device=device)
    visible = distance >= 0
    return visible & (distance < window) if window is not None else visible


def with_history(module: nn.Module, x: torch.Tensor, state: DecodeState | None, history: int) -> torch.Tensor:
    """x [b, t, c] behind the module's last `history` inputs (zeros before the first token): what a causal
    conv of kernel history + 1 reads. With a state, those inputs are kept for the next call."""
    past = state.buffers.get(module) if state is not None else None
    if past is None:
        past = x.new_zeros(x.size(0), history, x.size(2))
    x = torch.cat([past, x], dim=1)
    if state is not None:
        state.buffers[module] = x[:, x.size(1) - history :]
    return x


class CausalSelfAttention(nn.Module):
    """Multi-head attention; fewer KV heads than query heads is grouped-query attention, which
    scaled_dot_product_attention computes (enable_gqa) without copying keys and values per query head.
    The cache holds keys and values at their own head count, after rope, the last `window` of them."""

    def __init__(self, width: int, layer: LayerConfig, bias: bool, dropout: float):
        super().__init__()
        self.n_head, self.n_kv_head, self.window = layer.n_head, layer.kv_heads, layer.window
        self.head_dim = width // layer.n_head
        self.qkv = nn.Linear(width, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)
        self.q_norm = RMSNorm(self.head_dim, eps=NORM_EPS) if layer.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, eps=NORM_EPS) if layer.qk_norm else None
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        kv_width = self.n_kv_head * self.head_dim
        q, k, v = self.qkv(x).split([x.size(-1), kv_width, kv_width], dim=-1)
        q = rearrange(q, "b t (h d) -> b h t d", h=self.n_head)
        k, v = (rearrange(z, "b t (h d) -> b h t d", h=self.n_kv_head) for z in (k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if state is not None:
            past = state.buffers.get(self)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            kept = slice(-self.window, None) if self.window is not None else slice(None)
            state.buffers[self] = (k[:, :, kept], v[:, :, kept])
        # Full causal attention without a cache takes the kernels' causal path; anything else a mask.
        causal_path = state is None and self.window is None
        mask = None if causal_path else attention_mask(q.size(2), k.size(2), self.window, x.device)
        y = F.scaled_dot_product_attention(
            q, k, v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
            enable_gqa=self.n_kv_head != self.n_head,
        )
        return self.resid_dropout(self.proj(rearrange(y, "b h t d -> b t (h d)")))


class GatedShortConv(nn.Module):
    """LFM2's mixer: in_proj splits into B, C, x; y = C ⊙ causal_depthwise_conv_k(B ⊙ x); out_proj.
    No KV cache: decoding keeps the conv's last k-1 inputs. The depthwise conv holds LFM2's weights
    ([width, 1, k]) but runs as one einsum over each token's window of k inputs, channels last: at d128
    on one CPU thread the mixer then takes 0.76-0.86 of the time it takes through Conv1d (docs/blocks.md)."""

    def __init__(self, width: int, layer: LayerConfig, bias: bool, dropout: float):
        super().__init__()
        self.in_proj = nn.Linear(width, 3 * width, bias=bias)
        self.conv = nn.Conv1d(width, width, layer.conv_kernel, groups=width, bias=bias)
        self.out_proj = nn.Linear(width, width, bias=bias)
        self.history = layer.conv_kernel - 1
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        b, c, x = self.in_proj(x).chunk(3, dim=-1)
        windows = with_history(self, b * x, state, self.history).unfold(1, self.history + 1, 1)  # [b, t, c, k]
        mixed = einsum(windows, self.conv.weight.squeeze(1), "b t c k, c k -> b t c")
        if self.conv.bias is not None:
            mixed = mixed + self.conv.bias
        return self.resid_dropout(self.out_proj(c * mixed))


class MLP(nn.Module):
    """GELU: proj(gelu(fc x)). SwiGLU: proj(silu(gate x) ⊙ fc x), Llama's gated MLP."""

    def __init__(self, width: int, layer: LayerConfig, bias: bool, dropout: float):
        super().__init__()
        hidden = mlp_hidden(width, layer.mlp_width_ratio)
        self.fc = nn.Linear(width, hidden, bias=bias)
        self.gate = nn.Linear(width, hidden, bias=bias) if layer.mlp == "swiglu" else None
        self.proj = nn.Linear(hidden, width, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.gelu(self.fc(x)) if self.gate is None else F.silu(self.gate(x)) * self.fc(x)
        return self.dropout(self.proj(hidden))


class Block(nn.Module):
    """`sequential`: x + mixer(norm1 x), then + mlp(norm2 x). `parallel`: x + mixer(norm x) + mlp(norm x).
    The mixer is attention (`attn`) or a gated short conv (`conv`)."""

    def __init__(self, width: int, layer: LayerConfig, config: DecoderConfig):
        super().__init__()
        bias, dropout = config.bias.blocks, config.dropout
        self.parallel = layer.layout == "parallel"
        self.ln_1 = make_norm(config.norm, width, bias)
        self.attn = CausalSelfAttention(width, layer, bias, dropout) if layer.mixer == "attention" else None
        self.conv = GatedShortConv(width, layer, bias, dropout) if layer.mixer == "conv" else None
        self.ln_2 = None if self.parallel else make_norm(config.norm, width, bias)
        self.mlp = MLP(width, layer, bias, dropout)

    @property
    def mixer(self) -> nn.Module:
        return self.attn if self.attn is not None else self.conv

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        if self.parallel:
            h = self.ln_1(x)
            return x + self.mixer(h, state, rotary) + self.mlp(h)
        x = x + self.mixer(self.ln_1(x), state, rotary)
        return x + self.mlp(self.ln_2(x))


class LinearReduction(nn.Module):
    def __init__(self, width: int, reduction: Reduction, bias: bool):
        super().__init__()
        self.linear = nn.Linear(width, reduction.width, bias=bias)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        return self.linear(x)


class CausalConvReduction(nn.Module):
    """Conv1d over time, padded on the left only, so position t sees inputs t-k+1 .. t."""

    def __init__(self, width: int, reduction: Reduction, bias: bool):
        super().__init__()
        self.conv = nn.Conv1d(width, reduction.width, reduction.kernel_size, bias=bias)
        self.history = reduction.kernel_size - 1

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        x = rearrange(with_history(self, x, state, self.history), "b t c -> b c t")
        return rearrange(self.conv(x), "b c t -> b t c")


REDUCTIONS = {"linear": LinearReduction, "conv": CausalConvReduction}


class Tower(nn.Module):
    """The layer list: blocks, each optionally followed by a width reduction."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        modules: list[nn.Module] = []
        for layer, width in zip(config.layers, config.widths):
            modules.append(Block(width, layer, config))
            if layer.reduction is not None:
                modules.append(REDUCTIONS[layer.reduction.kind](width, layer.reduction, config.bias.reductions))
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor, state: DecodeState | None = None,
                rotary: Rotary | None = None) -> torch.Tensor:
        for module in self.layers:
            x = module(x, state, rotary)
        return x


def embedding(count: int, width: int) -> nn.Embedding:
    """nn.Embedding; on the meta device (shapes only) without its own init, whose meta kernel loads
    torch._dynamo: 1.3 s of every `describe` and `train` start-up spent on values that are never read."""
    weight = torch.empty(count, width)
    return nn.Embedding(count, width, _weight=weight) if weight.is_meta else nn.Embedding(count, width)


class Decoder(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.tok_emb = embedding(config.vocab_size, d)
        self.pos_emb = embedding(config.block_size, d) if config.position == "learned" else None
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
        self.ln_f = make_norm(config.norm, config.final_width, config.bias.blocks)
        self.head = nn.Linear(config.final_width, config.vocab_size, bias=False)
        if config.tie_head:
            self.head.weight = self.tok_emb.weight
        if self.head.weight.is_meta:  # shapes only (for counting): meta tensors hold no values to initialise
            return
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2·depth), applied after every block exists
        # (the paper's code ran its init before building blocks, leaving them at PyTorch defaults).
        for name, param in self.named_parameters():
            if name.endswith(("attn.proj.weight", "conv.out_proj.weight", "mlp.proj.weight")):
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
        x = self.tok_emb(idx)
        if self.pos_emb is not None:  # rope turns queries and keys inside attention instead
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        rotary = Rotary(positions, self.config.rope_theta) if self.config.position == "rope" else None
        if self.tower_inputs is None:
            x = self.towers[0](x, state, rotary)
        else:
            entries = zip(self.tower_inputs, self.towers)
            outputs = torch.stack([tower(entry(x), state, rotary) for entry, tower in entries])
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
