"""reproduce and calibrate on a tiny corpus: the right rows, rankings from real runs, cached long runs."""

import json
from pathlib import Path

import pytest

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


def test_calibrate_needs_three_architectures(tiny):
    result = cli("calibrate", "--data", str(tiny.corpus), "--architectures", "2")
    assert_one_line_error(result, "calibrate", "at least 3")
