"""The CPU search benchmark: does a 24-trial study beat the presets, and which search does it best?

Tiny Shakespeare, char level, block 64, batch 12, nanoGPT's CPU recipe, the shipped spaces (--spaces
paper modern: the paper's blocks, or those plus today's). Per space and sampler seed, up to four
24-trial studies at 300 steps (the six presets first):

    tpe-layer     the default: multivariate TPE over the per-layer encoding (the shipped space)
    random-layer  random search, same space and trial count
    tpe           TPE over the pattern encoding of the same choices
    random        random search over the pattern encoding

For the seeds in --promote-seeds, the studies named by --promote are promoted to 2000 steps
(`promote --top K --gap-trials N`: the front, then the layers behind it, then N gap trials at
2000 steps; the report says what the front held before its gap trials, too).
For each preset of the study (the paper's four, llama and lfm2 at 4 layers, 4 heads, d 128) trained
for 2000 steps, the promoted front must hold an architecture at least as good on validation loss and
FLOPs per token and better on one; it is also read against two hand-picked plain GPTs trained with
the same recipe. Hypervolumes are reported per study, each budget normalised over all its studies
at once (both spaces on one ruler). A paper study is named VARIANT-sSEED, a modern one
modern-VARIANT-sSEED.

Resumable: re-running continues the studies in the journal file. Not part of CI: on one CPU core a
300-step study takes about 5 minutes and a promotion 10-15 (the presets' long runs are trained
once per journal and reused by every promotion after it).

    python benchmarks/study_front.py [--spaces paper modern] [--seeds 0 1 2] [--promote-seeds 0]
                                     [--variants tpe-layer random-layer] [--storage FILE] [--top 10] [--gap-trials 4]
                                     [--jobs 1] [--no-hand-picked]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from objectives import count_flops
from search_space import preset
from studies.cli import main as cli
from studies.fronts.front import front_hypervolume, front_trials, normaliser_for
from studies.fronts.hypervolume import dominates
from studies.settings import read_settings
from studies.space import SHIPPED_SPACES, load_space
from studies.storage.backends import open_storage, promoted_name
from studies.workers.trial_record import trained as trained_trial
from trainer import prepare_data
from trainer.loop import TrainingRecipe
from trainer.run import run_training

REPO = Path(__file__).resolve().parent.parent
SHAPE = ["--block-size", "64", "--n-layer", "4", "--n-head", "4", "--d-model", "128", "--batch-size", "12"]
VARIANTS = {"tpe-layer": ("tpe", "per_layer"), "random-layer": ("random", "per_layer"),
            "tpe": ("tpe", "pattern"), "random": ("random", "pattern")}
HAND_PICKED = {"gpt 2L d128": {"n_layer": 2, "d_model": 128}, "gpt 3L d160": {"n_layer": 3, "d_model": 160}}


def study_names(storage: optuna.storages.BaseStorage) -> set[str]:
    return {s.study_name for s in optuna.get_all_study_summaries(storage)}


def space_file(space: str, encoding: str, workdir: Path) -> Path:
    """A shipped space, re-encoded if asked (the same choices, drawn per layer or by one rule)."""
    path = workdir / f"space-{space}-{encoding}.yaml"
    path.write_text(yaml.safe_dump({**load_space(space).to_dict(), "encoding": encoding}))
    return path


def study_name(space: str, variant: str, seed: int) -> str:
    return f"{variant}-s{seed}" if space == "paper" else f"{space}-{variant}-s{seed}"


def run_study(name: str, sampler: str, space: Path, seed: int, args: argparse.Namespace) -> None:
    storage = open_storage(args.storage)
    trained = 0
    if name in study_names(storage):
        trained = sum(1 for t in optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)) if trained_trial(t))
    if trained < args.trials:
        code = cli(["search", "--study", name, "--storage", args.storage, "--data", args.data, "--space", str(space),
                    "--sampler", sampler, "--sampler-seed", str(seed), *SHAPE, "--trials", str(args.trials - trained),
                    *(["--jobs", str(args.jobs)] if args.jobs else [])])
        if code:
            raise SystemExit(code)


def promote(name: str, args: argparse.Namespace) -> None:
    """Idempotent: a promotion that is done (its queue and its gap trials) trains nothing."""
    if cli(["promote", "--study", name, "--storage", args.storage, "--steps", str(args.long_steps),
            "--top", str(args.top), "--gap-trials", str(args.gap_trials)]):
        raise SystemExit(1)


def front_of(study: optuna.Study, before_gap_trials: bool = False) -> list[optuna.trial.FrozenTrial]:
    """The study's front; or the front it had before its gap trials (val_loss and FLOPs, both minimised)."""
    if not before_gap_trials:
        return front_trials(study, read_settings(study))
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "gap_between" not in t.user_attrs]
    return [t for t in trials if not any(beats(other.user_attrs, t.user_attrs) for other in trials)]


def hand_picked(study: optuna.Study, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """The hand-picked plain GPTs, trained with the promoted study's recipe (cached beside the journal)."""
    cache = Path(args.storage).with_suffix(".hand-picked.json")
    found = json.loads(cache.read_text()) if cache.is_file() else {}
    settings = read_settings(study)
    for label, shape in HAND_PICKED.items():
        if label not in found and not args.report_only and args.hand_picked:
            data = prepare_data(settings.data, settings.tokenizer)
            config = preset("gpt", vocab_size=data.vocab_size, block_size=settings.block_size, n_head=4, **shape)
            report = run_training(config, data, TrainingRecipe(**settings.recipe), "cpu")
            found[label] = {"val_loss": report.metrics()["val_loss"], "flops_per_token": count_flops(config)}
            cache.write_text(json.dumps(found, indent=1))
    return found


def no_worse(candidate: dict, reference: dict, tolerance: float = 0.0) -> bool:
    """At least as good on loss (within `tolerance`) and on FLOPs."""
    return (candidate["val_loss"] <= reference["val_loss"] + tolerance
            and candidate["flops_per_token"] <= reference["flops_per_token"])


def beats(candidate: dict, reference: dict) -> bool:
    """At least as good on loss and FLOPs, better on one: dominance on those two."""
    return dominates([candidate["val_loss"], candidate["flops_per_token"]],
                     [reference["val_loss"], reference["flops_per_token"]])


def preset_table(long: optuna.Study, front: list[optuna.trial.FrozenTrial], hand: dict[str, dict[str, float]],
                 title: str) -> tuple[Table, list[str]]:
    """The table of references and the presets the front beats."""
    references = {t.user_attrs["preset"]: t.user_attrs for t in long.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,)) if "preset" in t.user_attrs}
    references.update({label: {**measures, "hand": True} for label, measures in hand.items()})
    table = Table(title=title)
    for column in ("reference", "val_loss", "FLOPs/token", "best front match", "its val_loss", "its FLOPs/token", "ok"):
        table.add_column(column)
    presets_beaten = []
    for name, reference in references.items():
        # a hand-picked point is reached within seed noise (0.01); a preset must be beaten outright
        good = partial(no_worse, tolerance=0.01) if reference.get("hand") else beats
        matches = [t for t in front if "preset" not in t.user_attrs and good(t.user_attrs, reference)]
        best = min(matches, key=lambda t: t.user_attrs["val_loss"]) if matches else None
        if best and not reference.get("hand"):
            presets_beaten.append(name)
        table.add_row(name, f"{reference['val_loss']:.4f}", f"{reference['flops_per_token']:,}",
                      best.user_attrs["summary"] if best else "-",
                      f"{best.user_attrs['val_loss']:.4f}" if best else "-",
                      f"{best.user_attrs['flops_per_token']:,}" if best else "-", "yes" if best else "NO")
    return table, presets_beaten


def front_hypervolumes(studies: dict[str, optuna.Study], before_gap_trials: bool = False) -> dict[str, float]:
    """Each study's front hypervolume, all normalised over the complete trials of every study given."""
    complete = {name: study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) for name, study in studies.items()}
    objectives = read_settings(next(iter(studies.values()))).objectives
    normalise = normaliser_for(objectives, [t.values for trials in complete.values() for t in trials])
    return {name: front_hypervolume(front_of(study, before_gap_trials), objectives, normalise)
            for name, study in studies.items()}


def front_rows(long: optuna.Study, title: str) -> Table:
    table = Table(title=title)
    for column in ("trial", "val_loss", "FLOPs/token", "params", "architecture"):
        table.add_column(column)
    for t in front_trials(long, read_settings(long)):
        origin = t.user_attrs.get("preset", "gap" if "gap_between" in t.user_attrs else "")
        table.add_row(str(t.number), f"{t.user_attrs['val_loss']:.4f}", f"{t.user_attrs['flops_per_token']:,}",
                      f"{t.user_attrs['params']:,}", f"{origin} {t.user_attrs['summary']}".strip())
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
    parser.add_argument("--storage", default="benchmark-study.journal")
    parser.add_argument("--spaces", nargs="+", default=["paper"], choices=list(SHIPPED_SPACES),
                        help="shipped spaces to search (default: paper)")
    parser.add_argument("--trials", type=int, default=24, help="trials trained per study (default: 24)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampler seeds (default: 0)")
    parser.add_argument("--long-steps", type=int, default=2000)
    parser.add_argument("--promote-seeds", type=int, nargs="*", default=[0],
                        help="seeds whose studies are promoted to --long-steps (default: 0)")
    parser.add_argument("--variants", nargs="+", default=["tpe-layer", "random-layer"], choices=list(VARIANTS),
                        help="which studies to run per seed (default: tpe-layer random-layer)")
    parser.add_argument("--promote", nargs="*", default=["tpe-layer", "random-layer"], choices=list(VARIANTS),
                        help="which studies of those seeds are promoted (default: tpe-layer random-layer)")
    parser.add_argument("--top", type=int, default=10, help="trials promoted per study (default: 10)")
    parser.add_argument("--gap-trials", type=int, default=4, help="gap trials per promoted study (default: 4)")
    parser.add_argument("--jobs", type=int, help="worker processes per search (default: search's own)")
    parser.add_argument("--no-hand-picked", dest="hand_picked", action="store_false",
                        help="do not train the hand-picked GPTs (another run of this script trains them)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report what the journal holds")
    args = parser.parse_args()
    console, started = Console(), time.time()
    workdir = Path(args.storage).resolve().parent
    files = {(space, encoding): space_file(space, encoding, workdir) for space in args.spaces
             for _, encoding in VARIANTS.values()}
    storage = open_storage(args.storage)
    rows = [(space, variant) for space in args.spaces for variant in args.variants]

    short: dict[str, optuna.Study] = {}
    long: dict[str, optuna.Study] = {}
    for seed in args.seeds:
        for space, variant in rows:
            sampler, encoding = VARIANTS[variant]
            name = study_name(space, variant, seed)
            if not args.report_only:
                run_study(name, sampler, files[space, encoding], seed, args)
                if seed in args.promote_seeds and variant in args.promote:
                    promote(name, args)
            if name in study_names(storage):
                short[name] = optuna.load_study(study_name=name, storage=storage)
            if promoted_name(name, args.long_steps) in study_names(storage):
                long[name] = optuna.load_study(study_name=promoted_name(name, args.long_steps), storage=storage)

    hand = hand_picked(next(iter(long.values())), args) if long else {}
    passes = []
    for name, study in long.items():
        title = f"{name}: {args.long_steps}-step front vs the presets and hand-picked GPTs"
        table, beaten = preset_table(study, front_of(study), hand, title)
        _, beaten_before = preset_table(study, front_of(study, before_gap_trials=True), hand, title)
        console.print(table)
        console.print(front_rows(study, f"{name}: the {args.long_steps}-step front"))
        presets = read_settings(study).presets
        unbeaten = [preset for preset in presets if preset not in beaten]
        passes.append(f"{name} {len(beaten)}/{len(presets)}" + (f" (not {' '.join(unbeaten)})" if unbeaten else "")
                      + f" ({len(beaten_before)}/{len(presets)} before its gap trials)")

    volumes = {}
    for budget, studies in (("300 steps", short), (f"{args.long_steps} steps", long)):
        if studies:
            volumes[budget] = front_hypervolumes(studies)
    if long:
        volumes[f"{args.long_steps} steps before gap trials"] = front_hypervolumes(long, before_gap_trials=True)
    table = Table(title="front hypervolume (each budget normalised over all its studies; reference 1.1)")
    table.add_column("space")
    table.add_column("variant")
    for budget in volumes:
        for seed in args.seeds:
            table.add_column(f"{budget} seed {seed}")
        table.add_column(f"{budget} mean")
    for space, variant in rows:
        cells = []
        for found in volumes.values():
            seeds = [found.get(study_name(space, variant, seed)) for seed in args.seeds]
            measured = [v for v in seeds if v is not None]
            cells += [f"{v:.3f}" if v is not None else "-" for v in seeds]
            cells.append(f"{statistics.mean(measured):.3f}" if measured else "-")
        table.add_row(space, variant, *cells)
    console.print(table)
    console.print(f"presets beaten: {', '.join(passes)} · wall {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
