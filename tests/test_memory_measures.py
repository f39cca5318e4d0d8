"""KV-cache and weight bytes against hand counts and against the tensors a built model really holds."""

import pytest
import torch
from hypothesis import given, settings

from conftest import decoder_configs
from objectives import count_parameters, describe, kv_cache_bytes, memory_measures, weights_bytes
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
