"""Measures that need no training: parameter counts, forward FLOPs (fvcore, plus attention), memory.

FLOPs count matmul-type work only (linear, conv — the conv mixer's depthwise conv too —, attention's
QKᵀ and AV over min(W, T) keys per query: all T as dense attention computes them, the last W for a
window of W); norms, activations, rope, gates and softmax are left out. fvcore counts one multiply-add
as one flop; we report FLOPs = 2 × multiply-adds, per token at the config's context length.

Memory is counted from the config at `dtype_bytes` per element (float32: 4): the weights, the KV
cache per token of context, and what one sequence's decoding state holds at full context.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis, jit_handles

from search_space import DecoderConfig, LayerConfig, build_decoder
from search_space.model import Block, CausalConvReduction, CausalSelfAttention, LinearReduction, check_memory

# fvcore's defaults also count norms; we count matmul-type work only, so the handles are explicit.
_MATMUL_HANDLES: dict[str, Any] = {
    "aten::addmm": jit_handles.addmm_flop_jit,
    "aten::bmm": jit_handles.bmm_flop_jit,
    "aten::_convolution": jit_handles.conv_flop_jit,
    "aten::matmul": jit_handles.matmul_flop_jit,
    "aten::mm": jit_handles.matmul_flop_jit,
    "aten::linear": jit_handles.linear_flop_jit,
}
FLOAT32_BYTES = 4  # memory measures assume float32 weights and cache unless told otherwise
REAL_TRACE_LIMIT = 2**28  # parameters x context up to which FLOPs are traced on real memory (~0.5 GFLOP)


@dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int  # total minus the token- and position-embedding tables


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    width_in: int
    width_out: int
    heads: int | None
    params: int
    flops_per_token: int
    kv_heads: int | None = None  # attention: the key/value heads (fewer than `heads`: grouped-query)


@dataclass(frozen=True)
class Description:
    params: int
    non_embedding_params: int
    flops_per_token: int
    layers: list[LayerRow]
    kv_cache_bytes: int  # per token of context, float32
    weights_bytes: int  # float32
    decode_state_bytes: int  # one sequence at full context, float32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_parameters(model: nn.Module) -> ParamCount:
    total = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    embeddings = sum(table.weight.numel() for table in (model.tok_emb, model.pos_emb) if table is not None)
    return ParamCount(total=total, non_embedding=total - embeddings)


def kv_cache_bytes(config: DecoderConfig, dtype_bytes: int = FLOAT32_BYTES) -> int:
    """KV-cache bytes per token: every attention layer of every tower keeps one key and one value per
    KV head (a windowed layer until its window is full).

    A layer's head dimension is the residual width entering it over its heads, so layers after a
    reduction cost less, and fewer KV heads cost less; conv mixers and the conv reductions keep
    k-1 inputs, which do not grow with the context (`decode_state_bytes` counts them).
    """
    return config.towers * sum(2 * _kv_width(layer, width) * dtype_bytes for layer, width in _attention(config))


def decode_state_bytes(config: DecoderConfig, dtype_bytes: int = FLOAT32_BYTES) -> int:
    """What one sequence's decoding state holds at full context: each attention layer's keys and values
    over block_size tokens (the last W for a window of W), and the k-1 inputs each conv mixer or conv
    reduction keeps, in every tower."""
    elements = sum(2 * _kv_width(layer, width) * min(layer.window or config.block_size, config.block_size)
                   for layer, width in _attention(config))
    for layer, width in zip(config.layers, config.widths):
        if layer.mixer == "conv":
            elements += (layer.conv_kernel - 1) * width
        if layer.reduction is not None and layer.reduction.kind == "conv":
            elements += (layer.reduction.kernel_size - 1) * width
    return config.towers * elements * dtype_bytes


def _attention(config: DecoderConfig) -> list[tuple[LayerConfig, int]]:
    """(layer, the width entering it) for every attention layer of one tower."""
    return [(layer, width) for layer, width in zip(config.layers, config.widths) if layer.mixer == "attention"]


def _kv_width(layer: LayerConfig, width: int) -> int:
    return layer.kv_heads * (width // layer.n_head)


def weights_bytes(config: DecoderConfig, dtype_bytes: int = FLOAT32_BYTES) -> int:
    return count_parameters(build_decoder(config, device="meta")).total * dtype_bytes


def memory_measures(config: DecoderConfig, dtype_bytes: int = FLOAT32_BYTES) -> dict[str, int]:
    """The memory measures, without the FLOP count's trace: kv_cache_bytes, weights_bytes, decode_state_bytes."""
    return {"kv_cache_bytes": kv_cache_bytes(config, dtype_bytes), "weights_bytes": weights_bytes(config, dtype_bytes),
            "decode_state_bytes": decode_state_bytes(config, dtype_bytes)}


def _sdpa_multiply_adds(inputs: list[Any], outputs: list[Any]) -> int:
    """QKᵀ and AV of scaled_dot_product_attention: 2 · B·H·Tq·Tk·head_dim multiply-adds."""
    q, k, v = (jit_handles.get_shape(value) for value in inputs[:3])
    *batch, t_q, head_dim = q
    t_k, v_dim = k[-2], v[-1]
    return math.prod(batch) * t_q * t_k * (head_dim + v_dim)


def _einsum_multiply_adds(inputs: list[Any], outputs: list[Any]) -> int:
    """A two-operand einsum (the tower mix, the conv mixer's window): one multiply-add per combination of
    its indices. fvcore's own handle asks numpy's path optimiser, whose count is off by rounding."""
    equation = inputs[0].toIValue().replace(" ", "")
    operands, _ = equation.split("->")
    sizes = {}
    for letters, value in zip(operands.split(","), inputs[1].node().inputs()):
        sizes.update(zip(letters, jit_handles.get_shape(value)))
    return math.prod(sizes.values())


def _model_for_counting(config: DecoderConfig) -> nn.Module:
    # Shapes are all we need, so the meta device makes even 77M-parameter models instant to build.
    # But a meta forward runs Python decompositions, ~5x slower to trace than a real forward of a
    # search-sized model (0.4 s against 0.08 s at d160 x 6 layers): small models, and configs with
    # a conv (reduction or mixer: Conv1d's meta kernel cannot be traced), are built for real. Not by
    # to_empty from meta: its meta path loads sympy (0.6 s of every start-up). The real build's init
    # draws from a forked generator, so counting leaves the caller's random stream as it was.
    model = build_decoder(config, device="meta")
    small = sum(p.numel() for p in model.parameters()) * config.block_size <= REAL_TRACE_LIMIT
    if small or any(isinstance(module, nn.Conv1d) for module in model.modules()):
        with torch.random.fork_rng(devices=[]):
            model = build_decoder(config)
    return model


def flop_analysis(config: DecoderConfig) -> tuple[nn.Module, FlopCountAnalysis]:
    check_memory(config)  # the count runs a traced forward on arrays as large as the model's activations
    model = _model_for_counting(config).eval()
    device = next(model.parameters()).device
    idx = torch.zeros(1, config.block_size, dtype=torch.long, device=device)
    analysis = FlopCountAnalysis(model, (idx,))
    analysis.clear_op_handles()
    analysis.set_op_handle(**_MATMUL_HANDLES, **{"aten::scaled_dot_product_attention": _sdpa_multiply_adds,
                                                  "aten::einsum": _einsum_multiply_adds})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    return model, analysis


def count_flops(config: DecoderConfig) -> int:
    """Forward FLOPs per token (2 × multiply-adds) at the config's full context length."""
    model, analysis = flop_analysis(config)
    return _per_token(analysis.total() - _beyond_windows(model, config.block_size), config)


def _beyond_windows(module: nn.Module, block_size: int) -> int:
    """The multiply-adds the trace counts for keys outside the attention windows within `module`: the
    kernel scores all T keys under a mask, the count takes the W a window keeps (batch 1)."""
    return sum(a.n_head * block_size * (block_size - a.window) * 2 * a.head_dim for a in module.modules()
               if isinstance(a, CausalSelfAttention) and a.window is not None)


def _per_token(multiply_adds: float, config: DecoderConfig) -> int:
    return int(2 * multiply_adds) // config.block_size  # fvcore's einsum handle returns floats


def describe(config: DecoderConfig) -> Description:
    """Per-layer rows (kind, widths, heads, params, FLOPs per token) and totals."""
    model, analysis = flop_analysis(config)
    by_module = analysis.by_module()
    rows = []
    for name, module_name, module in _described_modules(model):
        params = 0 if name == "head (tied)" else sum(p.numel() for p in module.parameters())
        flops = _per_token(by_module.get(module_name, 0) - _beyond_windows(module, config.block_size), config)
        rows.append(LayerRow(name=name, params=params, flops_per_token=flops, **_kind(module)))
    if model.tower_mix is not None:
        width = config.final_width
        # The weighted sum runs in Decoder.forward itself: whatever no child module accounts for.
        children = sum(by_module.get(name, 0) for name, _ in model.named_children())
        mix_flops = _per_token(analysis.total() - children, config)
        rows.insert(-2, LayerRow("tower mix", "mix", width, width, None, model.tower_mix.numel(), mix_flops))
    counts = count_parameters(model)
    return Description(
        params=counts.total,
        non_embedding_params=counts.non_embedding,
        flops_per_token=_per_token(analysis.total() - _beyond_windows(model, config.block_size), config),
        layers=rows,
        kv_cache_bytes=kv_cache_bytes(config),
        weights_bytes=counts.total * FLOAT32_BYTES,
        decode_state_bytes=decode_state_bytes(config),
    )


def _described_modules(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(row name, fvcore module name, module) in forward order; names follow the config's layers."""
    rows = [("token embedding", "tok_emb", model.tok_emb)]
    if model.pos_emb is not None:
        rows.append(("position embedding", "pos_emb", model.pos_emb))
    for t, tower in enumerate(model.towers):
        prefix = f"tower {t} " if len(model.towers) > 1 else ""
        if model.tower_inputs is not None:
            rows.append((f"{prefix}input", f"tower_inputs.{t}", model.tower_inputs[t]))
        layer = -1
        for i, module in enumerate(tower.layers):
            layer += isinstance(module, Block)
            suffix = "" if isinstance(module, Block) else " reduce"
            rows.append((f"{prefix}layer {layer}{suffix}", f"towers.{t}.layers.{i}", module))
    rows.append(("final norm", "ln_f", model.ln_f))
    # A tied head shares the embedding's weight: its FLOPs count, its parameters were counted already.
    tied = model.head.weight is model.tok_emb.weight
    rows.append(("head (tied)" if tied else "head", "head", model.head))
    return rows


def _kind(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, Block):
        width = module.ln_1.normalized_shape[0]
        attn, conv = module.attn, module.conv
        kind = ["parallel" if module.parallel else "sequential"]
        kind += [f"conv k{conv.history + 1}"] if conv is not None else []
        kind += [f"window {attn.window}"] if attn is not None and attn.window is not None else []
        kind += ["qk-norm"] if attn is not None and attn.q_norm is not None else []
        kind += ["swiglu"] if module.mlp.gate is not None else []
        heads = {"heads": attn.n_head, "kv_heads": attn.n_kv_head} if attn is not None else {"heads": None}
        return {"kind": " ".join(kind), "width_in": width, "width_out": width, **heads}
    if isinstance(module, LinearReduction):
        layer = module.linear
        return {"kind": "linear", "width_in": layer.in_features, "width_out": layer.out_features, "heads": None}
    if isinstance(module, CausalConvReduction):
        conv = module.conv
        return {"kind": f"conv k{conv.kernel_size[0]}", "width_in": conv.in_channels,
                "width_out": conv.out_channels, "heads": None}
    if isinstance(module, nn.Embedding):
        return {"kind": "embedding", "width_in": module.num_embeddings, "width_out": module.embedding_dim, "heads": None}
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        width = module.normalized_shape[0]
        return {"kind": type(module).__name__.lower(), "width_in": width, "width_out": width, "heads": None}
    assert isinstance(module, nn.Linear)
    return {"kind": "linear", "width_in": module.in_features, "width_out": module.out_features, "heads": None}
