"""The modern space end to end: every config its sampler draws builds, trains, decodes with its cache
exactly as the full forward, and leaves as ONNX that ONNX Runtime runs to the same logits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from objectives import export_onnx, onnx_max_difference
from search_space import DecoderConfig, build_decoder
from studies.space import IntRange, load_space
from test_blocks import decode_in_pieces
from test_model import assert_causal
from trainer.loop import train
from trainer.recipe import TrainingRecipe

BLOCK_SIZE = 12
# The shipped modern space's choices of every block at a tiny width and depth (a fast test); min_head_dim
# 4 lets the reductions narrow 16 and 32 wide models.
TINY_MODERN = replace(load_space("modern"), n_layer=IntRange(1, 3), d_model=(16, 32), n_head=(2, 4), min_head_dim=4)
SEEDS = range(40)


def drawn(seed: int, encoding: str) -> DecoderConfig:
    """The first config a sampler seeded `seed` draws from the tiny modern space."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    return replace(TINY_MODERN, encoding=encoding).sample(trial, vocab_size=11, block_size=BLOCK_SIZE)


def test_the_tiny_space_draws_every_block() -> None:
    """What the end-to-end tests below cover: each block turns up among the seeds' configs."""
    configs = [drawn(seed, encoding) for seed in SEEDS for encoding in ("per_layer", "pattern")]
    layers = [layer for config in configs for layer in config.layers]
    assert {c.position for c in configs} == {"learned", "rope"} and {c.norm for c in configs} == {"layernorm", "rmsnorm"}
    assert {c.tie_head for c in configs} == {False, True} and {c.towers for c in configs} == {1, 2}
    assert {layer.mixer for layer in layers} == {"attention", "conv"} and {layer.mlp for layer in layers} == {"gelu", "swiglu"}
    attention = [layer for layer in layers if layer.mixer == "attention"]
    assert {layer.kv_heads < layer.n_head for layer in attention} == {False, True}
    assert {layer.window for layer in attention} == {None, 3, 6} and {layer.qk_norm for layer in attention} == {False, True}
    assert {layer.reduction.kind for layer in layers if layer.reduction} == {"linear", "conv"}


@pytest.mark.parametrize("encoding", ["per_layer", "pattern"])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_sampled_modern_config_trains_and_decodes_as_its_full_forward(seed: int, encoding: str) -> None:
    config = drawn(seed, encoding)
    torch.manual_seed(seed)
    model = build_decoder(config)
    before = [p.detach().clone() for p in model.parameters()]
    tokens = torch.randint(config.vocab_size, (200,))
    result = train(model, tokens, tokens, TrainingRecipe(steps=1, warmup_steps=1, batch_size=2, eval_windows=2),
                   torch.device("cpu"))
    assert result.steps == 1 and torch.isfinite(torch.tensor(result.loss_curve)).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # one optimiser step moved it
    model.eval()
    idx = torch.randint(config.vocab_size, (2, BLOCK_SIZE))
    with torch.no_grad():
        pieces, state = decode_in_pieces(model, idx, BLOCK_SIZE // 2)
        torch.testing.assert_close(pieces, model(idx), atol=1e-5, rtol=1e-4)
    assert state.position == BLOCK_SIZE
    assert_causal(config)


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["per_layer", "pattern"])
@pytest.mark.parametrize("seed", range(6))
def test_every_sampled_modern_config_exports_to_onnx(seed: int, encoding: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(seed)
    model = build_decoder(drawn(seed, encoding)).eval()
    assert onnx_max_difference(model, export_onnx(model, tmp_path / "model.onnx")) < 1e-4
