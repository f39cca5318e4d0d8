"""reproduce and calibrate on a tiny corpus: the right rows, rankings from real runs, cached long runs;
and the proxy's agreement on what a study promoted."""

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from studies.fronts.front import promotion_agreement
from study_helpers import SHAPE, TINY_SPACE, assert_one_line_error, cli, make_tiny, quiet_datasets

RECIPE = ["--steps", "6", "--batch-size", "4", "--eval-windows", "4", "--warmup-steps", "1"]


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    with quiet_datasets():
        yield make_tiny(tmp_path / "tiny", TINY_SPACE)


def test_reproduce_compares_the_four_presets(tiny):
    result = cli("reproduce", "--data", str(tiny.corpus), *SHAPE, *RECIPE, "--json")
    assert result.code == 0, result.err
    rows = json.loads(result.out.strip().splitlines()[-1])
    assert [row["name"] for row in rows] == ["gpt", "pgpt", "lgpt", "cgpt"]
    for row in rows:
        assert {"val_loss", "flops_per_token", "params", "latency_ms"} <= set(row) and row["latency_ms"] > 0
    by_name = {row["name"]: row for row in rows}
    assert by_name["lgpt"]["params"] == by_name["cgpt"]["params"] < by_name["gpt"]["params"] < by_name["pgpt"]["params"]
    assert by_name["lgpt"]["flops_per_token"] < by_name["gpt"]["flops_per_token"]


def test_calibrate_reports_rank_agreement_and_caches_the_long_runs(tiny):
    argv = ["calibrate", "--data", str(tiny.corpus), "--space", str(tiny.space), "--block-size", "16",
            *RECIPE, "--architectures", "4", "--long-steps", "12", "--json"]
    first = cli(*argv)
    assert first.code == 0, first.err
    report = json.loads(first.out.strip().splitlines()[-1])
    assert len(report["architectures"]) == 4 and len({a["summary"] for a in report["architectures"]}) == 4
    for key in ("proxy_vs_long_tau", "proxy_vs_long_spearman", "params_vs_long_tau", "noise_ceiling_tau"):
        assert -1.0 <= report[key] <= 1.0
    assert report["proxy_steps"] == 6 and report["long_steps"] == 12
    # a different proxy re-uses every cached long run: only the proxies train again
    cached = sorted((tiny.root.parent / "cache" / "calibration").glob("*.json"))
    assert len(cached) == 4 * 3
    second = cli(*[a if a != "6" else "8" for a in argv])
    assert second.code == 0, second.err
    assert len(list((tiny.root.parent / "cache" / "calibration").glob("*.json"))) == 4 * 3 + 4
    again = json.loads(second.out.strip().splitlines()[-1])
    assert [a["long_loss"] for a in again["architectures"]] == [a["long_loss"] for a in report["architectures"]]
    # a damaged cache entry (a write cut short) is retrained, not an internal error
    cached[0].write_text('{"val_loss": 3.')
    third = cli(*argv)
    assert third.code == 0, third.err
    assert json.loads(cached[0].read_text())["val_loss"] > 0


def test_calibrate_needs_three_architectures(tiny):
    result = cli("calibrate", "--data", str(tiny.corpus), "--architectures", "2")
    assert_one_line_error(result, "calibrate", "at least 3")


def test_promotion_agreement_ranks_what_was_promoted_against_its_long_run():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    short, long = optuna.create_study(), optuna.create_study()
    for loss in (2.1, 2.2, 2.3, 2.4):
        short.add_trial(create_trial(value=loss, user_attrs={"val_loss": loss}))
    short.add_trial(create_trial(state=TrialState.PRUNED, user_attrs={}))  # never promoted
    long.add_trial(create_trial(value=1.7, user_attrs={"val_loss": 1.7, "preset": "gpt"}))  # a reference, not a choice
    assert promotion_agreement(short, long, "val_loss") is None  # nothing promoted yet
    for source, loss in ((0, 1.9), (1, 1.8)):
        long.add_trial(create_trial(value=loss, user_attrs={"val_loss": loss, "promoted_from": source}))
    assert promotion_agreement(short, long, "val_loss") is None  # two points rank nothing
    for source, loss in ((2, 2.0), (3, 2.1)):
        long.add_trial(create_trial(value=loss, user_attrs={"val_loss": loss, "promoted_from": source}))
    tau, count = promotion_agreement(short, long, "val_loss")
    # pairs (2.1, 1.9) (2.2, 1.8) (2.3, 2.0) (2.4, 2.1): one discordant pair of six
    assert count == 4 and tau == pytest.approx(4 / 6)
