"""A token store damaged, tampered with or left behind: named in one line or rebuilt from the corpus,
never an internal error and never the wrong corpus."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import trainer.store
from study_helpers import assert_one_line_error, cli, isolated_python_api, write  # noqa: F401  (autouse fixture)
from trainer.data import DataError, load_corpus, open_store, prepare_data
from trainer.loop import TrainingRecipe
from trainer.run import run_training
from trainer.sources import BLOCK_BYTES, SAMPLED_BLOCKS
from trainer.tokenizers import make_tokenizer

TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(300))

MANIFEST_DAMAGE: dict[str, Callable[[dict], Any]] = {
    "a list": lambda m: list(m.values()),
    "no dtype": lambda m: {k: v for k, v in m.items() if k != "dtype"},
    "no digests": lambda m: {k: v for k, v in m.items() if k != "digests"},
    "a junk dtype": lambda m: {**m, "dtype": "junk"},
    "a number for dtype": lambda m: {**m, "dtype": 5},
    "an object dtype": lambda m: {**m, "dtype": "object"},
    "tokens as text": lambda m: {**m, "tokens": "many"},
    "a negative count": lambda m: {**m, "tokens": {**m["tokens"], "val": -1}},
    "no tokenizer": lambda m: {k: v for k, v in m.items() if k != "tokenizer"},
    "null": lambda m: None,
}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write(tmp_path / "corpus.txt", TEXT)


def refuse_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(trainer.store, "_build", refuse)


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE, ids=list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_named_and_rebuilt(corpus: Path, cache: Path, damage: str) -> None:
    first = prepare_data(str(corpus), "byte", cache_dir=cache)
    manifest_path = first.store / "manifest.json"
    manifest_path.write_text(json.dumps(MANIFEST_DAMAGE[damage](json.loads(manifest_path.read_text()))))
    with pytest.raises(DataError, match=r"manifest.json: .*the token store is damaged and is prepared again"):
        open_store(first.store)
    info = cli("data", "info", str(corpus), "--cache-dir", str(cache), "--json")
    assert info.code == 0 and info.err == "", info
    [described] = json.loads(info.out)
    assert described["state"].startswith("damaged: ") and "manifest.json" in described["state"]
    again = prepare_data(str(corpus), "byte", cache_dir=cache)  # rebuilt from the corpus, which is still there
    assert again.content_hash == first.content_hash and np.array_equal(again.train, first.train)
    assert json.loads(cli("data", "info", str(corpus), "--cache-dir", str(cache), "--json").out)[0]["state"] == "current"


def overwrite_between_sampled_blocks(path: Path, byte: int = 0xFF) -> None:
    """Overwrite every byte the sampled digest does not read: the damage it cannot see."""
    data = bytearray(path.read_bytes())
    assert len(data) > SAMPLED_BLOCKS * BLOCK_BYTES * 2  # large enough to be sampled, not hashed whole
    sampled = np.zeros(len(data), dtype=bool)
    for i in range(SAMPLED_BLOCKS):
        start = (len(data) - BLOCK_BYTES) * i // (SAMPLED_BLOCKS - 1)
        sampled[start:start + BLOCK_BYTES] = True
    for offset in np.flatnonzero(~sampled):
        data[offset] = byte
    path.write_bytes(bytes(data))


def test_a_partly_overwritten_bin_is_named_not_an_index_error(tmp_path: Path, cache: Path, tiny_config) -> None:
    big = write(tmp_path / "big.txt", TEXT * 8)  # ~130 kB: train.bin is sampled, not hashed whole
    data = prepare_data(str(big), "byte", cache_dir=cache)
    overwrite_between_sampled_blocks(data.store / "train.bin")
    damaged = prepare_data(str(big), "byte", cache_dir=cache)  # the digest cannot tell
    recipe = TrainingRecipe(steps=2, batch_size=4, eval_windows=2, warmup_steps=1)
    with pytest.raises(DataError, match=r"train.bin: token id 65535 is outside the vocabulary of 256 tokens; the "
                                        r"token store is damaged: delete .* and it is prepared again"):
        run_training(tiny_config.replace(block_size=16), damaged, recipe, "cpu")
    trained = cli("train", "--data", str(big), "--tokenizer", "byte", "--preset", "gpt", "--n-layer", "1",
                  "--n-head", "2", "--d-model", "16", "--block-size", "16", "--steps", "2", "--batch-size", "2",
                  "--eval-windows", "2", "--device", "cpu")
    assert_one_line_error(trained, "train", "outside the vocabulary", str(data.store))


def test_token_ids_beyond_the_vocabulary_are_refused_even_with_a_matching_digest(corpus: Path, cache: Path,
                                                                               tiny_config) -> None:
    data = prepare_data(str(corpus), "byte", cache_dir=cache)
    val_bin = data.store / "val.bin"
    val_bin.write_bytes(np.full(len(data.val), 300, dtype=np.uint16).tobytes())  # tampered, digest recomputed
    manifest = json.loads((data.store / "manifest.json").read_text())
    manifest["digests"]["val"] = trainer.store.sampled_digest([val_bin])
    (data.store / "manifest.json").write_text(json.dumps(manifest))
    tampered = prepare_data(str(corpus), "byte", cache_dir=cache)
    recipe = TrainingRecipe(steps=1, batch_size=2, eval_windows=2, warmup_steps=1)
    with pytest.raises(DataError, match="val.bin: token id 300 is outside the vocabulary of 256 tokens"):
        run_training(tiny_config.replace(block_size=16), tampered, recipe, "cpu")


def test_a_tokenizer_that_no_longer_matches_the_manifest_is_caught(corpus: Path, cache: Path) -> None:
    data = prepare_data(str(corpus), "char", cache_dir=cache)
    shutil.rmtree(data.store / "tokenizer")
    make_tokenizer("char", TEXT + "XYZ").save(data.store / "tokenizer")  # another vocabulary, still readable
    with pytest.raises(DataError, match=r"tokenizer: char:\w+ of \d+ tokens, but the manifest records char:"):
        open_store(data.store)
    again = prepare_data(str(corpus), "char", cache_dir=cache)
    assert again.tokenizer.identity == data.tokenizer.identity and "X" not in again.tokenizer.chars


@pytest.mark.parametrize("tamper", ["store field", "whole entry", "a path", "a list"])
def test_an_index_entry_pointed_at_another_corpus_is_not_followed(tmp_path: Path, cache: Path, tamper: str) -> None:
    a, b = write(tmp_path / "a.txt", TEXT), write(tmp_path / "b.txt", TEXT.upper())
    store_a, store_b = (prepare_data(str(path), "char", cache_dir=cache) for path in (a, b))
    index = cache / "tokens" / "index"
    entries = {json.loads(p.read_text())["identity"]: p for p in index.glob("*.json")}
    entry_a, entry_b = entries[f"files:{a.resolve()}"], entries[f"files:{b.resolve()}"]
    tampered = {
        "store field": {**json.loads(entry_a.read_text()), "store": store_b.store.name},
        "whole entry": json.loads(entry_b.read_text()),
        "a path": {**json.loads(entry_a.read_text()), "store": f"../../{store_b.store.relative_to(tmp_path)}"},
        "a list": [store_b.store.name],
    }[tamper]
    entry_a.write_text(json.dumps(tampered))
    again = prepare_data(str(a), "char", cache_dir=cache)
    assert again.content_hash == store_a.content_hash == load_corpus(str(a), cache_dir=cache).content_hash
    assert again.tokenizer.decode(again.train[:20].tolist()) == TEXT[:20]


def test_a_new_timestamp_alone_prepares_nothing_again(corpus: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare_data(str(corpus), "bpe:300", cache_dir=cache)
    os.utime(corpus, (1_000_000_000, 1_000_000_000))  # another machine's copy, or a touch
    refuse_to_build(monkeypatch)
    assert prepare_data(str(corpus), "bpe:300", cache_dir=cache).store == first.store
    info = json.loads(cli("data", "info", str(corpus), "--cache-dir", str(cache), "--json").out)
    assert [store["state"] for store in info] == ["current"]


KILLED_PREPARATION = """
import os, signal, sys
from pathlib import Path
import trainer.store
from trainer.data import prepare_data

def die(source, scan, tokenizer, dtype, folder, on_progress):
    (folder / "train.bin").write_bytes(b"half")
    os.kill(os.getpid(), signal.SIGKILL)

trainer.store._tokenize = die
prepare_data(sys.argv[1], "byte", cache_dir=Path(sys.argv[2]))
"""


def test_a_killed_preparation_is_swept_and_a_running_one_is_not(tmp_path: Path, corpus: Path, cache: Path) -> None:
    other = write(tmp_path / "other.txt", TEXT.upper())
    killed = subprocess.run([sys.executable, "-c", KILLED_PREPARATION, str(corpus), str(cache)])
    assert killed.returncode == -9
    [left] = (cache / "tokens").glob(".building-*")
    running = cache / "tokens" / ".building-0123456789abcdef0123456789abcdef"
    running.mkdir()
    with open(cache / "tokens" / "locks" / f"{running.name.removeprefix('.building-')}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # its preparation is still going
        prepare_data(str(other), "byte", cache_dir=cache)
        assert not left.exists() and running.exists()
    prepare_data(str(other), "byte", cache_dir=cache)
    assert not running.exists()
    assert len(prepare_data(str(corpus), "byte", cache_dir=cache).train) > 0


def test_a_fifo_or_a_device_is_named_for_what_it_is(tmp_path: Path, cache: Path) -> None:
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"corpus.fifo' is a named pipe \(FIFO\), not a text file or folder: "
                                        r"the corpus is read several times"):
        prepare_data(str(fifo), "byte", cache_dir=cache)
    result = cli("data", "prepare", "/dev/null", "--cache-dir", str(cache))
    assert_one_line_error(result, "data", "'/dev/null' is a character device, not a text file")
    assert "does not exist" in cli("data", "prepare", str(tmp_path / "missing.txt")).err



def test_data_info_names_a_damaged_store_whatever_its_index_entry_lacks(corpus: Path, cache: Path) -> None:
    data = prepare_data(str(corpus), "byte", cache_dir=cache)
    (data.store / "manifest.json").write_text("[]")
    [entry] = (cache / "tokens" / "index").glob("*.json")
    entry.write_text(json.dumps({k: v for k, v in json.loads(entry.read_text()).items() if k != "tokenizer"}))
    info = cli("data", "info", str(corpus), "--cache-dir", str(cache))
    assert info.code == 0 and info.err == "" and "damaged" in info.out, info
