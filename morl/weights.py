"""Preferences (weight vectors) on the probability simplex.

A preference ``w`` for an ``m``-objective problem is a vector of ``m`` non-negative numbers summing to 1;
a set of preferences is an array of shape ``(n, m)``. The functions here follow MORL-Baselines
(``morl_baselines/common/weights.py``) so that figures computed with them are comparable:

- :func:`equally_spaced_weights` is *exactly* MORL-Baselines' set (pymoo's Riesz s-energy directions with
  seed 42), the weights its expected utility uses. The sets are shipped precomputed in
  ``morl/data/energy_weights.npz`` so pymoo is not a runtime dependency.
- :func:`random_weights` draws uniformly on the simplex (Dirichlet(1)) or from |N(0, 1)| normalised.
- :func:`extrema_weights` gives the one-hot corners, :func:`uniform_grid` a Das-Dennis grid.
- :func:`check_preference` validates user-given preferences with errors that say how to fix them.

Host functions return float64 numpy arrays; :func:`random_weights` with a JAX key returns a float32
``jax.Array`` and is jit-compatible.
"""

from __future__ import annotations

import functools
import itertools
import math
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "uniform_grid",
    "equally_spaced_weights",
    "available_energy_weights",
    "random_weights",
    "extrema_weights",
    "check_preference",
]

_ENERGY_FILE = "energy_weights.npz"


def _check_m(m: int, fn: str) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"{fn}: m (number of objectives) must be a positive int, got {m!r}")
    return int(m)


# --------------------------------------------------------------------------- Das-Dennis grid
def _grid_size(m: int, partitions: int) -> int:
    return math.comb(partitions + m - 1, m - 1)


def uniform_grid(m: int, n_per_dim: int | None = None, *, total: int | None = None) -> np.ndarray:
    """Equally spaced simplex grid (Das and Dennis, 1998) for ``m`` objectives.

    Every weight has coordinates in ``{0, 1/p, 2/p, ..., 1}`` with ``p = n_per_dim - 1`` (so each
    coordinate takes ``n_per_dim`` values) and sums to 1. The grid has ``C(p + m - 1, m - 1)`` points.

    Give exactly one of:
      n_per_dim: values per coordinate, >= 2. ``uniform_grid(2, 11)`` is ``[0, 1], [0.1, 0.9], ..., [1, 0]``.
      total: the finest grid with at most ``total`` points (>= m, the corners).

    Returns an ``(n, m)`` float64 array, rows in lexicographic order of their coordinates (the first
    coordinate ascending). The last coordinate is ``1 - sum(others)`` computed in integers, so rows sum to
    1 up to one rounding.
    """
    m = _check_m(m, "uniform_grid")
    if (n_per_dim is None) == (total is None):
        raise ValueError(
            "uniform_grid: give exactly one of n_per_dim (values per coordinate) or total (maximum number of points)"
        )
    if n_per_dim is not None:
        if int(n_per_dim) != n_per_dim or n_per_dim < 2:
            raise ValueError(f"uniform_grid: n_per_dim must be an int >= 2 (the corners 0 and 1), got {n_per_dim!r}")
        p = int(n_per_dim) - 1
    else:
        if int(total) != total or total < m:
            raise ValueError(f"uniform_grid: total must be an int >= m={m} (the grid's corners), got {total!r}")
        if m == 1:
            p = 1
        else:
            p = 1
            while _grid_size(m, p + 1) <= total:
                p += 1
    if m == 1:
        return np.ones((1, 1))
    # stars and bars: positions of m-1 bars among p+m-1 slots give the integer parts
    bars = np.array(list(itertools.combinations(range(p + m - 1), m - 1)), dtype=np.int64)
    edges = np.concatenate([np.full((len(bars), 1), -1), bars, np.full((len(bars), 1), p + m - 1)], axis=1)
    counts = np.diff(edges, axis=1) - 1  # (n, m), non-negative ints summing to p
    return counts / p


# --------------------------------------------------------------------------- energy (MORL-Baselines)
@functools.lru_cache(maxsize=1)
def _shipped_energy() -> dict[tuple[int, int, int], np.ndarray]:
    path = resources.files("morl").joinpath("data", _ENERGY_FILE)
    try:
        with resources.as_file(path) as p, np.load(p) as data:
            out = {}
            for name in data.files:
                if not name.startswith("m"):
                    continue
                m, n, s = (int(part[1:]) for part in name.split("_"))
                arr = np.array(data[name], dtype=np.float64)
                arr.setflags(write=False)
                out[(m, n, s)] = arr
            return out
    except FileNotFoundError:
        return {}


def available_energy_weights() -> list[tuple[int, int, int]]:
    """The ``(m, n, seed)`` triples shipped precomputed with the package (no pymoo needed for these)."""
    return sorted(_shipped_energy())


@functools.lru_cache(maxsize=64)
def _pymoo_energy(m: int, n: int, seed: int) -> np.ndarray:
    from pymoo.util.ref_dirs import get_reference_directions

    arr = np.array(get_reference_directions("energy", m, n, seed=seed), dtype=np.float64)
    arr.setflags(write=False)
    return arr


def equally_spaced_weights(m: int, n: int, seed: int = 42) -> np.ndarray:
    """MORL-Baselines' equally spaced weights: pymoo's Riesz s-energy reference directions.

    Exactly ``get_reference_directions("energy", m, n, seed=seed)`` (what MORL-Baselines'
    ``equally_spaced_weights(dim, n, seed=42)`` returns, as an ``(n, m)`` float64 array). Expected utility
    uses ``n=50``; MORL-Baselines builds fronts of preference-conditioned agents with ``n=100``.

    Shipped precomputed for seed 42, ``m`` in 2..9 and ``n`` in {6 (m <= 6), 50, 100}, and (3, 15)
    (:func:`available_energy_weights`). Other triples are computed with pymoo if it is installed
    (a second or so, then cached), else a ValueError says how to get them.
    """
    m = _check_m(m, "equally_spaced_weights")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"equally_spaced_weights: n must be a positive int, got {n!r}")
    n, seed = int(n), int(seed)
    if m < 2:
        raise ValueError(
            "equally_spaced_weights: needs m >= 2 objectives (with one objective the only preference is [1.0])"
        )
    if n < m:
        raise ValueError(
            f"equally_spaced_weights: pymoo's energy method needs n >= m, got n={n} < m={m}; "
            f"use extrema_weights({m}) for the corners or ask for n >= {m} weights"
        )
    shipped = _shipped_energy().get((m, n, seed))
    if shipped is not None:
        return shipped.copy()
    try:
        import pymoo  # noqa: F401
    except ImportError:
        raise ValueError(
            f"equally_spaced_weights(m={m}, n={n}, seed={seed}) is not shipped with morl (shipped: seed 42, "
            f"m 2..9, n in 6 (m <= 6), 50, 100) and pymoo, which computes it, is not installed. Install it "
            f"(`pip install 'pymoo>=0.6'` or `pip install morl[dev]`), or use a shipped (m, n, seed)."
        ) from None
    return _pymoo_energy(m, n, seed).copy()


# --------------------------------------------------------------------------- random, extrema
def _is_jax_key(key) -> bool:
    return isinstance(key, jax.Array)


def random_weights(
    m: int, n: int = 1, key: jax.Array | int | np.random.Generator | None = None, dist: str = "dirichlet"
) -> np.ndarray | jax.Array:
    """``n`` random preferences for ``m`` objectives, shape ``(n, m)`` (always 2-D).

    dist: ``"dirichlet"`` (Dirichlet(1): uniform on the simplex, the default) or ``"gaussian"``
      (``|N(0, 1)|`` L1-normalised; Envelope Q-learning samples its training weights this way).
    key: a JAX PRNG key -> float32 ``jax.Array``, usable inside ``jit`` (``m``, ``n``, ``dist`` static);
      an int seed, a ``np.random.Generator`` or None -> float64 numpy array, the same numbers as
      MORL-Baselines' ``random_weights(m, n, dist, seed=seed)`` (which returns 1-D when n == 1).
    """
    m = _check_m(m, "random_weights")
    if dist not in ("dirichlet", "gaussian"):
        raise ValueError(f"random_weights: dist must be 'dirichlet' or 'gaussian', got {dist!r}")
    if _is_jax_key(key):
        if dist == "dirichlet":
            return jax.random.dirichlet(key, jnp.ones((m,), jnp.float32), shape=(n,))
        w = jnp.abs(jax.random.normal(key, (n, m), jnp.float32))
        return w / jnp.sum(w, axis=1, keepdims=True)
    rng = key if isinstance(key, np.random.Generator) else np.random.default_rng(key)
    if dist == "dirichlet":
        return rng.dirichlet(np.ones(m), n)
    w = np.abs(rng.standard_normal((n, m)))
    return w / np.linalg.norm(w, ord=1, axis=1, keepdims=True)


def extrema_weights(m: int) -> np.ndarray:
    """The ``m`` one-hot preferences (the simplex's corners), an ``(m, m)`` float64 identity."""
    return np.eye(_check_m(m, "extrema_weights"))


# --------------------------------------------------------------------------- validation
def check_preference(w, reward_dim: int, atol: float = 1e-6) -> np.ndarray:
    """Validate a preference (shape ``(m,)``) or a batch of them (``(n, m)``); return it as float64.

    Raises ValueError naming the problem and the fix when: the last axis is not ``reward_dim`` long,
    an entry is NaN or inf, an entry is negative, or a row does not sum to 1 within ``atol``.
    Host-side (not jittable): call it on user input, before it enters jitted code.
    """
    arr = np.asarray(w, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"preference must be a vector (m,) or a batch (n, m), got shape {arr.shape}")
    if arr.shape[-1] != reward_dim:
        raise ValueError(
            f"preference has {arr.shape[-1]} entries but the environment has {reward_dim} objectives "
            f"(reward_dim={reward_dim}); give one weight per objective"
        )
    rows = arr.reshape(-1, reward_dim)
    bad = ~np.isfinite(rows)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise ValueError(
            f"preference has NaN or inf entries ({rows[row].tolist()}); weights must be finite "
            f"numbers >= 0 summing to 1"
        )
    neg = rows < 0
    if neg.any():
        row = int(np.argmax(neg.any(axis=1)))
        raise ValueError(
            f"preference has negative entries ({rows[row].tolist()}); weights must be >= 0: "
            f"clip them at 0 (np.clip(w, 0, None)), then divide by its sum"
        )
    sums = rows.sum(axis=1)
    off = np.abs(sums - 1.0) > atol
    if off.any():
        row = int(np.argmax(off))
        s = float(sums[row])
        fix = "divide it by its sum (w / w.sum())" if s > 0 else "give at least one positive weight"
        raise ValueError(f"preference {rows[row].tolist()} sums to {s:.10g}, not 1 (tolerance {atol:g}); {fix}")
    return arr
