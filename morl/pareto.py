"""Pareto dominance utilities (maximisation: larger is better in every objective).

``p`` dominates ``q`` when ``p >= q`` in every objective and ``p > q`` in at least one.
:func:`non_dominated` filters a set of points to its Pareto front the way MORL-Baselines'
``filter_pareto_dominated`` does (dominated points dropped, duplicates kept once: the first occurrence,
input order preserved). :func:`crowding_distance` is NSGA-II's, used by C-MORL to pick policies to extend.

The numpy functions run on the host (fronts are small); :func:`non_dominated_mask_jax` is the same
filter in ``jax.numpy`` with static shapes, for use inside ``jit`` (padded rows masked by ``valid``), and
:class:`Archive` a fixed-capacity Pareto archive of policies on the device (MORL/D's and PGMORL's), kept by
:func:`archive_insert` with :func:`crowding_distance_jax`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "dominates",
    "is_dominated",
    "non_dominated",
    "non_dominated_mask_jax",
    "crowding_distance",
    "Archive",
    "archive_insert",
    "crowding_distance_jax",
]

PyTree = Any

# rows per block in the O(n^2 m) numpy filter: bounds memory to _BLOCK * n * m booleans
_BLOCK = 512


def _as_points(points, fn: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        return arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(
            f"{fn}: points must be a 2-D array (n_points, n_objectives), got shape {arr.shape}; "
            f"wrap a single point p as [p]"
        )
    if np.isnan(arr).any():
        rows = np.flatnonzero(np.isnan(arr).any(axis=1))
        raise ValueError(
            f"{fn}: points have NaN in rows {rows[:10].tolist()}; dominance is undefined for NaN, "
            f"drop or fix those rows"
        )
    return arr


def dominates(a, b) -> np.ndarray:
    """Whether ``a`` Pareto-dominates ``b`` (maximisation); broadcasts over leading axes."""
    a, b = np.asarray(a), np.asarray(b)
    return np.all(a >= b, axis=-1) & np.any(a > b, axis=-1)


def is_dominated(point, points) -> bool:
    """Whether ``point`` (shape ``(m,)``) is dominated by at least one row of ``points`` (``(n, m)``).

    A duplicate of ``point`` does not dominate it.
    """
    pts = _as_points(points, "is_dominated")
    p = np.asarray(point, dtype=np.float64)
    if pts.shape[0] == 0:
        return False
    if p.shape != (pts.shape[1],):
        raise ValueError(f"is_dominated: point has shape {p.shape} but points have {pts.shape[1]} objectives")
    return bool(dominates(pts, p).any())


def non_dominated(points, *, return_mask: bool = False, keep_duplicates: bool = False) -> np.ndarray:
    """The Pareto front of ``points`` (maximisation), as MORL-Baselines' ``filter_pareto_dominated``.

    points: ``(n, m)`` array-like (NaN raises ValueError).
    return_mask: return the boolean mask over rows instead of the filtered points.
    keep_duplicates: keep every copy of a non-dominated point (default: only the first occurrence).

    Returns the non-dominated rows in their input order, ``(k, m)`` float64, or an ``(n,)`` bool mask.
    """
    pts = _as_points(points, "non_dominated")
    n = pts.shape[0]
    mask = np.ones(n, dtype=bool)
    for start in range(0, n, _BLOCK):
        blk = pts[start : start + _BLOCK]  # (b, m): is row i of the block dominated by any row j?
        ge = np.all(pts[None, :, :] >= blk[:, None, :], axis=-1)
        gt = np.any(pts[None, :, :] > blk[:, None, :], axis=-1)
        mask[start : start + _BLOCK] = ~np.any(ge & gt, axis=1)
    if not keep_duplicates and n > 1:
        _, first = np.unique(pts, axis=0, return_index=True)
        is_first = np.zeros(n, dtype=bool)
        is_first[first] = True
        mask &= is_first
    return mask if return_mask else pts[mask]


def non_dominated_mask_jax(points: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """``non_dominated(points, return_mask=True)`` in jax.numpy, jit-compatible (O(n^2 m) memory).

    valid: optional ``(n,)`` bool; invalid rows (padding) neither dominate nor are returned.
    Duplicates are kept once (the first valid occurrence). NaN rows are treated as invalid.
    """
    points = jnp.asarray(points)
    n = points.shape[0]
    ok = jnp.all(~jnp.isnan(points), axis=-1)
    if valid is not None:
        ok = ok & jnp.asarray(valid, dtype=bool)
    p_i, p_j = points[:, None, :], points[None, :, :]  # [i, j]: does j dominate i?
    dom = jnp.all(p_j >= p_i, axis=-1) & jnp.any(p_j > p_i, axis=-1) & ok[None, :]
    same = jnp.all(p_j == p_i, axis=-1) & ok[None, :]
    earlier = jnp.tril(jnp.ones((n, n), dtype=bool), k=-1)  # j < i
    dup_of_earlier = jnp.any(same & earlier, axis=1)
    return ok & ~jnp.any(dom, axis=1) & ~dup_of_earlier


def crowding_distance(points) -> np.ndarray:
    """NSGA-II crowding distance (Deb et al., 2002) of each row of ``points``, ``(n,)`` float64.

    For every objective the points are sorted (stable); the two extremes get ``inf`` and each other point
    adds ``(next - previous) / (max - min)`` over its sorted neighbours. An objective whose values are all
    equal adds 0. With 1 or 2 points every distance is ``inf``. Larger means more isolated; C-MORL
    extends the policies with the largest distances. (pymoo's ``calc_crowding_distance`` divides this
    sum by ``m``; the ranking is the same.)
    """
    pts = _as_points(points, "crowding_distance")
    n = pts.shape[0]
    if n == 0:
        return np.zeros(0)
    if not np.isfinite(pts).all():
        raise ValueError("crowding_distance: points must be finite (inf makes the normalisation undefined)")
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(pts.shape[1]):
        order = np.argsort(pts[:, j], kind="stable")
        col = pts[order, j]
        span = col[-1] - col[0]
        dist[order[0]] = np.inf
        dist[order[-1]] = np.inf
        if span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / span
    return dist


@struct.dataclass
class Archive:
    """Fixed-capacity Pareto archive on the device; rows with ``valid`` False are padding."""

    returns: jax.Array  # [C, m] evaluated (discounted) returns
    weights: jax.Array  # [C, m] the member's weight when evaluated
    policy: PyTree  # leaves [C, ...]: what `act` needs
    valid: jax.Array  # [C] bool

    @staticmethod
    def empty(capacity: int, m: int, policy_example: PyTree) -> Archive:
        policy = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), policy_example)
        return Archive(
            jnp.zeros((capacity, m), jnp.float32),
            jnp.zeros((capacity, m), jnp.float32),
            policy,
            jnp.zeros((capacity,), bool),
        )


def crowding_distance_jax(points: jax.Array, valid: jax.Array) -> jax.Array:
    """NSGA-II crowding distance of the valid rows (`morl.pareto.crowding_distance` in jax.numpy); -inf for padding."""
    n, m = points.shape
    count = jnp.sum(valid)
    rank = jnp.arange(n)
    dist = jnp.zeros((n,), jnp.float32)
    for j in range(m):
        col_all = jnp.where(valid, points[:, j], jnp.inf)
        order = jnp.argsort(col_all, stable=True)
        col = col_all[order]
        last = jnp.maximum(count - 1, 0)
        span = col[last] - col[0]
        prev = jnp.concatenate([col[:1], col[:-1]])
        nxt = jnp.concatenate([col[1:], col[-1:]])
        inner = jnp.where(span > 0, (nxt - prev) / jnp.where(span > 0, span, 1.0), 0.0)
        contrib = jnp.where((rank == 0) | (rank == last), jnp.inf, inner)
        contrib = jnp.where(rank < count, contrib, 0.0)
        dist = dist.at[order].add(contrib)
    return jnp.where(valid, dist, -jnp.inf)


def archive_insert(
    archive: Archive, returns: jax.Array, weights: jax.Array, policy: PyTree, active: jax.Array | None = None
) -> Archive:
    """Offer ``P`` evaluated policies (``returns [P, m]``) to the archive; returns the new archive.

    Keeps the non-dominated points of archive + candidates, de-duplicated by exact return (the earlier row wins:
    archive rows before candidates, candidates in order); above capacity the points with the smallest crowding
    distance are dropped. Kept rows stay in their order (archive first). NaN returns are never kept.
    """
    cap = archive.valid.shape[0]
    p = returns.shape[0]
    cand_valid = jnp.ones((p,), bool) if active is None else active
    all_r = jnp.concatenate([archive.returns, returns.astype(jnp.float32)])
    all_valid = jnp.concatenate([archive.valid, cand_valid])
    keep = non_dominated_mask_jax(all_r, all_valid)
    cd = crowding_distance_jax(all_r, keep)
    over = jnp.sum(keep) > cap
    top = jnp.zeros_like(keep).at[jnp.argsort(-cd, stable=True)[:cap]].set(True)
    keep = jnp.where(over, keep & top, keep)
    idx = jnp.argsort(~keep, stable=True)[:cap]
    cat = lambda a, b: jnp.concatenate([a, b.astype(a.dtype)])[idx]  # noqa: E731
    return Archive(
        all_r[idx],
        cat(archive.weights, weights),
        jax.tree.map(cat, archive.policy, policy),
        jnp.arange(cap) < jnp.sum(keep),
    )
