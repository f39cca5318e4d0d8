"""KV-cache, decoding-state and weight bytes against hand counts and against the tensors a built model
really holds."""

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings

from conftest import decoder_configs
from objectives import count_parameters, decode_state_bytes, describe, kv_cache_bytes, memory_measures, weights_bytes
from search_space import DecoderConfig, DecodeState, LayerConfig, Reduction, build_decoder
from search_space.model import CausalSelfAttention


def cached_kv_bytes_per_token(config: DecoderConfig, dtype: torch.dtype = torch.float32) -> float:
    """Prefill part of the context, decode one token, then weigh the keys and values attention kept."""
    model = build_decoder(config).to(dtype).eval()
    state = DecodeState()
    idx = torch.randint(0, config.vocab_size, (1, config.block_size))
    prefill = max(1, config.block_size // 2)
    with torch.inference_mode():
        model(idx[:, :prefill], state)
        model(idx[:, prefill : prefill + 1], state)
    cached = sum(
        sum(tensor.nbytes for tensor in keys_values)
        for module, keys_values in state.buffers.items()
        if isinstance(module, CausalSelfAttention)
    )
    return cached / state.position


def test_hand_count_narrowed_layers_cost_less():
    config = DecoderConfig(
        vocab_size=50, block_size=32, d_model=64, towers=2,
        layers=(
            LayerConfig(n_head=4, reduction=Reduction("linear", 32)),
            LayerConfig(n_head=4, reduction=Reduction("conv", 16, kernel_size=3)),
            LayerConfig(n_head=2),
        ),
    )
    # Blocks at widths 64, 32, 16: key + value of each, float32, in both towers.
    assert kv_cache_bytes(config) == 2 * (2 * 64 + 2 * 32 + 2 * 16) * 4
    assert kv_cache_bytes(config, dtype_bytes=2) == kv_cache_bytes(config) // 2


def test_formula_matches_the_decode_cache_of_a_model_mixing_every_kind(tiny_config):
    assert cached_kv_bytes_per_token(tiny_config) == kv_cache_bytes(tiny_config)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtype_bytes_scale_the_cache_like_the_tensors(tiny_config, dtype):
    element_size = torch.empty(0, dtype=dtype).element_size()
    assert cached_kv_bytes_per_token(tiny_config, dtype) == kv_cache_bytes(tiny_config, dtype_bytes=element_size)


@settings(max_examples=15, deadline=None)
@given(decoder_configs())
def test_formula_matches_the_decode_cache_on_drawn_configs(config):
    assert cached_kv_bytes_per_token(config) == kv_cache_bytes(config)


def test_weights_bytes_are_the_stored_parameters(tiny_config):
    model = build_decoder(tiny_config)
    stored = sum(p.nbytes for p in model.parameters())
    assert weights_bytes(tiny_config) == stored == count_parameters(model).total * 4
    assert weights_bytes(tiny_config, dtype_bytes=2) == stored // 2


def test_a_tied_head_is_weighed_once():
    config = DecoderConfig(vocab_size=40, block_size=8, d_model=16, layers=(LayerConfig(n_head=2),))
    untied, tied = weights_bytes(config), weights_bytes(config.replace(tie_head=True))
    assert untied - tied == 40 * 16 * 4


def test_describe_reports_the_memory_measures(tiny_config):
    description = describe(tiny_config)
    assert memory_measures(tiny_config) == {
        "kv_cache_bytes": description.kv_cache_bytes,
        "weights_bytes": description.weights_bytes,
        "decode_state_bytes": description.decode_state_bytes,
    }
    assert description.weights_bytes == description.params * 4
    assert description.to_dict()["kv_cache_bytes"] == kv_cache_bytes(tiny_config)


# --- one sequence's decoding state -----------------------------------------------------------------------


def held_state_bytes(config: DecoderConfig) -> int:
    """Decode a whole context (half as a prefill, then a token at a time) and weigh everything the state holds."""
    model = build_decoder(config).eval()
    state = DecodeState()
    idx = torch.randint(0, config.vocab_size, (1, config.block_size))
    prefill = max(1, config.block_size // 2)
    with torch.inference_mode():
        model(idx[:, :prefill], state)
        for t in range(prefill, config.block_size):
            model(idx[:, t: t + 1], state)
    buffers = [b for held in state.buffers.values() for b in (held if isinstance(held, tuple) else (held,))]
    return sum(buffer.nbytes for buffer in buffers)


def test_decode_state_hand_count(modern_config):
    # Per tower, in elements: a 3-token window over 2 KV heads of dim 4 (keys and values), two inputs of a
    # k3 conv mixer at width 16, two of the k3 conv reduction, 12 tokens of 1 KV head of dim 4, one input
    # of the k2 conv mixer at width 8; the linear reduction keeps nothing.
    per_tower = 2 * 3 * 2 * 4 + 2 * 16 + 2 * 16 + 2 * 12 * 1 * 4 + 1 * 8
    assert decode_state_bytes(modern_config) == 2 * per_tower * 4
    assert decode_state_bytes(modern_config, dtype_bytes=2) == 2 * per_tower * 2
    assert kv_cache_bytes(modern_config) == 2 * (2 * 2 * 4 + 2 * 1 * 4) * 4  # a token: K and V of the KV heads


def test_decode_state_of_a_paper_model_is_its_kv_cache_at_full_context(tiny_config):
    # tiny_config's conv reduction (k3, width 16) keeps two inputs per tower on top of the cache.
    assert decode_state_bytes(tiny_config) == kv_cache_bytes(tiny_config) * tiny_config.block_size + 2 * 2 * 16 * 4


def test_the_decode_state_formula_is_what_decoding_holds(modern_config, tiny_config):
    assert held_state_bytes(modern_config) == decode_state_bytes(modern_config)
    assert held_state_bytes(tiny_config) == decode_state_bytes(tiny_config)


@settings(max_examples=15, deadline=None)
@given(decoder_configs(modern=True))
def test_the_decode_state_formula_is_what_decoding_holds_on_drawn_configs(config):
    assert held_state_bytes(config) == decode_state_bytes(config)


@settings(max_examples=10, deadline=None)
@given(decoder_configs(modern=True))
def test_kv_heads_set_the_cache_per_token_on_drawn_configs(config):
    unwindowed = config.replace(layers=tuple(replace(layer, window=None) for layer in config.layers))
    assert cached_kv_bytes_per_token(unwindowed) == kv_cache_bytes(unwindowed) == kv_cache_bytes(config)
