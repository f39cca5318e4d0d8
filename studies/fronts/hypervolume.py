"""Exact hypervolume of minimisation points, and its history as points arrive one by one.

The hypervolume is the volume of the region dominated by the points and bounded by the reference
point. Points not strictly better than the reference in every coordinate add nothing.

How: dominated points are dropped first (`non_dominated`). In 2-D the front is a staircase
summed in one sweep. In d >= 3 dimensions we sweep along the last coordinate: each point
joins a (d-1)-dimensional `HypervolumeHistory` of the points below it, and every slab between two
consecutive last coordinates adds (its thickness) x (that history's current value). The history
grows by each new point's exclusive contribution, so nothing is recomputed from scratch:
  - in 2-D the front is a staircase kept sorted, so a point is placed by bisection;
  - otherwise contribution(p) = volume of p's box - hypervolume of the front clipped to p's box
    (each front point q becomes max(p, q)), which is usually a small set.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Sequence

import numpy as np

_BLOCK = 256  # points compared at once by `non_dominated`: few Python steps, bounded memory


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b in every coordinate and better in at least one (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices, ascending, of the points that no other point dominates (duplicates all stay)."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return []
    remaining, kept = np.lexsort(array.T[::-1]), []  # lexicographic, first coordinate first
    # In lexicographic order only an earlier point can dominate a later one, so a block of the
    # first remaining points holds its own front, which then clears what it dominates behind it.
    while len(remaining):
        block, remaining = remaining[:_BLOCK], remaining[_BLOCK:]
        front = block[~_dominated_by(array[block], array[block])]
        kept.extend(front.tolist())
        remaining = remaining[~_dominated_by(array[remaining], array[front])]
    return sorted(kept)


def _dominated_by(rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row, whether some row of `others` dominates it."""
    no_worse = np.ones((len(rows), len(others)), dtype=bool)
    better = np.zeros((len(rows), len(others)), dtype=bool)
    for row_values, other_values in zip(rows.T, others.T):  # coordinate by coordinate: 2-D arrays stay fast
        no_worse &= other_values <= row_values[:, None]
        better |= other_values < row_values[:, None]
    return np.any(no_worse & better, axis=1)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float] | float) -> float:
    """Exact hypervolume of minimisation `points` against `reference` (a vector, or one number
    used for every coordinate)."""
    if len(points) == 0:
        return 0.0
    array = np.asarray(points, dtype=float)
    return _volume(array, _reference_vector(reference, array.shape[1]))


class HypervolumeHistory:
    """The hypervolume of a growing set of points: `add` returns the value with the new point in.

    A point outside the reference box or dominated by the set leaves the value unchanged; any
    other point adds its exclusive contribution."""

    def __init__(self, reference: Sequence[float]) -> None:
        self.reference = np.asarray(reference, dtype=float)
        self.value = 0.0
        self._front = _Staircase(self.reference) if len(self.reference) == 2 else _BoxFront(self.reference)

    def add(self, point: Sequence[float]) -> float:
        """Add one point; returns the hypervolume of every point added so far."""
        array = np.asarray(point, dtype=float)
        if array.shape != self.reference.shape:
            raise ValueError(f"point has {array.size} coordinates, the reference {self.reference.size}")
        if np.all(array < self.reference):
            self.value += self._front.add(array)
        return self.value


def incremental_hypervolume(points_in_order: Sequence[Sequence[float]],
                            reference: Sequence[float] | float) -> list[float]:
    """The hypervolume of the first 1, 2, ..., n points, one value per point."""
    if len(points_in_order) == 0:
        return []
    history = HypervolumeHistory(_reference_vector(reference, len(points_in_order[0])))
    return [history.add(point) for point in points_in_order]


def _reference_vector(reference: Sequence[float] | float, dimensions: int) -> np.ndarray:
    vector = np.broadcast_to(np.asarray(reference, dtype=float), (dimensions,)) if np.ndim(reference) == 0 \
        else np.asarray(reference, dtype=float)
    if vector.shape != (dimensions,):
        raise ValueError(f"the reference has {vector.size} coordinates, the points {dimensions}")
    return vector


def _volume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume of an (n, d) array against a reference vector."""
    if points.ndim != 2 or points.shape[1] != reference.size:
        raise ValueError(f"points must be an (n, {reference.size}) array, got shape {points.shape}")
    inside = points[np.all(points < reference, axis=1)]
    front = inside[non_dominated(inside)]
    if len(front) == 0:
        return 0.0
    if front.shape[1] == 1:
        return float(reference[0] - front.min())
    if front.shape[1] == 2:
        return _staircase_area(front[np.argsort(front[:, 0])], reference)
    return _sweep_last_coordinate(front, reference)


def _staircase_area(front: np.ndarray, reference: np.ndarray) -> float:
    """Area under a 2-D front sorted by x ascending (so y descending): one column per point
    (a duplicate's column has zero width)."""
    widths = np.append(front[1:, 0], reference[0]) - front[:, 0]
    return float(widths @ (reference[1] - front[:, 1]))


def _sweep_last_coordinate(front: np.ndarray, reference: np.ndarray) -> float:
    """Sum over slabs between consecutive last coordinates of (thickness) x (cross-section), the
    cross-section being the (d-1)-dimensional hypervolume of the points below, grown one by one."""
    ordered = front[np.argsort(front[:, -1], kind="stable")]
    tops = np.append(ordered[1:, -1], reference[-1])
    cross_section = HypervolumeHistory(reference[:-1])
    volume = 0.0
    for point, top in zip(ordered, tops):
        volume += cross_section.add(point[:-1]) * (top - point[-1])
    return float(volume)


class _Staircase:
    """A 2-D front as x ascending, y strictly descending: a new point's place is found by bisection
    and the points it dominates are the run right after it."""

    def __init__(self, reference: np.ndarray) -> None:
        self.reference_x, self.reference_y = float(reference[0]), float(reference[1])
        self.xs: list[float] = []
        self.ys: list[float] = []

    def add(self, point: np.ndarray) -> float:
        """Insert a point inside the reference box; returns its exclusive area (0 if dominated)."""
        x, y = float(point[0]), float(point[1])
        xs, ys = self.xs, self.ys
        i = bisect_left(xs, x)  # xs[i - 1] < x <= xs[i]
        if (i > 0 and ys[i - 1] <= y) or (i < len(xs) and xs[i] == x and ys[i] <= y):
            return 0.0
        # Walk right over the points p dominates, adding the strip under each old step.
        height = ys[i - 1] if i > 0 else self.reference_y
        left, gained, j = x, 0.0, i
        while j < len(xs) and ys[j] >= y:
            gained += (xs[j] - left) * (height - y)
            left, height, j = xs[j], ys[j], j + 1
        right = xs[j] if j < len(xs) else self.reference_x
        gained += (right - left) * (height - y)
        xs[i:j], ys[i:j] = [x], [y]
        return gained


class _BoxFront:
    """A front in any number of dimensions, grown by exclusive contributions."""

    def __init__(self, reference: np.ndarray) -> None:
        self.reference = reference
        self.points = np.empty((0, reference.size))

    def add(self, point: np.ndarray) -> float:
        """Insert a point inside the reference box; returns its exclusive volume (0 if dominated)."""
        if np.any(np.all(self.points <= point, axis=1)):
            return 0.0
        box = float(np.prod(self.reference - point))
        gained = box - _volume(np.maximum(self.points, point), self.reference)
        # Drop what the point dominates: the rows not better than it anywhere.
        self.points = np.vstack([self.points[np.any(self.points < point, axis=1)], point])
        return gained
