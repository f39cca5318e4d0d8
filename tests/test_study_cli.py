"""`decoder-nas search/worker/promote/pareto/export/studies` end to end, on tiny studies, deleting them too.

One 6-trial search (module fixture) is shared by the read-only tests; a test that changes a study
works on a copy of its journal file.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import studies.workers.trials
from search_space import PAPER_PRESETS, architecture_hash, config_from_dict, load_config
from studies.fronts.front import front_trials, knee
from studies.settings import read_settings
from studies.workers import trials as trials_module
from study_helpers import (
    PRESET_NAMES,
    PRESETS_TRAINED,
    STEPS,
    TINY_SPACE,
    Result,
    Tiny,
    assert_one_line_error,
    cli,
    load,
    make_tiny,
    quiet_datasets,
    run,
    study_names,
)

RECORDED = ("config", "arch_hash", "summary", "steps", "val_loss", "val_accuracy", "flops_per_token", "params",
            "latency_ms", "loss_curve", "device", "versions")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    with quiet_datasets():
        yield


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tiny, Result]:
    """`search` on the tiny space: the six presets (cgpt reuses lgpt's result), then two sampled trials."""
    tiny = make_tiny(tmp_path_factory.mktemp("searched"))
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(tiny.root / "cache"))
        result = cli(*tiny.argv("search", "--trials", str(PRESETS_TRAINED + 2), "--sampler-seed", "1"))
    return tiny, result


@pytest.fixture
def copied(searched: tuple[Tiny, Result], tmp_path: Path) -> Tiny:
    return searched[0].copy(tmp_path / "copy")


def dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


# --- search -------------------------------------------------------------------------------------


def test_search_runs_the_presets_first_and_records_every_trial(searched: tuple[Tiny, Result]) -> None:
    tiny, result = searched
    assert result.code == 0, result.err
    assert "Pareto front of 'tiny'" in result.out and "Traceback" not in result.err
    study = load(tiny)
    trials = study.get_trials()
    presets = len(PRESET_NAMES)
    assert len(trials) == presets + 2
    assert [t.user_attrs.get("preset") for t in trials[:presets]] == PRESET_NAMES
    assert all("preset" not in t.user_attrs for t in trials[presets:])
    settings = read_settings(study)
    assert settings.objectives == ("val_loss", "flops_per_token") and settings.steps == STEPS
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.state == TrialState.COMPLETE for t in trials[:presets])  # presets are never pruned
    for trial in complete:
        attrs = trial.user_attrs
        missing = [key for key in RECORDED if key not in attrs]
        assert not missing, (trial.number, missing)
        assert attrs["steps"] == STEPS and len(attrs["loss_curve"]) == STEPS
        assert attrs["device"] == "cpu" and {"python", "torch", "optuna"} <= set(attrs["versions"])
        assert trial.values == [attrs[name] for name in settings.objectives]
        assert attrs["config"]["block_size"] == 16
    for trial in trials:
        if trial.state == TrialState.PRUNED:  # stopped at a rung: recorded, but never evaluated
            assert trial.user_attrs["pruned_reason"].startswith("dominated at step")
            assert any(key.startswith("rung_") for key in trial.user_attrs) and "val_loss" not in trial.user_attrs
    # the presets were built at the requested shape
    gpt = trials[0].user_attrs["config"]
    assert gpt["d_model"] == 16 and len(gpt["layers"]) == 2 and gpt["layers"][0]["n_head"] == 2


def test_pareto_json_is_the_non_dominated_set_of_complete_trials(
    searched: tuple[Tiny, Result], capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = searched
    result = run(capsys, "pareto", *tiny.study_flags(), "--json")
    assert result.code == 0, result.err
    front = json.loads(result.out)
    assert isinstance(front, list) and front
    for item in front:
        assert {"number", "steps", "val_loss", "flops_per_token", "params", "latency_ms", "config"} <= set(item)
        assert item["steps"] == STEPS
    complete = [t for t in load(tiny).get_trials() if t.state == TrialState.COMPLETE]
    by_number = {t.number: t for t in complete}
    numbers = [item["number"] for item in front]
    assert len(set(numbers)) == len(numbers)
    for number in numbers:
        assert not any(dominates(other.values, by_number[number].values) for other in complete)
    # and every complete trial off the front is dominated by, or ties with, a front trial
    for trial in complete:
        if trial.number not in numbers:
            assert any(dominates(by_number[n].values, trial.values) or by_number[n].values == trial.values
                       for n in numbers), trial.number


def test_pareto_html_writes_a_plotly_page(
    searched: tuple[Tiny, Result], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = searched
    page = tmp_path / "front.html"
    result = run(capsys, "pareto", *tiny.study_flags(), "--html", str(page))
    assert result.code == 0, result.err
    assert "plotly" in page.read_text() and "hypervolume" in result.out


def test_export_knee_gives_a_config_that_describe_and_train_accept(
    searched: tuple[Tiny, Result], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = searched
    out = tmp_path / "out.yaml"
    result = run(capsys, "export", *tiny.study_flags(), "--pick", "knee", "-o", str(out))
    assert result.code == 0, result.err
    study = load(tiny)
    settings = read_settings(study)
    expected = knee(front_trials(study, settings), settings.objectives)
    config = load_config(out)
    provenance = config.provenance
    assert provenance["study"] == "tiny" and provenance["trial"] == expected.number
    assert provenance["steps"] == STEPS and provenance["pick"] == "knee"
    assert provenance["arch_hash"] == expected.user_attrs["arch_hash"]
    assert provenance["metrics"]["val_loss"] == expected.user_attrs["val_loss"]
    assert provenance["metrics"]["flops_per_token"] == expected.user_attrs["flops_per_token"]

    assert run(capsys, "describe", str(out)).code == 0
    trained = run(capsys, "train", str(out), "--data", str(tiny.corpus), "--steps", "2", "--batch-size", "4",
                  "--eval-windows", "4", "--device", "cpu", "--json")
    assert trained.code == 0, trained.err
    assert json.loads(trained.out.strip().splitlines()[-1])["steps"] == 2
    assert "replaced by the tokenizer" not in trained.err  # the export carries the study's vocabulary


def test_export_min_flops_picks_the_cheapest_front_trial(
    searched: tuple[Tiny, Result], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = searched
    out = tmp_path / "cheap.json"
    assert run(capsys, "export", *tiny.study_flags(), "--pick", "min-flops", "-o", str(out)).code == 0
    front = json.loads(run(capsys, "pareto", *tiny.study_flags(), "--json").out)
    assert load_config(out).provenance["trial"] == min(front, key=lambda r: r["flops_per_token"])["number"]


def test_export_of_a_missing_trial_is_a_one_line_error(
    searched: tuple[Tiny, Result], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, _ = searched
    result = run(capsys, "export", *tiny.study_flags(), "--trial", "99", "-o", str(tmp_path / "x.yaml"))
    assert_one_line_error(result, "export", "--trial 99", "no such trial")
    assert not (tmp_path / "x.yaml").exists()


def test_studies_lists_counts_and_delete_removes(copied: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "studies", "--storage", str(copied.storage), "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out)
    study = load(copied)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert rows == [{"study": "tiny", "trials": len(PRESET_NAMES) + 2, "complete": len(complete), "steps": STEPS,
                     "objectives": ["val_loss", "flops_per_token"], "data": str(copied.corpus)}]

    assert_one_line_error(run(capsys, "studies", "--storage", str(copied.storage), "--delete", "nope"),
                          "studies", "unknown study 'nope'")
    assert run(capsys, "studies", "--storage", str(copied.storage), "--delete", "tiny").code == 0
    assert json.loads(run(capsys, "studies", "--storage", str(copied.storage), "--json").out) == []
    assert_one_line_error(run(capsys, "pareto", *copied.study_flags()), "pareto", "unknown study 'tiny'")


def test_deleting_a_study_with_a_running_trial_says_so(tmp_path: Path) -> None:
    from studies.storage.backends import open_storage

    storage = tmp_path / "s.journal"
    optuna.create_study(study_name="busy", storage=open_storage(str(storage))).ask()
    done = cli("studies", "--storage", str(storage), "--delete", "busy")
    assert done.code == 0, done.err
    assert "deleted study 'busy'" in done.out and "1 trial" in done.out and "running" in done.out
    assert study_names(storage) == []


def test_a_study_deleted_while_a_worker_trains_stops_it_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studies.storage.backends import open_storage

    t = make_tiny(tmp_path)
    original = studies.workers.trials.run_training

    def deleted_meanwhile(*args, **kwargs):
        optuna.delete_study(study_name="tiny", storage=open_storage(str(t.storage)))  # another process deletes it
        return original(*args, **kwargs)

    monkeypatch.setattr(studies.workers.trials, "run_training", deleted_meanwhile)
    done = cli(*t.argv("search", "--trials", "2", "--no-presets"))
    assert_one_line_error(done, "search", "'tiny' was deleted while this worker was running it")
    assert study_names(t.storage) == []


# --- resume and settings --------------------------------------------------------------------------


def test_search_again_continues_the_study(copied: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *copied.argv("search", "--trials", "1"))
    assert result.code == 0, result.err
    trials = load(copied).get_trials()
    presets = len(PRESET_NAMES)
    assert [t.user_attrs.get("preset") for t in trials] == PRESET_NAMES + [None] * (len(trials) - presets)  # not again
    new = [t for t in trials[presets + 2:] if trials_module.trained(t)]  # repeats are not trials run
    assert len(new) == 1 and new[0].state in (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.mark.parametrize("flags, key", [
    (["--steps", "13"], "recipe.steps"),
    (["--objectives", "val_loss", "params"], "objectives"),
    (["--max-params", "1e6"], "constraints.max_params"),
])
def test_search_with_other_settings_is_refused_and_changes_nothing(
    flags: list[str], key: str, copied: Tiny, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, *copied.argv("search", "--trials", "1", *flags))
    assert_one_line_error(result, "search", "study 'tiny' was created with other settings", key)
    assert len(load(copied).get_trials()) == len(PRESET_NAMES) + 2


# --- worker ---------------------------------------------------------------------------------------


def test_worker_joins_an_existing_study(copied: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, *copied.argv("worker", "--trials", "2"))
    assert result.code == 0, result.err
    trials = load(copied).get_trials()
    presets = len(PRESET_NAMES)
    assert sum(trials_module.trained(t) for t in trials[presets + 2:]) == 2
    assert sum("preset" in t.user_attrs for t in trials) == presets


def test_worker_creates_the_study_and_max_complete_stops_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny(tmp_path)
    # --rungs with no fraction: no early stopping, so every trial completes
    result = run(capsys, *tiny.argv("worker", "--trials", "2", "--no-presets", "--rungs", "--sampler-seed", "1"))
    assert result.code == 0, result.err
    trials = load(tiny).get_trials()
    assert len(trials) == 2 and not any("preset" in t.user_attrs for t in trials)
    assert read_settings(load(tiny)).pruning.rungs == ()

    result = run(capsys, *tiny.argv("worker", "--max-complete", "3"))  # --trials defaults to ~unbounded
    assert result.code == 0, result.err
    trials = load(tiny).get_trials()
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    # complete as every summary counts it: trained to the end, a reused twin's result apart
    assert sum("reused_from" not in t.user_attrs for t in trials) == 3
    assert "the study now holds" in result.out and ": 3 complete" in result.out

    result = run(capsys, *tiny.argv("worker", "--max-complete", "3"))  # already there: runs nothing
    assert result.code == 0 and "trained 0 trials in this process" in result.out
    assert len(load(tiny).get_trials()) == len(trials)


# --- constraints, reuse, failures -------------------------------------------------------------------


def test_max_params_prunes_infeasible_architectures_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = make_tiny(tmp_path)
    limit = 9000  # the d16 architectures fit, every d32 one does not
    result = run(capsys, *tiny.argv("search", "--trials", "3", "--no-presets", "--max-params", str(limit),
                                    "--sampler", "random", "--sampler-seed", "3", "--rungs"))
    assert result.code == 0, result.err
    trials = load(tiny).get_trials()
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    feasible = [t for t in trials if not t.user_attrs.get("infeasible")]
    assert infeasible and len(feasible) == 3  # infeasible samples do not count as trials run
    for trial in infeasible:
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["params"] > limit and trial.user_attrs["config"]["d_model"] == 32
        assert trial.user_attrs["pruned_reason"].startswith("infeasible: params")
        assert "loss_curve" not in trial.user_attrs and "val_loss" not in trial.user_attrs
        assert any(key.startswith("constraints") for key in trial.system_attrs)
    for trial in feasible:
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["params"] <= limit
        assert any(key.startswith("constraints") for key in trial.system_attrs)


@pytest.mark.parametrize("mlp_ratios, in_space", [([2, 4], True), ([2], False)])
def test_presets_the_space_can_build_carry_their_parameters(
    mlp_ratios: list[int], in_space: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the paper's presets have MLP ratio 4: with it in the space the sampler learns from them like from
    # any trial; llama and lfm2 (rope, RMSNorm, SwiGLU) lie outside the tiny space, which has only the paper's blocks
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "mlp_ratio": mlp_ratios})
    assert run(capsys, *tiny.argv("search", "--trials", str(PRESETS_TRAINED + 1), "--rungs")).code == 0
    study = load(tiny)
    space = read_settings(study).space
    for trial in study.get_trials()[:len(PRESET_NAMES)]:
        expected = in_space and trial.user_attrs["preset"] in PAPER_PRESETS
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["in_space"] == expected
        if expected:
            config = config_from_dict(trial.user_attrs["config"])
            rebuilt = space.sample(optuna.trial.FixedTrial(trial.params), config.vocab_size, config.block_size)
            assert architecture_hash(rebuilt) == trial.user_attrs["arch_hash"]
        else:
            assert trial.params == {}


def test_a_diverging_trial_fails_and_the_study_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny(tmp_path)
    result = run(capsys, *tiny.argv("search", "--trials", "2", "--no-presets", "--lr", "1e9", "--rungs"))
    assert result.code == 0, result.err
    trials = load(tiny).get_trials()
    assert len(trials) == 2
    for trial in trials:
        assert trial.state == TrialState.FAIL
        assert "non-finite" in trial.user_attrs["fail_reason"]
    assert "trained 2 trials in this process" in result.out and "Traceback" not in result.err
    assert json.loads(run(capsys, "pareto", *tiny.study_flags(), "--json").out) == []


def test_pareto_on_a_study_with_nothing_complete_says_so_in_one_line(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """It printed an empty table with exit code 0."""
    tiny = make_tiny(tmp_path)
    assert run(capsys, *tiny.argv("search", "--trials", "0")).code == 0  # the presets queued, nothing trained
    expected = (f"study 'tiny' has no complete trials to show yet ({len(PRESET_NAMES)} trials: {len(PRESET_NAMES)} waiting); "
                f"run `decoder-nas search --study tiny --storage {tiny.storage}`")
    assert_one_line_error(run(capsys, "pareto", *tiny.study_flags()), "pareto", expected)
    page = tmp_path / "front.html"
    assert_one_line_error(run(capsys, "pareto", *tiny.study_flags(), "--html", str(page)), "pareto", expected)
    assert not page.exists()
    assert json.loads(run(capsys, "pareto", *tiny.study_flags(), "--json").out) == []  # a script reads no points


def test_an_exception_in_the_model_fails_one_trial_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from search_space.model import Decoder

    tiny = make_tiny(tmp_path)
    real, raised = Decoder.forward, []

    def forward_that_breaks_once(self, *args, **kwargs):
        if not raised:
            raised.append(1)
            raise RuntimeError("boom in the model")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Decoder, "forward", forward_that_breaks_once)
    result = run(capsys, *tiny.argv("search", "--trials", "2", "--no-presets", "--rungs"))
    assert result.code == 0, result.err
    first, second = load(tiny).get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "RuntimeError: boom in the model"
    assert second.state == TrialState.COMPLETE and "fail_reason" not in second.user_attrs


# --- promote ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_promote_retrains_the_front_in_a_sibling_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # One layer of width 16 in one tower: every sample has fewer FLOPs than any (two-layer) preset, so the sampled
    # architecture is on the front whatever its loss.
    tiny = make_tiny(tmp_path, {**TINY_SPACE, "n_layer": {"low": 1, "high": 1}, "d_model": [16], "towers": [1]})
    assert run(capsys, *tiny.argv("search", "--trials", str(PRESETS_TRAINED + 1))).code == 0
    short = load(tiny)
    settings = read_settings(short)
    front = [t.number for t in front_trials(short, settings) if "preset" not in t.user_attrs]
    presets = len(PRESET_NAMES)
    assert front == [presets]

    result = run(capsys, "promote", *tiny.study_flags(), "--steps", "24", "--gap-trials", "0", "--device", "cpu")
    assert result.code == 0, result.err
    assert "promoted 1 new architectures" in result.out and "Pareto front of 'tiny@24'" in result.out
    sibling = load(tiny, "tiny@24")
    assert read_settings(sibling).steps == 24
    trials = sibling.get_trials()
    assert [t.user_attrs.get("preset") for t in trials[:presets]] == PRESET_NAMES
    assert [t.user_attrs.get("promoted_from") for t in trials[presets:]] == front
    for trial in trials:  # none can be pruned: presets never are, and the promoted one is the cheapest
        assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("pruned_reason")
        assert trial.user_attrs["steps"] == 24 and len(trial.user_attrs["loss_curve"]) == 24
    for trial in trials[presets:]:  # the same architecture as in the short study
        source = short.trials[trial.user_attrs["promoted_from"]]
        assert trial.user_attrs["arch_hash"] == source.user_attrs["arch_hash"]
    assert len(short.get_trials()) == len(PRESET_NAMES) + 1  # the short study is untouched

    assert "promoted architectures" not in run(capsys, "pareto", *tiny.study_flags()).out  # one is no ranking
    longest = json.loads(run(capsys, "pareto", *tiny.study_flags(), "--json").out)
    assert longest and {item["steps"] for item in longest} == {24}
    assert {item["number"] for item in longest} <= {t.number for t in trials}
    original = json.loads(run(capsys, "pareto", *tiny.study_flags(), "--steps", "12", "--json").out)
    assert {item["steps"] for item in original} == {12}
    assert_one_line_error(run(capsys, "pareto", *tiny.study_flags(), "--steps", "99"), "pareto",
                          "--steps 99", "12, 24")
    assert_one_line_error(run(capsys, "promote", *tiny.study_flags(), "--steps", "12"), "promote",
                          "longer budget")
    assert_one_line_error(run(capsys, "promote", *tiny.study_flags(), "--steps", "48", "--top", "0"), "promote",
                          "--top 0")
    assert_one_line_error(run(capsys, *tiny.argv("search", "--trials", "1", "--top", "2")), "search",
                          "--top 2", "needs --promote-steps")
    assert_one_line_error(run(capsys, *tiny.argv("search", "--trials", "1", "--gap-trials", "2")), "search",
                          "--gap-trials 2", "needs --promote-steps")
    assert_one_line_error(run(capsys, "promote", *tiny.study_flags(), "--steps", "24", "--gap-trials", "-1"),
                          "promote", "--gap-trials -1")
    assert len(short.get_trials()) == len(PRESET_NAMES) + 1  # refused before any trial ran


# --- storage errors ---------------------------------------------------------------------------------


def test_unknown_storage_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(run(capsys, "pareto", "--storage", "ftp://x"), "pareto", "unknown scheme 'ftp'")


def test_storage_in_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = make_tiny(tmp_path)
    argv = tiny.argv("search", "--trials", "1")
    argv[argv.index("--storage") + 1] = "/nonexistent/dir/x.journal"
    assert_one_line_error(run(capsys, *argv), "search", "/nonexistent/dir", "does not exist")


def test_unknown_study(searched: tuple[Tiny, Result], capsys: pytest.CaptureFixture[str]) -> None:
    tiny, _ = searched
    assert_one_line_error(run(capsys, "pareto", "--study", "nope", "--storage", str(tiny.storage)), "pareto",
                          "unknown study 'nope'", "tiny")
    assert_one_line_error(run(capsys, "export", "--study", "nope", "--storage", str(tiny.storage), "--pick", "knee",
                              "-o", "x.yaml"), "export", "unknown study 'nope'")


@pytest.mark.parametrize("flag", ["--batch-size", "--eval-windows"])
def test_a_batch_that_cannot_fit_is_refused_before_the_first_trial(tmp_path: Path, flag: str) -> None:
    # Every trial would fail alike on it; the study is told once and trains nothing.
    t = make_tiny(tmp_path)
    done = cli(*t.argv("search", "--trials", "2", flag, "10000000000"))
    assert_one_line_error(done, "search", f"{flag} 10000000000: 10000000000 windows of")
    assert {trial.state for trial in load(t).get_trials(deepcopy=False)} <= {TrialState.WAITING}  # the presets wait
