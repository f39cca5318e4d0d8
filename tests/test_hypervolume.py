"""The exact hypervolume and its incremental history, against Optuna, a cell count and a recompute."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna._hypervolume import compute_hypervolume

from studies.fronts.hypervolume import (
    HypervolumeHistory,
    dominates,
    hypervolume,
    incremental_hypervolume,
    non_dominated,
)

FEW = settings(max_examples=25, deadline=None)


def grid_points(dimensions: int, size: int = 5) -> st.SearchStrategy[list[tuple[int, ...]]]:
    """Small sets of integer points in [0, size]^d: many duplicates, ties and dominated points, and
    some on the reference boundary (size) that must add nothing."""
    point = st.tuples(*[st.integers(0, size)] * dimensions)
    return st.lists(point, max_size=12)


def dominated_cells(points: list[tuple[int, ...]], reference: tuple[int, ...]) -> int:
    """Unit cells [c, c + 1] inside the reference box that some point dominates: p <= c everywhere."""
    cells = itertools.product(*[range(r) for r in reference])
    return sum(any(all(p_i <= c_i for p_i, c_i in zip(p, c)) for p in points) for c in cells)


def random_points(rng: np.random.Generator, count: int, dimensions: int) -> np.ndarray:
    """Points near a curved front (so many are non-dominated), some beyond the reference 1.1."""
    directions = np.abs(rng.normal(size=(count, dimensions)))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.9, 1.2, (count, 1))


# --- dominance -----------------------------------------------------------------------------------------


def test_dominates_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates([1, 2], [1, 3]) and dominates([0, 0, 0], [1, 1, 1])
    assert not dominates([1, 2], [1, 2])  # equal
    assert not dominates([1, 3], [2, 2]) and not dominates([2, 2], [1, 3])  # a trade-off
    assert not dominates([1, 3], [1, 2])


@FEW
@given(grid_points(3))
def test_non_dominated_is_every_point_nothing_dominates(points: list[tuple[int, ...]]) -> None:
    expected = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    assert non_dominated(points) == expected


def test_non_dominated_keeps_every_copy_of_a_front_point() -> None:
    assert non_dominated([[1, 2], [2, 1], [1, 2], [2, 2]]) == [0, 1, 2]
    assert non_dominated([]) == []


# --- the hypervolume -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dimensions", [1, 2, 3, 4])
@FEW
@given(points=grid_points(4, size=4))
def test_hypervolume_counts_the_dominated_cells_of_a_grid(dimensions: int, points: list[tuple[int, ...]]) -> None:
    points = [p[:dimensions] for p in points]
    reference = (4, 3, 4, 2)[:dimensions]  # unequal sides, so a swapped axis would show
    assert hypervolume(points, reference) == dominated_cells(points, reference)


@pytest.mark.parametrize("dimensions, count", [(2, 60), (3, 60), (4, 40), (5, 20)])
def test_hypervolume_agrees_with_optuna(dimensions: int, count: int) -> None:
    rng = np.random.default_rng(dimensions)
    reference = np.full(dimensions, 1.1)
    for _ in range(5):
        points = random_points(rng, count, dimensions)
        inside = points[np.all(points <= reference, axis=1)]  # Optuna refuses points beyond the reference
        assert hypervolume(points, 1.1) == pytest.approx(compute_hypervolume(inside, reference), rel=1e-12)


def test_hypervolume_by_hand() -> None:
    assert hypervolume([[0.2], [0.5]], 1.1) == pytest.approx(0.9)
    # slices along x: [0, .5) height .1, [.5, 1) height .6, [1, 1.1) height 1.1
    assert hypervolume([[0, 1], [0.5, 0.5], [1, 0]], 1.1) == pytest.approx(0.05 + 0.3 + 0.11)
    # 1.1 x 1.1 x 0.6 plus 0.6 x 0.6 x 1.1, less their 0.6^3 overlap
    assert hypervolume([[0, 0, 0.5], [0.5, 0.5, 0]], [1.1, 1.1, 1.1]) == pytest.approx(0.726 + 0.396 - 0.216)


@FEW
@given(grid_points(3), st.randoms(use_true_random=False))
def test_dominated_duplicate_and_reordered_points_change_nothing(points: list[tuple[int, ...]], rng) -> None:
    reference = (5, 5, 5)
    expected = hypervolume(points, reference)
    dominated = [tuple(min(x + 1, 5) for x in p) for p in points]
    shuffled = rng.sample(points, len(points))
    assert hypervolume(shuffled + points + dominated, reference) == expected


def test_nothing_inside_the_reference_box_is_zero() -> None:
    assert hypervolume([], 1.0) == 0.0
    assert hypervolume([[1.0, 0.0], [0.0, 1.0], [2.0, -5.0]], 1.0) == 0.0  # on or beyond the boundary
    assert hypervolume([[1.0, 0.0, 0.0]], [1.0, 2.0, 2.0]) == 0.0


def test_a_reference_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError):
        hypervolume([[0.0, 0.0]], [1.0, 1.0, 1.0])


# --- the incremental history ------------------------------------------------------------------------------


@pytest.mark.parametrize("dimensions", [1, 2, 3, 4])
@FEW
@given(points=grid_points(4))
def test_history_equals_recomputing_after_each_point(dimensions: int, points: list[tuple[int, ...]]) -> None:
    points = [p[:dimensions] for p in points]
    reference = [5.0] * dimensions
    expected = [hypervolume(points[: i + 1], reference) for i in range(len(points))]
    assert incremental_hypervolume(points, reference) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dimensions", [2, 3])
def test_history_of_many_random_points_ends_at_the_whole_hypervolume(dimensions: int) -> None:
    points = random_points(np.random.default_rng(0), 400, dimensions)
    history = incremental_hypervolume(points, 1.1)
    assert history[-1] == pytest.approx(hypervolume(points, 1.1), rel=1e-12)
    assert all(later >= earlier for earlier, later in zip(history, history[1:]))


def test_dominated_duplicate_and_outside_points_leave_the_history_unchanged() -> None:
    history = HypervolumeHistory([1.0, 1.0, 1.0])
    value = history.add([0.2, 0.5, 0.5])
    assert value == pytest.approx(0.8 * 0.5 * 0.5)
    for unchanged in ([0.2, 0.5, 0.5], [0.3, 0.6, 0.5], [0.0, 0.0, 1.0], [-1.0, 2.0, -1.0]):
        assert history.add(unchanged) == value
    assert history.add([0.5, 0.2, 0.5]) > value


def test_history_of_nothing_is_empty() -> None:
    assert incremental_hypervolume([], 1.0) == []
