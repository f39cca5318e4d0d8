"""Today's blocks in the model: each is causal, decodes with a cache equal to the full forward, and
computes what it promises (windows, grouped-query heads, rope, qk-norm, RMSNorm, SwiGLU, gated short
convs), alone and with the layouts, reductions, towers, tied head, dropout and bf16 autocast."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from conftest import decoder_configs
from objectives import count_parameters
from search_space import DecoderConfig, DecodeState, LayerConfig, Reduction, build_decoder
from search_space.config import mlp_hidden
from search_space.model import CausalSelfAttention, GatedShortConv, Rotary
from test_model import assert_causal

BLOCKS = {
    "window": LayerConfig(n_head=2, window=3),
    "grouped-query": LayerConfig(n_head=4, n_kv_head=2),
    "multi-query": LayerConfig(n_head=4, n_kv_head=1),
    "qk-norm": LayerConfig(n_head=2, qk_norm=True),
    "swiglu": LayerConfig(n_head=2, mlp="swiglu"),
    "conv mixer": LayerConfig(mixer="conv"),
    "conv mixer k1": LayerConfig(mixer="conv", conv_kernel=1),
    "parallel conv mixer": LayerConfig(layout="parallel", mixer="conv", conv_kernel=4),
    "conv mixer, reduction": LayerConfig(mixer="conv", reduction=Reduction("conv", 8, 3)),
}
MODEL_KEYS = {"gpt-2": {}, "rope": {"position": "rope"}, "rmsnorm": {"norm": "rmsnorm"},
              "rope, rmsnorm, tied": {"position": "rope", "norm": "rmsnorm", "tie_head": True}}


def config_of(layer: LayerConfig, towers: int = 1, **model_keys) -> DecoderConfig:
    return DecoderConfig(vocab_size=11, block_size=10, d_model=16, layers=(layer, LayerConfig(n_head=2)),
                         towers=towers, **model_keys)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("towers", [1, 2])
def test_every_block_is_causal(block, towers):
    assert_causal(config_of(BLOCKS[block], towers, position="rope", norm="rmsnorm"))


@pytest.mark.parametrize("keys", MODEL_KEYS)
def test_the_model_keys_keep_the_decoder_causal(keys):
    assert_causal(config_of(LayerConfig(n_head=2), **MODEL_KEYS[keys]))


def decode_in_pieces(model, idx: torch.Tensor, prefix: int) -> tuple[torch.Tensor, DecodeState]:
    state = DecodeState()
    pieces = [model(idx[:, :prefix], state)]
    pieces += [model(idx[:, t: t + 1], state) for t in range(prefix, idx.size(1))]
    return torch.cat(pieces, dim=1), state


@settings(max_examples=25, deadline=None)
@given(decoder_configs(max_layers=3, modern=True))
def test_cached_decoding_matches_the_full_forward_with_every_block(config):
    """Rope positions continue across calls and windows drop old keys: one token at a time is the whole."""
    torch.manual_seed(0)
    model = build_decoder(config).eval()
    idx = torch.randint(config.vocab_size, (2, config.block_size))
    with torch.no_grad():
        pieces, state = decode_in_pieces(model, idx, config.block_size // 2)
        torch.testing.assert_close(pieces, model(idx), atol=1e-5, rtol=1e-4)
    assert state.position == config.block_size


@settings(max_examples=25, deadline=None)
@given(decoder_configs(max_layers=3, modern=True))
def test_drawn_configs_with_every_block_are_causal(config):
    assert_causal(config)


def one_layer(layer: LayerConfig, block_size: int = 12, **model_keys) -> torch.nn.Module:
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=11, block_size=block_size, d_model=16, layers=(layer,), **model_keys)
    return build_decoder(config).eval()


def changed_positions(model, idx: torch.Tensor, at: int) -> list[int]:
    """The positions whose logits move when token `at` changes."""
    moved = idx.clone()
    moved[:, at] = (idx[:, at] + 1) % 11
    with torch.no_grad():
        return ((model(idx) - model(moved)).abs().amax(dim=(0, 2)) > 1e-6).nonzero().flatten().tolist()


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_a_window_of_w_sees_the_last_w_tokens_itself_included(position):
    idx = torch.randint(11, (1, 12))
    model = one_layer(LayerConfig(n_head=2, window=3), position=position)
    assert changed_positions(model, idx, 4) == [4, 5, 6]
    full = one_layer(LayerConfig(n_head=2), position=position)
    assert changed_positions(full, idx, 4) == list(range(4, 12))


def test_a_windowed_layer_caches_at_most_w_keys_and_still_decodes_exactly():
    model = one_layer(LayerConfig(n_head=4, n_kv_head=2, window=3), position="rope")
    idx = torch.randint(11, (1, 12))
    with torch.no_grad():
        pieces, state = decode_in_pieces(model, idx, 2)
        torch.testing.assert_close(pieces, model(idx), atol=1e-5, rtol=1e-4)
        keys, values = state.buffers[model.towers[0].layers[0].attn]
        assert keys.shape == values.shape == (1, 2, 3, 4)  # W keys of the KV heads, not T of the query heads
        long_prefix, _ = decode_in_pieces(model, idx, 9)  # a prefill longer than the window
        torch.testing.assert_close(long_prefix, model(idx), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_heads_share_keys_and_values_without_copies(kv_heads):
    """Query head i reads KV head i // (heads / kv_heads); keys and values are projected, cached and
    passed to attention at their own head count."""
    model = one_layer(LayerConfig(n_head=4, n_kv_head=kv_heads))
    attn = model.towers[0].layers[0].attn
    assert attn.qkv.out_features == (4 + 2 * kv_heads) * 4
    x = torch.randn(2, 12, 16)
    q, k, v = attn.qkv(x).split([16, 4 * kv_heads, 4 * kv_heads], dim=-1)
    heads = lambda t, h: t.view(2, 12, h, 4).transpose(1, 2)  # noqa: E731
    group = 4 // kv_heads
    k, v = (heads(t, kv_heads).repeat_interleave(group, dim=1) for t in (k, v))  # the copy the model avoids
    expected = attn.proj(F.scaled_dot_product_attention(heads(q, 4), k, v, is_causal=True)
                         .transpose(1, 2).reshape(2, 12, 16))
    torch.testing.assert_close(attn(x), expected, atol=1e-6, rtol=1e-5)
    state = DecodeState()
    attn(x, state)
    assert state.buffers[attn][0].shape == (2, kv_heads, 12, 4)


def test_rope_scores_depend_on_relative_positions_only():
    """Rope turns query and key by their positions: q·k is the same wherever the pair sits."""
    torch.manual_seed(0)
    assert one_layer(LayerConfig(n_head=2), position="rope").pos_emb is None
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def turned(x: torch.Tensor, at: int, theta: float = 10000.0) -> torch.Tensor:
        return Rotary(torch.tensor([at]), theta)(x)

    def score(query_at: int, key_at: int, theta: float = 10000.0) -> float:
        return float((turned(q, query_at, theta) * turned(k, key_at, theta)).sum())

    assert score(5, 2) == pytest.approx(score(9, 6), abs=1e-5) == pytest.approx(score(3, 0), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert score(5, 2) != pytest.approx(score(5, 2, theta=100.0), abs=1e-3)
    assert torch.equal(turned(q, 0), q)  # position 0 is not turned
    # the pairs are channels (i, i + d/2): turning by position 1 mixes channel 0 with channel 4 only
    basis = torch.zeros(1, 1, 1, 8)
    basis[..., 0] = 1
    assert turned(basis, 1).flatten().nonzero().flatten().tolist() == [0, 4]


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    for qk_norm, blind in ((True, True), (False, False)):
        model = one_layer(LayerConfig(n_head=2, qk_norm=qk_norm))
        attn = model.towers[0].layers[0].attn
        x = torch.randn(1, 12, 16)
        with torch.no_grad():
            before = attn(x)
            attn.qkv.weight[:32] *= 10  # the query and key rows
            assert torch.allclose(attn(x), before, atol=1e-4) == blind
    assert attn.q_norm is None and attn.k_norm is None
    normed = one_layer(LayerConfig(n_head=2, qk_norm=True)).towers[0].layers[0].attn
    assert normed.q_norm.weight.shape == normed.k_norm.weight.shape == (8,)  # one per head channel, shared by heads


def test_rmsnorm_normalises_by_the_root_mean_square_with_a_gain():
    model = one_layer(LayerConfig(n_head=2), norm="rmsnorm")
    norm = model.ln_f
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        x = torch.randn(3, 16)
        expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
        torch.testing.assert_close(norm(x), expected)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters() if "ln_" in name)


@pytest.mark.parametrize("ratio", [4, 3, 1.5])
def test_swiglu_takes_two_thirds_of_the_hidden_width_in_three_matrices(ratio):
    model = one_layer(LayerConfig(n_head=2, mlp="swiglu", mlp_ratio=ratio))
    mlp = model.towers[0].layers[0].mlp
    hidden = round(16 * ratio * 2 / 3)
    assert hidden == mlp_hidden(16, ratio * 2 / 3) and mlp.fc.out_features == mlp.gate.out_features == hidden
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(mlp(x), mlp.proj(F.silu(mlp.gate(x)) * mlp.fc(x)))
    gelu = one_layer(LayerConfig(n_head=2, mlp_ratio=ratio)).towers[0].layers[0].mlp
    assert 3 * 16 * hidden == pytest.approx(2 * 16 * gelu.fc.out_features, rel=0.05)  # about equal parameters


def test_the_conv_mixer_is_lfm2s_gated_short_convolution():
    model = one_layer(LayerConfig(mixer="conv", conv_kernel=3))
    block = model.towers[0].layers[0]
    conv = block.conv
    assert block.attn is None and isinstance(conv, GatedShortConv) and conv.conv.groups == 16
    x = torch.randn(2, 12, 16)
    b, c, h = conv.in_proj(x).chunk(3, dim=-1)
    gated = (b * h).transpose(1, 2)
    mixed = F.conv1d(F.pad(gated, (2, 0)), conv.conv.weight, groups=16).transpose(1, 2)  # depthwise, causal
    torch.testing.assert_close(conv(x), conv.out_proj(c * mixed), atol=1e-6, rtol=1e-5)
    idx = torch.randint(11, (1, 12))
    assert changed_positions(model, idx, 4) == [4, 5, 6]  # kernel 3: a token reaches the next two


def test_conv_mixers_keep_k_minus_1_inputs_while_decoding():
    model = one_layer(LayerConfig(mixer="conv", conv_kernel=4))
    with torch.no_grad():
        _, state = decode_in_pieces(model, torch.randint(11, (2, 12)), 5)
    (kept,) = [buffer for module, buffer in state.buffers.items() if isinstance(module, GatedShortConv)]
    assert kept.shape == (2, 3, 16)  # the last 3 inputs at width 16


def test_parameters_count_each_block_exactly():
    d, vocab, gelu, norms = 16, 11, 2 * 16 * 64, 2 * 16

    def layer_params(layer: LayerConfig, **keys) -> int:
        return count_parameters(one_layer(layer, **keys)).non_embedding - d - vocab * d  # less final norm, head

    assert layer_params(LayerConfig(n_head=2)) == 4 * d * d + gelu + norms
    assert layer_params(LayerConfig(n_head=4, n_kv_head=1)) == d * (d + 2 * 4) + d * d + gelu + norms
    assert layer_params(LayerConfig(n_head=4, qk_norm=True)) == 4 * d * d + 2 * 4 + gelu + norms
    assert layer_params(LayerConfig(n_head=2, mlp="swiglu")) == 4 * d * d + 3 * d * round(d * 4 * 2 / 3) + norms
    assert layer_params(LayerConfig(mixer="conv", conv_kernel=5)) == 3 * d * d + 5 * d + d * d + gelu + norms
    assert layer_params(LayerConfig(n_head=2), norm="rmsnorm") == layer_params(LayerConfig(n_head=2))
    rope = count_parameters(one_layer(LayerConfig(n_head=2), position="rope"))
    assert rope.total == rope.non_embedding + vocab * d  # no position table


def test_dropout_reaches_every_new_block_in_training_only(modern_config):
    torch.manual_seed(0)
    model = build_decoder(modern_config.replace(dropout=0.3))
    idx = torch.randint(17, (2, 12))
    assert not torch.allclose(model(idx), model(idx))
    model.eval()
    torch.testing.assert_close(model(idx), model(idx))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0.3 for m in dropouts)
    assert all(m.dropout == 0.3 for m in model.modules() if isinstance(m, CausalSelfAttention))


def test_the_tied_head_is_the_embedding_with_rope_and_rmsnorm(modern_config):
    model = build_decoder(modern_config)
    assert model.head.weight is model.tok_emb.weight
    untied = count_parameters(build_decoder(modern_config.replace(tie_head=False))).total
    assert count_parameters(model).total == untied - 17 * 16


def test_bf16_autocast_runs_forward_backward_and_decoding(modern_config):
    """The training path's mixed precision (CUDA's, here on the CPU): rope angles stay float32, the
    mask and the grouped heads work in bf16, the loss is finite and every parameter gets a gradient."""
    torch.manual_seed(0)
    model = build_decoder(modern_config)
    idx = torch.randint(17, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
    loss.backward()
    assert math.isfinite(loss.item())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pieces, _ = decode_in_pieces(model.eval(), idx, 6)
        torch.testing.assert_close(pieces.float(), model(idx).float(), atol=0.1, rtol=0.05)


@pytest.mark.slow
def test_torch_compile_traces_every_block_in_one_graph(modern_config):
    """fullgraph: no graph break anywhere (aot_eager skips code generation, which the GPU check runs)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_decoder(modern_config)
    idx = torch.randint(17, (2, 12))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(idx), model(idx), atol=1e-5, rtol=1e-4)
    compiled(idx).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
