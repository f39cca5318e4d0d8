"""Every user mistake: one line on stderr, exit code 2, no traceback, and no change to any stored study."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from study_helpers import RECIPE, SHAPE, TINY_SPACE, assert_one_line_error, cli, make_tiny, quiet_datasets


@pytest.fixture(scope="module")
def existing(tmp_path_factory: pytest.TempPathFactory):
    """A tiny study with a few trials, the files every bad input below leans on."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with pytest.MonkeyPatch.context() as patch, quiet_datasets():
        patch.setenv("DECODER_NAS_CACHE", str(root / "cache"))
        tiny = make_tiny(root / "tiny", TINY_SPACE)
        result = cli(*tiny.argv("search", "--trials", "4"))
        assert result.code == 0, result.err
        (root / "malformed.yaml").write_text("vocab_size: 65\nlayers: [\n  {n_head: 4\n")
        (root / "unknown-key.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\ncolour: red\n"
                                              "layers: [{n_head: 2}]\n")
        (root / "wrong-type.yaml").write_text("vocab_size: 65\nblock_size: sixteen\nd_model: 16\nlayers: [{n_head: 2}]\n")
        (root / "heads.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\nlayers: [{n_head: 3}]\n")
        (root / "narrow.yaml").write_text("vocab_size: 65\nblock_size: 16\nd_model: 16\n"
                                          "layers: [{n_head: 4, reduction: {kind: linear, width: 2}}, {n_head: 2}]\n")
        (root / "empty.txt").write_text("")
        (root / "short.txt").write_text("tiny")
        yield tiny, root, patch


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CASES = {
    "malformed yaml": (["describe", "{root}/malformed.yaml"], "describe", "malformed YAML"),
    "unknown key": (["describe", "{root}/unknown-key.yaml"], "describe", "unknown key 'colour'"),
    "wrong type": (["describe", "{root}/wrong-type.yaml"], "describe", "block_size: expected int"),
    "heads do not divide": (["describe", "{root}/heads.yaml"], "describe", "do not divide the width 16"),
    "reduction below one channel per head": (["describe", "{root}/narrow.yaml"], "describe", "fewer than 1 channel"),
    "unknown preset": (["describe", "--preset", "bert"], "describe", "invalid choice: 'bert'"),
    "missing corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/nope.txt", *RECIPE], "train", "nope.txt"),
    "empty corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/empty.txt", *RECIPE], "train", "empty"),
    "too-short corpus": (["train", "--preset", "gpt", *SHAPE, "--data", "{root}/short.txt", *RECIPE], "train", "tokens"),
    "negative steps": (["search", "{study}", "--steps", "-5"], "search", "steps"),
    "unknown storage scheme": (["pareto", "--storage", "ftp://host/x"], "pareto", "unknown scheme 'ftp'"),
    "unknown study": (["pareto", "--study", "nope", "--storage", "{storage}"], "pareto", "unknown study 'nope'"),
    "unknown trial": (["export", "--study", "tiny", "--storage", "{storage}", "--trial", "999", "-o",
                       "{root}/x.yaml"], "export", "no such trial"),
    "settings that differ": (["search", "{study}", "--steps", "99"], "search", "recipe.steps"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_line_and_changes_nothing(existing, name):
    tiny, root, _ = existing
    argv, command, fragment = CASES[name]
    study_argv = tiny.argv("search")[1:]  # the tiny study's own flags, to be spoiled by one more flag
    expanded: list[str] = []
    for arg in argv:
        if arg == "{study}":
            expanded += study_argv
        else:
            expanded.append(arg.format(root=root, storage=tiny.storage))
    before = digest(tiny.storage)
    with quiet_datasets():
        result = cli(*expanded)
    assert_one_line_error(result, command, fragment)
    assert digest(tiny.storage) == before
