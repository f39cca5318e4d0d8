"""The README's promises hold: its opening commands, its length, and every `decoder-nas` command in it.

Every `decoder-nas ...` line in a bash code block of the README (and of docs/benchmarks.md and
docs/decisions.md) must parse with today's command line; the cheap ones (`describe`) also run.
A command that names a file under examples/ or benchmarks/ needs that file to ship.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from studies.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "decisions.md"]
MAX_README_LINES = 260
CI_SCRIPT = ROOT / ".ci" / "run"
TEST_COMMAND = "pip install -e '.[test]' && ruff check . && python -m pytest -q"

# Words in example commands that stand for something the reader fills in. They are dropped before
# parsing; any other bracketed or <angled> word fails the test, so a new placeholder is a choice.
PLACEHOLDERS = {
    "[flags]": "the search flags of the reader's choice (worker takes search's flags)",
}
SEPARATORS = {"&&", "||", "|", ";"}
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", ""}
CHEAP = {"describe"}  # commands that run in a second or two, offline, writing nothing


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced code block, in order."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, lines))
                language = None
        elif language is not None:
            lines.append(line)
    assert language is None, "a code block is not closed"
    return blocks


def shell_lines(lines: list[str]) -> list[str]:
    """Logical lines: backslash continuations joined, a leading `$ ` prompt dropped."""
    joined, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append((pending + line).strip().removeprefix("$ "))
        pending = ""
    return [line for line in joined if line]


def decoder_nas_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(as written, argv after `decoder-nas`) for every decoder-nas command in the file's shell blocks."""
    return [found for language, lines in code_blocks(path.read_text(encoding="utf-8"))
            if language in SHELL_LANGUAGES for found in commands_in(lines)]


def commands_in(lines: list[str]) -> list[tuple[str, list[str]]]:
    """(as written, argv after `decoder-nas`) for every decoder-nas command in one block's lines, in order."""
    found = []
    for line in shell_lines(lines):
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in [*words, ";"]:
            if word not in SEPARATORS:
                segment.append(word)
                continue
            if segment and segment[0] == "decoder-nas":
                found.append((line, normalise(segment[1:], line)))
            segment = []
    return found


def walkthrough() -> list[list[str]]:
    """What a new user runs in order: the README's opening commands, then its Quickstart block."""
    text = README.read_text(encoding="utf-8")
    blocks = code_blocks(text)
    quickstart = code_blocks(text[text.index("## Quickstart"):])[0]
    return [argv for _, lines in (blocks[0], quickstart) for _, argv in commands_in(lines)]


def normalise(argv: list[str], line: str) -> list[str]:
    kept = [word for word in argv if word not in PLACEHOLDERS]
    for word in kept:
        assert not re.fullmatch(r"\[.*\]|<.*>|\.\.\.|…", word), (
            f"unknown placeholder {word!r} in {line!r}: add it to PLACEHOLDERS or write a real value")
    return kept


def all_commands() -> list[tuple[Path, str, list[str]]]:
    return [(path, line, argv) for path in DOCUMENTS for line, argv in decoder_nas_commands(path)]


COMMANDS = all_commands()


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move evidence to docs/"


def test_the_readme_links_each_topic_page_once():
    # docs/ is by topic; a page the README does not reach is lost, and one linked twice is noise.
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8"))
    pages = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
    assert sorted(links) == pages


def test_readme_opens_with_the_main_job_and_the_ci_test_command():
    text = README.read_text(encoding="utf-8")
    first_block_at = text.splitlines().index("```bash")
    assert first_block_at <= 3, "the two commands come first, right under the title"
    language, lines = code_blocks(text)[0]
    commands = [line.split("  #")[0].strip() for line in lines if line.strip()]
    assert len(commands) == 2, commands

    ci = CI_SCRIPT.read_text(encoding="utf-8")
    torch_pin = re.search(r"pip install -q (torch==[\w.+]+)", ci)
    assert torch_pin, "CI installs a pinned torch first"
    torch_install = f"pip install {torch_pin[1]}"
    assert TEST_COMMAND in ci.splitlines(), "CI runs the README's test command verbatim"

    assert commands[0] == f"{torch_install} && pip install -e . && decoder-nas search"
    assert commands[1] == f"{torch_install} && {TEST_COMMAND}"


def test_the_walkthrough_searches_each_study_once():
    """The first command and the Quickstart each ran `search` on the default study, silently doubling it."""
    searched = []
    for argv in walkthrough():
        if argv[0] in ("search", "worker"):
            args = build_parser(argv[0]).parse_args(argv)
            searched.append((args.study, args.storage))
    assert searched and len(searched) == len(set(searched)), searched


def test_the_readme_shows_commands_worth_checking():
    names = {argv[0] for path, _, argv in COMMANDS if path == README}
    assert {"search", "pareto", "export", "train", "generate", "evaluate", "describe", "worker"} <= names
    assert sum(argv[0] in CHEAP for _, _, argv in COMMANDS) >= 2


@pytest.mark.parametrize("path, line, argv", COMMANDS,
                         ids=[f"{p.name}:{' '.join(a[:2])}" for p, _, a in COMMANDS])
def test_every_command_parses(path, line, argv, capsys):
    try:
        build_parser(argv[0]).parse_args(argv)
    except SystemExit as exit:
        pytest.fail(f"{path.name}: {line!r} does not parse (exit {exit.code}): {capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("path, line, argv", COMMANDS,
                         ids=[f"{p.name}:{' '.join(a[:2])}" for p, _, a in COMMANDS])
def test_files_the_commands_name_ship(path, line, argv):
    for word in argv:
        if word.startswith(("examples/", "benchmarks/")):
            assert (ROOT / word).is_file(), f"{path.name}: {line!r} names {word}, which is not in the repository"


@pytest.mark.parametrize("argv", [argv for _, _, argv in COMMANDS if argv[0] in CHEAP],
                         ids=lambda argv: " ".join(argv))
def test_cheap_commands_run(argv, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0, capsys.readouterr().err


def test_the_zero_shot_sample_loads():
    from trainer.zeroshot import load_items

    items = load_items(str(ROOT / "examples" / "zero-shot.jsonl"))
    assert len(items) >= 10
    assert all(0 <= item.label < len(item.choices) for item in items)


@pytest.mark.slow
def test_the_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Python API block, run as written but with budgets a test can afford."""
    import optuna

    (python,) = [lines for language, lines in code_blocks(README.read_text()) if language == "python"]
    code = "\n".join(python)
    tiny_budgets = {"TrainingRecipe(steps=300, warmup_steps=30)": "TrainingRecipe(steps=4, warmup_steps=1, "
                    "batch_size=2, eval_windows=2)", "trials=24": "trials=9, jobs=1", "promote(steps=2000)":
                    "promote(steps=6, gap_trials=1)"}
    for written, affordable in tiny_budgets.items():
        assert written in code
        code = code.replace(written, affordable)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert (tmp_path / "best.yaml").is_file() and namespace["long"].name == "my-study@6"
    assert namespace["front"] and len(namespace["df"]) >= 10  # the six presets (cgpt reusing lgpt) and four sampled


# Budgets a test can afford, per command of the walkthrough; everything else runs as written.
AFFORDABLE = {
    "search": ["--trials", "5", "--steps", "8", "--batch-size", "2", "--eval-windows", "2", "--warmup-steps", "1"],
    "train": {"2000": "4", "3000": "6"},
}
COUNTS = r"(\d+) trials?: ([^)\n]*)"  # what study_counts writes: `27 trials: 18 complete, ...`


def outcome_counts(text: str) -> dict[str, int]:
    """`18 complete, 3 reused a twin's result` -> {"complete": 18, "reused a twin's result": 3}."""
    return {words: int(count) for count, words in re.findall(r"(\d+) ([^,]+)", text)}


@pytest.mark.slow
def test_the_walkthrough_runs_as_written_and_its_counts_agree(tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's first command and its Quickstart, in order, in a fresh folder, with small budgets:
    each succeeds, and every count they print of the study tells one story."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    said: dict[str, list[tuple[str, str]]] = {}
    for argv in walkthrough():
        if argv[0] == "search":
            argv = [*argv, *AFFORDABLE["search"]]
        elif argv[0] == "train":
            argv = [AFFORDABLE["train"].get(word, word) for word in argv]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (argv, err)
        said.setdefault(argv[0], []).append((out, err))
    (out, err), = said["search"]
    trained, by_jobs, not_trained = re.search(r"^(\d+) trials trained by 2 jobs \(([^)]*)\)(?:; not trained: (.*))?$",
                                              err, re.MULTILINE).groups()
    held = re.search(rf"the study now holds {COUNTS}", out).groups()
    title = re.search(rf"Pareto front of 'decoder-nas' \(8 steps; {COUNTS}\)", out).groups()
    pareto = re.search(rf"Pareto front of 'decoder-nas' \(8 steps; {COUNTS}\)", said["pareto"][0][0]).groups()
    assert held == title == pareto  # the study as the summary, the front's title and pareto count it
    jobs = {**outcome_counts(by_jobs), **outcome_counts(not_trained or "")}
    assert jobs == outcome_counts(held[1]) and sum(jobs.values()) == int(held[0])  # the jobs saw every trial
    assert int(trained) == 5 == sum(outcome_counts(by_jobs).values())  # --trials counts the trained ones
    assert "reused a twin's result" in jobs  # cgpt is lgpt's model: its result is reused, counted apart
    assert (tmp_path / "front.html").is_file() and (tmp_path / "best.yaml").is_file()
