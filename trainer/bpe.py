"""Byte-level BPE training in a child process: bounded in time, stopped at once, memory of its own.

`learn_bpe(vocab_size, pieces)` streams the training sample to `python -m trainer.bpe` and returns
the tokenizer.json it learnt. HF tokenizers' trainer is one native call that Python cannot
interrupt, so it runs in a child: a stop (Ctrl-C, SIGTERM) kills the child and is felt at once,
the child's peak memory is its own (docs/data.md has the figures), and on a terminal the trainer's
own progress bars (counting pairs, merges done of N) show what it is doing.

An unbroken run of letters, digits, punctuation or whitespace (an unwrapped sequence, a base64
blob) is one pre-token to the trainer, whose work grows with run length times merges: 1 MB of it
took 87 s. Runs longer than MAX_RUN_CHARS are cut into pieces of that length before training, so
time stays linear in the sample. Ordinary text has no such runs and learns the same merges as
before; encoding is unchanged (merges apply to a run of any length).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import BinaryIO, Iterable, Iterator

MAX_RUN_CHARS = 256  # far above any word; a longer run of one character class is cut into this many
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN_CHARS + 1},}}|\s{{{MAX_RUN_CHARS + 1},}}")
_HEADER_BYTES = 8  # each piece goes as its UTF-8 length, little-endian, then its bytes; length 0 ends


class BpeTrainingError(RuntimeError):
    """The child process failed; the message says how (its exit, and its last line of error)."""


def learn_bpe(vocab_size: int, pieces: Iterable[str]) -> str:
    """The tokenizer.json of a byte-level BPE (GPT-2's pre-tokenizer and byte alphabet, no special
    tokens) of `vocab_size` tokens learnt from `pieces`. The same pieces give the same JSON."""
    show_progress = sys.stderr.isatty()
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
        [sys.executable, "-m", __name__, str(vocab_size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=None if show_progress else errors, start_new_session=True,  # a terminal's Ctrl-C is ours to handle
    ) as child:
        try:
            with contextlib.suppress(BrokenPipeError):  # the child died early: its exit status says how
                _send(pieces, child.stdin)
            with contextlib.suppress(BrokenPipeError):
                child.stdin.close()  # closed even when its last flush fails
            learnt = child.stdout.read()
            child.wait()
        finally:
            child.kill()  # a stop or an error here ends the child at once; after it exited, nothing
        if child.returncode != 0:
            errors.seek(0)
            last = errors.read().decode("utf-8", errors="replace").strip().splitlines()[-1:]
            raise BpeTrainingError(f"the BPE trainer {_how_it_ended(child.returncode)}{': ' + last[0] if last else ''}")
    return learnt.decode("utf-8")


def bounded_runs(texts: Iterable[str]) -> Iterator[str]:
    """`texts` with every run longer than MAX_RUN_CHARS cut into pieces of that length (separate texts,
    so the trainer sees them as separate words); texts without such runs pass unchanged."""
    for text in texts:
        start = 0
        for run in _LONG_RUN.finditer(text):
            if run.start() > start:
                yield text[start:run.start()]
            yield from (text[i:min(i + MAX_RUN_CHARS, run.end())] for i in range(run.start(), run.end(), MAX_RUN_CHARS))
            start = run.end()
        if start < len(text):
            yield text if start == 0 else text[start:]


def _send(pieces: Iterable[str], stream: BinaryIO) -> None:
    for piece in pieces:
        if piece:
            encoded = piece.encode("utf-8")
            stream.write(len(encoded).to_bytes(_HEADER_BYTES, "little"))
            stream.write(encoded)
    stream.write(bytes(_HEADER_BYTES))


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _pieces(stream: BinaryIO) -> Iterator[str]:
    """The pieces `learn_bpe` sends, up to its end mark. A stream that ends without one means the
    parent died: then this process exits at once rather than train on part of the sample."""
    while True:
        header = stream.read(_HEADER_BYTES)
        if len(header) < _HEADER_BYTES:
            os._exit(1)  # not SystemExit: the native trainer would catch it and train on what it has
        size = int.from_bytes(header, "little")
        if size == 0:
            return
        yield stream.read(size).decode("utf-8")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a parent killed by SIGKILL cannot kill it)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's stop still kills it; a SIGKILL of the parent does not
        pass


def _main(vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    _die_with_parent()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=sys.stderr.isatty())
    tokenizer.train_from_iterator(bounded_runs(_pieces(sys.stdin.buffer)), trainer=trainer)
    sys.stdout.write(tokenizer.to_str())


if __name__ == "__main__":
    _main(int(sys.argv[1]))
