"""Peak memory and time of `data prepare --tokenizer bpe:N`: the command's own process and its BPE
trainer (a child process since trainer/bpe.py), on Tiny Shakespeare copies of the given sizes.

    python benchmarks/bpe_memory.py --sizes 50 --tokenizer bpe:512 [--baseline /path/to/other/checkout]

Each preparation is a fresh process with a fresh cache. With --baseline the same command also runs
from that source tree (another checkout of decoder-nas), alternating with this one, so the two are
measured side by side under the same load. Peak RSS is the kernel's high-water mark (ru_maxrss) of
the command's process and, separately, of its largest child.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from checkouts import PREAMBLE  # this script's folder is on sys.path when it runs as `python benchmarks/...`
from data_scale import make_corpus

PREPARE = PREAMBLE + """
import json, resource, time
from studies.cli import main
started = time.perf_counter()
code = main(["data", "prepare", {corpus!r}, "--tokenizer", {tokenizer!r}, "--cache-dir", {cache!r}, "--json"])
wall = time.perf_counter() - started
kb = 1024  # ru_maxrss is in KiB on Linux
print(json.dumps({{"code": code, "wall_s": wall, "own_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
                   "child_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb,
                   "torch": "torch" in sys.modules}}))
"""


def prepare(tree: str, corpus: Path, tokenizer: str, cache: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PREPARE.format(tree=tree, corpus=str(corpus), tokenizer=tokenizer,
                                                               cache=str(cache))],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        raise SystemExit(f"prepare failed: {done.stderr.strip().splitlines()[-1:]}")
    row = json.loads(lines[-1])
    [store] = json.loads(lines[-2])
    seconds = json.loads((Path(store["folder"]) / "manifest.json").read_text())["seconds"]
    return row | {"bpe_train_s": seconds["tokenizer"], "tokenize_s": seconds["tokenize"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("/work/shared/data/tinyshakespeare.txt"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[50], help="corpus sizes in MB")
    parser.add_argument("--tokenizer", default="bpe:512")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside this one")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the trees")
    args = parser.parse_args()
    trees = {"this": ""} | ({"baseline": str(args.baseline.resolve())} if args.baseline else {})
    work = Path(tempfile.mkdtemp(prefix="bpe-memory-"))
    rows = []
    try:
        for megabytes in args.sizes:
            corpus = work / f"corpus-{megabytes}mb.txt"
            make_corpus(args.text.read_text(encoding="utf-8"), corpus, megabytes)
            for round_ in range(args.rounds):
                for label, tree in trees.items():
                    row = {"tree": label, "size": f"{megabytes} MB", "round": round_ + 1,
                           **prepare(tree, corpus, args.tokenizer, work / "cache")}
                    shutil.rmtree(work / "cache")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            corpus.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    columns = ["tree", "size", "round", "wall_s", "bpe_train_s", "tokenize_s", "own_mb", "child_mb", "torch"]
    print(f"\n{args.tokenizer}\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:,.1f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
