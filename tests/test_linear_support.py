"""Linear support (agents/linear_support.py): corner weights against hand-computed ones, and OLS / GPI-LS with an
exact oracle recovering a known convex coverage set."""

from __future__ import annotations

import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agents import linear_support as ls_mod
from morl.agents.linear_support import LinearSupport, corner_weights


def test_corner_weights_two_objectives_by_hand():
    """v1 = (1, 0), v2 = (0, 1), v3 = (.6, .6): with w = (a, 1 - a) the lines a, 1 - a and .6 cross at
    a = .4 (v2 = v3) and a = .6 (v3 = v1); with the extremes the corners are a in {0, .4, .6, 1}."""
    got = corner_weights(np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]]))
    want = np.array([[0.0, 1.0], [0.4, 0.6], [0.6, 0.4], [1.0, 0.0]])
    np.testing.assert_allclose(got, want, atol=1e-12)
    # v3 = (.4, .4) is below the other two everywhere: one crossing, of v1 and v2, at a = .5
    got = corner_weights(np.array([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4]]))
    np.testing.assert_allclose(got, [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], atol=1e-12)
    # one vector: only the extremes
    np.testing.assert_allclose(corner_weights(np.array([[3.0, -1.0]])), [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)


def test_corner_weights_three_objectives_by_hand():
    """The unit vectors: max_i w_i has corners at the 3 extremes, the 3 edge midpoints (two pieces meet on an
    edge of the simplex) and the centroid (all three meet)."""
    got = corner_weights(np.eye(3))
    want = [[0, 0, 1], [0, 0.5, 0.5], [0, 1, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0, 0.5], [0.5, 0.5, 0], [1, 0, 0]]
    np.testing.assert_allclose(got, np.array(want, np.float64), atol=1e-12)


def test_qhull_path_agrees_with_enumeration(monkeypatch):
    """Above ENUMERATION_LIMIT candidate systems Qhull takes over: both give the same corners (random values,
    general position, so no vertex is degenerate)."""
    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        values = rng.uniform(0, 1, (8, m))
        exact = corner_weights(values)
        monkeypatch.setattr(ls_mod, "ENUMERATION_LIMIT", 0)
        hull = corner_weights(values)
        monkeypatch.undo()
        assert exact.shape == hull.shape, (m, exact, hull)
        np.testing.assert_allclose(hull, exact, atol=1e-6)


def _oracle(points):
    """The exact solver of a linear-utility problem: the best of ``points`` at each weight."""
    return lambda w: points[np.argmax(points @ np.asarray(w))]


@pytest.mark.parametrize("method", ["ols", "gpi-ls"])
def test_linear_support_recovers_dst_ccs(method):
    """deep-sea-treasure-v0's ten treasures are all on the convex hull (gamma .99): with an exact oracle, OLS (and
    GPI-LS whose "GPI policy" is the oracle) finds all ten and then has no corner left that improves."""
    env, _ = morl.make("deep-sea-treasure-v0")
    front = env.pareto_front(0.99)
    solve = _oracle(front)
    ls = LinearSupport(2, epsilon=0.0 if method == "ols" else 1e-9)
    gpi = None if method == "ols" else (lambda corners: np.array([solve(w) for w in corners]))
    for _ in range(40):
        w = ls.next_weight(gpi_values=gpi)
        if w is None:
            break
        ls.add_solution(solve(w), w)
    assert ls.ended
    got = np.unique(np.round(np.asarray(ls.ccs), 6), axis=0)
    np.testing.assert_allclose(got, np.unique(np.round(front, 6), axis=0))
    # each support weight prefers its own value vector
    for v, w in zip(ls.ccs, ls.weight_support):
        assert v @ w == pytest.approx(np.max(front @ w))


def test_linear_support_bookkeeping_and_arrays():
    ls = LinearSupport(2, epsilon=None)
    assert np.array_equal(ls.next_weight(), [1.0, 0.0])  # extremes first, in order
    assert [list(w) for w in ls.corner_queue()] == [[0.0, 1.0]]
    ls.add_solution(np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    ls.add_solution(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    # a dominated value (worse at every visited weight) is discarded
    assert ls.add_solution(np.array([0.2, 0.2]), np.array([0.5, 0.5])) == [2]
    assert len(ls.ccs) == 2
    # a value that is best at a new weight and ties the old ones nowhere removes nothing
    assert ls.add_solution(np.array([0.6, 0.6]), np.array([0.5, 0.5])) == []
    # GPI-LS priority: the GPI values' best at the corner minus the CCS's best there
    assert ls.gpi_ls_priority(np.array([0.5, 0.5]), np.array([[0.8, 0.8]])) == pytest.approx(0.2)
    a = ls.arrays(8)
    back = LinearSupport.from_arrays(a, epsilon=None)
    np.testing.assert_array_equal(np.asarray(back.ccs), np.asarray(ls.ccs))
    np.testing.assert_array_equal(np.asarray(back.visited), np.asarray(ls.visited))
    with pytest.raises(ValueError, match="capacity"):
        ls.arrays(2)
    with pytest.raises(ValueError, match="shape"):
        corner_weights(np.array([1.0, 2.0]))
