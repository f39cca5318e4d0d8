"""Decoder configs: file round trips, architecture hashes, validation errors naming the field, presets."""

import json
from dataclasses import replace

import pytest
import torch
import yaml

from search_space import (
    ConfigError,
    DecoderConfig,
    LayerConfig,
    Reduction,
    architecture_hash,
    build_decoder,
    config_from_dict,
    config_to_dict,
    config_to_yaml,
    load_config,
    preset,
    save_config,
)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_files_is_unchanged(tiny_config, tmp_path, suffix):
    path = save_config(tiny_config, tmp_path / f"arch{suffix}")
    loaded = load_config(path)
    assert loaded == tiny_config
    assert config_to_dict(loaded) == config_to_dict(tiny_config)
    if suffix == ".json":
        json.loads(path.read_text())  # really JSON, not YAML that happens to load


def test_yaml_text_is_stable_across_a_round_trip(tiny_config):
    text = config_to_yaml(tiny_config)
    assert config_to_yaml(config_from_dict(yaml.safe_load(text))) == text


def test_provenance_survives_the_round_trip_but_not_the_hash(tmp_path):
    config = preset("lgpt", vocab_size=65, block_size=32, n_layer=4, n_head=4, d_model=64)
    stamped = config.replace(provenance={"study": "s", "trial": 3})
    assert load_config(save_config(stamped, tmp_path / "a.yaml")).provenance == {"study": "s", "trial": 3}
    assert architecture_hash(stamped) == architecture_hash(config)
    assert architecture_hash(config.replace(dropout=0.1)) != architecture_hash(config)


def test_a_whole_number_ratio_hashes_like_its_float(tiny_config):
    def with_ratios(ratio) -> DecoderConfig:
        return tiny_config.replace(layers=tuple(replace(layer, mlp_ratio=ratio(layer)) for layer in tiny_config.layers))

    as_floats = with_ratios(lambda layer: float(layer.mlp_ratio))
    as_ints = with_ratios(lambda layer: int(layer.mlp_ratio))
    assert architecture_hash(as_floats) == architecture_hash(as_ints) == architecture_hash(tiny_config)
    assert architecture_hash(with_ratios(lambda layer: layer.mlp_ratio + 1)) != architecture_hash(tiny_config)


def _base() -> dict:
    return config_to_dict(preset("gpt", vocab_size=65, block_size=32, n_layer=2, n_head=4, d_model=64))


@pytest.mark.parametrize(
    "edit, field, fragment",
    [
        (lambda d: d.update(colour="red"), "config", "unknown key 'colour'"),
        (lambda d: d["layers"][0].update(heads=4), "layers[0]", "unknown key 'heads'"),
        (lambda d: d["bias"].update(norms=True), "bias", "unknown key 'norms'"),
        (lambda d: d.update(d_model="64"), "d_model", "expected int"),
        (lambda d: d.update(block_size=32.0), "block_size", "expected int"),
        (lambda d: d.update(towers=True), "towers", "expected a number"),
        (lambda d: d.update(tie_head="yes"), "tie_head", "expected bool"),
        (lambda d: d.update(vocab_size=0), "vocab_size", "at least 1"),
        (lambda d: d.update(dropout=1.5), "dropout", "[0, 1)"),
        (lambda d: d.update(layers=[]), "layers", "empty"),
        (lambda d: d.pop("d_model"), "config", "missing key 'd_model'"),
        (lambda d: d["layers"][1].update(n_head=3), "layers[1].n_head", "do not divide the width 64"),
        (lambda d: d["layers"][0].update(layout="diagonal"), "layers[0].layout", "'diagonal'"),
        (lambda d: d["layers"][0].update(reduction={"kind": "pool", "width": 32}), "layers[0].reduction.kind", "'pool'"),
        (lambda d: d["layers"][0].update(reduction={"kind": "linear", "width": 2}), "layers[0].reduction.width",
         "fewer than 1 channel per head"),
        (lambda d: d["layers"][0].update(reduction={"kind": "linear", "width": 32, "kernel_size": 3}),
         "layers[0].reduction.kernel_size", "only applies to conv"),
        (lambda d: d["layers"][0].update(reduction={"kind": "linear", "width": 30}), "layers[1].n_head",
         "do not divide the width 30"),
        (lambda d: (d["layers"][1].update(reduction={"kind": "linear", "width": 32}), d.update(tie_head=True)),
         "tie_head", "final width (32)"),
        (lambda d: d["layers"][0].update(reduction={"kind": "conv", "width": 1}), "layers[0].reduction.width",
         "at least 2"),
        (lambda d: d["layers"][0].update(mlp_ratio=0), "layers[0].mlp_ratio", "no MLP units"),
        (lambda d: d["layers"][0].update(mlp_ratio=float("nan")), "layers[0].mlp_ratio", "nan must be finite"),
        (lambda d: d["layers"][0].update(mlp_ratio=float("inf")), "layers[0].mlp_ratio", "inf must be finite"),
        (lambda d: d["layers"][0].update(mlp_ratio=1000), "layers[0].mlp_ratio", "at most 64"),
        (lambda d: d.update(d_model=10**9), "d_model", "at most 65536"),
        (lambda d: d.update(vocab_size=10**9), "vocab_size", "at most"),
        (lambda d: d.update(block_size=10**9), "block_size", "at most"),
        (lambda d: d.update(towers=100_000), "towers", "at most 64"),
        (lambda d: d.update(layers=[{"n_head": 4}] * 10_000), "layers", "at most 1024"),
        (lambda d: d.update(layers=[{"n_head": 4}] * 32, towers=64), "layers", "2048 blocks"),
        (lambda d: d["layers"][0].update(reduction={"kind": "conv", "width": 32, "kernel_size": 10**8}),
         "layers[0].reduction.kernel_size", "at most 32"),  # the base config's block_size
        (lambda d: d["layers"][0].update(reduction={"kind": "conv", "width": 10**6}), "layers[0].reduction.width",
         "at most 65536"),
    ],
)
def test_each_validation_error_names_the_field_and_value(edit, field, fragment):
    data = _base()
    edit(data)
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    message = str(error.value)
    assert message.startswith(field), message
    assert fragment in message
    assert "\n" not in message


def test_constructing_an_invalid_config_directly_also_fails():
    with pytest.raises(ConfigError, match="heads do not divide"):
        DecoderConfig(vocab_size=10, block_size=8, d_model=10, layers=(LayerConfig(n_head=4),))
    with pytest.raises(ConfigError, match="fewer than 1 channel per head"):
        DecoderConfig(vocab_size=10, block_size=8, d_model=8,
                      layers=(LayerConfig(n_head=4, reduction=Reduction("conv", 2, 3)),))


def test_load_config_reports_malformed_yaml_with_its_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("vocab_size: 65\nlayers: [\n  {n_head: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: malformed YAML at line \d"):
        load_config(path)


def test_load_config_reports_missing_files_and_non_mappings(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")


@pytest.mark.parametrize("name, overrides, fragment", [
    ("bert", {}, "unknown preset 'bert'"),
    ("pgpt", {"n_layer": 5}, "5 is odd"),
    ("lgpt", {"n_layer": 8, "d_model": 24, "n_head": 3}, "cannot be halved"),
    ("gpt", {"n_layers": 4}, "unknown override 'n_layers'"),
    ("gpt", {"n_layer": 10**9}, "from 1 to 1024"),  # refused before a billion layers are listed
])
def test_preset_errors(name, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        preset(name, **overrides)


def test_widths_follow_the_reductions():
    config = preset("lgpt", vocab_size=65, block_size=32, n_layer=8, n_head=8, d_model=512)
    assert config.widths == [512, 512, 256, 256, 128, 128, 64, 64, 32]
    assert preset("pgpt", n_layer=8).towers == 2 and len(preset("pgpt", n_layer=8).layers) == 4


def test_a_kernel_1_conv_hashes_like_the_linear_map_it_computes():
    def narrowed(kind: str, kernel: int) -> DecoderConfig:
        layers = (LayerConfig(n_head=2, reduction=Reduction(kind, 8, kernel)), LayerConfig(n_head=2))
        return DecoderConfig(vocab_size=11, block_size=8, d_model=16, layers=layers)

    linear, conv1, conv3 = narrowed("linear", 1), narrowed("conv", 1), narrowed("conv", 3)
    assert architecture_hash(conv1) == architecture_hash(linear) != architecture_hash(conv3)
    tokens = torch.randint(0, 11, (2, 8))
    outputs = []
    for config in (linear, conv1):
        torch.manual_seed(0)
        outputs.append(build_decoder(config)(tokens))
    torch.testing.assert_close(outputs[0], outputs[1])  # same weights drawn, same function

