"""A refused value is named in the caller's terms: the API argument for Python, the flag on the command line."""

from __future__ import annotations

import pytest

from studies import Pruning, Search, StudySettings
from studies.errors import ArgumentError
from studies.front import pick
from study_helpers import assert_one_line_error, cli


def test_the_api_names_its_own_arguments_not_flags(tmp_path):
    with pytest.raises(ArgumentError, match=r"^max_flops=nan: must be a positive number$") as refused:
        StudySettings(constraints={"max_flops": float("nan")})
    assert (refused.value.argument, refused.value.problem) == ("max_flops", "must be a positive number")
    with pytest.raises(ArgumentError, match=r"^rungs=\[0\.5, 2\.0\]: must be fractions"):
        Pruning(rungs=(0.5, 2.0))
    with pytest.raises(ArgumentError, match=r"^pick='best': unknown choice \(choose from knee, best-quality"):
        pick([], ("val_loss", "flops_per_token"), "best")
    with pytest.raises(ArgumentError, match=r"^storage='.+': is a folder") as refused:
        Search.create("x", storage=str(tmp_path))
    assert "--" not in str(refused.value)


@pytest.mark.parametrize("argv, fragment", [
    (["search", "--max-flops", "nan"], "--max-flops nan: must be a positive number"),
    (["search", "--prune-margin", "-1"], "--prune-margin -1.0: must be a finite number >= 0"),
    (["search", "--storage", "{tmp}"], "--storage {tmp}: is a folder"),
    (["pareto", "--storage", "{tmp}/nowhere/runs.journal"], "--storage {tmp}/nowhere/runs.journal: folder"),
])
def test_the_command_line_names_the_flag(tmp_path, argv, fragment):
    result = cli(*(arg.format(tmp=tmp_path) for arg in argv))
    assert_one_line_error(result, argv[0], fragment.format(tmp=tmp_path))
