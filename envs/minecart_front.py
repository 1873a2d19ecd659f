"""MO-Gymnasium's approximate minecart front (``Minecart.pareto_front``), host-side numpy.

Kept apart from the env: it is a search over action sequences, not dynamics, and it runs once per evaluation.
It is not the true front (MO-Gymnasium issue #78); `Minecart.pareto_front` and `convex_coverage_set` call it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import norm

from morl.envs.minecart import (
    ACCELERATION,
    ACT_ACCEL,
    ACT_BRAKE,
    ACT_LEFT,
    ACT_MINE,
    ACT_NONE,
    BASE_RADIUS,
    FUEL_ACC,
    FUEL_IDLE,
    FUEL_MINE,
    MINE_RADIUS,
    ROTATION,
)

__all__ = ["approximate_front", "route_returns"]


def _truncated_mean(mean: float, std: float) -> float:
    """Mean of N(mean, std) truncated to [0, inf) (what MO-Gymnasium's front assumes a mine yields)."""
    if std == 0:
        return mean
    a, b = (0.0 - mean) / std, (float("inf") - mean) / std
    value = mean + ((norm.pdf(a) - norm.pdf(b)) / (norm.cdf(b) - norm.cdf(a))) * std
    return 0.0 if np.isnan(value) else float(value)


def _non_dominated(points: list[np.ndarray]) -> list[np.ndarray]:
    """Points not weakly dominated by another (maximisation); duplicates keep their first copy."""
    pts = np.asarray(points)
    keep = []
    for i, p in enumerate(pts):
        dominated = np.all(pts >= p, axis=1) & (np.any(pts > p, axis=1) | (np.arange(len(pts)) < i))
        if not dominated.any():
            keep.append(i)
    return [pts[i] for i in keep]


def _approach_patterns(distance: float, frame_skip: int, incremental: bool) -> list[list[int]]:
    """Every accelerate/coast sequence (starting with one accelerate) that covers ``distance``."""
    fs = frame_skip
    first = distance - (fs * (fs + 1) / 2 * ACCELERATION if incremental else ACCELERATION * fs * fs)
    stack, done = [(ACCELERATION * fs, first, [ACT_ACCEL])], []
    while stack:
        speed, left, seq = stack.pop()
        # accelerate once more: distance of fs frames whose speed grows by ACCELERATION each
        new_speed = speed + ACCELERATION * fs
        n = new_speed / ACCELERATION
        moved = n * (n + 1) / 2 * ACCELERATION - (n - fs) * ((n - fs) + 1) / 2 * ACCELERATION
        for step_left, step_speed, action in (
            (left - moved, new_speed, ACT_ACCEL),
            (left - speed * fs, speed, ACT_NONE),
        ):
            if step_left <= 0:
                done.append(seq + [action])
            else:
                stack.append((step_speed, step_left, seq + [action]))
    return done


def approximate_front(
    mine_pos: np.ndarray,
    mine_dist: np.ndarray,
    capacity: float,
    frame_skip: int,
    incremental: bool,
    gamma: float,
    symmetric: bool,
) -> np.ndarray:
    """The non-dominated discounted returns of MO-Gymnasium's enumerated action sequences, ``[n, ore_cnt + 1]``."""
    front: list[np.ndarray] = []
    for group in _route_groups(mine_pos, mine_dist, capacity, frame_skip, incremental, gamma, symmetric):
        front = _non_dominated(front + group)  # pruned mine by mine, as MO-Gymnasium
    return np.array(front)


def route_returns(
    mine_pos: np.ndarray,
    mine_dist: np.ndarray,
    capacity: float,
    frame_skip: int,
    incremental: bool,
    gamma: float,
    symmetric: bool,
) -> np.ndarray:
    """The discounted return of every enumerated action sequence, dominated ones included, ``[n, ore_cnt + 1]``.

    Row ``i`` is the same sequence for every ``gamma``, so two calls pair a route's discounted and undiscounted
    returns: which routes a learner that discounts would choose, and what they score undiscounted."""
    groups = _route_groups(mine_pos, mine_dist, capacity, frame_skip, incremental, gamma, symmetric)
    return np.array([r for group in groups for r in group])


def _route_groups(mine_pos, mine_dist, capacity, frame_skip, incremental, gamma, symmetric):
    """Per mine (and the empty one by the base), the discounted returns of its enumerated action sequences."""
    fs = frame_skip
    ore_cnt = mine_dist.shape[1]
    fuel = np.array([FUEL_MINE + FUEL_IDLE, FUEL_IDLE, FUEL_IDLE, FUEL_IDLE + FUEL_ACC, FUEL_IDLE, FUEL_IDLE]) * fs
    corner = (BASE_RADIUS**2 / 2) ** 0.5  # an empty mine just outside the base
    mines = [(p, np.array([_truncated_mean(m, s) for m, s in d])) for p, d in zip(mine_pos, mine_dist)]
    mines.append((np.array([corner, corner]), np.zeros(ore_cnt)))
    turn_around = [ACT_LEFT] * (180 // (ROTATION * fs))
    for pos, means in mines:
        pos = np.asarray(pos, np.float64)
        distance = np.sqrt(np.dot(pos, pos)) - MINE_RADIUS - BASE_RADIUS / 2
        angle = np.degrees(np.arctan2(np.linalg.det([pos, [1.0, 1.0]]), np.dot(pos, [1.0, 1.0])))
        rotations = int(math.ceil(abs(angle) / (ROTATION * fs)))
        patterns = _approach_patterns(distance, fs, incremental)
        means = means * fs
        total = np.sum(means)
        max_mining = 0 if total == 0 else int(math.ceil(capacity / total))
        minings = [[ACT_MINE] * i for i in range(1, max_mining + 1)]
        turn = [ACT_LEFT] * rotations
        if minings:
            back = [[ACT_BRAKE] + turn_around]
            if symmetric:
                seqs = [turn + go + b + m + go for go, b, m in itertools.product(patterns, back, minings)]
            else:
                seqs = [
                    turn + go + b + m + ret for go, b, m, ret in itertools.product(patterns, back, minings, patterns)
                ]
        elif symmetric:
            seqs = [turn + go + turn_around + [ACT_NONE] + go[1:] for go in patterns]
        else:
            seqs = [turn + go + turn_around + [ACT_NONE] + ret[1:] for go, ret in itertools.product(patterns, patterns)]
        longest = max((len(p) for p in patterns), default=0)
        max_len = rotations + 2 * longest + 1 + len(turn_around) + max((len(m) for m in minings), default=0)
        discount = gamma ** np.arange(max_len)
        group = []
        for s in seqs:
            rewards = np.zeros((len(s), ore_cnt + 1))
            rewards[:, -1] = fuel[s]
            n_mine = s.count(ACT_MINE)
            rewards[-1, :-1] = means * n_mine / max(1, (total * n_mine) / capacity)
            group.append(np.dot(discount[: len(s)], rewards))
        yield group
