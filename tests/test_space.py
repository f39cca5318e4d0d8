"""The search space YAML: loading, validation errors, and sampling that always gives a valid decoder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml

from search_space import PAPER_PRESETS, PRESETS, DecoderConfig, architecture_hash, preset
from search_space.config import validate
from search_space.presets import lfm2_attention_layers
from studies.errors import StudyError
from studies.settings import SETTINGS_KEY, STUDY_PRESETS, StudySettings, read_settings
from studies.space import DEFAULT_SPACE, SearchSpace, kv_heads, load_space, space_from_dict, window_tokens
from studies.workers.search import open_study
from study_helpers import TINY_SPACE, assert_one_line_error, cli, load, make_settings, make_tiny, study_names

FIXTURES = Path(__file__).parent / "fixtures"
MODERN_LAYER_KEYS = ("mixer", "kv_ratio", "window", "qk_norm", "mlp")
MODERN_MODEL_KEYS = {"position", "norm", "tie_head"}

SHARED_PARAMETERS = {"n_layer", "d_model", "n_head", "reduction", "conv_kernel", "reduce_factor", "towers"}
PATTERN_PARAMETERS = SHARED_PARAMETERS | {"mlp_ratio", "layout", "reduce_every"}


def per_layer_parameters(slots: int) -> set[str]:
    return SHARED_PARAMETERS | {f"{name}_{index}" for name in ("layout", "mlp_ratio", "reduce_after")
                                for index in range(slots)}


def write_space(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def sample_many(space: SearchSpace, n: int, vocab_size: int = 37,
                block_size: int = 32) -> list[tuple[dict, DecoderConfig]]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    samples = []
    for _ in range(n):
        trial = study.ask()
        config = space.sample(trial, vocab_size, block_size)
        samples.append((trial.params, config))
        study.tell(trial, 0.0)
    return samples


def test_the_default_space_is_the_modern_one_and_loads() -> None:
    space = load_space()
    assert DEFAULT_SPACE == "modern" and space == load_space("modern")  # chosen by measurement (docs/decisions.md)
    assert space.n_layer.low >= 1 and space.n_layer.high >= space.n_layer.low
    assert set(space.layout) == {"sequential", "parallel", "alternate"}
    assert set(space.reduction) == {"none", "linear", "conv"}
    assert space.min_head_dim == 8
    assert space_from_dict(space.to_dict()) == space  # what a study stores reads back the same


@pytest.mark.parametrize("which", ["paper", "paper pattern", "tiny"])
def test_every_sample_is_a_valid_decoder_over_a_fixed_space(which: str, tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, TINY_SPACE)) if which == "tiny" else load_space("paper")
    if which == "paper pattern":
        space = replace(space, encoding="pattern")
    parameters = PATTERN_PARAMETERS if space.encoding == "pattern" else per_layer_parameters(space.n_layer.high)
    samples = sample_many(space, 300)
    layouts, reductions = set(), set()
    for params, config in samples:
        assert set(params) == parameters  # every trial suggests every parameter
        validate(config)
        assert config.vocab_size == 37 and config.block_size == 32
        assert config.d_model in space.d_model and config.towers in space.towers
        assert space.n_layer.low <= len(config.layers) <= space.n_layer.high
        for layer, width in zip(config.layers, config.widths):
            assert width % layer.n_head == 0
            assert width // layer.n_head >= min(space.min_head_dim, config.d_model // layer.n_head)
            if layer.reduction is not None:
                assert layer.reduction.width // layer.n_head >= space.min_head_dim
                assert layer.reduction.width < width
                reductions.add(layer.reduction.kind)
                if layer.reduction.kind == "linear":
                    assert layer.reduction.kernel_size == 1
            layouts.add(layer.layout)
    assert reductions == {"linear", "conv"} and layouts == {"sequential", "parallel"}


def test_per_layer_encoding_draws_each_layer_over_a_fixed_space(tmp_path: Path) -> None:
    data = {**TINY_SPACE, "encoding": "per_layer", "n_layer": {"low": 1, "high": 3}, "mlp_ratio": [2, 4],
            "layout": ["alternate"]}
    space = load_space(write_space(tmp_path, data))
    mixed_layouts = mixed_ratios = False
    for params, config in sample_many(space, 200):
        assert set(params) == per_layer_parameters(3)  # every slot drawn, used or not
        validate(config)
        n_layer = params["n_layer"]
        assert [layer.layout for layer in config.layers] == [params[f"layout_{i}"] for i in range(n_layer)]
        assert [layer.mlp_ratio for layer in config.layers] == [params[f"mlp_ratio_{i}"] for i in range(n_layer)]
        for index, layer in enumerate(config.layers):
            if layer.reduction is not None:
                assert params[f"reduce_after_{index}"] and params["reduction"] == layer.reduction.kind
            elif params["reduction"] == "none":
                assert config.widths[-1] == config.d_model
        mixed_layouts |= len({layer.layout for layer in config.layers}) > 1
        mixed_ratios |= len({layer.mlp_ratio for layer in config.layers}) > 1
    assert mixed_layouts and mixed_ratios  # what the pattern encoding cannot express
    assert space_from_dict(space.to_dict()) == space


@pytest.mark.parametrize("encoding", ["pattern", "per_layer"])
def test_params_for_finds_parameters_that_rebuild_the_architecture(encoding: str) -> None:
    space = replace(load_space("paper"), encoding=encoding)
    for _, config in sample_many(space, 40):
        params = space.params_for(config)
        assert params is not None
        rebuilt = space.sample(optuna.trial.FixedTrial(params), config.vocab_size, config.block_size)
        assert architecture_hash(rebuilt) == architecture_hash(config)
    for name in PAPER_PRESETS:  # the paper's models at the benchmark shape lie in the paper space
        config = preset(name, vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)
        params = space.params_for(config)
        assert params is not None and params["d_model"] == 128 and params["n_head"] == 4
        assert architecture_hash(space.sample(optuna.trial.FixedTrial(params), 65, 64)) == architecture_hash(config)
    assert space.params_for(preset("gpt", vocab_size=65, block_size=64, d_model=256)) is None  # no such width
    assert space.params_for(preset("gpt", vocab_size=65, block_size=64, n_layer=8)) is None  # too deep
    for name in ("llama", "lfm2"):  # rope, RMSNorm, SwiGLU, fewer KV heads, conv mixers: not the paper's space
        assert space.params_for(preset(name, vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)) is None


@pytest.mark.parametrize("encoding", ["pattern", "per_layer"])
def test_choices_are_what_sample_draws_and_neighbours_change_one_of_them(encoding: str) -> None:
    space = replace(load_space("paper"), encoding=encoding)
    choices = space.choices()
    for params, config in sample_many(space, 30):
        assert list(params) == list(choices) and all(params[name] in choices[name] for name in params)
        assert architecture_hash(space.config_from_params(params, 37, 32)) == architecture_hash(config)
        for neighbour in space.neighbours(params):
            changed = [name for name in params if neighbour[name] != params[name]]
            assert len(changed) == 1 and space.config_from_params(neighbour, 37, 32) is not None
            name = changed[0]
            if all(type(option) in (int, float) for option in choices[name]):  # numeric: one step
                ordered = sorted(choices[name])
                assert abs(ordered.index(neighbour[name]) - ordered.index(params[name])) == 1
    gpt = space.params_for(preset("gpt", vocab_size=37, block_size=32, n_layer=4, n_head=4, d_model=128))
    changes = [{k: v for k, v in n.items() if gpt[k] != v} for n in space.neighbours(gpt)]
    assert {"n_layer": 3} in changes and {"n_layer": 5} in changes and {"d_model": 96} in changes
    assert {"d_model": 160} in changes and {"d_model": 64} not in changes  # two steps away
    layout = "layout" if encoding == "pattern" else "layout_0"
    assert sum(layout in c for c in changes) == len(choices[layout]) - 1  # every other layout
    assert space.config_from_params({**gpt, "d_model": 256}, 37, 32) is None  # not offered
    assert space.config_from_params({k: v for k, v in gpt.items() if k != "towers"}, 37, 32) is None


def test_the_per_layer_encoding_is_the_default_and_unknown_encodings_are_refused(tmp_path: Path) -> None:
    unsaid = {key: value for key, value in TINY_SPACE.items() if key != "encoding"}
    assert load_space(write_space(tmp_path, unsaid)).encoding == "per_layer" == load_space().encoding
    with pytest.raises(StudyError, match="encoding: expected one of \\['pattern', 'per_layer'\\], got 'layered'"):
        load_space(write_space(tmp_path, {**TINY_SPACE, "encoding": "layered"}))


def test_alternate_layout_alternates(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, {**TINY_SPACE, "layout": ["alternate"], "n_layer": {"low": 4, "high": 4}}))
    for _, config in sample_many(space, 5):
        assert [layer.layout for layer in config.layers] == ["sequential", "parallel"] * 2


def test_reductions_stop_at_min_head_dim(tmp_path: Path) -> None:
    """16 wide, 2 heads, min 4 per head: 16 -> 8 once, never to 4."""
    data = {**TINY_SPACE, "n_layer": {"low": 4, "high": 4}, "d_model": [16], "reduction": ["linear"],
            "reduce_every": {"low": 1, "high": 1}}
    for _, config in sample_many(load_space(write_space(tmp_path, data)), 5):
        assert config.widths == [16, 8, 8, 8, 8]


def assert_space_refused(path: Path, fragments: list[str]) -> None:
    """Loading the space file is one line that starts with its path and names every fragment."""
    with pytest.raises(StudyError) as error:
        load_space(path)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("change, fragments", [
    ({"depth": [1, 2]}, ["unknown key 'depth'"]),
    ({"mlp_ratio": []}, ["mlp_ratio", "non-empty list"]),
    ({"d_model": [16, 30]}, ["d_model 30", "n_head 4"]),
    ({"n_head": [2, 4], "d_model": [18]}, ["d_model 18", "n_head 4"]),
    ({"layout": ["sequential", "diagonal"]}, ["layout", "'diagonal'"]),
    ({"reduction": ["pool"]}, ["reduction", "'pool'"]),
    ({"reduce_factor": [0.5, 1.0]}, ["reduce_factor", "1.0", "between 0 and 1"]),
    ({"reduce_factor": [1.5]}, ["reduce_factor", "1.5"]),
    ({"n_layer": {"low": 3, "high": 2}}, ["n_layer", "low"]),
    ({"n_layer": [1, 2]}, ["n_layer", "low"]),
    ({"towers": [1.5]}, ["towers", "whole number"]),
    ({"min_head_dim": 0}, ["min_head_dim"]),
    ({"d_model": [True]}, ["d_model"]),
    # huge values: refused at once, not after minutes of samples of megabytes each
    ({"n_layer": {"low": 1, "high": 10_000}}, ["n_layer", "10000 is above 64"]),
    ({"d_model": [16, 2**20]}, ["d_model", "1048576 is above 65536"]),
    ({"mlp_ratio": [2, 1000]}, ["mlp_ratio", "1000 is above 64"]),
    ({"towers": [1, 100]}, ["towers", "100 is above 64"]),
    ({"n_layer": {"low": 1, "high": 64}, "towers": [1, 32]}, ["n_layer", "64 layers x 32 towers", "1024"]),
])
def test_space_errors_name_the_key(change: dict, fragments: list[str], tmp_path: Path) -> None:
    data = {**TINY_SPACE, "n_head": [2, 4], **change}
    if "d_model" not in change and "n_head" in change:
        data["d_model"] = [16]
    assert_space_refused(write_space(tmp_path, data), fragments)


def test_a_space_refuses_non_finite_choices() -> None:
    from studies.errors import StudyError
    from studies.space import space_from_dict

    for key in ("mlp_ratio", "reduce_factor"):
        for value in (float("nan"), float("inf")):
            with pytest.raises(StudyError, match=f"^space.{key}: {value} is not a finite positive number"):
                space_from_dict({**TINY_SPACE, key: [value]})


def test_missing_key_and_bad_files(tmp_path: Path) -> None:
    data = dict(TINY_SPACE)
    del data["towers"]
    with pytest.raises(StudyError, match="missing key 'towers'"):
        load_space(write_space(tmp_path, data))
    with pytest.raises(StudyError, match="malformed YAML"):
        load_space(write_space(tmp_path, "n_layer: {low: 1, high: [\n"))
    with pytest.raises(StudyError, match="expected a mapping"):
        load_space(write_space(tmp_path, "- just a list\n"))
    with pytest.raises(StudyError, match="cannot read"):
        load_space(tmp_path / "missing.yaml")
    data = dict(TINY_SPACE)
    del data["min_head_dim"]  # optional: defaults to 8
    assert load_space(write_space(tmp_path, data)).min_head_dim == 8


def test_a_stored_space_beyond_todays_bounds_still_reads() -> None:
    """A study made before a bound existed (here: deeper than a space may now be) is read as it was
    made, so its results stay reachable; only making or continuing a study checks the bounds."""
    stored = make_settings().to_dict()
    stored["space"]["n_layer"] = {"low": 1, "high": 100}
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(SETTINGS_KEY, stored)
    settings = read_settings(study)
    assert settings.space.n_layer.high == 100
    with pytest.raises(StudyError, match="n_layer: 100 is above 64"):
        settings.check_new()


def test_a_study_stored_by_an_earlier_version_reads_as_it_was_made() -> None:
    stored = make_settings().to_dict()
    del stored["space"]["encoding"]  # stored before the key existed: pattern, then the only encoding
    stored["gap_trials"] = True  # a setting since retired
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(SETTINGS_KEY, stored)
    settings = read_settings(study)
    assert settings.space.encoding == "pattern" and "gap_trials" not in settings.to_dict()
    assert settings.to_dict() == make_settings().to_dict()


@pytest.mark.parametrize("encoding", ["pattern", "per_layer"])
@pytest.mark.parametrize("kernels", [[3, 1], [3], [5, 3, 1]])
def test_a_space_whose_first_conv_kernel_is_wide_creates_its_study(encoding: str, kernels: list[int],
                                                                    tmp_path: Path) -> None:
    """`conv_kernel: [3, 1]` (conv first) was refused: the space's choices were listed by decoding a
    sample at context 1, where a kernel of 3 does not fit."""
    data = {**TINY_SPACE, "encoding": encoding, "reduction": ["conv", "none"], "conv_kernel": kernels}
    tiny = make_tiny(tmp_path, data)
    result = cli(*tiny.argv("search", "--trials", "0"))
    assert result.code == 0, result.err
    study = load(tiny)
    assert [t.user_attrs["preset"] for t in study.trials] == list(STUDY_PRESETS)  # queued, as ever
    space = read_settings(study).space
    assert space.choices()["conv_kernel"] == kernels
    for params, config in sample_many(space, 30, block_size=16):
        validate(config)
        assert all(layer.reduction.kernel_size == params["conv_kernel"] for layer in config.layers if layer.reduction)


def test_a_conv_kernel_longer_than_the_context_is_refused_in_one_line(tmp_path: Path) -> None:
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "reduction": ["conv"], "conv_kernel": [3, 1]})
    result = cli(*tiny.argv("search", "--trials", "0", "--block-size", "2"))
    assert_one_line_error(result, "search", "space.conv_kernel: 3 is longer than the context (block_size 2)")
    assert not tiny.storage.exists() or study_names(tiny.storage) == []
    with pytest.raises(StudyError, match="space.conv_kernel: 3 is longer"):
        make_settings(space=load_space(tiny.space), block_size=2).check_new()
    make_settings(space=load_space(tiny.space), block_size=3).check_new()


def test_a_space_of_huge_depth_is_refused_before_any_sample(tmp_path: Path) -> None:
    """n_layer up to 10,000 under --max-params trained nothing in 120 s and wrote 6.6 MB of journal per sample."""
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "encoding": "per_layer", "n_layer": {"low": 1, "high": 10_000}})
    result = cli(*tiny.argv("search", "--max-params", "2e5", "--trials", "1"))
    assert_one_line_error(result, "search", "n_layer: 10000 is above 64, the deepest a search space may reach")
    assert not tiny.storage.exists() or study_names(tiny.storage) == []
    deepest = {**TINY_SPACE, "n_layer": {"low": 1, "high": 64}}
    assert load_space(write_space(tmp_path, deepest)).n_layer.high == 64  # the bound itself is allowed


# --- the paper and modern spaces ------------------------------------------------------------------


def test_the_paper_space_samples_exactly_as_before_the_new_blocks() -> None:
    """Parameters, their order and the architectures a seeded sampler drew from the default space before
    today's blocks existed (the fixture): old studies reopen, sample on and reuse their results."""
    stored = json.loads((FIXTURES / "paper_space_samples.json").read_text())
    for encoding, rows in stored.items():
        space = replace(load_space("paper"), encoding=encoding)
        assert space_from_dict({**space.to_dict()}).to_dict() == space.to_dict()
        assert not set(space.to_dict()) & {*MODERN_LAYER_KEYS, *MODERN_MODEL_KEYS}  # stored as before
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
        for row in rows:
            trial = study.ask()
            config = space.sample(trial, 65, 64)
            assert list(trial.params.items()) == list(row["params"].items())
            assert architecture_hash(config) == row["hash"]
            study.tell(trial, 0.0)


def test_the_modern_space_is_the_paper_space_plus_a_choice_for_each_block() -> None:
    paper, modern = load_space("paper").to_dict(), load_space("modern").to_dict()
    assert {key: modern[key] for key in paper} == paper
    assert set(modern) - set(paper) == {*MODERN_LAYER_KEYS, *MODERN_MODEL_KEYS}
    assert all(len(modern[key]) > 1 for key in set(modern) - set(paper))
    with pytest.raises(StudyError, match="modern.*cannot read the search space.*shipped ones are paper, modern"):
        load_space("modern.yaml")


@pytest.mark.parametrize("encoding", ["per_layer", "pattern"])
def test_every_modern_sample_is_a_valid_decoder_over_a_fixed_space(encoding: str) -> None:
    space = replace(load_space("modern"), encoding=encoding)
    names = set(space.choices())
    slots = space.n_layer.high
    new = MODERN_MODEL_KEYS | ({f"{key}_{i}" for key in MODERN_LAYER_KEYS for i in range(slots)}
                               if encoding == "per_layer" else set(MODERN_LAYER_KEYS))
    old = PATTERN_PARAMETERS if encoding == "pattern" else per_layer_parameters(slots)
    assert names == old | new
    tied = untied_narrowed = 0
    for params, config in sample_many(space, 200, block_size=64):
        assert set(params) == names and list(params)[:len(old)] == [n for n in space.choices() if n in old]
        validate(config)
        widths = config.widths
        tied += config.tie_head
        untied_narrowed += params["tie_head"] and widths[-1] != config.d_model  # a narrowed head is never tied
        assert config.tie_head == (params["tie_head"] and widths[-1] == config.d_model)
        for index, (layer, width) in enumerate(zip(config.layers, widths)):
            drawn = params[f"mixer_{index}"] if encoding == "per_layer" else params["mixer"]
            if encoding == "pattern" and drawn == "conv":  # a conv rule keeps LFM2's attention layers
                drawn = "attention" if index in lfm2_attention_layers(len(config.layers)) else "conv"
            assert layer.mixer == drawn
            if config.position == "rope":
                assert width // layer.n_head % 2 == 0
            if layer.mixer == "conv":
                continue
            ratio = params[f"kv_ratio_{index}" if encoding == "per_layer" else "kv_ratio"]
            assert layer.kv_heads == kv_heads(layer.n_head, ratio) and layer.n_head % layer.kv_heads == 0
            window = params[f"window_{index}" if encoding == "per_layer" else "window"]
            assert layer.window == {"none": None, 0.25: 16, 0.5: 32}[window]
    assert tied and untied_narrowed


def test_kv_heads_and_windows_follow_the_heads_and_the_context() -> None:
    assert [kv_heads(8, ratio) for ratio in (1, 2, 4)] == [8, 4, 2]
    assert kv_heads(2, 4) == 1 == kv_heads(6, 4) and kv_heads(12, 5) == 2 and kv_heads(6, 2) == 3
    assert kv_heads(2, 4) == preset("llama", n_head=2).layers[0].n_kv_head  # the llama preset's rule
    assert window_tokens(0.25, 64) == 16 and window_tokens("none", 64) is None
    assert window_tokens(0.25, 2) == 1 and window_tokens(0.5, 1) is None  # never the whole context


@pytest.mark.parametrize("encoding", ["per_layer", "pattern"])
def test_params_for_finds_every_preset_in_the_modern_space(encoding: str) -> None:
    space = replace(load_space("modern"), encoding=encoding)
    for name in PRESETS:
        config = preset(name, vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)
        params = space.params_for(config)
        assert params is not None, name
        rebuilt = space.sample(optuna.trial.FixedTrial(params), 65, 64)
        assert architecture_hash(rebuilt) == architecture_hash(config)
    for _, config in sample_many(space, 30, vocab_size=65, block_size=64):
        params = space.params_for(config)
        assert params is not None
        assert architecture_hash(space.sample(optuna.trial.FixedTrial(params), 65, 64)) == architecture_hash(config)
    narrow = preset("llama", vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128)
    assert space.params_for(narrow.replace(rope_theta=5e5)) is None  # a theta the space does not offer


@pytest.mark.parametrize("change, fragments", [
    ({"position": ["learned", "alibi"]}, ["position", "'alibi'"]),
    ({"tie_head": [1]}, ["tie_head", "1 is not one of [False, True]"]),
    ({"kv_ratio": [1, 1.5]}, ["kv_ratio", "1.5", "whole number"]),
    ({"window": ["none", 1.0]}, ["window", "1.0", "between 0 and 1"]),
    ({"window": ["all"]}, ["window", "'all'", "or 'none'"]),
    ({"mixer": ["attention", "mamba"]}, ["mixer", "'mamba'"]),
    ({"mlp": []}, ["mlp", "non-empty list"]),
    ({"position": ["rope"], "d_model": [20], "n_head": [4]}, ["d_model 20", "n_head 4", "5 channels", "rope"]),
])
def test_block_choices_that_cannot_be_built_are_refused(change: dict, fragments: list[str], tmp_path: Path) -> None:
    data = {**TINY_SPACE, "n_head": [4], "d_model": [32], "min_head_dim": 2, **change}
    assert_space_refused(write_space(tmp_path, data), fragments)


# --- the presets a study enqueues -----------------------------------------------------------------


def test_settings_take_a_space_by_name_and_keep_the_study_presets() -> None:
    settings = make_settings(space="modern")
    assert settings.space == load_space("modern") and settings.presets == STUDY_PRESETS
    assert StudySettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    stored = settings.to_dict()
    del stored["presets"]  # a study made before llama and lfm2 were enqueued
    assert StudySettings.from_dict(stored).presets == PAPER_PRESETS
    with pytest.raises(StudyError, match="presets.*mistral"):
        make_settings(presets=("gpt", "mistral"))


@pytest.mark.parametrize("space, in_space", [
    ("paper", {"gpt": True, "pgpt": True, "lgpt": True, "cgpt": True, "llama": False, "lfm2": False}),
    ("modern", dict.fromkeys(STUDY_PRESETS, True)),
])
def test_a_new_study_enqueues_six_presets_and_an_old_one_its_own(space: str, in_space: dict, tmp_path: Path) -> None:
    storage = str(tmp_path / "s.journal")
    shape = {"preset_shape": {"n_layer": 4, "n_head": 4, "d_model": 128}, "block_size": 64}
    settings = make_settings(space=space, **shape)
    study, _ = open_study("new", storage, settings)
    queued = {t.user_attrs["preset"]: t.user_attrs["in_space"] for t in study.get_trials()}
    assert queued == in_space
    old = StudySettings.from_dict({key: value for key, value in settings.to_dict().items() if key != "presets"})
    study, stored = open_study("old", storage, old)  # e.g. a promotion's sibling of a study made before
    assert [t.user_attrs["preset"] for t in study.get_trials()] == list(PAPER_PRESETS)
    assert read_settings(study).presets == PAPER_PRESETS
