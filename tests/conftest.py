"""Shared test helpers: tiny configs and a hypothesis strategy over the whole design space."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
import torch
from hypothesis import strategies as st

from search_space import DecoderConfig, LayerConfig, Reduction
from study_helpers import Tiny, cli, make_tiny


@st.composite
def decoder_configs(draw: st.DrawFn, max_layers: int = 4, modern: bool = False) -> DecoderConfig:
    """Random valid configs: every layout, both reduction kinds, conv kernels > 1, towers 1-3. `modern`
    draws today's blocks too: norm, rope, and per layer the mixer, KV heads, window, qk-norm and MLP kind."""
    n_head = draw(st.sampled_from([1, 2, 4]))
    width = n_head * draw(st.sampled_from([4, 8]))
    d_model = width
    block_size = draw(st.integers(4, 12))
    model_keys = {"norm": draw(st.sampled_from(["layernorm", "rmsnorm"])),
                  "position": draw(st.sampled_from(["learned", "rope"]))} if modern else {}
    head_dims = 2 if model_keys.get("position") == "rope" else 1  # rope turns pairs: head dims stay even
    layers = []
    for _ in range(draw(st.integers(1, max_layers))):
        reduction = None
        if draw(st.booleans()) and width // 2 >= max(2, n_head) and (width // 2) % (n_head * head_dims) == 0:
            kind = draw(st.sampled_from(["linear", "conv"]))
            kernel = draw(st.sampled_from([1, 2, 3])) if kind == "conv" else 1
            reduction = Reduction(kind=kind, width=width // 2, kernel_size=kernel)
            next_width = width // 2
        else:
            next_width = width
        layers.append(LayerConfig(
            layout=draw(st.sampled_from(["sequential", "parallel"])),
            n_head=n_head,
            mlp_ratio=draw(st.sampled_from([1, 2, 4])),
            reduction=reduction,
            **(draw(modern_layer_keys(n_head, block_size)) if modern else {}),
        ))
        width = next_width
    return DecoderConfig(
        vocab_size=draw(st.integers(5, 20)),
        block_size=block_size,
        d_model=d_model,
        layers=tuple(layers),
        towers=draw(st.integers(1, 3)),
        **model_keys,
    )


@st.composite
def modern_layer_keys(draw: st.DrawFn, n_head: int, block_size: int) -> dict:
    mlp = draw(st.sampled_from(["gelu", "swiglu"]))
    if draw(st.booleans()):
        return {"mixer": "conv", "conv_kernel": draw(st.integers(1, 4)), "mlp": mlp}
    return {"n_kv_head": draw(st.sampled_from([k for k in (1, 2, 4) if n_head % k == 0])),
            "window": draw(st.none() | st.integers(1, block_size - 1)),
            "qk_norm": draw(st.booleans()), "mlp": mlp}


CORPUS_TEXT = "".join(f"{i} little pigs, {i} big bad wolves.\n" for i in range(120))  # ~4 kB


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A token-store cache folder of the test's own."""
    return tmp_path / "cache"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small text file the tests train on: enough for char-level windows of 16-64 tokens."""
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS_TEXT, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine two threads run ~15x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config() -> DecoderConfig:
    return DecoderConfig(
        vocab_size=17,
        block_size=16,
        d_model=16,
        layers=(
            LayerConfig(n_head=2),
            LayerConfig(layout="parallel", n_head=2, reduction=Reduction("conv", 8, kernel_size=3)),
            LayerConfig(n_head=2, mlp_ratio=2, reduction=Reduction("linear", 4)),
        ),
        towers=2,
    )


@pytest.fixture
def modern_config() -> DecoderConfig:
    """Every new block at once: rope, RMSNorm, a tied head, grouped-query and multi-query attention, a
    window, qk-norm, SwiGLU, conv mixers in both layouts, before and after reductions."""
    return DecoderConfig(
        vocab_size=17,
        block_size=12,
        d_model=16,
        norm="rmsnorm",
        position="rope",
        tie_head=True,
        layers=(
            LayerConfig(n_head=4, n_kv_head=2, window=3, qk_norm=True, mlp="swiglu"),
            LayerConfig(layout="parallel", mixer="conv", reduction=Reduction("conv", 8, kernel_size=3)),
            LayerConfig(n_head=2, n_kv_head=1, mlp="swiglu", mlp_ratio=2),
            LayerConfig(mixer="conv", conv_kernel=2, reduction=Reduction("linear", 16)),
        ),
        towers=2,
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server .ci/run starts; tests that need one skip without it (fail in CI)."""
    url = os.environ.get("DECODER_NAS_TEST_POSTGRES")
    if not url:
        if os.environ.get("DECODER_NAS_REQUIRE_POSTGRES") == "1":
            pytest.fail("DECODER_NAS_REQUIRE_POSTGRES=1 but DECODER_NAS_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server (set DECODER_NAS_TEST_POSTGRES, as .ci/run does)")
    return url


@pytest.fixture(scope="session")
def two_kept(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A tiny study whose trials' weights were kept (copy it before changing it). Two trained trials,
    and a repeat between them if the sampler proposes one (it is free). One search for the whole session:
    the artifact, export, measure and API-misuse tests all read it or copy it."""
    tiny = make_tiny(tmp_path_factory.mktemp("kept"))
    done = cli(*tiny.argv("search", "--trials", "2", "--no-presets", "--keep-checkpoints", "all"))
    assert done.code == 0, done.err
    return tiny
