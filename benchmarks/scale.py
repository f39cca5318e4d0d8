"""How the views and a trial's bookkeeping grow with the study: 100, 1,000 and 10,000 complete trials.

    python benchmarks/scale.py [--sizes 100 1000 10000] [--storages journal records sqlite postgresql]
                               [--repeats 3] [--postgres postgresql://USER@HOST/DB] [--scratch DIR]
                               [--views-only]

`records` is a journal written as a worker writes it: a record per parameter and per attribute,
~12 kB a trial (`journal` holds each copy in one record of ~5 kB).

Real trials first: a tiny real search (6 trials of 12 steps, a 2-layer d16 shape, on a small
generated corpus) in a scratch journal. Each size's study is built from copies of those trials:
every copy is an architecture drawn at random from the space (its parameters, config and arch_hash)
with a real trial's measures perturbed (val_loss by ~5%, FLOPs, params and latency by up to 2x
either way); the study
gets the real study's settings. A storage holds one study per size, so `studies` lists one study.
Studies already built in --scratch (or in the --postgres database) are reused; the PostgreSQL
database should be one of its own.

Each command runs as a subprocess (`python -m studies ...`, so imports count) `--repeats` times;
the table gives the median. Next to it: Optuna's own load_study + get_trials on the same storage,
timed inside a subprocess (storage opening included, imports not): the floor of any view that reads
every trial. "join" and the trials are what a worker spends besides training and evaluation,
timed in this process: Search.create joining the study, then one run_worker for 1 + LATER_TRIALS
trials with the training, evaluation and latency timing stubbed out (sampling, the twin search, the
rung pruner's scan, the recording, the collection after each model all run). The first trial pays
once per worker (TPE's first fit, filling the storage's cache, torch's lazy imports); the later
ones are what every further trial costs. Slope: log(t at the largest size / t at the one before) over
log(size ratio); 1 is linear in the trials.

On a journal the views read an index kept beside it (studies/storage/journal_index.py): "pareto, index
built" is `pareto` after the index was deleted, the one run that reads the whole journal; the other
rows are medians of runs that find it up to date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import BaseJournalBackend
from optuna.trial import FrozenTrial, TrialState, create_trial
from rich.console import Console
from rich.table import Table

from objectives.latency import Latency
from search_space import architecture_hash, config_to_dict
from studies.api import Search
from studies.settings import StudySettings, read_settings, write_settings
from studies.storage.backends import open_storage
from studies.storage.journal_index import index_path
from studies.workers.search import name_metrics, run_worker
from studies.workers.trial_record import trained
from studies.workers.trials import SilentReporter
from trainer.loop import Evaluation, Progress, TrainingResult
from trainer.run import RunReport

SEED_STUDY = "seed"
TINY_SEARCH = ["--jobs", "1", "--trials", "6", "--steps", "12", "--batch-size", "4", "--eval-windows", "4",
               "--block-size", "16", "--n-layer", "2", "--n-head", "2", "--d-model", "16", "--device", "cpu"]
LATER_TRIALS = 4  # after a worker's first trial, which pays for TPE's first fit and the storage's cache
COSTS = ("flops_per_token", "params", "latency_ms")  # perturbed together: a copy is another architecture
LOAD_PROBE = """
import sys, time, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
kind, spec, name = sys.argv[1:]
start = time.perf_counter()
storage = JournalStorage(JournalFileBackend(spec)) if kind in ("journal", "records") else spec
optuna.load_study(study_name=name, storage=storage).get_trials()
print(time.perf_counter() - start)
"""
TORCH_PROBE = "import sys; from studies.cli import main; main(sys.argv[1:]); print('torch' in sys.modules)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--storages", nargs="+", default=["journal", "records", "sqlite", "postgresql"],
                        choices=["journal", "records", "sqlite", "postgresql"], help="postgresql only with --postgres")
    parser.add_argument("--views-only", action="store_true", help="time the commands only, not a worker's trials")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command; the median is shown")
    parser.add_argument("--timeout", type=float, default=60, help="seconds after which a command is cut short "
                        "and shown as > that (default: %(default)s)")
    parser.add_argument("--postgres", help="a PostgreSQL URL (.ci/postgres.sh starts a server and prints one)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/decoder-nas-scale"),
                        help="where the corpus, the journals and SQLite files go (kept for the next run)")
    return parser.parse_args()


def real_trials(scratch: Path) -> tuple[list[FrozenTrial], StudySettings]:
    """The complete trials and settings of a tiny real search, run once per scratch folder."""
    corpus, journal = scratch / "corpus.txt", scratch / "seed.journal"
    if not journal.exists():
        words = "the quick brown fox jumps over a lazy dog while small decoders learn text".split()
        rng = random.Random(0)
        corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)))
        subprocess.run([sys.executable, "-m", "studies", "search", "--study", SEED_STUDY, "--storage", str(journal),
                        "--data", str(corpus), *TINY_SEARCH], check=True, capture_output=True)
    study = optuna.load_study(study_name=SEED_STUDY, storage=open_storage(str(journal)))
    return study.get_trials(states=(TrialState.COMPLETE,)), read_settings(study)


def perturbed_copy(trial: FrozenTrial, index: int, settings: StudySettings, architectures: optuna.Study) -> FrozenTrial:
    """Copy `index` of a real trial: the first copies are the real trials themselves, the others an
    architecture drawn at random from the study's space (its parameters, config and arch_hash) with
    the real trial's measures perturbed. Drawn, not copied: a study whose trials share a handful of
    parameter sets has TPE propose those again and again, which no real study of that size does."""
    if index < 0:
        return create_trial(values=[trial.user_attrs[name] for name in settings.objectives], params=trial.params,
                            distributions=trial.distributions, user_attrs=trial.user_attrs)
    rng = random.Random(index)
    drawn = architectures.ask()
    config = settings.space.sample(drawn, trial.user_attrs["config"]["vocab_size"], settings.block_size)
    attrs = {key: value for key, value in trial.user_attrs.items() if key not in ("preset", "in_space", "reused_from")}
    attrs.update(config=config_to_dict(config), arch_hash=architecture_hash(config))
    attrs["val_loss"] *= math.exp(rng.gauss(0, 0.05))
    attrs["val_perplexity"] = math.exp(attrs["val_loss"])
    for name in COSTS:
        attrs[name] = type(attrs[name])(attrs[name] * math.exp(rng.uniform(-0.7, 0.7)))
    return create_trial(values=[attrs[name] for name in settings.objectives], params=drawn.params,
                        distributions=drawn.distributions, user_attrs=attrs)


def storage_spec(kind: str, size: int, scratch: Path, postgres: str | None) -> str:
    if kind == "journal":
        return str(scratch / f"scale-{size}.journal")
    if kind == "records":
        return str(scratch / f"scale-{size}-records.journal")
    if kind == "sqlite":
        return f"sqlite:///{scratch / f'scale-{size}.db'}"
    return postgres


class RecordsInMemory(BaseJournalBackend):
    """Optuna's journal records, kept in memory and written out at the end (Optuna writes each with fsync)."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def read_logs(self, log_number_from: int):
        return self.logs[log_number_from:]

    def append_logs(self, logs: list[dict]) -> None:
        self.logs.extend(logs)



def build_study(spec: str, name: str, size: int, seeds: list[FrozenTrial], settings: StudySettings,
                records: bool = False) -> None:
    """Study `name` with `size` complete trials, unless the storage already holds it. `records`: a
    journal written record by record, as workers write it."""
    if records and Path(spec).exists() or not records and name in optuna.get_all_study_names(open_storage(spec)):
        return
    memory = RecordsInMemory() if records else None
    storage = JournalStorage(memory) if memory is not None else open_storage(spec)
    study = optuna.create_study(study_name=name, storage=storage, directions=settings.directions)
    name_metrics(study, settings)
    write_settings(study, settings)
    architectures = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=size))
    copies = [perturbed_copy(seeds[i % len(seeds)], i - len(seeds), settings, architectures) for i in range(size)]
    if memory is None:
        study.add_trials(copies)
        return
    for copy in copies:
        trial_id = storage.create_new_trial(study._study_id)  # noqa: SLF001
        for param, value in copy.params.items():
            distribution = copy.distributions[param]
            storage.set_trial_param(trial_id, param, distribution.to_internal_repr(value), distribution)
        for key, value in copy.user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, copy.values)
    with open(spec, "w") as journal:
        journal.writelines(json.dumps(log, separators=(",", ":")) + "\n" for log in memory.logs)


def commands(name: str, spec: str, scratch: Path) -> dict[str, list[str]]:
    study = ["--study", name, "--storage", spec]
    return {
        "pareto": ["pareto", *study],
        "pareto --json": ["pareto", *study, "--json"],
        "pareto --html": ["pareto", *study, "--html", str(scratch / "front.html")],
        "export --pick knee": ["export", *study, "--pick", "knee", "-o", str(scratch / "knee.yaml")],
        "studies": ["studies", "--storage", spec],
    }


def median_seconds(argv: list[str], repeats: int, timeout: float) -> tuple[float, float]:
    """The median wall time and CPU time (user + system: what the run costs on a core of its own,
    whatever else the machine runs), or inf once a run takes longer than `timeout` (not repeated)."""
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), children_cpu_seconds()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return math.inf, math.inf
        times.append(time.perf_counter() - start)
        cpu_times.append(children_cpu_seconds() - cpu_start)
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return statistics.median(times), statistics.median(cpu_times)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


JOURNALS = ("journal", "records")


def optuna_load_seconds(kind: str, spec: str, name: str, repeats: int) -> float:
    url = spec.replace("postgresql://", "postgresql+psycopg://", 1)  # the driver we ship
    runs = [subprocess.run([sys.executable, "-c", LOAD_PROBE, kind, url, name], capture_output=True, text=True,
                           check=True) for _ in range(repeats)]
    return statistics.median(float(run.stdout) for run in runs)


def imports_torch(argv: list[str]) -> bool:
    done = subprocess.run([sys.executable, "-c", TORCH_PROBE, *argv], capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1] == "True"


def stub_training(config, data, recipe, device, out_dir, on_progress, model=None) -> RunReport:
    """Every progress report a real run makes at loss 0 (never dominated, so the rung pruner's scan
    runs in full at each rung), no training. The final loss varies, as real ones do: with one loss
    for all, TPE would keep proposing the architecture it already has."""
    for step in range(1, recipe.steps + 1):
        on_progress(Progress(step, recipe.steps, 0.0, step, 0.0))
    loss = random.uniform(1.0, 3.0)
    result = TrainingResult(Evaluation(loss, math.exp(loss), 0.5), recipe.steps, recipe.steps, 1.0, 1.0, [loss])
    return RunReport(config, result, 1, str(device), data.data_spec, data.content_hash, "char")


def stub_latency(model, protocol=None) -> Latency:
    return Latency(1.0, 1.0, 1.0, 1, "cpu", ms=1.0, relative_spread=0.0)


class TrialTimes(SilentReporter):
    """How long each trial took since the one before ended, trained (True) or a repeat reused (False)."""

    def __init__(self) -> None:
        self.last, self.times = time.perf_counter(), []

    def trial_finished(self, trial: FrozenTrial) -> None:
        now = time.perf_counter()
        self.times.append((trained(trial), now - self.last))
        self.last = now


def bookkeeping_seconds(spec: str, name: str) -> tuple[float, float, float, float]:
    """Search.create joining the study, then a worker's first trained trial and the medians of its next
    LATER_TRIALS trained trials and of the repeats (architectures already trained, result reused)
    the sampler proposed meanwhile; nan if none. Training, evaluation and latency timing are stubbed
    out. A large study holds many repeats: TPE's good group is its best 25 trials, which it proposes
    again, so a worker is kept going past MAX_CONSECUTIVE_REPEATS here."""
    start = time.perf_counter()
    search = Search.create(name, spec, presets=False)
    joined = time.perf_counter() - start
    times = TrialTimes()
    with mock.patch("studies.workers.trials.run_training", stub_training), \
            mock.patch("studies.workers.trials.measure_latency", stub_latency), \
            mock.patch("studies.workers.search.MAX_CONSECUTIVE_REPEATS", 10**6):
        run_worker(search.study, search.settings, search.data, torch.device("cpu"), 1 + LATER_TRIALS, storage=spec,
                   reporter=times)
    first_trained = next(index for index, (was, _) in enumerate(times.times) if was)
    first = sum(seconds for _, seconds in times.times[:first_trained + 1])  # with any samples before it
    later = times.times[first_trained + 1:]
    trained_ones, repeats = [t for was, t in later if was], [t for was, t in later if not was]
    return (joined, first, statistics.median(trained_ones) if trained_ones else math.nan,
            statistics.median(repeats) if repeats else math.nan)


def slope(times: dict[int, float]) -> str:
    sizes = sorted(times)
    if len(sizes) < 2:
        return "-"
    low, high = sizes[-2], sizes[-1]
    if math.isinf(times[high]):
        return "-"
    return f"{math.log(times[high] / times[low]) / math.log(high / low):.2f}"


def measure(kind: str, sizes: list[int], args: argparse.Namespace, seeds: list[FrozenTrial],
            settings: StudySettings) -> dict[str, dict[int, float]]:
    """Row name -> size -> median seconds, for one storage kind."""
    rows: dict[str, dict[int, float]] = {}
    for size in sizes:
        name, spec = f"scale-{size}", storage_spec(kind, size, args.scratch, args.postgres)
        start = time.perf_counter()
        build_study(spec, name, size, seeds, settings, records=kind == "records")
        megabytes = f", {Path(spec).stat().st_size / 1e6:.1f} MB" if kind in JOURNALS else ""
        print(f"{kind} {size}: study ready in {time.perf_counter() - start:.0f} s{megabytes}", file=sys.stderr,
              flush=True)
        rows.setdefault("optuna load_study+get_trials", {})[size] = optuna_load_seconds(kind, spec, name, args.repeats)
        views = commands(name, spec, args.scratch)
        if kind in JOURNALS:
            index_path(Path(spec)).unlink(missing_ok=True)
            timed = {"pareto, index built": (views["pareto"], 1), **{label: (argv, args.repeats)
                                                                     for label, argv in views.items()}}
        else:
            timed = {label: (argv, args.repeats) for label, argv in views.items()}
        for label, (argv, repeats) in timed.items():
            wall, cpu = median_seconds([sys.executable, "-m", "studies", *argv], repeats, args.timeout)
            rows.setdefault(label, {})[size] = wall
            rows.setdefault(f"{label} (CPU)", {})[size] = cpu
        if args.views_only:
            continue
        runs = [bookkeeping_seconds(spec, name) for _ in range(args.repeats)]
        for label, column in zip(BOOKKEEPING, zip(*runs, strict=True), strict=True):
            rows.setdefault(label, {})[size] = statistics.median(column)
    return rows


def seconds(value: float, timeout: float) -> str:
    return f"> {timeout:.0f}" if math.isinf(value) else f"{value:.2f}"


def table(kind: str, sizes: list[int], rows: dict[str, dict[int, float]], timeout: float) -> Table:
    largest = max(sizes)
    floor = rows["optuna load_study+get_trials"][largest]
    out = Table(title=f"{kind}: median seconds of {', '.join(f'{s:,}' for s in sizes)} complete trials")
    out.add_column("what")
    for size in sizes:
        out.add_column(f"{size:,}", justify="right")
    out.add_column(f"beyond Optuna's load at {largest:,}", justify="right")
    out.add_column("slope", justify="right")
    for label, times in rows.items():
        beyond = seconds(times[largest] - floor, timeout) if label in VIEWS else ""
        out.add_row(label, *(seconds(times[s], timeout) for s in sizes), beyond, slope(times))
    return out


BOOKKEEPING = ("join (Search.create)", "a worker's first trial, training stubbed",
               f"its next {LATER_TRIALS} trained trials (median)", "its repeats meanwhile (median)")
VIEWS = ("pareto", "pareto --json", "pareto --html", "export --pick knee")


def main() -> None:
    args = parse_args()
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the corpus is read by each join
    args.scratch.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in args.storages if k != "postgresql" or args.postgres]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seeds, settings = real_trials(args.scratch)
    import torch._dynamo  # noqa: F401 - a worker's first model build imports it, once, whatever the study's size
    console = Console(width=160)
    console.print(f"{datetime.date.today()} {platform.machine()}, {os.cpu_count()} cores, "
                  f"load {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, Optuna {optuna.__version__}; "
                  f"objectives {', '.join(settings.objectives)}; {len(seeds)} real trials copied")
    for kind in kinds:
        rows = measure(kind, sorted(args.sizes), args, seeds, settings)
        console.print(table(kind, sorted(args.sizes), rows, args.timeout))
    smallest = commands(f"scale-{min(args.sizes)}", storage_spec(kinds[0], min(args.sizes), args.scratch,
                                                                   args.postgres), args.scratch)
    probes = {"--help": ["--help"], **{k: v for k, v in smallest.items() if k != "pareto --html"}}
    console.print("imports torch: " + ", ".join(f"{label} {'yes' if imports_torch(argv) else 'no'}"
                                                for label, argv in probes.items()))


if __name__ == "__main__":
    main()
