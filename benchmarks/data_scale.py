"""Data at users' scale: preparing, opening and training on 10 MB to 2 GB corpora.

Corpora are Tiny Shakespeare copied until the size is reached, each copy's paragraphs shuffled with
its own seed (so a subword tokenizer sees realistic, not identical, text). For each size and
tokenizer it prints: first preparation wall time and MB/s (read + tokenizer training + tokenising),
for BPE the preparation with the trained tokenizer.json (read + tokenise + write + hash) against
`tokenizers`' own encode_batch on the same text and cores, alternated --rounds times in the same run
(the ratio of medians is what to read on a shared machine), the time to open the prepared store again,
and the peak RSS of `train --steps 10` and of `search --jobs 2 --trials 1` (its largest process).
Every step runs in a fresh process, so peak RSS is that step's alone.

    python benchmarks/data_scale.py --text /work/shared/data/tinyshakespeare.txt \\
        --sizes 10 200 2000 --bpe-sizes 10 200

Corpora and caches go under --work (default: a temporary folder), deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIN = ["--preset", "gpt", "--n-layer", "2", "--n-head", "4", "--d-model", "128", "--block-size", "128",
         "--steps", "10", "--batch-size", "8", "--eval-windows", "8", "--device", "cpu"]


def make_corpus(text: str, path: Path, megabytes: int) -> None:
    paragraphs = text.split("\n\n")
    written, copy = 0, 0
    with open(path, "w", encoding="utf-8") as out:
        while written < megabytes * 1e6:
            shuffled = paragraphs[:]
            random.Random(copy).shuffle(shuffled)
            chunk = "\n\n".join(shuffled) + "\n\n"
            out.write(chunk)
            written, copy = written + len(chunk.encode("utf-8")), copy + 1


def run(argv: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """stdout, wall seconds and peak RSS in MB of a command: wait4 reports the largest of the process
    and every descendant it waited for (a search's workers)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        if process.returncode:
            lines = err.read().strip().splitlines()
            raise SystemExit(f"{' '.join(argv[:5])}... failed: {lines[-1] if lines else process.returncode}")
        return out.read(), seconds, usage.ru_maxrss / 1024


def python(code: str, env: dict[str, str]) -> tuple[dict, float]:
    out, _, peak = run([sys.executable, "-c", code], env)
    return json.loads(out.strip().splitlines()[-1]), peak


PREPARE = """
import json, time
from trainer.data import prepare_data
started = time.perf_counter()
data = prepare_data({corpus!r}, {tokenizer!r})
wall = time.perf_counter() - started
manifest = json.loads((data.store / "manifest.json").read_text())
print(json.dumps({{"wall": wall, "seconds": manifest["seconds"], "tokens": len(data.train) + len(data.val),
                   "tokenizer_file": str(data.store / "tokenizer" / "tokenizer.json")}}))
"""

OPEN = """
import json, time
from trainer.data import prepare_data
started = time.perf_counter()
data = prepare_data({corpus!r}, {tokenizer!r})
print(json.dumps({{"open": time.perf_counter() - started}}))
"""

# The same text through tokenizers alone: the units and batches trainer.store hands it, minus writing.
ENCODE_BATCH = """
import json, time
import tokenizers
from trainer.store import _batches
from trainer.sources import open_source
tokenizer = tokenizers.Tokenizer.from_file({tokenizer_file!r})
started, count = time.perf_counter(), 0
for batch in _batches(open_source({corpus!r}).train()):
    count += sum(len(e.ids) for e in tokenizer.encode_batch_fast(batch, add_special_tokens=False))
print(json.dumps({{"seconds": time.perf_counter() - started, "tokens": count}}))
"""


def measure(corpus: Path, megabytes: int, tokenizer: str, work: Path, env: dict[str, str], rounds: int) -> dict:
    prepared, prepare_peak = python(PREPARE.format(corpus=str(corpus), tokenizer=tokenizer), env)
    row = {"size": f"{megabytes} MB", "tokenizer": tokenizer, "prepare_s": prepared["wall"],
           "prepare_mb_s": corpus.stat().st_size / 1e6 / prepared["wall"], "prepare_peak_mb": prepare_peak,
           "tokenize_s": prepared["seconds"]["tokenize"], "bpe_train_s": prepared["seconds"]["tokenizer"]}
    if tokenizer.startswith("bpe:"):
        row.update(throughput(corpus, prepared["tokenizer_file"], work, env, rounds))
    opened, _ = python(OPEN.format(corpus=str(corpus), tokenizer=tokenizer), env)
    row["open_s"] = opened["open"]
    _, _, row["train_peak_mb"] = run([sys.executable, "-m", "studies", "train", "--data", str(corpus),
                                      "--tokenizer", tokenizer, *TRAIN], env)
    storage = work / f"{megabytes}-{tokenizer.replace(':', '')}.journal"
    _, _, row["search_peak_mb"] = run([sys.executable, "-m", "studies", "search", "--storage", str(storage),
                                       "--data", str(corpus), "--tokenizer", tokenizer, "--jobs", "2",
                                       "--trials", "1", "--no-presets", *TRAIN[8:]], env)
    return row


def throughput(corpus: Path, tokenizer_file: str, work: Path, env: dict[str, str], rounds: int = 3) -> dict:
    """Preparing with the trained tokenizer.json (read, tokenise, write, hash: no training) against
    encode_batch alone on the same text, alternated `rounds` times; medians, since load moves."""
    prepare_s, encode_s = [], []
    for i in range(rounds):
        fresh = {**env, "DECODER_NAS_CACHE": str(work / f"ratio-{i}")}
        prepared, _ = python(PREPARE.format(corpus=str(corpus), tokenizer=tokenizer_file), fresh)
        prepare_s.append(prepared["wall"])
        shutil.rmtree(work / f"ratio-{i}")
        encode_s.append(python(ENCODE_BATCH.format(tokenizer_file=tokenizer_file, corpus=str(corpus)), env)[0]["seconds"])
    prepare, encode = statistics.median(prepare_s), statistics.median(encode_s)
    return {"prepare_json_s": prepare, "encode_batch_s": encode, "throughput_ratio": encode / prepare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("/work/shared/data/tinyshakespeare.txt"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 200, 2000], help="corpus sizes in MB")
    parser.add_argument("--bpe-sizes", type=int, nargs="*", default=[10, 200], help="sizes also run with --bpe")
    parser.add_argument("--bpe", default="bpe:8192")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the throughput comparison")
    parser.add_argument("--work", type=Path, help="folder for corpora and caches (default: a temporary one)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="data-scale-", dir=args.work))
    text = args.text.read_text(encoding="utf-8")
    rows = []
    try:
        for megabytes in args.sizes:
            corpus = work / f"corpus-{megabytes}mb.txt"
            make_corpus(text, corpus, megabytes)
            env = {**os.environ, "DECODER_NAS_CACHE": str(work / f"cache-{megabytes}")}
            for tokenizer in ["byte"] + ([args.bpe] if megabytes in args.bpe_sizes else []):
                rows.append(measure(corpus, megabytes, tokenizer, work, env, args.rounds))
                print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(work / f"cache-{megabytes}")
            corpus.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    columns = ["size", "tokenizer", "prepare_s", "prepare_mb_s", "bpe_train_s", "tokenize_s", "prepare_json_s",
               "encode_batch_s",
               "throughput_ratio", "open_s", "prepare_peak_mb", "train_peak_mb", "search_peak_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [row.get(c, "") for c in columns]
        print("| " + " | ".join(f"{c:.3g}" if isinstance(c, float) and c < 1 else
                                f"{c:,.1f}" if isinstance(c, float) else str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
