"""The decoder: causal for every layer kind, exact parameter counts, towers, initialisation, cached
decoding, and the memory check before a model is built."""

import math
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings

from conftest import decoder_configs
from objectives import count_parameters
from search_space import ConfigError, DecoderConfig, DecodeState, LayerConfig, Reduction, build_decoder, preset
from search_space import model as model_module
from study_helpers import assert_one_line_error, cli


def assert_causal(config: DecoderConfig, seed: int = 0) -> None:
    """Changing tokens after position t must never change the logits at positions <= t."""
    torch.manual_seed(seed)
    model = build_decoder(config).eval()
    T = config.block_size
    idx = torch.randint(config.vocab_size, (2, T))
    with torch.no_grad():
        base = model(idx)
        assert base.shape == (2, T, config.vocab_size)
        for t in (0, T // 2, T - 2):
            changed = idx.clone()
            changed[:, t + 1:] = (idx[:, t + 1:] + 1) % config.vocab_size  # every later token differs
            torch.testing.assert_close(model(changed)[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=1e-5)
            # and the future really matters somewhere, so the check is not vacuous
            assert not torch.allclose(model(changed)[:, t + 1:], base[:, t + 1:])


LAYER_KINDS = {
    "sequential": LayerConfig(n_head=2),
    "parallel": LayerConfig(layout="parallel", n_head=2),
    "linear": LayerConfig(n_head=2, reduction=Reduction("linear", 8)),
    "conv k1": LayerConfig(n_head=2, reduction=Reduction("conv", 8, 1)),
    "conv k3": LayerConfig(n_head=2, reduction=Reduction("conv", 8, 3)),
}


@pytest.mark.parametrize("kind", LAYER_KINDS)
@pytest.mark.parametrize("towers", [1, 3])
def test_every_layer_kind_is_causal(kind, towers):
    layers = (LAYER_KINDS[kind], LayerConfig(n_head=2))
    assert_causal(DecoderConfig(vocab_size=11, block_size=10, d_model=16, layers=layers, towers=towers))


@settings(max_examples=25, deadline=None)
@given(decoder_configs())
def test_random_configs_from_the_space_are_causal(config):
    assert_causal(config)


def test_conv_kernel_3_mixes_neighbouring_tokens_but_kernel_1_does_not():
    def reduction_output(kernel):
        torch.manual_seed(0)
        config = DecoderConfig(vocab_size=11, block_size=8, d_model=8,
                               layers=(LayerConfig(n_head=2, reduction=Reduction("conv", 4, kernel)),))
        conv = build_decoder(config).towers[0].layers[1]
        x = torch.randn(1, 8, 8)
        moved = x.clone()
        moved[:, 3] += 1.0  # perturb token 3 only
        return conv(x), conv(moved)

    before, after = reduction_output(3)
    changed = (before - after).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False, False, False, True, True, True, False, False]
    before, after = reduction_output(1)
    changed = (before - after).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False, False, False, True, False, False, False, False]


@pytest.mark.parametrize("name, expected", [
    ("gpt", 77_210_112), ("pgpt", 77_735_425), ("lgpt", 36_423_936), ("cgpt", 36_423_936),
])
def test_paper_presets_have_the_exact_parameter_counts(name, expected):
    model = build_decoder(preset(name, vocab_size=50304, block_size=1024, n_layer=8, n_head=8, d_model=512), "meta")
    assert count_parameters(model).total == expected


def test_non_embedding_params_exclude_both_tables():
    config = preset("gpt", vocab_size=65, block_size=64, n_layer=2, n_head=4, d_model=32)
    counts = count_parameters(build_decoder(config, "meta"))
    assert counts.total - counts.non_embedding == 65 * 32 + 64 * 32


def test_tied_head_shares_the_embedding():
    config = preset("gpt", vocab_size=65, block_size=16, n_layer=2, n_head=4, d_model=32).replace(tie_head=True)
    model = build_decoder(config)
    assert model.head.weight is model.tok_emb.weight
    untied = count_parameters(build_decoder(config.replace(tie_head=False))).total
    assert count_parameters(model).total == untied - 65 * 32


def test_two_towers_mix_exactly_like_the_paper():
    torch.manual_seed(0)
    model = build_decoder(preset("pgpt", vocab_size=13, block_size=8, n_layer=4, n_head=2, d_model=16)).eval()
    assert model.tower_mix.tolist() == [0.5]
    idx = torch.randint(13, (1, 8))
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(8))
    x1 = model.towers[0](model.tower_inputs[0](x))
    x2 = model.towers[1](model.tower_inputs[1](x))
    w = torch.sigmoid(model.tower_mix[0])
    expected = model.head(model.ln_f(w * x1 + (1 - w) * x2))
    torch.testing.assert_close(model(idx), expected)


def test_gpt2_initialisation_reaches_every_block():
    torch.manual_seed(0)
    config = preset("lgpt", vocab_size=65, block_size=16, n_layer=4, n_head=4, d_model=256)
    model = build_decoder(config)
    block = model.towers[0].layers[0]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    reduction = model.towers[0].layers[2].linear
    assert reduction.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.count_nonzero(reduction.bias) == 0


@settings(max_examples=10, deadline=None)
@given(decoder_configs(max_layers=3))
def test_cached_decoding_matches_the_full_forward(config):
    """Feeding a prefix, then one token at a time with a DecodeState, gives the full-sequence logits."""
    torch.manual_seed(0)
    model = build_decoder(config).eval()
    idx = torch.randint(config.vocab_size, (1, config.block_size))
    with torch.no_grad():
        full = model(idx)
        state = DecodeState()
        prefix = config.block_size // 2
        pieces = [model(idx[:, :prefix], state)]
        pieces += [model(idx[:, t : t + 1], state) for t in range(prefix, config.block_size)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)
    assert state.position == config.block_size


# --- the memory check ----------------------------------------------------------------------------------


def test_an_enormous_model_is_refused_before_allocating(tmp_path: Path) -> None:
    config = tmp_path / "huge.yaml"
    config.write_text("d_model: 65536\nblock_size: 4096\nvocab_size: 50304\ntowers: 64\n"
                      "layers:\n  - {layout: sequential, n_head: 8}\n  - {layout: sequential, n_head: 8}\n")
    started = time.monotonic()
    assert_one_line_error(cli("describe", str(config)), "describe", "the model needs about", "GiB", "this machine has")
    assert time.monotonic() - started < 30


def test_the_memory_check_comes_before_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_module, "physical_memory", lambda: 1 << 16)  # a 64 KiB machine
    small = preset("gpt", n_layer=2, n_head=2, d_model=64, block_size=32, vocab_size=65)
    with pytest.raises(ConfigError, match="needs about .* GiB"):
        build_decoder(small)
    assert build_decoder(small, device="meta") is not None  # counting shapes allocates nothing
