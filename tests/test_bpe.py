"""bpe:N tokenizers: specs refused in one line, long runs bounded before training, and stops felt
at once while the trainer runs (in its child process, trainer/bpe.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

import trainer.hub
from study_helpers import assert_one_line_error, cli, isolated_python_api, write  # noqa: F401  (autouse fixture)
from trainer.bpe import MAX_RUN_CHARS, bounded_runs
from trainer.tokenizers import HuggingFaceTokenizer, TokenizerError, make_tokenizer

TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, twice.\n" for i in range(400))


@pytest.mark.parametrize("spec, fragment", [
    ("bpe512", "unknown tokenizer 'bpe512'; did you mean bpe:512?"),
    ("BPE:512", "did you mean bpe:512?"),
    ("bpe-512-8", "did you mean bpe:512:8?"),
    ("bpe:4294967296", "expected bpe:N[:SAMPLE_MB] with 256 < N <= 1048576"),
    ("bpe:256", "expected bpe:N[:SAMPLE_MB] with 256 < N"),
    ("bpe:300:0", "SAMPLE_MB 0 learns nothing; give at least 1"),
])
def test_odd_bpe_specs_are_one_line_without_the_hub_or_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, fragment: str
) -> None:
    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(trainer.hub, "require_hub", no_hub)
    monkeypatch.setattr(tokenizers.Tokenizer, "from_pretrained", no_hub)
    corpus = write(tmp_path / "corpus.txt", TEXT)
    # In a process of its own: before the fix, bpe:4294967296 aborted the process in native code.
    done = subprocess.run([sys.executable, "-m", "studies", "data", "prepare", str(corpus), "--tokenizer", spec],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert_one_line_error(done.stderr, "data", fragment)
    assert done.returncode == 2
    with pytest.raises(TokenizerError, match=fragment.replace("[", r"\[").replace("?", r"\?")):
        make_tokenizer(spec, TEXT)
    assert not list(tmp_path.rglob("manifest.json"))  # refused before any work


def test_long_runs_are_cut_before_training_and_ordinary_text_is_not() -> None:
    blob = "ab1+" * 300 + "x" * 1000 + " " * 700
    pieces = list(bounded_runs(["head words ", blob, TEXT]))
    assert "".join(pieces) == "head words " + blob + TEXT  # nothing lost or added
    assert pieces[0] == "head words " and pieces[-1] is TEXT  # text without long runs passes unchanged
    assert max(len(run) for piece in pieces for run in re.findall(r"\S+|\s+", piece)) == MAX_RUN_CHARS


def test_bpe_learns_what_the_trainer_learns_in_process_on_ordinary_text() -> None:
    pieces = [TEXT[i:i + 5000] for i in range(0, len(TEXT), 5000)]
    reference = tokenizers.Tokenizer(models.BPE())
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.decoder = decoders.ByteLevel()
    reference.train_from_iterator(pieces, trainer=trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    learnt = make_tokenizer("bpe:400", iter(pieces))
    assert learnt.identity == HuggingFaceTokenizer(reference, "bpe:400").identity


def test_an_unbroken_run_trains_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    blob = "".join(np.array(list("ACGT"))[rng.integers(0, 4, 200_000)])  # an unwrapped sequence
    learnt = make_tokenizer("bpe:600", [blob])
    assert learnt.vocab_size == 600 and learnt.decode(learnt.encode(blob[:5000])) == blob[:5000]
    assert len(learnt.encode(blob[:5000])) < 5000 / 3  # merges were learnt from the run's pieces


def test_a_failed_trainer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the child exits at once with status 1
    with pytest.raises(TokenizerError, match="tokenizer 'bpe:300': the BPE trainer exited with status 1"):
        make_tokenizer("bpe:300", [TEXT] * 200)  # more than a pipe holds: writing to it breaks


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("stop, code, said", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_stop_during_bpe_training_ends_it_at_once_and_says_so(
    tmp_path: Path, stop: signal.Signals, code: int, said: str
) -> None:
    rng = np.random.default_rng(1)
    corpus = write(tmp_path / "letters.txt", "".join(np.array(list("abcdefghijklmnopqrstuvwxyz"))
                                                     [rng.integers(0, 26, 8 << 20)]))  # a minute of training
    cache = tmp_path / "cache"
    prepare = subprocess.Popen([sys.executable, "-m", "studies", "data", "prepare", str(corpus), "--tokenizer",
                                "bpe:8192", "--cache-dir", str(cache)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not children(prepare.pid):
            assert prepare.poll() is None and time.monotonic() < deadline, "no trainer process started"
            time.sleep(0.05)
        [trainer_pid] = children(prepare.pid)
        time.sleep(1.0)  # well inside training
        prepare.send_signal(stop)
        assert prepare.wait(timeout=20) == code
    finally:
        prepare.kill()
    err = prepare.stderr.read()
    assert err == f"decoder-nas data: {said} while preparing the token store of {corpus} (nothing was kept)\n"
    with pytest.raises(ProcessLookupError):
        os.kill(trainer_pid, 0)  # the trainer was ended, not left to finish
    assert [p.name for p in (cache / "tokens").iterdir()] == ["locks"]


def test_data_commands_do_not_load_torch(tmp_path: Path) -> None:
    corpus = write(tmp_path / "corpus.txt", TEXT)
    script = ("import sys; from studies.cli import main; "
              f"assert main(['data', 'prepare', {str(corpus)!r}, '--tokenizer', 'bpe:300']) == 0; "
              f"assert main(['data', 'info', {str(corpus)!r}, '--json']) == 0; "
              "print(json.dumps(sorted(m for m in ('torch', 'datasets') if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", "import json; " + script], capture_output=True, text=True,
                          env={**os.environ, "DECODER_NAS_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
