"""The shipped example configs (examples/*.yaml): there, and each builds and runs."""

from pathlib import Path

import pytest
import torch

from search_space import build_decoder, config_to_dict, load_config

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_the_promised_examples_ship():
    configs = [load_config(path) for path in EXAMPLES]
    assert len(configs) >= 3
    assert any(l.reduction and l.reduction.kind == "conv" and l.reduction.kernel_size == 3
               for c in configs for l in c.layers)
    assert any(c.towers == 3 for c in configs)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_builds_and_runs(path):
    config = load_config(path)
    assert load_config(path) == config and config_to_dict(config)["layers"]
    logits = build_decoder(config)(torch.zeros(1, config.block_size, dtype=torch.long))
    assert logits.shape == (1, config.block_size, config.vocab_size)
