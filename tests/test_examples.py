"""The shipped example configs (examples/*.yaml): there, and each builds and runs."""

from pathlib import Path

import pytest
import torch

from search_space import architecture_hash, build_decoder, config_to_dict, load_config, preset

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_the_promised_examples_ship():
    configs = [load_config(path) for path in EXAMPLES]
    assert len(configs) >= 7
    assert any(l.reduction and l.reduction.kind == "conv" and l.reduction.kernel_size == 3
               for c in configs for l in c.layers)
    assert any(c.towers == 3 for c in configs)
    layers = [layer for config in configs for layer in config.layers]
    # one example for each of today's blocks
    assert {"rope"} <= {c.position for c in configs} and {"rmsnorm"} <= {c.norm for c in configs}
    assert any(l.n_kv_head == 1 for l in layers) and any(l.n_kv_head and 1 < l.n_kv_head < l.n_head for l in layers)
    assert any(l.window for l in layers) and any(l.qk_norm for l in layers)
    assert any(l.mixer == "conv" for l in layers) and any(l.mlp == "swiglu" for l in layers)


def test_the_modern_examples_are_the_presets_and_leave_as_their_transformers_class():
    from studies.export.hf_folder import family_of

    def example(name: str):
        return load_config(EXAMPLES[0].parent / f"{name}.yaml")

    assert family_of(example("grouped-query-rope")).CLASS == "LlamaForCausalLM"
    hybrid = example("short-conv-hybrid")
    assert architecture_hash(hybrid) == architecture_hash(preset("lfm2", vocab_size=65, block_size=64, n_layer=4,
                                                                 n_head=4, d_model=128))
    assert family_of(hybrid).CLASS == "Lfm2ForCausalLM"
    assert family_of(example("sliding-window")).CLASS == "DecoderNasForCausalLM"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_builds_and_runs(path):
    config = load_config(path)
    assert load_config(path) == config and config_to_dict(config)["layers"]
    logits = build_decoder(config)(torch.zeros(1, config.block_size, dtype=torch.long))
    assert logits.shape == (1, config.block_size, config.vocab_size)
