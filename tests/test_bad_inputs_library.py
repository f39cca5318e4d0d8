"""Bad input met through the Python API: each is the package's user-error class, one line naming the field."""

from __future__ import annotations

import pytest

from trainer.loop import RecipeError, TrainingRecipe

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("changes, message", [
    ({"beta2": 2.0}, "beta2: 2.0 must be in [0, 1)"),
    ({"beta1": -0.1}, "beta1: -0.1 must be in [0, 1)"),
    ({"lr": NAN}, "lr: nan must be a finite number"),
    ({"min_lr": INF}, "min-lr: inf must be a finite number"),
    ({"weight_decay": -INF}, "weight-decay: -inf must be a finite number"),
    ({"grad_clip": -1.0}, "grad-clip: -1.0 must not be negative"),
    ({"eval_windows": 0}, "eval-windows: 0 must be at least 1"),
    ({"eval_batch_size": 0}, "eval-batch-size: 0 must be at least 1"),
    ({"steps": 1e9}, "steps: expected a whole number, got 1000000000.0"),
    ({"batch_size": True}, "batch-size: expected a whole number, got True"),
    ({"lr": "fast"}, "lr: expected a number, got 'fast'"),
    ({"max_tokens": 0}, "max-tokens: 0 must be at least 1"),
    ({"max_seconds": 0.0}, "max-seconds: 0.0 must be positive"),
    ({"max_seconds": NAN}, "max-seconds: nan must be a finite number"),
    ({"seed": 2**70}, "seed: 1180591620717411303424 must be at most"),
    ({"compile": "yes"}, "compile: expected true or false, got 'yes'"),
])
def test_a_recipe_no_run_could_use_is_refused_at_construction(changes, message):
    with pytest.raises(RecipeError) as error:
        TrainingRecipe(**changes)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)

