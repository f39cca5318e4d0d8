"""Evidence that the search measures the right thing.

`reproduce`: the paper's four presets (or any presets) trained at one budget, side by side.
`calibrate`: does the short proxy rank architectures as long training does? Kendall τ and Spearman
between the proxy ranking and the long ranking, between parameter count and long-run loss, and the
noise ceiling: τ between two seeds of the long runs. Long runs are cached by (architecture, recipe,
data), so calibrating a new proxy costs only the proxy runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import optuna
import torch

from objectives import LatencyProtocol, count_flops, measure_latency
from search_space import PAPER_PRESETS, DecoderConfig, architecture_hash, preset, summarize
from trainer.data import TokenizedData, default_cache_dir
from trainer.loop import Progress, TrainingRecipe
from trainer.run import fit_vocabulary, initialised_model, run_training

from ..space import SearchSpace
from .ranking import kendall_tau, spearman_rho

Announce = Callable[[str], None]
# (name, steps) -> a context yielding trainer.loop's on_progress callback: how a view shows training.
TrainingBar = Callable[[str, int], ContextManager[Callable[[Progress], None]]]


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def no_bar(name: str, steps: int) -> Iterator[Callable[[Progress], None]]:
    yield lambda progress: None


def reproduce(data: TokenizedData, recipe: TrainingRecipe, shape: dict[str, int], device: torch.device,
              announce: Announce = _quiet, training_bar: TrainingBar = no_bar,
              presets: Sequence[str] = PAPER_PRESETS) -> list[dict[str, Any]]:
    """Train `presets` (gpt, pgpt, lgpt and cgpt) at `shape` with one recipe; one row of measures each. A preset
    that computes the same function as one already trained (cgpt's kernel-1 conv is lgpt's linear
    map: one architecture hash) reuses its row, as a study would."""
    rows: list[dict[str, Any]] = []
    trained: dict[str, dict[str, Any]] = {}
    for name in presets:
        config, _ = fit_vocabulary(preset(name, **shape), data.vocab_size)
        arch_hash = architecture_hash(config)
        if arch_hash in trained:
            announce(f"{name}: the same model as {trained[arch_hash]['name']}, its result reused")
            rows.append({**trained[arch_hash], "name": name, "reused_from": trained[arch_hash]["name"]})
            continue
        announce(f"training {name}: {summarize(config)}")
        model = initialised_model(config, recipe.seed).to(device)
        latency = measure_latency(model, LatencyProtocol())  # weights do not matter: time it before training
        with training_bar(name, recipe.steps) as on_progress:
            metrics = run_training(config, data, recipe, str(device), model=model, on_progress=on_progress).metrics()
        trained[arch_hash] = {"name": name, "val_loss": metrics["val_loss"], "val_accuracy": metrics["val_accuracy"],
                              "flops_per_token": count_flops(config), "params": metrics["params"],
                              "latency_ms": latency.ms, "train_seconds": metrics["train_seconds"],
                              "summary": summarize(config)}
        rows.append(trained[arch_hash])
    return rows


@dataclass
class Calibration:
    architectures: list[dict[str, Any]]  # summary, params, proxy_loss, long_loss, long_loss_seed2
    proxy_steps: int
    long_steps: int
    proxy_vs_long_tau: float
    proxy_vs_long_spearman: float
    params_vs_long_tau: float
    params_vs_long_spearman: float
    noise_ceiling_tau: float
    proxy_seconds: float
    long_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_architectures(space: SearchSpace, count: int, vocab_size: int, block_size: int,
                         seed: int) -> list[DecoderConfig]:
    """`count` distinct architectures drawn at random from the space (seeded)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    found: dict[str, DecoderConfig] = {}
    for _ in range(count * 50):
        config = space.sample(study.ask(), vocab_size, block_size)
        found.setdefault(architecture_hash(config), config)
        if len(found) == count:
            break
    return list(found.values())


def calibrate(configs: Sequence[DecoderConfig], data: TokenizedData, proxy: TrainingRecipe,
              long: TrainingRecipe, device: torch.device, cache_dir: Path | None = None,
              announce: Announce = _quiet) -> Calibration:
    cache = Path(cache_dir or default_cache_dir()) / "calibration"
    rows, proxy_seconds, long_seconds = [], 0.0, 0.0
    for index, config in enumerate(configs):
        config, _ = fit_vocabulary(config, data.vocab_size)
        announce(f"[{index + 1}/{len(configs)}] {summarize(config)}")
        proxy_run = _cached_run(config, data, proxy, device, cache)
        long_run = _cached_run(config, data, long, device, cache)
        second_seed = _cached_run(config, data, replace(long, seed=long.seed + 1), device, cache)
        proxy_seconds += proxy_run["train_seconds"]
        long_seconds += long_run["train_seconds"]
        rows.append({"summary": summarize(config), "params": long_run["params"],
                     "proxy_loss": proxy_run["val_loss"], "long_loss": long_run["val_loss"],
                     "long_loss_seed2": second_seed["val_loss"]})
    column = lambda key: [row[key] for row in rows]  # noqa: E731
    return Calibration(
        architectures=rows, proxy_steps=proxy.steps, long_steps=long.steps,
        proxy_vs_long_tau=kendall_tau(column("proxy_loss"), column("long_loss")),
        proxy_vs_long_spearman=spearman_rho(column("proxy_loss"), column("long_loss")),
        params_vs_long_tau=kendall_tau([-p for p in column("params")], column("long_loss")),
        params_vs_long_spearman=spearman_rho([-p for p in column("params")], column("long_loss")),
        noise_ceiling_tau=kendall_tau(column("long_loss"), column("long_loss_seed2")),
        proxy_seconds=proxy_seconds, long_seconds=long_seconds,
    )


def _cached_run(config: DecoderConfig, data: TokenizedData, recipe: TrainingRecipe, device: torch.device,
                cache: Path) -> dict[str, Any]:
    """Train once per (architecture, recipe, data); later calls read the stored metrics."""
    key_text = json.dumps([architecture_hash(config), recipe.to_dict(), data.content_hash, data.tokenizer.identity],
                          sort_keys=True)
    path = cache / f"{hashlib.sha256(key_text.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            pass  # a damaged entry (a write cut short): retrain and overwrite it
    metrics = run_training(config, data, recipe, str(device)).metrics()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return metrics
