"""A mistyped flag, command or choice is refused with the nearest one named; a prefix is never taken for a flag."""

from __future__ import annotations

import pytest

from studies.cli.main import build_parser
from studies.cli.registry import COMMANDS
from study_helpers import cli


@pytest.mark.parametrize("argv, typo, suggestion", [
    (["search", "--trails", "3"], "--trails", "--trials"),
    (["search", "--trials=3", "--jbos", "2"], "--jbos", "--jobs"),
    (["pareto", "--storag", "x.journal"], "--storag", "--storage"),
    (["export", "--pick", "knee", "-o", "b.yaml", "--onxx", "m.onnx"], "--onxx", "--onnx"),
])
def test_a_typo_gets_did_you_mean(argv, typo, suggestion) -> None:
    result = cli(*argv)
    assert result.code == 2 and result.out == ""
    assert result.err.count("\n") == 1, result.err
    assert f"unrecognized arguments: {typo}" in result.err and f"did you mean {suggestion}?" in result.err


@pytest.mark.parametrize("argv, typo, suggestion", [
    (["serach"], "serach", "search"),
    (["promte", "--steps", "2000"], "promte", "promote"),
    (["paretto", "--json"], "paretto", "pareto"),
    (["export", "--pick", "kne", "-o", "b.yaml"], "kne", "knee"),
    (["search", "--latency-mode", "decod"], "decod", "decode"),
])
def test_a_mistyped_command_or_choice_gets_did_you_mean(argv, typo, suggestion) -> None:
    result = cli(*argv)
    assert result.code == 2 and result.out == "" and result.err.count("\n") == 1, result.err
    assert f"invalid choice: '{typo}'" in result.err
    assert f"did you mean {suggestion}?" in result.err


def test_a_prefix_is_not_taken_for_a_longer_flag(tmp_path) -> None:
    result = cli("pareto", "--storage", str(tmp_path / "none.journal"), "--htm", str(tmp_path / "front.html"))
    assert result.code == 2 and "unrecognized arguments: --htm" in result.err and "did you mean --html?" in result.err
    assert list(tmp_path.iterdir()) == []  # nothing was run


def test_nothing_like_a_known_flag_or_command_gets_no_guess() -> None:
    result = cli("search", "--zzzzzz")
    assert result.code == 2 and "unrecognized arguments: --zzzzzz" in result.err and "did you mean" not in result.err
    result = cli("xyzzy")
    assert result.code == 2 and "invalid choice: 'xyzzy'" in result.err and "did you mean" not in result.err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_refuses_abbreviations(command) -> None:
    parser = build_parser(command)
    commands = next(a for a in parser._actions if a.choices and command in a.choices).choices
    assert parser.allow_abbrev is False and commands[command].allow_abbrev is False
