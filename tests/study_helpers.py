"""Helpers for the study tests: a tiny corpus, a tiny search space and the argv of a tiny study.

Every study here trains 12 steps of a 1-2 layer, 16-32 wide decoder on a few kB of text, so a trial
takes a fraction of a second on a laptop CPU.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import datasets
import optuna
import pytest
import torch
import yaml

import studies.workers.trials
from objectives import LatencyProtocol
from studies.cli import main
from studies.settings import StudySettings, write_settings
from studies.space import space_from_dict
from studies.storage.backends import open_storage
from trainer import TokenizedData, prepare_data
from trainer.loop import TrainingRecipe

TEXT = "".join(f"Verse {i}: the rain in Spain stays mainly in the plain.\n" for i in range(80))  # ~4.6 kB

TINY_SPACE: dict[str, Any] = {
    "n_layer": {"low": 1, "high": 2},
    "d_model": [16, 32],
    "n_head": [2],
    "mlp_ratio": [2],
    "layout": ["sequential", "parallel"],
    "reduction": ["none", "linear", "conv"],
    "conv_kernel": [1, 3],
    "reduce_every": {"low": 1, "high": 2},
    "reduce_factor": [0.5],
    "towers": [1, 2],
    "min_head_dim": 4,
    "encoding": "pattern",  # few parameters, named for what they change; per-layer has tests of its own
}
# A space holding exactly one architecture: every choice fixed.
SINGLE_SPACE: dict[str, Any] = {
    **TINY_SPACE, "n_layer": {"low": 1, "high": 1}, "d_model": [16], "layout": ["sequential"],
    "reduction": ["none"], "conv_kernel": [1], "reduce_every": {"low": 1, "high": 1}, "towers": [1],
}

SHAPE = ["--block-size", "16", "--n-layer", "2", "--n-head", "2", "--d-model", "16"]
STEPS = 12
RECIPE = ["--steps", str(STEPS), "--batch-size", "4", "--eval-windows", "4", "--warmup-steps", "2"]
PRESET_NAMES = ["gpt", "pgpt", "lgpt", "cgpt", "llama", "lfm2"]  # what a new study enqueues first
PRESETS_TRAINED = 5  # cgpt is lgpt with a kernel-1 conv, the same model: it reuses lgpt's result


def make_settings(objectives=("val_loss", "flops_per_token"), content_hash: str = "", data: str = "corpus",
                  **changes: Any) -> StudySettings:
    """The tiny study's settings, for tests that drive the Python API without the CLI."""
    recipe = TrainingRecipe(steps=STEPS, batch_size=4, eval_windows=4, warmup_steps=2)
    fields = dict(objectives=objectives, space=space_from_dict(TINY_SPACE), data=data, content_hash=content_hash,
                  block_size=16, preset_shape={"n_layer": 2, "n_head": 2, "d_model": 16}, recipe=recipe,
                  latency=LatencyProtocol(warmup=1, repeats=3), sampler="random", seed=0)
    return StudySettings(**{**fields, **changes})


def tiny_study_inputs(root: Path, study: optuna.Study) -> tuple[StudySettings, TokenizedData]:
    """The tiny corpus prepared under `root` and the settings made from it, written to `study`:
    what a worker or a TrialContext needs besides the study."""
    tiny = make_tiny(root / "tiny")
    data = prepare_data(str(tiny.corpus), "char", cache_dir=root / "cache")
    settings = make_settings(content_hash=data.content_hash, data=str(tiny.corpus))
    write_settings(study, settings)
    return settings, data


@dataclass
class Tiny:
    """The files of one tiny study: corpus, space, storage."""

    root: Path
    corpus: Path
    space: Path
    storage: Path
    study: str = "tiny"

    def study_flags(self, study: str | None = None) -> list[str]:
        return ["--study", study or self.study, "--storage", str(self.storage)]

    def argv(self, command: str = "search", *extra: str, study: str | None = None) -> list[str]:
        """search/worker argv: study, data, space, preset shape and recipe of the tiny study."""
        jobs = ["--jobs", "1"] if command == "search" else []  # in this process, where the test reads its output
        return [command, *self.study_flags(study), "--data", str(self.corpus), "--space", str(self.space),
                *SHAPE, *RECIPE, "--device", "cpu", *jobs, *extra]

    def copy(self, root: Path) -> Tiny:
        """The same files under `root` (the journal copied): a study a test may change freely."""
        root.mkdir(parents=True, exist_ok=True)
        storage = root / self.storage.name
        shutil.copyfile(self.storage, storage)
        return Tiny(root, self.corpus, self.space, storage, self.study)


def working_copy(tiny: Tiny, root: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """`tiny`'s journal and artifact folder copied under root/db, for a test that runs in the empty root/out."""
    copied = tiny.copy(root / "db")
    shutil.copytree(f"{tiny.storage}.artifacts", f"{copied.storage}.artifacts")
    (root / "out").mkdir()
    monkeypatch.chdir(root / "out")
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tiny.root / "cache"))
    return copied


def make_tiny(root: Path, space: dict[str, Any] | None = None) -> Tiny:
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    space_file = root / "space.yaml"
    space_file.write_text(yaml.safe_dump(space or TINY_SPACE), encoding="utf-8")
    return Tiny(root, corpus, space_file, root / "s.journal")


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*argv: str) -> Result:
    """Run the CLI in-process, capturing stdout and stderr (for fixtures, where capsys is not available)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run the CLI in-process, reading stdout and stderr through the test's capsys."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def load(tiny: Tiny, study: str | None = None) -> optuna.Study:
    """Study `study` (the tiny study's own by default) from the tiny study's storage."""
    return optuna.load_study(study_name=study or tiny.study, storage=open_storage(str(tiny.storage)))


def load_study(storage: str | Path, name: str) -> optuna.Study:
    """Study `name` from `storage`, opened as a command that only reads does (no file is created)."""
    return optuna.load_study(study_name=name, storage=open_storage(str(storage), create=False))


def study_names(storage: str | Path) -> list[str]:
    return optuna.get_all_study_names(open_storage(str(storage), create=False))


def interrupt_once(monkeypatch: pytest.MonkeyPatch, which, exception: type[BaseException] = KeyboardInterrupt) -> list:
    """Make the first training of a trial for which which(user_attrs) holds raise `exception`; the
    trials it stopped are listed in the returned list (their user attributes)."""
    original = studies.workers.trials.run_training
    stopped: list[dict] = []

    def run_training(*args, **kwargs):
        trial = args[5].trial  # the _RungPruner holds the trial being trained
        if not stopped and which(trial.user_attrs):
            stopped.append(dict(trial.user_attrs))
            raise exception()
        return original(*args, **kwargs)

    monkeypatch.setattr(studies.workers.trials, "run_training", run_training)
    return stopped


def assert_one_line_error(result_or_err: Result | str, command: str, *fragments: str) -> str:
    """The error contract: one line on stderr, `decoder-nas COMMAND: error: ...`, no traceback."""
    err = result_or_err.err if isinstance(result_or_err, Result) else result_or_err
    if isinstance(result_or_err, Result):
        assert result_or_err.code == 2, result_or_err
    assert "Traceback" not in err
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith(f"decoder-nas {command}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    return lines[0]


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets` prints a progress line each time it reads the corpus: off, so an error is all of stderr.

    Also one torch thread: these models are tiny, and on a busy machine intra-op threads only wait
    for each other (a 6-trial study took 15x longer with the default thread count).
    """
    threads = torch.get_num_threads()
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        datasets.enable_progress_bars()
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that drive studies through the Python API (import it to use it): a private corpus
    cache, Optuna's info logging off, and quiet datasets with one torch thread."""
    monkeypatch.setenv("DECODER_NAS_CACHE", str(tmp_path / "cache"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with quiet_datasets():
        yield


def write(path: Path, text: str) -> Path:
    """`text` as a UTF-8 file at `path`, its folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
