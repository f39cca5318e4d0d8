"""Decoder configs: file round trips, architecture hashes, validation errors naming the field, presets."""

import json
from dataclasses import replace
from pathlib import Path

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
    summarize,
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
        # today's blocks: each key checked, a key of the other mixer refused, a value that cannot work refused
        (lambda d: d.update(norm="batchnorm"), "norm", "'batchnorm' is not one of ['layernorm', 'rmsnorm']"),
        (lambda d: d.update(position="alibi"), "position", "'alibi' is not one of ['learned', 'rope']"),
        (lambda d: d.update(rope_theta=5e5), "rope_theta", "only applies with position: rope"),
        (lambda d: d.update(position="rope", rope_theta=0.5), "rope_theta", "above 1"),
        (lambda d: d.update(position="rope", rope_theta="big"), "rope_theta", "expected int or float"),
        (lambda d: (d.update(position="rope"), d["layers"][1].update(n_head=64)), "position",
         "layers[1] has 64 heads of odd dimension 1"),
        (lambda d: d["layers"][0].update(mixer="ssm"), "layers[0].mixer", "'ssm' is not one of"),
        (lambda d: d["layers"][0].update(conv_kernel=5), "layers[0].conv_kernel", "only applies to conv mixers"),
        (lambda d: d["layers"][0].update(mixer="conv", conv_kernel=0), "layers[0].conv_kernel", "at least 1"),
        (lambda d: d["layers"][0].update(mixer="conv", conv_kernel=33), "layers[0].conv_kernel", "at most 32"),
        (lambda d: d["layers"][0].update(mixer="conv", n_kv_head=1), "layers[0].n_kv_head",
         "only applies to attention mixers"),
        (lambda d: d["layers"][0].update(mixer="conv", window=8), "layers[0].window", "only applies to attention"),
        (lambda d: d["layers"][0].update(mixer="conv", qk_norm=True), "layers[0].qk_norm", "only applies to attention"),
        (lambda d: d["layers"][0].update(n_kv_head=3), "layers[0].n_kv_head", "3 KV heads do not divide the 4 query"),
        (lambda d: d["layers"][0].update(n_kv_head=0), "layers[0].n_kv_head", "at least 1"),
        (lambda d: d["layers"][0].update(n_kv_head=2.0), "layers[0].n_kv_head", "expected int"),
        (lambda d: d["layers"][0].update(window=32), "layers[0].window", "at most 31"),  # the whole context
        (lambda d: d["layers"][0].update(window=0), "layers[0].window", "at least 1"),
        (lambda d: d["layers"][0].update(window="8"), "layers[0].window", "expected int"),
        (lambda d: d["layers"][0].update(qk_norm="yes"), "layers[0].qk_norm", "expected bool"),
        (lambda d: d["layers"][0].update(mlp="relu"), "layers[0].mlp", "'relu' is not one of ['gelu', 'swiglu']"),
        (lambda d: d["layers"][0].update(mlp="swiglu", mlp_ratio=0.001), "layers[0].mlp_ratio", "no MLP units"),
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



# --- today's blocks: files, hashes and shorthand --------------------------------------------------


HASHES = json.loads((Path(__file__).parent / "fixtures" / "architecture_hashes.json").read_text())


def _stored(entry: dict) -> DecoderConfig:
    kind, _, name = entry["source"].partition(" ")
    if kind == "preset":
        return preset(name, **entry["shape"])
    if kind == "example":
        return load_config(Path(__file__).parent.parent / "examples" / name)
    return config_from_dict(entry["config"])


@pytest.mark.parametrize("entry", HASHES, ids=[entry["source"] for entry in HASHES])
def test_configs_from_before_the_new_blocks_keep_their_hashes(entry):
    """Hashes stored before the new keys existed: existing studies go on reusing their results."""
    config = _stored(entry)
    assert architecture_hash(config) == entry["hash"]
    assert not set(config_to_yaml(config).split()) & {"norm:", "position:", "mixer:", "mlp:", "window:"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_new_key_survives_the_round_trip(modern_config, tmp_path, suffix):
    loaded = load_config(save_config(modern_config, tmp_path / f"arch{suffix}"))
    assert loaded == modern_config and architecture_hash(loaded) == architecture_hash(modern_config)
    assert config_to_yaml(loaded) == config_to_yaml(modern_config)
    data = config_to_dict(modern_config)
    assert (data["norm"], data["position"]) == ("rmsnorm", "rope") and "rope_theta" not in data
    assert data["layers"][0] == {"layout": "sequential", "n_head": 4, "mlp_ratio": 4.0, "n_kv_head": 2, "window": 3,
                                 "qk_norm": True, "mlp": "swiglu"}
    assert data["layers"][3]["conv_kernel"] == 2 and "conv_kernel" not in data["layers"][1]  # 3 is the default


CHANGES = {
    "rmsnorm": lambda c: c.replace(norm="rmsnorm"),
    "rope": lambda c: c.replace(position="rope"),
    "rope theta": lambda c: c.replace(position="rope", rope_theta=5e5),
    "conv mixer": lambda c: _layer0(c, mixer="conv"),
    "conv mixer k4": lambda c: _layer0(c, mixer="conv", conv_kernel=4),
    "grouped-query": lambda c: _layer0(c, n_kv_head=2),
    "multi-query": lambda c: _layer0(c, n_kv_head=1),
    "window": lambda c: _layer0(c, window=8),
    "qk-norm": lambda c: _layer0(c, qk_norm=True),
    "swiglu": lambda c: _layer0(c, mlp="swiglu"),
}


def _layer0(config: DecoderConfig, **changes) -> DecoderConfig:
    return config.replace(layers=(replace(config.layers[0], **changes), *config.layers[1:]))


def test_each_new_key_changes_the_hash_and_the_shorthand():
    base = preset("gpt", vocab_size=65, block_size=32, n_layer=2, n_head=4, d_model=64)
    changed = {name: change(base) for name, change in CHANGES.items()}
    hashes = {architecture_hash(config) for config in changed.values()} | {architecture_hash(base)}
    assert len(hashes) == len(CHANGES) + 1
    summaries = {summarize(config) for config in changed.values()} | {summarize(base)}
    assert len(summaries) == len(CHANGES) + 1


def test_what_computes_the_same_hashes_the_same():
    base = preset("gpt", vocab_size=65, block_size=32, n_layer=2, n_head=4, d_model=64)
    assert architecture_hash(_layer0(base, n_kv_head=4)) == architecture_hash(base)  # as many KV as query heads
    conv = _layer0(base, mixer="conv")
    assert architecture_hash(replace(conv, layers=(replace(conv.layers[0], n_head=1), conv.layers[1]))) == \
        architecture_hash(conv)  # a conv mixer has no heads
    rope = base.replace(position="rope")
    assert architecture_hash(rope.replace(rope_theta=10000)) == architecture_hash(rope.replace(rope_theta=10000.0))


def test_the_shorthand_names_every_new_block(modern_config):
    assert summarize(modern_config) == "d16 rope rms 4L[S4/2w3qkg Pc3>conv3:8 S2/1m2g Sc2>lin16] x2 towers"
    assert summarize(modern_config.replace(rope_theta=5e5)).startswith("d16 rope:500000 rms 4L[")


def test_presets_of_todays_small_decoders():
    llama = preset("llama", vocab_size=65, block_size=64, n_layer=4, n_head=8, d_model=128)
    assert (llama.norm, llama.position, llama.tie_head, llama.towers) == ("rmsnorm", "rope", True, 1)
    assert {(l.layout, l.mixer, l.n_head, l.n_kv_head, l.mlp, l.mlp_ratio, l.window, l.qk_norm, l.reduction)
            for l in llama.layers} == {("sequential", "attention", 8, 2, "swiglu", 4.0, None, False, None)}
    assert preset("llama", n_layer=2, n_head=2, d_model=64).layers[0].n_kv_head == 1  # at least one KV head
    assert summarize(llama) == "d128 rope rms 4L[S8/2g S8/2g S8/2g S8/2g]"

    lfm2 = preset("lfm2", vocab_size=65, block_size=64, n_layer=16, n_head=8, d_model=128)
    attention = [i for i, layer in enumerate(lfm2.layers) if layer.mixer == "attention"]
    assert attention == [2, 5, 8, 10, 12, 14]  # LFM2-350M/700M/1.2B's layer_types
    assert all(lfm2.layers[i].qk_norm and lfm2.layers[i].n_kv_head == 2 for i in attention)
    assert {(l.conv_kernel, l.mlp) for l in lfm2.layers if l.mixer == "conv"} == {(3, "swiglu")}
    assert (lfm2.norm, lfm2.position, lfm2.tie_head) == ("rmsnorm", "rope", True)
    for n_layer in range(1, 33):
        layers = preset("lfm2", n_layer=n_layer, n_head=4, d_model=64).layers
        share = sum(layer.mixer == "attention" for layer in layers) / n_layer
        assert share >= 1 / n_layer and (n_layer < 8 or 0.3 <= share <= 0.45), (n_layer, share)
    assert summarize(preset("lfm2", n_layer=4, n_head=4, d_model=128)) == "d128 rope rms 4L[Sc3g Sc3g S4/1qkg Sc3g]"


def test_a_preset_whose_heads_rope_cannot_turn_is_refused():
    with pytest.raises(ConfigError, match="position: rope rotates pairs of channels.*odd dimension 3"):
        preset("llama", n_layer=2, n_head=4, d_model=12)
