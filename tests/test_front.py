"""Fronts, knee, picks and the exact hypervolume, on hand-made trials and points."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from studies.errors import StudyError
from studies.fronts.front import (
    REFERENCE,
    complete_trials,
    front_trials,
    hypervolume_history,
    knee,
    normaliser_for,
    pareto_layers,
    pick,
    promotion_candidates,
)
from studies.fronts.hypervolume import hypervolume as exact_hypervolume
from studies.settings import StudySettings
from trainer.loop import TrainingRecipe

LOSS_FLOPS = ("val_loss", "flops_per_token")


def trial(values: list[float], objectives=LOSS_FLOPS, number: int = 0, state=TrialState.COMPLETE,
          **attrs) -> FrozenTrial:
    user_attrs = {name: value for name, value in zip(objectives, values)}
    user_attrs.update(attrs)
    made = create_trial(state=state, values=values if state == TrialState.COMPLETE else None, user_attrs=user_attrs)
    made.number = number
    return made


def settings(objectives=LOSS_FLOPS) -> StudySettings:
    return StudySettings(objectives=objectives, data="x", block_size=16, recipe=TrainingRecipe(steps=12))


def hypervolume(points, reference=REFERENCE) -> float:
    return exact_hypervolume(points, reference)


# --- hypervolume ------------------------------------------------------------------------------------


def test_hypervolume_1d() -> None:
    assert hypervolume([[0.2], [0.5]]) == pytest.approx(0.9)
    assert hypervolume([[0.5]], reference=2.0) == pytest.approx(1.5)


def test_hypervolume_2d_by_hand() -> None:
    # two boxes [0, 1.1] x [1, 1.1] and [1, 1.1] x [0, 1.1], overlapping in a 0.1 x 0.1 square
    assert hypervolume([[0, 1], [1, 0]]) == pytest.approx(0.11 + 0.11 - 0.01)
    assert hypervolume([[0.5, 0.5]]) == pytest.approx(0.36)
    # slices along x: [0, .5) height .1, [.5, 1) height .6, [1, 1.1) height 1.1
    assert hypervolume([[0, 1], [0.5, 0.5], [1, 0]]) == pytest.approx(0.05 + 0.3 + 0.11)


def test_hypervolume_3d_by_hand() -> None:
    assert hypervolume([[0, 0, 0]]) == pytest.approx(1.1**3)
    # 1.1 x 1.1 x 0.6 plus 0.6 x 0.6 x 1.1, less their 0.6^3 overlap
    assert hypervolume([[0, 0, 0.5], [0.5, 0.5, 0]]) == pytest.approx(0.726 + 0.396 - 0.216)


def test_dominated_duplicate_and_outside_points_add_nothing() -> None:
    base = [[0, 1], [0.5, 0.5], [1, 0]]
    expected = hypervolume(base)
    assert hypervolume(base + [[0.6, 0.6]]) == pytest.approx(expected)
    assert hypervolume(base + [[0.5, 0.5]]) == pytest.approx(expected)
    assert hypervolume(base + [[1.2, 0.0], [0.0, 1.1]]) == pytest.approx(expected)  # not inside the reference box
    assert hypervolume([[1.2, 0.0]]) == 0.0 and hypervolume([]) == 0.0
    assert hypervolume(list(reversed(base))) == pytest.approx(expected)  # order does not matter


@pytest.mark.parametrize("dimensions", [2, 3, 4])
def test_hypervolume_agrees_with_optuna(dimensions: int) -> None:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    rng = random.Random(dimensions)
    for _ in range(5):
        points = [[rng.random() for _ in range(dimensions)] for _ in range(12)]
        reference = np.full(dimensions, 1.1)
        assert hypervolume(points) == pytest.approx(compute_hypervolume(np.array(points), reference), rel=1e-9)


# --- normalisation and knee ----------------------------------------------------------------------------


def test_normaliser_maps_best_to_0_and_worst_to_1_in_both_directions() -> None:
    normalise = normaliser_for(("val_accuracy", "flops_per_token"), [[0.9, 300.0], [0.5, 100.0], [0.7, 200.0]])
    assert normalise([0.9, 300.0]) == pytest.approx([0.0, 1.0])
    assert normalise([0.5, 100.0]) == pytest.approx([1.0, 0.0])
    assert normalise([0.7, 200.0]) == pytest.approx([0.5, 0.5])
    assert normaliser_for(LOSS_FLOPS, [[2.0, 5.0]])([2.0, 5.0]) == [0.0, 0.0]  # one point: no division by zero
    with pytest.raises(StudyError):
        normaliser_for(LOSS_FLOPS, [])


def test_knee_is_the_balanced_point() -> None:
    front = [trial([0, 1], number=0), trial([0.5, 0.5], number=1), trial([1, 0], number=2)]
    assert knee(front, LOSS_FLOPS).number == 1


def test_knee_normalises_before_measuring_distance() -> None:
    # Raw Euclidean distance would pick the 200-FLOP model; normalised, the middle one is nearest the ideal.
    front = [trial([3.0, 1000.0], number=0), trial([3.2, 600.0], number=1), trial([3.5, 200.0], number=2)]
    assert knee(front, LOSS_FLOPS).number == 1


def test_knee_with_a_maximised_objective() -> None:
    objectives = ("val_accuracy", "flops_per_token")
    front = [trial([0.9, 1000.0], objectives, number=0), trial([0.8, 400.0], objectives, number=1),
             trial([0.2, 100.0], objectives, number=2)]
    assert knee(front, objectives).number == 1


# --- picks ---------------------------------------------------------------------------------------------


def test_picks_read_the_measures() -> None:
    front = [
        trial([3.0, 900.0], number=0, params=5000, latency_ms=0.9),
        trial([3.3, 300.0], number=1, params=9000, latency_ms=0.5),
        trial([3.6, 100.0], number=2, params=7000, latency_ms=0.7),
    ]
    assert pick(front, LOSS_FLOPS, "min-flops").number == 2
    assert pick(front, LOSS_FLOPS, "min-params").number == 0
    assert pick(front, LOSS_FLOPS, "min-latency").number == 1
    assert pick(front, LOSS_FLOPS, "best-quality").number == 0
    assert pick(front, LOSS_FLOPS, "knee").number == 1
    with pytest.raises(StudyError, match="unknown choice"):
        pick(front, LOSS_FLOPS, "max-fun")
    with pytest.raises(StudyError, match="no complete trials"):
        pick([], LOSS_FLOPS, "knee")


def test_min_flops_ties_break_on_loss() -> None:
    front = [trial([3.5, 100.0], number=0), trial([3.1, 100.0], number=1)]
    assert pick(front, LOSS_FLOPS, "min-flops").number == 1


def test_best_quality_by_accuracy_when_loss_is_not_an_objective() -> None:
    objectives = ("val_accuracy", "flops_per_token")
    front = [trial([0.4, 100.0], objectives, number=0, val_loss=2.0),
             trial([0.6, 300.0], objectives, number=1, val_loss=2.5)]
    assert pick(front, objectives, "best-quality").number == 1


# --- front_trials and the hypervolume history -----------------------------------------------------------


def make_study(objectives=LOSS_FLOPS) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(directions=[{"val_loss": "minimize", "flops_per_token": "minimize",
                                            "val_accuracy": "maximize"}[o] for o in objectives])


def test_front_trials_are_complete_non_dominated_and_one_per_architecture() -> None:
    study = make_study()
    for values, arch in (([3.0, 900.0], "a"), ([3.3, 300.0], "b"), ([3.4, 400.0], "c"),  # c: dominated by b
                         ([3.3, 300.0], "b"),  # the same architecture again (a reused trial)
                         ([3.6, 100.0], "d")):
        study.add_trial(trial(values, arch_hash=arch))
    study.add_trial(trial([1.0, 1.0], state=TrialState.PRUNED, arch_hash="e"))
    study.add_trial(trial([1.0, 1.0], state=TrialState.FAIL, arch_hash="f"))
    front = front_trials(study, settings())
    assert [t.user_attrs["arch_hash"] for t in front] == ["a", "b", "d"]  # in objective order
    assert [t.number for t in front] == [0, 1, 4]  # the first trial of architecture b


def test_pareto_layers_peel_fronts_and_promotion_takes_them_in_order() -> None:
    study = make_study()
    points = {"a": [3.0, 900.0], "b": [3.3, 300.0], "c": [3.4, 400.0], "d": [3.6, 100.0],
              "e": [3.5, 450.0], "f": [3.2, 950.0], "g": [3.7, 500.0]}
    for arch, values in points.items():
        study.add_trial(trial(values, arch_hash=arch))
    study.add_trial(trial([3.1, 350.0], arch_hash="gpt", preset="gpt"))  # a preset: never promoted
    layers = [[t.user_attrs["arch_hash"] for t in layer]
              for layer in pareto_layers(complete_trials(study, LOSS_FLOPS), LOSS_FLOPS)]
    assert layers == [["a", "gpt", "b", "d"], ["f", "c"], ["e"], ["g"]]  # each layer in objective order
    assert layers[0] == [t.user_attrs["arch_hash"] for t in front_trials(study, settings())]
    pick_hashes = lambda top: [t.user_attrs["arch_hash"] for t in promotion_candidates(study, settings(), top)]  # noqa: E731
    assert pick_hashes(None) == ["a", "b", "d"]
    assert pick_hashes(2) == ["a", "b"]  # the best quality within the front first
    assert pick_hashes(4) == ["a", "b", "d", "f"]  # then the layer behind it, best quality first
    assert pick_hashes(50) == ["a", "b", "d", "f", "c", "e", "g"]


def test_promotion_orders_by_accuracy_when_it_is_maximised() -> None:
    objectives = ("flops_per_token", "val_accuracy")
    study = make_study(objectives)
    for values, arch in (([100.0, 0.30], "small"), ([900.0, 0.50], "big"), ([500.0, 0.40], "mid")):
        study.add_trial(trial(values, objectives, arch_hash=arch))
    chosen = promotion_candidates(study, settings(objectives), 2)
    assert [t.user_attrs["arch_hash"] for t in chosen] == ["big", "mid"]


def test_hypervolume_history_never_decreases() -> None:
    study = make_study()
    for values in ([3.6, 100.0], [3.0, 900.0], [3.7, 950.0], [3.3, 300.0]):
        study.add_trial(trial(values))
    normalise = normaliser_for(LOSS_FLOPS, [t.values for t in study.best_trials])
    history = hypervolume_history(study, LOSS_FLOPS, normalise)
    assert [n for n, _ in history] == [0, 1, 2, 3]
    volumes = [v for _, v in history]
    assert volumes == sorted(volumes) and volumes[2] == volumes[1]  # a dominated trial adds nothing
    assert volumes[-1] == pytest.approx(hypervolume([normalise(t.values) for t in study.trials]))
