"""Preferences, Pareto utilities and metrics against MORL-Baselines' definitions and known anchors.

Oracles: pymoo (MORL-Baselines computes HV, IGD and its equally spaced weights with it), moocore's
non-dominance filter, MORL-Baselines' formulas re-derived below as plain loops, a brute-force
cell-decomposition hypervolume, and hand-computed examples. The DST / fruit-tree anchors are the values in
docs/sources.md (MO-Gymnasium fronts, MORL-Baselines definitions).
"""

from __future__ import annotations

import functools
import itertools
import math
import sys

import jax
import moocore
import numpy as np
import pytest

import morl
from morl import weights
from morl.metrics import all_metrics, cardinality, expected_utility, hypervolume, igd, maximum_utility_loss, sparsity
from morl.pareto import crowding_distance, dominates, is_dominated, non_dominated, non_dominated_mask_jax
from morl.weights import (
    available_energy_weights,
    check_preference,
    equally_spaced_weights,
    extrema_weights,
    random_weights,
    uniform_grid,
)

pymoo_ref_dirs = pytest.importorskip("pymoo.util.ref_dirs", reason="pymoo (dev dependency) is the oracle")
from pymoo.indicators.hv import HV  # noqa: E402
from pymoo.indicators.igd import IGD  # noqa: E402


# --------------------------------------------------------------------------- oracles (re-derived)
@functools.cache
def pymoo_energy(m, n, seed=42):
    """MORL-Baselines' equally_spaced_weights, straight from pymoo (cached: ~1 s per call)."""
    return pymoo_ref_dirs.get_reference_directions("energy", m, n, seed=seed)


#: How closely the shipped energy weights can match pymoo run on *another* CPU. pymoo's energy method is a k-means
#: initialisation and ~200-360 Adam iterations on the Riesz energy; the BLAS kernels OpenBLAS picks per processor
#: change the last bits of the start and of each step, and the iterations carry those differences forward (the
#: float64 result is not bit-reproducible across CPUs). Measured on one machine by forcing other OpenBLAS kernels:
#: OPENBLAS_CORETYPE=Zen or Haswell gives 13 entries of (3, 100) off by up to 2.6e-12, Sandybridge or Prescott
#: 58 entries of (2, 100) off by up to 1.3e-11; and with every gradient entry perturbed by a relative 4 eps
#: (eps = 2.2e-16) at every iteration, 5 noise draws, the points moved by at most 1.4e-11 and the energy by a
#: relative 1e-13. 1e-9 leaves a factor ~70 above the largest of these and is still 4 orders below anything that
#: changes a weight set (pymoo stops when points move < 1e-5 per step). A flipped discrete decision of the
#: optimiser (its stop or restart test) would move points by ~1e-5 and fail this, as it should: the set would
#: then differ from MORL-Baselines'.
ENERGY_WEIGHT_ATOL = 1e-9


def mb_sparsity(front):
    """MORL-Baselines' sparsity, written as its loop."""
    front = np.asarray(front, dtype=float)
    if len(front) < 2:
        return 0.0
    total = 0.0
    for dim in range(front.shape[1]):
        col = np.sort(front[:, dim])
        for i in range(1, len(col)):
            total += (col[i] - col[i - 1]) ** 2
    return total / (len(front) - 1)


def mb_eum(front, ws):
    return float(np.mean([max(float(np.dot(w, p)) for p in front) for w in ws]))


def mb_mul(front, known, ws):
    ref = [max(float(np.dot(w, q)) for q in known) for w in ws]
    cur = [max(float(np.dot(w, p)) for p in front) for w in ws]
    return max(r - c for r, c in zip(ref, cur))


def mb_filter_mask(c):
    """MORL-Baselines' get_non_pareto_dominated_inds (remove_duplicates=True), re-derived.

    Keep p when the only points weakly above it (q >= p everywhere) are its own copies, and keep the
    first copy only.
    """
    c = np.asarray(c, dtype=float)
    n = len(c)
    keep = np.zeros(n, dtype=bool)
    for i in range(n):
        weakly_above = sum(np.all(c[j] >= c[i]) for j in range(n))
        copies = sum(np.all(c[j] == c[i]) for j in range(n))
        first = not any(np.all(c[j] == c[i]) for j in range(i))
        keep[i] = weakly_above == copies and first
    return keep


def brute_hv(points, ref):
    """Hypervolume by coordinate compression: sum of the grid cells some point dominates (maximisation)."""
    pts = np.asarray(points, float)
    ref = np.asarray(ref, float)
    pts = pts[np.all(pts > ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    m = pts.shape[1]
    axes = [np.unique(np.concatenate([[ref[j]], pts[:, j]])) for j in range(m)]
    lows = np.meshgrid(*[a[:-1] for a in axes], indexing="ij")
    highs = np.meshgrid(*[a[1:] for a in axes], indexing="ij")
    upper = np.stack([h.ravel() for h in highs], axis=1)  # (cells, m)
    vol = np.prod(np.stack([(hi - lo).ravel() for hi, lo in zip(highs, lows)], axis=1), axis=1)
    covered = np.any(np.all(pts[None, :, :] >= upper[:, None, :], axis=-1), axis=1)
    return float(np.sum(vol[covered]))


def pymoo_hv(points, ref):
    """MORL-Baselines' hypervolume: HV(ref_point=-ref)(-points)."""
    return float(HV(ref_point=np.asarray(ref, float) * -1)(np.asarray(points, float) * -1))


def random_front(rng, n, m, lo=-5.0, hi=10.0):
    """Points with a mix of non-dominated, dominated and duplicated rows."""
    # points near a concave surface are mostly mutually non-dominated
    d = np.abs(rng.standard_normal((n, m)))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = lo + (hi - lo) * d * rng.uniform(0.7, 1.0, size=(n, 1))
    pts[: n // 5] -= rng.uniform(0, 3, size=(n // 5, m))  # some dominated ones
    pts = np.concatenate([pts, pts[:3]])  # duplicates
    return pts


# --------------------------------------------------------------------------- anchors
@pytest.mark.parametrize(
    "env_id, ref, hv, eu",
    [
        ("deep-sea-treasure-v0", [0.0, -25.0], 360.40, 5.610),
        ("deep-sea-treasure-v0", [0.0, -50.0], 854.85, 5.610),
        ("deep-sea-treasure-concave-v0", [0.0, -25.0], 1101.38, 44.356),
    ],
)
def test_dst_true_front_anchors(env_id, ref, hv, eu):
    env, _ = morl.make(env_id)
    front = env.pareto_front(0.99)
    assert front.shape == (10, 2)
    assert hypervolume(front, ref) == pytest.approx(hv, abs=0.01)
    assert expected_utility(front) == pytest.approx(eu, abs=1e-3)
    # the default weights are MORL-Baselines' 50 equally spaced ones
    # shipped vs this machine's pymoo weights differ by <= ENERGY_WEIGHT_ATOL per entry, so each utility w.r by
    # <= ENERGY_WEIGHT_ATOL * |r|_1 (+ float64 rounding of the sums)
    eu_tol = ENERGY_WEIGHT_ATOL * np.abs(front).sum(axis=1).max() + 1e-12
    assert expected_utility(front) == pytest.approx(mb_eum(front, pymoo_energy(2, 50)), abs=eu_tol)
    assert hypervolume(front, ref) == pytest.approx(pymoo_hv(front, ref), rel=1e-12)
    m = all_metrics(front, ref, known_front=front)
    assert m["cardinality"] == 10 and m["igd"] == 0.0 and m["maximum_utility_loss"] == 0.0
    assert m["hypervolume"] == pytest.approx(hv, abs=0.01)


def test_fruit_tree_anchor_six_objectives():
    """6 objectives: MO-Gymnasium's fruit-tree depth-6 front (an independent source of the front)."""
    mo_gym = pytest.importorskip("mo_gymnasium")
    front = np.asarray(mo_gym.make("fruit-tree-v0", depth=6).unwrapped.pareto_front(gamma=0.99))
    assert front.shape == (64, 6)
    assert hypervolume(front, [-1.0] * 6) == pytest.approx(46034.80, abs=0.01)
    assert expected_utility(front) == pytest.approx(6.144, abs=1e-3)


# --------------------------------------------------------------------------- hypervolume
@pytest.mark.parametrize("m", [3, 4, 5, 6])
def test_hypervolume_matches_pymoo(m):
    rng = np.random.default_rng(m)
    for n in (1, 7, 40):
        pts = random_front(rng, n, m)
        ref = np.full(m, -5.5)  # the shifted (dominated) points fall below it in some objective
        ours, theirs = hypervolume(pts, ref), pymoo_hv(pts, ref)
        assert theirs > 0
        assert ours == pytest.approx(theirs, rel=1e-9)


@pytest.mark.parametrize("m, n", [(2, 12), (3, 9), (4, 7), (5, 6)])
def test_hypervolume_matches_brute_force(m, n):
    rng = np.random.default_rng(100 + m)
    pts = random_front(rng, n, m)
    ref = rng.uniform(-6, -3, size=m)
    assert hypervolume(pts, ref) == pytest.approx(brute_hv(pts, ref), rel=1e-9)


def test_hypervolume_hand_example():
    # union of [0,3]x[0,1] and [0,1]x[0,2] above ref (0,0): 3 + 1 = 4; the dominated point and copy add nothing
    front = [[3, 1], [1, 2], [1, 1], [3, 1]]
    assert hypervolume(front, [0, 0]) == pytest.approx(4.0, abs=1e-12)
    # a point equal to ref in one objective contributes nothing
    assert hypervolume([[3, 1], [5, 0]], [0, 0]) == pytest.approx(3.0, abs=1e-12)


def test_hypervolume_bad_inputs():
    with pytest.raises(ValueError, match="front has NaN"):
        hypervolume([[1.0, np.nan], [2.0, 1.0]], [0, 0])
    with pytest.raises(ValueError, match="front has inf"):
        hypervolume([[1.0, np.inf]], [0, 0])
    with pytest.raises(ValueError, match="3 objectives .* but 2 are expected"):
        hypervolume([[1.0, 2.0, 3.0]], [0, 0])
    with pytest.raises(ValueError, match="2-D array"):
        hypervolume([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="ref_point .* NaN"):
        hypervolume([[1.0, 2.0]], [0, np.nan])
    # DST-like front with a reference point set too high: named, and a lower one suggested
    front = [[1.0, -1.0], [5.0, -10.0]]
    with pytest.raises(ValueError, match=r"ref_point=\[0.0, 0.0\].*lower reference point"):
        hypervolume(front, [0.0, 0.0])
    assert hypervolume(front, [0.0, 0.0], strict=False) == 0.0
    assert pymoo_hv(front, [0.0, 0.0]) == 0.0  # MORL-Baselines' answer for strict=False


def test_empty_front():
    for empty in ([], np.zeros((0, 2))):
        assert hypervolume(empty, [0, -25]) == 0.0
        assert sparsity(empty) == 0.0
        assert cardinality(empty) == 0
        with pytest.raises(ValueError, match="empty front"):
            expected_utility(empty)
        with pytest.raises(ValueError, match="empty front"):
            igd([[1.0, 1.0]], empty)
        with pytest.raises(ValueError, match="empty front"):
            maximum_utility_loss(empty, [[1.0, 1.0]])
    res = all_metrics([], [0, -25], known_front=[[1.0, -1.0]])
    assert res["hypervolume"] == 0.0 and res["cardinality"] == 0 and res["sparsity"] == 0.0
    assert all(math.isnan(res[k]) for k in ("expected_utility", "igd", "maximum_utility_loss"))
    with pytest.raises(ValueError, match="3 objectives"):
        hypervolume(np.zeros((0, 3)), [0, 0])


# --------------------------------------------------------------------------- EU, sparsity, IGD, MUL
def test_expected_utility_hand_and_formula():
    front = [[1.0, 0.0], [0.0, 1.0], [0.2, 0.2]]
    assert expected_utility(front, [[1.0, 0.0], [0.5, 0.5]]) == pytest.approx(0.75)
    assert expected_utility(front, [0.5, 0.5]) == pytest.approx(0.5)  # one weight as a vector
    rng = np.random.default_rng(3)
    for m in (2, 3, 5):
        pts = random_front(rng, 15, m)
        ws = random_weights(m, 20, 7)
        assert expected_utility(pts, ws) == pytest.approx(mb_eum(pts, ws), rel=1e-12)
        assert expected_utility(pts) == pytest.approx(mb_eum(pts, equally_spaced_weights(m, 50)), rel=1e-12)
    with pytest.raises(ValueError, match="sums to"):
        expected_utility(front, [[1.0, 1.0]])
    with pytest.raises(ValueError, match="3 entries"):
        expected_utility(front, [[0.2, 0.3, 0.5]])


def test_sparsity_hand_and_formula():
    # objective 0 sorted 0,1,3 -> 1 + 4; objective 1 sorted 0,1,3 -> 1 + 4; (5 + 5) / (3 - 1)
    assert sparsity([[0, 3], [1, 1], [3, 0]]) == pytest.approx(5.0)
    assert sparsity([[1, 2]]) == 0.0
    rng = np.random.default_rng(4)
    for m in (2, 3, 6):
        pts = random_front(rng, 25, m)
        assert sparsity(pts) == pytest.approx(mb_sparsity(pts), rel=1e-12)


def test_igd_hand_and_pymoo():
    # distances from the known points (0,0) and (2,0) to the only front point (0,1): 1 and sqrt(5)
    assert igd([[0, 0], [2, 0]], [[0, 1]]) == pytest.approx((1 + math.sqrt(5)) / 2)
    assert igd([[0, 0]], [[0, 1], [0, 0]]) == 0.0
    rng = np.random.default_rng(5)
    for m in (2, 4):
        known, pts = random_front(rng, 20, m), random_front(rng, 12, m)
        assert igd(known, pts) == pytest.approx(float(IGD(known)(pts)), rel=1e-12)
    with pytest.raises(ValueError, match="3 objectives"):
        igd([[0.0, 0.0]], [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="known_front has NaN"):
        igd([[0.0, np.nan]], [[0.0, 1.0]])


def test_maximum_utility_loss_hand_and_formula():
    known = [[1.0, 0.0], [0.0, 1.0]]
    ws = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    # losses per weight: 1-1, 1-0, 0.5-0.5
    assert maximum_utility_loss([[1.0, 0.0]], known, ws) == pytest.approx(1.0)
    assert maximum_utility_loss(known, known, ws) == 0.0
    rng = np.random.default_rng(6)
    for m in (2, 3, 5):
        known, pts = random_front(rng, 20, m), random_front(rng, 10, m) - 0.5
        ws = random_weights(m, 30, 1)
        assert maximum_utility_loss(pts, known, ws) == pytest.approx(mb_mul(pts, known, ws), rel=1e-12)
        assert maximum_utility_loss(pts, known) == pytest.approx(
            mb_mul(pts, known, equally_spaced_weights(m, 50)), rel=1e-12
        )


def test_all_metrics_filters_dominated_points():
    front = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    nd = front[[0, 1, 2]]
    res = all_metrics(front, [-1.0, -1.0], known_front=[[0.0, 4.0], [4.0, 0.0]])
    assert set(res) == {"hypervolume", "expected_utility", "sparsity", "cardinality", "igd", "maximum_utility_loss"}
    assert res["cardinality"] == 3
    assert res["sparsity"] == pytest.approx(5.0)  # the filtered front's, not 5 points'
    assert res["hypervolume"] == pytest.approx(hypervolume(nd, [-1.0, -1.0]))
    assert res["expected_utility"] == pytest.approx(expected_utility(nd))
    assert res["igd"] == pytest.approx(igd([[0.0, 4.0], [4.0, 0.0]], nd))
    assert res["maximum_utility_loss"] == pytest.approx(1.0)  # at the corner weights: 4 - 3
    assert "igd" not in all_metrics(front, [-1.0, -1.0])
    with pytest.raises(ValueError, match="lower reference point"):
        all_metrics(front, [5.0, 5.0])
    assert all_metrics(front, [5.0, 5.0], strict=False)["hypervolume"] == 0.0


# --------------------------------------------------------------------------- weights
# regenerating a set with pymoo takes seconds per set on 2 cores: CI checks the 2- and 3-objective sets (the ones
# the DST/minecart anchors use), the full comparison runs with -m slow
@pytest.mark.parametrize("m", [2, 3] + [pytest.param(m, marks=pytest.mark.slow) for m in range(4, 10)])
def test_shipped_energy_weights_equal_pymoo(m):
    """The shipped sets are pymoo's, up to the machine-to-machine drift of an iterative float64 optimisation
    (ENERGY_WEIGHT_ATOL, argued above); and, independently of any tolerance on the points, each is a valid
    energy-method result here: on the simplex to float64 rounding and with pymoo's energy to a relative 1e-9
    (measured drift under other OpenBLAS kernels and per-iteration ulp noise: <= 1e-13)."""
    from pymoo.util.ref_dirs.energy import calc_potential_energy_with_grad

    shipped = [(mm, n, s) for (mm, n, s) in available_energy_weights() if mm == m]
    assert {(50, 42), (100, 42)} <= {(n, s) for (_, n, s) in shipped}
    for _, n, seed in shipped:
        ours = equally_spaced_weights(m, n, seed=seed)
        theirs = pymoo_energy(m, n, seed)
        assert ours.shape == (n, m) and ours.dtype == np.float64
        assert (ours >= 0).all()
        np.testing.assert_allclose(ours.sum(axis=1), 1.0, rtol=0, atol=1e-12)  # pymoo renormalises every step
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=ENERGY_WEIGHT_ATOL)
        # pymoo's own objective (log of the mean inverse distance^(2m)), the exponent pymoo's default d = 2m
        energy = lambda w: calc_potential_energy_with_grad(w, 2 * m)[0]  # noqa: E731
        assert energy(ours) == pytest.approx(energy(theirs), rel=1e-9)


def test_equally_spaced_weights_fallback_and_errors(monkeypatch):
    assert (3, 7, 42) not in available_energy_weights()
    ours = equally_spaced_weights(3, 7)
    np.testing.assert_allclose(
        ours, pymoo_ref_dirs.get_reference_directions("energy", 3, 7, seed=42), rtol=0, atol=1e-12
    )
    # returned arrays are copies: mutating one does not corrupt the cache
    w = equally_spaced_weights(2, 50)
    w[:] = 0
    assert equally_spaced_weights(2, 50).sum() == pytest.approx(50.0)
    # without pymoo: shipped pairs still work, a missing one says how to get it
    monkeypatch.setitem(sys.modules, "pymoo", None)
    monkeypatch.setattr(weights, "_pymoo_energy", lambda *a: pytest.fail("pymoo must not be called"))
    assert equally_spaced_weights(4, 100).shape == (100, 4)
    with pytest.raises(ValueError, match="pip install"):
        equally_spaced_weights(3, 11)
    with pytest.raises(ValueError, match="n >= m"):
        equally_spaced_weights(5, 3)


def test_uniform_grid():
    g = uniform_grid(2, 11)
    np.testing.assert_allclose(g[:, 0], np.linspace(0, 1, 11), atol=1e-15)
    for m, k in [(3, 5), (4, 4), (6, 3)]:
        g = uniform_grid(m, k)
        p = k - 1
        assert g.shape == (math.comb(p + m - 1, m - 1), m)
        np.testing.assert_allclose(g.sum(axis=1), 1.0, atol=1e-12)
        assert (g >= 0).all() and len(np.unique(g, axis=0)) == len(g)
        np.testing.assert_allclose(g * p, np.round(g * p), atol=1e-9)  # on the 1/p lattice
        # every lattice point of the simplex is there
        lattice = {c for c in itertools.product(range(k), repeat=m) if sum(c) == p}
        assert {tuple(int(round(x)) for x in row) for row in g * p} == lattice
        # rows in lexicographic order (itertools.product's order, which the agents' grids rely on)
        assert [tuple(r) for r in np.rint(g * p).astype(int)] == sorted(lattice)
    assert uniform_grid(3, total=15).shape == (15, 3)  # p = 4 gives exactly 15
    assert uniform_grid(3, total=14).shape == (10, 3)  # the finest grid with at most 14 points
    check_preference(uniform_grid(5, 4), 5)
    with pytest.raises(ValueError, match="exactly one"):
        uniform_grid(3)
    with pytest.raises(ValueError, match="total must be"):
        uniform_grid(3, total=2)


def test_random_and_extrema_weights():
    # numpy path: MORL-Baselines' random_weights(m, n, dist, seed)
    np.testing.assert_array_equal(random_weights(3, 5, 123), np.random.default_rng(123).dirichlet(np.ones(3), 5))
    g = np.random.default_rng(9).standard_normal((4, 3))
    np.testing.assert_allclose(random_weights(3, 4, 9, dist="gaussian"), np.abs(g) / np.abs(g).sum(1, keepdims=True))
    # JAX path: jit-able (one compile), on the simplex, key-determined; Dirichlet(1) has mean 1/m per coordinate
    sample = jax.jit(random_weights, static_argnums=(0, 1, 3))
    w = np.asarray(sample(4, 4096, jax.random.key(0), "dirichlet"))
    assert w.shape == (4096, 4) and w.dtype == np.float32
    check_preference(w, 4)
    np.testing.assert_allclose(w.mean(axis=0), 0.25, atol=0.02)
    assert not np.allclose(w, sample(4, 4096, jax.random.key(1), "dirichlet"))
    g = np.asarray(random_weights(3, 8, jax.random.key(0), dist="gaussian"))
    check_preference(g, 3)
    np.testing.assert_allclose(g, np.asarray(random_weights(3, 8, jax.random.key(0), dist="gaussian")))
    with pytest.raises(ValueError, match="dirichlet"):
        random_weights(2, 3, 0, dist="uniform")
    np.testing.assert_array_equal(extrema_weights(3), np.eye(3))


def test_check_preference_errors():
    np.testing.assert_array_equal(check_preference([0.25, 0.75], 2), [0.25, 0.75])
    check_preference([0.5, 0.5 + 5e-7], 2)  # within 1e-6
    with pytest.raises(ValueError, match="3 entries but the environment has 2 objectives"):
        check_preference([0.2, 0.3, 0.5], 2)
    with pytest.raises(ValueError, match="negative.*divide by its sum"):
        check_preference([1.5, -0.5], 2)
    with pytest.raises(ValueError, match="NaN"):
        check_preference([np.nan, 1.0], 2)
    with pytest.raises(ValueError, match="sums to 2, not 1.*divide it by its sum"):
        check_preference([1.0, 1.0], 2)
    with pytest.raises(ValueError, match="sums to"):
        check_preference([0.5, 0.5 + 2e-6], 2)
    with pytest.raises(ValueError, match="at least one positive"):
        check_preference([0.0, 0.0], 2)
    with pytest.raises(ValueError, match="sums to"):  # batches are checked row by row
        check_preference([[0.5, 0.5], [0.6, 0.6]], 2)


# --------------------------------------------------------------------------- pareto
def test_non_dominated_with_duplicates_hand():
    pts = np.array([[1, 1], [0, 1], [1, 0], [1, 0], [2, 0], [0, 1], [0, 0]], dtype=float)
    # (1,1) dominates (0,1),(1,0),(0,0); (2,0) dominates (1,0); nothing dominates (1,1) or (2,0)
    np.testing.assert_array_equal(non_dominated(pts, return_mask=True), [1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(non_dominated([[3, 1], [1, 3], [3, 1], [1, 3]]), [[3, 1], [1, 3]])
    assert len(non_dominated([[3, 1], [1, 3], [3, 1]], keep_duplicates=True)) == 3
    assert non_dominated(np.zeros((0, 2))).shape == (0, 2)
    assert is_dominated([1, 0], pts) and not is_dominated([1, 1], pts) and not is_dominated([5, 5], [])
    assert dominates([1, 1], [1, 0]) and not dominates([1, 1], [1, 1]) and not dominates([2, 0], [0, 2])
    with pytest.raises(ValueError, match="NaN"):
        non_dominated([[1.0, np.nan]])


_jit_nd_mask = jax.jit(non_dominated_mask_jax)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_non_dominated_matches_morl_baselines_moocore_and_jax(m):
    rng = np.random.default_rng(m)
    for _ in range(5):
        pts = rng.integers(0, 4, size=(30, m)).astype(float)  # many ties and duplicates
        mask = non_dominated(pts, return_mask=True)
        np.testing.assert_array_equal(mask, mb_filter_mask(pts))
        np.testing.assert_array_equal(mask, moocore.is_nondominated(pts, maximise=True, keep_weakly=False))
        np.testing.assert_array_equal(non_dominated(pts), pts[mask])
        # jax: same mask; padded rows (valid=False) neither dominate nor are kept
        pad = np.concatenate([pts, np.full((2, m), 100.0)]).astype(np.float32)
        valid = np.arange(32) < 30
        np.testing.assert_array_equal(np.asarray(_jit_nd_mask(pad, valid))[:30], mask)
        assert not np.asarray(_jit_nd_mask(pad, valid))[30:].any()


def test_crowding_distance():
    # sorted by objective 0: a(0,4) b(1,3) c(3,1) d(4,0); spans 4 and 4
    pts = np.array([[1.0, 3.0], [4.0, 0.0], [0.0, 4.0], [3.0, 1.0]])
    cd = crowding_distance(pts)
    # b: (3-0)/4 + (4-1)/4 = 1.5; c: (4-1)/4 + (3-0)/4 = 1.5; a, d extremes
    np.testing.assert_allclose(cd, [1.5, np.inf, np.inf, 1.5])
    pts = np.array([[0.0, 10.0], [1.0, 9.0], [2.0, 5.0], [10.0, 0.0]])
    np.testing.assert_allclose(crowding_distance(pts), [np.inf, 2 / 10 + 5 / 10, 9 / 10 + 9 / 10, np.inf])
    assert np.isinf(crowding_distance([[1.0, 2.0], [2.0, 1.0]])).all()
    # an objective with a single value adds nothing
    np.testing.assert_allclose(crowding_distance([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]]), [np.inf, 1.0, np.inf])
    # pymoo's version is ours divided by m (no ties here)
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    rng = np.random.default_rng(0)
    for m in (2, 3, 5):
        f = rng.uniform(size=(12, m))
        np.testing.assert_allclose(crowding_distance(f), m * calc_crowding_distance(f), rtol=1e-12)
