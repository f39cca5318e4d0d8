"""Start-up cost of the light commands: CPU seconds (user + system) and wall seconds of `describe` and
`data info`, each a fresh process, and whether torch, torch._dynamo, datasets and the study API loaded.

    python benchmarks/startup.py [--repeats 5] [--baseline CHECKOUT]

With --baseline each command also runs from that checkout, alternating with this one, so the two
are measured side by side under the same load; the table gives medians and this / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkouts import PREAMBLE  # this script's folder is on sys.path when it runs as `python benchmarks/...`

COMMANDS = {
    "describe": ["describe", "--preset", "lgpt", "--n-layer", "4", "--d-model", "128", "--block-size", "64",
                 "--vocab-size", "65", "--json"],
    "data info": ["data", "info", "builtin:pydoc", "--json"],
}
HEAVY = ("torch", "torch._dynamo", "datasets", "studies.api")
RUN = PREAMBLE + """
import json, sys
from studies.cli import main
code = main({argv!r})
print(json.dumps({{"code": code, "loaded": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)
"""


def timed(tree: str, argv: list[str], cache: Path) -> dict:
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", RUN.format(tree=tree, argv=argv, heavy=HEAVY)],
                                   stdout=subprocess.DEVNULL, stderr=err, text=True,
                                   env={**os.environ, "DECODER_NAS_CACHE": str(cache)})
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        report = json.loads(err.read().strip().splitlines()[-1])
    if status or report["code"]:
        raise SystemExit(f"{argv[:2]} failed in {tree or 'this checkout'}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "loaded": ", ".join(report["loaded"]) or "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside this one")
    args = parser.parse_args()
    trees = {"this": ""} | ({"baseline": str(args.baseline.resolve())} if args.baseline else {})
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as cache:
        for repeat in range(args.repeats):
            for command, argv in COMMANDS.items():
                order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
                for tree in order:
                    runs.setdefault((command, tree), []).append(timed(trees[tree], argv, Path(cache)))
    print(f"{os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f} · {time.strftime('%Y-%m-%d %H:%M')} · "
          f"{args.repeats} repeats, medians")
    print("| command | checkout | CPU s | wall s | CPU this / baseline | loaded |\n|---|---|--:|--:|--:|---|")
    for command in COMMANDS:
        cpu = {tree: statistics.median(r["cpu"] for r in runs[(command, tree)]) for tree in trees}
        for tree in trees:
            wall = statistics.median(r["wall"] for r in runs[(command, tree)])
            ratio = f"{cpu['this'] / cpu['baseline']:.2f}" if "baseline" in cpu and tree == "this" else ""
            print(f"| {command} | {tree} | {cpu[tree]:.2f} | {wall:.2f} | {ratio} | {runs[(command, tree)][-1]['loaded']} |")


if __name__ == "__main__":
    main()
