"""What a trial costs besides training: FLOPs traced on real memory for small models must count
exactly what the meta-device trace counts (objectives/static.py picks by size)."""

from __future__ import annotations

import pytest

from objectives import static as static_module
from objectives.static import count_flops, describe
from search_space import preset


@pytest.mark.parametrize("name", ["gpt", "pgpt", "lgpt"])
def test_small_models_traced_for_real_count_the_same_flops_as_on_meta(name: str, monkeypatch) -> None:
    config = preset(name, vocab_size=96, block_size=64, n_layer=4, n_head=4, d_model=128)
    real = count_flops(config), describe(config).layers
    monkeypatch.setattr(static_module, "REAL_TRACE_LIMIT", 0)  # everything on the meta device
    assert (count_flops(config), describe(config).layers) == real
