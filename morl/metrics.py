"""Quality metrics of a Pareto-front approximation, with MORL-Baselines' definitions (maximisation).

A *front* is an ``(n, m)`` array of vector returns, one row per candidate policy (the evaluator's output;
MORL-Baselines uses discounted returns). Definitions (``morl_baselines/common/performance_indicators.py``):

- :func:`hypervolume`: volume dominated by the front and bounded below by ``ref_point`` (exact, moocore,
  any ``m``; equal to MORL-Baselines' ``pymoo HV(-ref)(-front)``). Points not strictly above the
  reference point in every objective add nothing.
- :func:`expected_utility` (EUM, Zintgraf et al. 2015): mean over weights ``w`` of ``max_p w . p``;
  default weights ``equally_spaced_weights(m, 50)`` as MORL-Baselines.
- :func:`sparsity` (PGMORL): per objective, the squared gaps between sorted consecutive values, summed
  over objectives and divided by ``n - 1``; 0 with fewer than 2 points.
- :func:`cardinality`: number of points.
- :func:`igd`: mean over the known front's points of the Euclidean distance to the nearest front point.
- :func:`maximum_utility_loss`: ``max_w [max_{q in known} w . q - max_{p in front} w . p]``.

:func:`all_metrics` first drops dominated points and duplicates (``morl.pareto.non_dominated``), as
MORL-Baselines' ``log_all_multi_policy_metrics`` does, then computes every metric on what remains.

Empty fronts: hypervolume 0, cardinality 0, sparsity 0 (an agent with no candidates covers nothing);
expected utility, IGD and MUL are undefined (a max over no points) and raise ValueError; ``all_metrics``
reports them as NaN instead so that an evaluation loop keeps going.

Bad input raises ValueError naming the problem and the fix: NaN/inf in a front, a column count that
differs from the reference point's, and (``strict=True``, the default) a non-empty front none of whose
points is strictly better than the reference point in every objective -- almost always a reference
point set too high; pass the env's default ``env.ref_point`` or a lower one, or ``strict=False`` when an
all-dominated front is expected (early in training) and 0 is the wanted answer (MORL-Baselines' value).
"""

from __future__ import annotations

import math
from typing import Any

import moocore
import numpy as np

from morl.pareto import non_dominated
from morl.weights import check_preference, equally_spaced_weights

__all__ = [
    "hypervolume",
    "expected_utility",
    "sparsity",
    "cardinality",
    "igd",
    "maximum_utility_loss",
    "all_metrics",
    "DEFAULT_EU_WEIGHTS",
]

#: number of equally spaced weights for expected utility and MUL (MORL-Baselines' ``num_eval_weights_for_eval``)
DEFAULT_EU_WEIGHTS = 50


# --------------------------------------------------------------------------- input checks
def _as_front(front, name: str = "front", m: int | None = None) -> np.ndarray:
    """``front`` as a finite ``(n, m)`` float64 array, or ValueError saying what is wrong."""
    arr = np.asarray(front, dtype=np.float64)
    if arr.size == 0:
        cols = arr.shape[-1] if arr.ndim == 2 else (m or 0)
        if m is not None and arr.ndim == 2 and cols not in (0, m):
            raise ValueError(f"{name} has {cols} objectives (columns) but {m} are expected")
        return arr.reshape(0, m if m is not None else cols)
    if arr.ndim == 1:
        raise ValueError(
            f"{name} must be a 2-D array (n_points, n_objectives), got a 1-D array of shape "
            f"{arr.shape}; wrap a single point p as [p]"
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_points, n_objectives), got shape {arr.shape}")
    if m is not None and arr.shape[1] != m:
        raise ValueError(
            f"{name} has {arr.shape[1]} objectives (columns) but {m} are expected "
            f"(from the reference point / other front / weights); check the reward dimension"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        kinds = "NaN" if np.isnan(arr).any() else "inf"
        if np.isnan(arr).any() and np.isinf(arr).any():
            kinds = "NaN and inf"
        raise ValueError(
            f"{name} has {kinds} values in rows {rows[:10].tolist()} (first: {arr[rows[0]].tolist()}); "
            f"metrics need finite returns: check the evaluation (a diverged policy?) or drop those rows"
        )
    return arr


def _as_ref_point(ref_point, m: int | None = None) -> np.ndarray:
    ref = np.asarray(ref_point, dtype=np.float64)
    if ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"ref_point must be a 1-D vector with one entry per objective, got shape {ref.shape}")
    if not np.isfinite(ref).all():
        raise ValueError(
            f"ref_point {ref.tolist()} has NaN or inf entries; give finite values (e.g. the env's `ref_point`)"
        )
    return ref


def _weights_for(weights, m: int) -> np.ndarray:
    if weights is None:
        return equally_spaced_weights(m, DEFAULT_EU_WEIGHTS)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2 or w.shape[0] == 0:
        raise ValueError(
            f"weights must be an (n_weights, n_objectives) array with n_weights >= 1, got shape {np.shape(weights)}"
        )
    return check_preference(w, m)


def _best_utilities(front: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``max_p w . p`` for each weight row, shape ``(n_weights,)``."""
    return np.max(weights @ front.T, axis=1)


# --------------------------------------------------------------------------- metrics
def hypervolume(front, ref_point, *, strict: bool = True) -> float:
    """Exact hypervolume of ``front`` (maximisation) above ``ref_point``, computed by moocore.

    front: ``(n, m)`` finite values; dominated points and duplicates are allowed (they add nothing).
    ref_point: ``(m,)``, e.g. the env's ``ref_point``.
    strict: raise ValueError when the front is non-empty but no point is strictly better than
      ``ref_point`` in every objective (the volume would be 0, usually a reference point set too high).
      ``strict=False`` returns 0.0 in that case, as MORL-Baselines does.
    An empty front has hypervolume 0.0.
    """
    ref = _as_ref_point(ref_point)
    pts = _as_front(front, m=ref.size)
    if pts.shape[0] == 0:
        return 0.0
    above = np.all(pts > ref, axis=1)
    if not above.any():
        if strict:
            best = pts.max(axis=0)
            raise ValueError(
                f"no point of the front is strictly better than ref_point={ref.tolist()} in every objective, "
                f"so the hypervolume is 0 (the front's best values per objective are {best.tolist()}); "
                f"use a lower reference point, e.g. the env's default `ref_point`, or pass strict=False if "
                f"a front below the reference point is expected (0 is then the answer)"
            )
        return 0.0
    # moocore minimises: negate both; keep only the points that contribute (moocore ignores the rest too)
    return float(moocore.hypervolume(-pts[above], ref=-ref))


def expected_utility(front, weights=None) -> float:
    """Expected utility: mean over ``weights`` of the best linear utility ``max_p w . p`` on the front.

    weights: ``(k, m)`` preferences on the simplex (validated); default ``equally_spaced_weights(m, 50)``.
    Raises ValueError on an empty front (no best point).
    """
    pts = _as_front(front)
    if pts.shape[0] == 0:
        raise ValueError(
            "expected_utility of an empty front is undefined (no point to take the max over); "
            "evaluate at least one policy"
        )
    w = _weights_for(weights, pts.shape[1])
    return float(np.mean(_best_utilities(pts, w)))


def sparsity(front) -> float:
    """PGMORL's sparsity: ``sum_j sum_i (s_j[i] - s_j[i-1])^2 / (n - 1)`` with ``s_j`` objective j sorted.

    Computed on the points as given (``all_metrics`` filters the front first). 0.0 for fewer than 2 points.
    Lower is denser.
    """
    pts = _as_front(front)
    n = pts.shape[0]
    if n < 2:
        return 0.0
    gaps = np.diff(np.sort(pts, axis=0), axis=0)
    return float(np.sum(gaps**2) / (n - 1))


def cardinality(front) -> int:
    """Number of points in ``front`` (``all_metrics`` counts the non-dominated, de-duplicated ones)."""
    return int(_as_front(front).shape[0])


def igd(known_front, front) -> float:
    """Inverted generational distance: mean over ``known_front`` of the distance to the nearest front point.

    Euclidean, unnormalised: pymoo's ``IGD(known_front)(front)``, as MORL-Baselines. Lower is better.
    Argument order as MORL-Baselines' ``igd(known_front, current_estimate)``.
    """
    known = _as_front(known_front, name="known_front")
    pts = _as_front(front, m=known.shape[1] if known.shape[0] else None)
    if known.shape[0] == 0:
        raise ValueError("igd: known_front is empty; give the true (or best known) Pareto front")
    if pts.shape[0] == 0:
        raise ValueError("igd of an empty front is undefined (no nearest point); evaluate at least one policy")
    d = np.sqrt(np.sum((known[:, None, :] - pts[None, :, :]) ** 2, axis=-1))  # (|known|, |front|)
    return float(np.mean(np.min(d, axis=1)))


def maximum_utility_loss(front, known_front, weights=None) -> float:
    """Maximum utility loss: ``max_w [max_{q in known_front} w . q - max_{p in front} w . p]``.

    weights: ``(k, m)`` preferences; default ``equally_spaced_weights(m, 50)``. (MORL-Baselines passes
    unseeded pymoo energy directions cast to float32, which differ run to run; we use the seeded set so the
    figure is reproducible.) Lower is better; negative when the front beats the known front somewhere.
    """
    known = _as_front(known_front, name="known_front")
    pts = _as_front(front, m=known.shape[1] if known.shape[0] else None)
    if known.shape[0] == 0:
        raise ValueError("maximum_utility_loss: known_front is empty; give the true (or best known) Pareto front")
    if pts.shape[0] == 0:
        raise ValueError("maximum_utility_loss of an empty front is undefined; evaluate at least one policy")
    w = _weights_for(weights, known.shape[1])
    return float(np.max(_best_utilities(known, w) - _best_utilities(pts, w)))


def all_metrics(front, ref_point, known_front=None, weights=None, *, strict: bool = True) -> dict[str, Any]:
    """Every metric of ``front``, as MORL-Baselines' ``log_all_multi_policy_metrics`` computes them.

    The front is first filtered to its non-dominated points, duplicates once. Returns a dict with
    ``hypervolume``, ``expected_utility``, ``sparsity``, ``cardinality`` and, when ``known_front`` is
    given, ``igd`` and ``maximum_utility_loss`` (floats; ``cardinality`` an int). ``weights`` (default
    ``equally_spaced_weights(m, 50)``) serve expected utility and MUL. ``strict`` as in
    :func:`hypervolume`. With an empty front the undefined metrics are NaN.
    """
    ref = _as_ref_point(ref_point)
    m = ref.size
    pts = _as_front(front, m=m)
    w = _weights_for(weights, m)
    known = None if known_front is None else _as_front(known_front, name="known_front", m=m)
    nd = non_dominated(pts) if pts.shape[0] else pts
    empty = nd.shape[0] == 0
    out: dict[str, Any] = {
        "hypervolume": hypervolume(nd, ref, strict=strict),
        "expected_utility": math.nan if empty else expected_utility(nd, w),
        "sparsity": sparsity(nd),
        "cardinality": cardinality(nd),
    }
    if known is not None:
        out["igd"] = math.nan if empty else igd(known, nd)
        out["maximum_utility_loss"] = math.nan if empty else maximum_utility_loss(nd, known, w)
    return out
