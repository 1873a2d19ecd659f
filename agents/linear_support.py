"""Linear support: which preference to train next, from the value vectors found so far (host numpy).

With linear utilities ``u(v) = w . v`` the best value at ``w`` over a set of value vectors ``V`` is the
piecewise-linear convex function ``max_i w . v_i`` on the preference simplex. Its **corner weights** are the
vertices of its pieces: the preferences where the best vector of ``V`` changes, plus the simplex's extremes.
Optimistic Linear Support (OLS, Roijers' thesis section 3.3) and GPI Linear Support (GPI-LS, Alegre et al.,
AAMAS 2023) both train next at the corner weight with the largest estimated improvement; only the estimate
differs: OLS bounds it with a linear program over the values seen, GPI-LS measures the GPI policy there.

- `corner_weights(values)`: the corner weights of a set of value vectors ``[n, m] -> [k, m]``.
- `LinearSupport`: MORL-Baselines' ``LinearSupport`` (its CCS, weight support, visited weights and queue),
  with ``next_weight`` (OLS priority, or GPI-LS priority when given the GPI policy's values) and
  ``add_solution``. `LinearSupport.arrays` / `LinearSupport.from_arrays` turn it into fixed-shape numpy arrays
  for a train state that checkpoints.

The corner weights are the vertices of the polyhedron ``{(w, u): v_i . w <= u, w >= 0, sum(w) = 1}`` (the
epigraph of the max), as in MORL-Baselines (which calls pycddlib). Here a vertex is found by enumerating the sets
of ``m`` active inequalities, solving each ``(m + 1) x (m + 1)`` system and keeping the feasible solutions: exact,
and cheap while ``C(n + m, m)`` is small; larger problems go to Qhull's halfspace intersection (scipy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

__all__ = ["corner_weights", "unique_tol", "LinearSupport"]

#: enumerate vertices while the number of candidate systems ``C(n + m, m)`` is at most this; Qhull beyond it
ENUMERATION_LIMIT = 50_000


def corner_weights(values: np.ndarray, decimals: int = 4, tol: float = 1e-9) -> np.ndarray:
    """The corner weights of ``max_i w . values[i]`` on the simplex, ``[k, m]`` float64 (rows sum to 1).

    ``values`` ``[n, m]`` (n >= 1) are rounded to ``decimals`` first, as MORL-Baselines does (ties that float
    noise would split into near-duplicate corners stay ties). Duplicated corners are returned once; the order is
    lexicographic. The simplex's extremes are corners whenever they are vertices of the epigraph (always, unless
    several pieces meet there).
    """
    v = np.round(np.asarray(values, np.float64), decimals)
    if v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 2:
        raise ValueError(f"corner_weights needs values of shape [n >= 1, m >= 2], got {np.shape(values)}")
    n, m = v.shape
    v = np.unique(v, axis=0)
    n = v.shape[0]
    if math.comb(n + m, m) <= ENUMERATION_LIMIT:
        w = _vertices_by_enumeration(v, tol)
    else:
        w = _vertices_by_qhull(v)
    w = np.abs(w)
    w = w / w.sum(axis=1, keepdims=True)
    return _unique_rows(np.round(w, 12) + 0.0, 1e-7)  # round: float dust (5e-17 vs 0) must not reorder rows


def _vertices_by_enumeration(v: np.ndarray, tol: float) -> np.ndarray:
    n, m = v.shape
    # inequalities G x <= 0 over x = (w, u): v_i . w - u <= 0 and -w_j <= 0; equality sum(w) = 1
    g = np.concatenate([np.concatenate([v, -np.ones((n, 1))], 1), np.concatenate([-np.eye(m), np.zeros((m, 1))], 1)])
    eq = np.concatenate([np.ones(m), [0.0]])
    combos = np.array(list(itertools.combinations(range(n + m), m)), np.int64)  # [C, m]
    a = np.concatenate([g[combos], np.broadcast_to(eq, (len(combos), 1, m + 1))], axis=1)  # [C, m+1, m+1]
    b = np.zeros((len(combos), m + 1))
    b[:, -1] = 1.0
    ok = np.abs(np.linalg.det(a)) > 1e-12
    x = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]  # [C', m+1]
    scale = 1.0 + np.abs(v).max()
    feasible = np.all(x @ g.T <= tol * scale, axis=1)
    return x[feasible, :m]


def _vertices_by_qhull(v: np.ndarray) -> np.ndarray:
    from scipy.spatial import HalfspaceIntersection

    n, m = v.shape
    # eliminate w_m = 1 - sum(w_:m-1): coordinates y = (w_1..w_{m-1}, u); halfspaces A y + c <= 0
    hs = []
    for vi in v:  # (v_j - v_m) . w' + v_m - u <= 0
        hs.append(np.concatenate([vi[:-1] - vi[-1], [-1.0], [vi[-1]]]))
    for j in range(m - 1):  # -w_j <= 0
        row = np.zeros(m + 1)
        row[j] = -1.0
        hs.append(row)
    hs.append(np.concatenate([np.ones(m - 1), [0.0], [-1.0]]))  # sum w' <= 1
    top = np.abs(v).max() * 10.0 + 10.0
    hs.append(np.concatenate([np.zeros(m - 1), [1.0], [-top]]))  # u <= top (bounds the epigraph)
    interior = np.concatenate([np.full(m - 1, 1.0 / m), [top - 1.0]])
    pts = HalfspaceIntersection(np.asarray(hs), interior).intersections
    pts = pts[pts[:, -1] < top - 1e-6]
    w = np.concatenate([pts[:, : m - 1], 1.0 - pts[:, : m - 1].sum(axis=1, keepdims=True)], axis=1)
    return np.clip(w, 0.0, None)


def _unique_rows(x: np.ndarray, tol: float) -> np.ndarray:
    keep: list[np.ndarray] = []
    for row in x[np.lexsort(x.T[::-1])]:
        if not any(np.max(np.abs(row - k)) <= tol for k in keep):
            keep.append(row)
    return np.array(keep, np.float64).reshape(-1, x.shape[1])


def unique_tol(ws: list[np.ndarray], rtol: float = 1e-4) -> list[np.ndarray]:
    """MORL-Baselines' ``unique_tol``: the weights in order, without those ``np.allclose`` (``rtol``) to an earlier
    kept one (float64 copies)."""
    out: list[np.ndarray] = []
    for w in ws:
        if not any(np.allclose(k, w, rtol) for k in out):
            out.append(np.array(w, np.float64))
    return out


class LinearSupport:
    """MORL-Baselines' ``LinearSupport``: a CCS built one value vector at a time, and the next corner weight.

    ``ccs[i]`` is a value vector found for preference ``weight_support[i]``; ``visited`` are every preference
    a value was added for. ``epsilon``: corners whose priority is below it are not queued (OLS: 0.0;
    GPI-LS: ``None`` queues every corner). Call `next_weight`, train and evaluate there (and, for GPI-LS, at
    the other queued corners: `corner_queue`), then `add_solution`.
    """

    def __init__(self, m: int, epsilon: float | None = 0.0, seed: int = 0):
        if m < 2:
            raise ValueError(f"linear support needs m >= 2 objectives, got {m}")
        self.m = m
        self.epsilon = epsilon
        self.ccs: list[np.ndarray] = []
        self.weight_support: list[np.ndarray] = []
        self.visited: list[np.ndarray] = []
        #: (priority, weight) pairs, highest priority first; at the start the simplex's extremes (priority inf)
        self.queue: list[tuple[float, np.ndarray]] = [(math.inf, w) for w in np.eye(m)]
        self.ended = False
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ queries
    def max_scalarized_value(self, w: np.ndarray) -> float:
        """``max_i w . ccs[i]`` (-inf for an empty CCS). One dot product per vector, exactly the products that
        `add_solution` compares with ``==`` (a matrix product could round differently)."""
        return max((float(np.dot(v, w)) for v in self.ccs), default=-math.inf)

    def corner_weights(self) -> np.ndarray:
        """The corner weights of the current CCS ``[k, m]`` (the extremes while the CCS is empty)."""
        return corner_weights(np.asarray(self.ccs)) if self.ccs else np.eye(self.m)

    def corner_queue(self, top_k: int | None = None) -> list[np.ndarray]:
        """The queued corner weights, best first (MORL-Baselines' ``get_corner_weights(top_k)``)."""
        return [w.copy() for _, w in self.queue][:top_k]

    def gpi_ls_priority(self, w: np.ndarray, gpi_values: np.ndarray) -> float:
        """GPI-LS: ``max_k w . gpi_values[k] - max_i w . ccs[i]``, the GPI policy's values at the corners."""
        return float(np.max(np.asarray(gpi_values) @ w) - self.max_scalarized_value(w))

    def ols_priority(self, w: np.ndarray) -> float:
        """OLS: the optimistic value at ``w`` (a linear program over the visited weights) minus the CCS's."""
        from scipy.optimize import linprog

        if not self.ccs:
            return math.inf
        vw = np.asarray(self.visited)
        bound = np.array([self.max_scalarized_value(x) for x in vw])
        res = linprog(-np.asarray(w), A_ub=vw, b_ub=bound, bounds=[(None, None)] * self.m, method="highs")
        if res.status == 3:  # unbounded: the visited weights do not pin the value at w
            return math.inf
        return float(-res.fun) - self.max_scalarized_value(w)

    # ------------------------------------------------------------------ the loop
    def next_weight(self, gpi_values: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray | None:
        """The queued corner weight with the highest priority (popped), or None when the queue is empty.

        ``gpi_values``: GPI-LS; a function from corner weights ``[k, m]`` to the GPI policy's value vector at
        each ``[k, m]``. Without it, OLS priorities (which skip weights visited before). With an empty CCS the
        simplex's extremes come first, in order. Ties at priority 0 are shuffled (MORL-Baselines).
        """
        if self.ccs:
            corners = self.corner_weights()
            values = None if gpi_values is None else np.asarray(gpi_values(corners), np.float64)
            queue = []
            for wc in corners:
                prio = self.ols_priority(wc) if values is None else self.gpi_ls_priority(wc, values)
                if self.epsilon is None or prio >= self.epsilon:
                    if values is None and any(np.allclose(wc, wv) for wv in self.visited):
                        continue
                    queue.append((prio, wc))
            queue.sort(key=lambda t: t[0], reverse=True)
            if queue and queue[0][0] == 0.0:
                order = self._rng.permutation(len(queue))
                queue = [queue[i] for i in order]
            self.queue = queue
        if not self.queue:
            self.ended = True
            return None
        return self.queue.pop(0)[1]

    def add_solution(self, value: np.ndarray, w: np.ndarray) -> list[int]:
        """Add a value vector found for ``w``. A value no better than the CCS at every visited weight is
        discarded; values it makes optimal nowhere are removed. Returns the removed CCS indices."""
        value, w = np.asarray(value, np.float64), np.asarray(w, np.float64)
        self.visited.append(w)
        if self.ccs and all(float(np.dot(value, x)) < self.max_scalarized_value(x) for x in self.visited):
            return [len(self.ccs)]
        removed = []
        for i in reversed(range(len(self.ccs))):
            own = [float(np.dot(self.ccs[i], x)) for x in self.visited]
            still = any(o == self.max_scalarized_value(x) and np.dot(value, x) < o for o, x in zip(own, self.visited))
            if not still:
                removed.append(i)
                self.ccs.pop(i)
                self.weight_support.pop(i)
        self.ccs.append(value)
        self.weight_support.append(w)
        return removed

    def support(self) -> list[np.ndarray]:
        """The weight support without near-duplicates (MORL-Baselines' ``unique_tol``)."""
        return unique_tol(self.weight_support)

    # ------------------------------------------------------------------ fixed-shape state
    def arrays(self, capacity: int) -> dict[str, np.ndarray]:
        """The CCS, support and visited weights as zero-padded arrays with counts (for a checkpointed state)."""
        n_v = len(self.visited)
        if max(len(self.ccs), n_v) > capacity:
            raise ValueError(f"linear support holds {n_v} visited weights, more than its capacity {capacity}")

        def pad(rows):
            out = np.zeros((capacity, self.m), np.float64)
            if rows:
                out[: len(rows)] = np.asarray(rows)
            return out

        return {
            "ccs": pad(self.ccs),
            "ccs_weights": pad(self.weight_support),
            "ccs_count": np.int64(len(self.ccs)),
            "visited": pad(self.visited),
            "visited_count": np.int64(n_v),
            "ended": np.bool_(self.ended),
        }

    @classmethod
    def from_arrays(cls, a: dict, epsilon: float | None = 0.0, seed: int = 0) -> LinearSupport:
        """The inverse of `arrays` (the queue is rebuilt by the next `next_weight`; an empty CCS restarts at the
        extremes)."""
        m = int(np.shape(a["ccs"])[1])
        ls = cls(m, epsilon, seed)
        n, n_v = int(a["ccs_count"]), int(a["visited_count"])
        ls.ccs = [np.array(x, np.float64) for x in np.asarray(a["ccs"])[:n]]
        ls.weight_support = [np.array(x, np.float64) for x in np.asarray(a["ccs_weights"])[:n]]
        ls.visited = [np.array(x, np.float64) for x in np.asarray(a["visited"])[:n_v]]
        ls.ended = bool(a["ended"])
        return ls
