"""Which latency estimator and procedure gives the same figure twice while another process trains.

    python benchmarks/latency_stability.py [--repeats 30] [--rounds 5] [--replicates 4] [--quick]

Eight architectures (the four presets at the search shape, smaller and larger variants) are timed
in two sessions, A and B, under each procedure, while a second process trains a small model the
way the other worker of a 2-worker study does. Every estimator is computed from the same timings.
Per procedure and estimator the table gives the ratio of the two measurements of one architecture
(slower / faster: median and worst over the eight, over all replicates) and Kendall τ between the
A and B orders (worst replicate). Sessions B run after every procedure's session A, so the two
measurements of one architecture lie apart in time, as two trials of a study do. Results: docs/latency.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import multiprocessing
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import kendalltau

from objectives.latency import ESTIMATORS, LatencyProtocol, system_load, time_together
from search_space import Decoder, build_decoder, preset

SEARCH_SHAPE = {"vocab_size": 65, "block_size": 64, "n_layer": 4, "n_head": 4, "d_model": 128}
ARCHITECTURES = {  # name: (preset, overrides of the search shape)
    "gpt d64 L2": ("gpt", {"d_model": 64, "n_layer": 2}),
    "lgpt d96": ("lgpt", {"d_model": 96}),
    "gpt": ("gpt", {}),
    "pgpt": ("pgpt", {}),
    "lgpt": ("lgpt", {}),
    "cgpt": ("cgpt", {}),
    "cgpt d192 L6": ("cgpt", {"d_model": 192, "n_layer": 6}),
    "gpt d256": ("gpt", {"d_model": 256}),
}
Timings = dict[str, list[float]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved: this many rounds of --repeats; 'more repeats': rounds x repeats "
                             "in one block (default: %(default)s)")
    parser.add_argument("--replicates", type=int, default=3, help="A/B session pairs per procedure (default: %(default)s)")
    parser.add_argument("--load-threads", type=int, default=None,
                        help="torch threads of the training load (default: torch's choice, as a study worker)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 replicates of 10 repeats, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.rounds, args.replicates = 10, 3, 2
    return args


def train_forever(threads: int | None, ready: multiprocessing.Event, stop: multiprocessing.Event) -> None:
    """The other worker: AdamW steps on the search-shape gpt, batch 12, random tokens, until told to stop."""
    if threads:
        torch.set_num_threads(threads)
    model = build_decoder(preset("gpt", **SEARCH_SHAPE))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(SEARCH_SHAPE["vocab_size"], (12, SEARCH_SHAPE["block_size"] + 1))
    while not stop.is_set():
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ready.set()


@contextmanager
def training_load(threads: int | None) -> Iterator[int]:
    """A second process training for the duration; yields its pid."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `decoder-nas` chooses on a busy machine (trainer/threads.py)
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    worker = context.Process(target=train_forever, args=(threads, ready, stop), daemon=True)
    worker.start()
    try:
        if not ready.wait(timeout=120):
            raise RuntimeError("the training load did not start within 120 s")
        yield worker.pid
    finally:
        stop.set()
        os.kill(worker.pid, signal.SIGCONT)  # in case a quiet phase was interrupted
        worker.join(timeout=30)


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """The training load stopped while the block runs: a quiet phase (other users' work still runs)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclasses.dataclass(frozen=True)
class Procedure:
    protocol: LatencyProtocol
    rounds: int = 0  # 0: one model after the other; else interleaved over this many rounds
    quiet: bool = False  # the training load paused while timing

    def __call__(self, models: dict[str, Decoder], load_pid: int) -> Timings:
        if self.quiet:
            with paused(load_pid):
                return dataclasses.replace(self, quiet=False)(models, load_pid)
        if self.rounds:
            return time_together(models, self.protocol, self.rounds)
        return {name: time_together({name: model}, self.protocol, rounds=1)[name] for name, model in models.items()}


def procedures(args: argparse.Namespace) -> dict[str, Procedure]:
    wall = LatencyProtocol(repeats=args.repeats, clock="wall")
    thread = dataclasses.replace(wall, clock="thread")
    more = args.repeats * args.rounds
    interleaved = f"interleaved {args.rounds} x {args.repeats}"
    return {
        f"wall · one by one, {args.repeats}": Procedure(wall),
        f"wall · pinned, {args.repeats}": Procedure(dataclasses.replace(wall, pin_cpu=True)),
        f"wall · quiet phase, {args.repeats}": Procedure(wall, quiet=True),
        f"thread · one by one, {args.repeats}": Procedure(thread),
        f"thread · one by one, {more}": Procedure(dataclasses.replace(thread, repeats=more)),
        f"thread · {interleaved}": Procedure(thread, args.rounds),
        f"thread · pinned, {args.repeats}": Procedure(dataclasses.replace(thread, pin_cpu=True)),
        f"thread · quiet phase, {args.repeats}": Procedure(thread, quiet=True),
    }


@dataclasses.dataclass
class Sessions:
    """Per procedure, the A and B sessions of every replicate, and the seconds they took."""

    pairs: dict[str, list[tuple[Timings, Timings]]] = dataclasses.field(default_factory=dict)
    seconds: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    load: list[tuple[float, int | None]] = dataclasses.field(default_factory=list)

    def run(self, name: str, procedure: Procedure, models: dict[str, Decoder], load_pid: int) -> Timings:
        started = time.perf_counter()
        timings = procedure(models, load_pid)
        self.seconds.setdefault(name, []).append(time.perf_counter() - started)
        self.load.append(system_load())
        return timings


def measure(args: argparse.Namespace, models: dict[str, Decoder], load_pid: int) -> Sessions:
    sessions = Sessions()
    runs = procedures(args)
    for replicate in range(args.replicates):
        first = {name: sessions.run(name, procedure, models, load_pid) for name, procedure in runs.items()}
        for name, procedure in runs.items():
            second = sessions.run(name, procedure, models, load_pid)
            sessions.pairs.setdefault(name, []).append((first[name], second))
        print(f"replicate {replicate + 1}/{args.replicates} done", file=sys.stderr)
    return sessions


def summary_rows(sessions: Sessions) -> Iterator[list[str]]:
    for procedure, pairs in sessions.pairs.items():
        for estimator, estimate in ESTIMATORS.items():
            ratios, taus = [], []
            for a, b in pairs:
                first, second = ([estimate(timings[name]) for name in ARCHITECTURES] for timings in (a, b))
                ratios += [max(x, y) / min(x, y) for x, y in zip(first, second)]
                taus.append(kendalltau(first, second).statistic)
            yield [procedure, estimator, f"{statistics.median(ratios):.3f}", f"{max(ratios):.3f}",
                   f"{min(taus):.2f}", f"{statistics.fmean(taus):.2f}", f"{statistics.fmean(sessions.seconds[procedure]):.1f}"]


def figures_row(timings: tuple[Timings, ...], estimator: str) -> list[str]:
    """Every architecture's figures, one per session: what the ratios are made of."""
    estimate = ESTIMATORS[estimator]
    return [" / ".join(f"{estimate(session[name]):.2f}" for session in timings) for name in ARCHITECTURES]


def main() -> None:
    args = parse_args()
    models = {name: build_decoder(preset(kind, **{**SEARCH_SHAPE, **overrides}))
              for name, (kind, overrides) in ARCHITECTURES.items()}
    load_before = system_load()
    unloaded = procedures(args)[f"thread · one by one, {args.repeats}"](models, load_pid=0)
    with training_load(args.load_threads) as load_pid:
        sessions = measure(args, models, load_pid)

    console = Console(width=160)
    loads = sessions.load
    console.print(f"{datetime.datetime.now().isoformat(timespec='seconds')} · torch {torch.__version__} · "
                  f"{platform.processor() or platform.machine()} · {os.cpu_count()} CPUs · "
                  f"training load: gpt search shape, batch 12, {args.load_threads or torch.get_num_threads()} threads")
    console.print(f"load average before {load_before[0]:.2f} · during {min(l for l, _ in loads):.2f}-"
                  f"{max(l for l, _ in loads):.2f} · procs_running sampled after each session: median "
                  f"{statistics.median(r or 0 for _, r in loads):.0f}, max {max(r or 0 for _, r in loads)}")
    console.print(f"{len(ARCHITECTURES)} architectures x {args.replicates} replicates · forward, batch 1, "
                  f"1 thread, 5 warm-up · wall: perf_counter, thread: the thread's CPU time · command: python benchmarks/{os.path.basename(__file__)} {' '.join(sys.argv[1:])}")
    table = Table(title="two measurements of one architecture under a training load")
    for column in ("procedure", "estimator", "ratio median", "ratio worst", "τ worst", "τ mean", "s / session"):
        table.add_column(column, justify="left" if column in ("procedure", "estimator") else "right")
    for row in summary_rows(sessions):
        table.add_row(*row)
    console.print(table)
    figures = Table(title="ms, session A / B of the first replicate")
    figures.add_column("procedure · estimator")
    for name in ARCHITECTURES:
        figures.add_column(name, justify="right")
    figures.add_row("before the training load started · thread · min", *figures_row((unloaded,), "min"))
    first_procedure = next(iter(sessions.pairs))
    shown = [(first_procedure, "median")] + [(procedure, "min") for procedure in sessions.pairs]
    for procedure, estimator in shown:
        figures.add_row(f"{procedure} · {estimator}", *figures_row(sessions.pairs[procedure][0], estimator))
    console.print(figures)


if __name__ == "__main__":
    main()
