"""FLOPs (2 × multiply-adds per token at full context) against hand counts, layer kind by layer kind, and
against torch's FlopCounterMode."""

from dataclasses import replace

import pytest
import torch

from objectives import count_flops, describe
from search_space import DecoderConfig, LayerConfig, Reduction, build_decoder, preset


def block_flops(width: int, mlp_ratio: float, T: int) -> int:
    # qkv + proj + fc + proj multiply-adds per token, plus QKᵀ and AV over all T keys.
    return 2 * (4 * width**2 + 2 * int(mlp_ratio * width) * width + 2 * T * width)


@pytest.mark.parametrize("shape", [
    dict(vocab_size=50304, block_size=1024, n_layer=8, n_head=8, d_model=512),
    dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128),
    dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, d_model=384),
])
def test_gpt_preset_matches_the_analytic_count_within_one_percent(shape):
    L, d, T, V = shape["n_layer"], shape["d_model"], shape["block_size"], shape["vocab_size"]
    analytic = 2 * (L * (12 * d * d + 2 * T * d) + d * V)
    assert count_flops(preset("gpt", **shape)) == pytest.approx(analytic, rel=0.01)


def rows_by_kind(config):
    rows = {}
    for row in describe(config).layers:
        rows.setdefault(row.kind, []).append(row)
    return rows


def test_each_layer_kind_matches_its_hand_count():
    T, V = 32, 50
    config = DecoderConfig(
        vocab_size=V, block_size=T, d_model=64,
        layers=(
            LayerConfig(layout="parallel", n_head=4, mlp_ratio=2),
            LayerConfig(n_head=4, reduction=Reduction("linear", 32)),
            LayerConfig(n_head=4, mlp_ratio=3, reduction=Reduction("conv", 16, kernel_size=3)),
            LayerConfig(n_head=2),
        ),
    )
    rows = rows_by_kind(config)
    assert rows["parallel"][0].flops_per_token == block_flops(64, 2, T)
    assert [r.flops_per_token for r in rows["sequential"]] == [
        block_flops(64, 4, T), block_flops(32, 3, T), block_flops(16, 4, T)]
    assert rows["linear"][0].flops_per_token == 2 * 64 * 32
    assert rows["conv k3"][0].flops_per_token == 2 * 3 * 32 * 16
    assert rows["linear"][1].flops_per_token == 2 * 16 * V  # the head at the final width
    assert rows["layernorm"][0].flops_per_token == 0  # elementwise work is left out
    description = describe(config)
    assert description.flops_per_token == sum(r.flops_per_token for r in description.layers)


def test_towers_count_their_inputs_every_tower_and_the_mix():
    T, V, d, P = 16, 40, 32, 3
    config = DecoderConfig(vocab_size=V, block_size=T, d_model=d, towers=P,
                           layers=(LayerConfig(n_head=4), LayerConfig(n_head=4, reduction=Reduction("linear", 16))))
    tower = 2 * block_flops(d, 4, T) + 2 * d * 16
    tower_input = 2 * d * d
    mix = 2 * P * 16  # the weighted sum of P tower outputs at width 16
    head = 2 * 16 * V
    assert count_flops(config) == P * (tower_input + tower) + mix + head
    rows = {row.name: row for row in describe(config).layers}
    assert rows["tower mix"].flops_per_token == mix and rows["tower mix"].params == P - 1
    assert rows["tower 2 input"].flops_per_token == tower_input
    assert rows["tower 1 layer 1 reduce"].flops_per_token == 2 * d * 16
    assert sum(row.flops_per_token for row in rows.values()) == count_flops(config)


def test_conv_kernel_size_scales_the_reduction_cost():
    def conv_flops(kernel):
        config = DecoderConfig(vocab_size=10, block_size=8, d_model=16,
                               layers=(LayerConfig(n_head=2, reduction=Reduction("conv", 8, kernel)),))
        return count_flops(config)
    assert conv_flops(5) - conv_flops(1) == 2 * 4 * 16 * 8


def test_paper_presets_are_counted_without_allocating_weights():
    # 77M-parameter models are traced on the meta device; lgpt's narrowing saves FLOPs as well as params.
    gpt, lgpt = describe(preset("gpt")), describe(preset("lgpt"))
    assert gpt.params == 77_210_112 and lgpt.params == 36_423_936
    assert lgpt.flops_per_token < gpt.flops_per_token / 4
    assert describe(preset("cgpt")).flops_per_token == lgpt.flops_per_token


# --- today's blocks ------------------------------------------------------------------------------------


def attention_flops(width: int, heads: int, kv_heads: int, keys: int) -> int:
    """Per token: the q, k, v projections (K and V at the KV heads' width) and the output projection,
    then QKᵀ and AV over `keys` keys for every query head."""
    head_dim = width // heads
    return 2 * (width * (heads + 2 * kv_heads) * head_dim + width * width + 2 * heads * head_dim * keys)


def mlp_flops(width: int, ratio: float, swiglu: bool) -> int:
    hidden = round(width * ratio * 2 / 3) if swiglu else round(width * ratio)
    return 2 * (3 if swiglu else 2) * width * hidden


def conv_mixer_flops(width: int, kernel: int) -> int:
    return 2 * (3 * width * width + kernel * width + width * width)  # in_proj, depthwise conv, out_proj


def test_each_new_block_matches_its_hand_count():
    T, V = 32, 50
    config = DecoderConfig(
        vocab_size=V, block_size=T, d_model=64, position="rope", norm="rmsnorm", tie_head=True,
        layers=(
            LayerConfig(n_head=8, n_kv_head=2, window=8, qk_norm=True),
            LayerConfig(mixer="conv", conv_kernel=4, mlp="swiglu", mlp_ratio=3),
            LayerConfig(layout="parallel", n_head=4, n_kv_head=1, mlp="swiglu"),
            LayerConfig(mixer="conv", layout="parallel", reduction=Reduction("conv", 32, 3)),
            LayerConfig(n_head=4, window=31, reduction=Reduction("linear", 64)),
        ),
    )
    rows = [row for row in describe(config).layers if row.name.startswith("layer")]
    assert [row.flops_per_token for row in rows] == [
        attention_flops(64, 8, 2, keys=8) + mlp_flops(64, 4, swiglu=False),
        conv_mixer_flops(64, 4) + mlp_flops(64, 3, swiglu=True),
        attention_flops(64, 4, 1, keys=T) + mlp_flops(64, 4, swiglu=True),
        conv_mixer_flops(64, 3) + mlp_flops(64, 4, swiglu=False),
        2 * 3 * 64 * 32,  # the conv reduction after it
        attention_flops(32, 4, 4, keys=31) + mlp_flops(32, 4, swiglu=False),
        2 * 32 * 64,
    ]
    assert count_flops(config) == sum(row.flops_per_token for row in rows) + 2 * 64 * V  # and the tied head


def flop_counter_per_token(config: DecoderConfig) -> float:
    """torch's own count of one forward: under the math kernel attention is matmuls it sees (keys and
    values of grouped heads expanded, every key scored even outside a window)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = build_decoder(config).eval()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, config.block_size, dtype=torch.long))
    return counter.get_total_flops() / config.block_size


@pytest.mark.parametrize("name", ["llama", "lfm2", "gpt", "cgpt"])
def test_torch_flop_counter_agrees_on_the_presets(name):
    config = preset(name, vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)
    assert count_flops(config) == flop_counter_per_token(config)


def test_torch_flop_counter_agrees_but_for_the_keys_a_window_hides(modern_config):
    T = modern_config.block_size
    hidden_keys = 2 * 2 * (4 * 4) * (T - 3) * 2  # towers, FLOPs a multiply-add, heads x head_dim, keys, QKᵀ and AV
    assert flop_counter_per_token(modern_config) == count_flops(modern_config) + hidden_keys
    unwindowed = modern_config.replace(layers=(replace(modern_config.layers[0], window=None),
                                               *modern_config.layers[1:]))
    assert flop_counter_per_token(unwindowed) == count_flops(unwindowed)


@pytest.mark.parametrize("name", ["gpt", "cgpt", "lfm2"])  # built for real to be counted (small, or a conv)
def test_counting_leaves_the_random_stream_as_it_was(name: str) -> None:
    # A trial counts its FLOPs before it trains: drawing from the caller's generator would change its weights.
    torch.manual_seed(0)
    count_flops(preset(name, vocab_size=17, block_size=16, n_layer=2, n_head=2, d_model=32))
    after_counting = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_counting, torch.rand(3))
