"""How to train: the recipe every run and every study trial uses, validated when it is made.

Kept free of torch so that settings, help texts and views can read it without loading a model stack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any


class RecipeError(ValueError):
    """A training setting that makes no sense (negative steps, an unknown device)."""


class RefusedValue(ValueError):
    """One argument's value refused, named as Python names it (`grad_clip=-1.0: must not be
    negative`); the command line names the flag instead (studies/cli/main.py, `flag_error`)."""

    def __init__(self, argument: str, value: object, problem: str) -> None:
        self.argument, self.value, self.problem = argument, value, problem
        shown = repr(str(value)) if isinstance(value, PurePath) else repr(value)  # 'a.onnx', not PosixPath(...)
        super().__init__(f"{argument}={shown}: {problem}")


class FieldError(RecipeError, RefusedValue):
    """A recipe field no training run could use."""


@dataclass
class TrainingRecipe:
    """How to train. Defaults are nanoGPT's CPU recipe for character-level Shakespeare."""

    steps: int = 2000
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    grad_accum: int = 1
    seed: int = 1337
    max_tokens: int | None = None  # stop early once this many training tokens were seen
    max_seconds: float | None = None  # stop early after this much wall time
    eval_windows: int = 200  # fixed, seeded validation windows scored at the end
    eval_batch_size: int = 64
    compile: bool = False  # torch.compile: pays back only on long GPU runs
    report_every: int = 10  # progress callbacks (and non-finite checks) every N steps

    def __post_init__(self) -> None:
        validate_recipe(self)

    def lr_at(self, step: int) -> float:
        """Linear warm-up to `lr`, then cosine down to `min_lr` at the last step."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - 1 - self.warmup_steps)  # the last step is steps - 1
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Settings checked at construction, so a study refuses a recipe before any trial can fail on it.
# A warm-up longer than `steps` is allowed: the run then ends inside the warm-up, a schedule
# rather than a mistake (a short proxy run may keep the warm-up of the long run it stands for).
_COUNTS = ("steps", "batch_size", "grad_accum", "eval_windows", "eval_batch_size", "report_every")
_NON_NEGATIVE = ("lr", "min_lr", "weight_decay", "grad_clip")
_BETAS = ("beta1", "beta2")
MAX_SEED = 2**62  # torch generators take 64-bit seeds; headroom for the steps the loop adds to it


def validate_recipe(recipe: TrainingRecipe) -> None:
    """Raise RecipeError naming the first field no training run could use."""
    for name in _COUNTS:
        _check_whole(name, getattr(recipe, name), minimum=1)
    _check_whole("warmup_steps", recipe.warmup_steps, minimum=0)
    _check_whole("seed", recipe.seed, minimum=-MAX_SEED, maximum=MAX_SEED)
    for name in _NON_NEGATIVE:
        if _check_real(name, getattr(recipe, name)) < 0:
            raise FieldError(name, getattr(recipe, name), "must not be negative")
    for name in _BETAS:
        if not 0 <= _check_real(name, getattr(recipe, name)) < 1:
            raise FieldError(name, getattr(recipe, name), "must be in [0, 1)")
    if recipe.max_tokens is not None:
        _check_whole("max_tokens", recipe.max_tokens, minimum=1)
    if recipe.max_seconds is not None and _check_real("max_seconds", recipe.max_seconds) <= 0:
        raise FieldError("max_seconds", recipe.max_seconds, "must be positive")
    if not isinstance(recipe.compile, bool):
        raise FieldError("compile", recipe.compile, "expected true or false")


def _check_whole(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    # bool is an int subclass in Python; a `true` step count is a mistake, not a 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError(name, value, "expected a whole number")
    if value < minimum:
        raise FieldError(name, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise FieldError(name, value, f"must be at most {maximum}")


def _check_real(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FieldError(name, value, "expected a number")
    if not math.isfinite(value):
        raise FieldError(name, value, "must be a finite number")
    return value
