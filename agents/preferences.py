"""Preference samplers for preference-conditioned agents (jit-compatible, explicit keys).

Grids and random draws come from `morl.weights` (Das-Dennis grid, Dirichlet / |N(0,1)| draws); this module
adds what the training loops need on top:

- `SubspaceGrid`: PD-MORL's parallel scheme. The preference grid is split into ``n`` **contiguous**
  sub-spaces (``np.array_split`` of the grid in lexicographic order, as the official code does), one per
  slice of environments; each slice draws its episode preferences uniformly from its own sub-space.
- `gaussian_preferences`: ``|N(0, I)|`` L1-normalised (Envelope's training preferences and PD-MORL's
  HER relabelling), optionally rounded to 3 decimals as PD-MORL does.
- `jitter_preference`: PD-MORL's key-preference exploration noise (N(0, 0.05^2) clipped to +-0.05, then
  made non-negative and L1-normalised).
- `generate_weights_batch_dfs`: the deterministic grid of the official PGMORL and C-MORL code (their initial
  preferences).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from morl.weights import random_weights, uniform_grid


def grid(m: int, step: float) -> np.ndarray:
    """The simplex grid with spacing ``step`` (every coordinate a multiple of ``step``), ``[n, m]`` float64.

    PD-MORL's ``generate_w_batch_test(step)`` filters ``itertools.product(arange(0, 1 + step, step))`` by
    exact float equality of the sum with 1, which silently drops some simplex points for m >= 3 (62 of 66
    for m = 3, step 0.1); this is the full Das-Dennis grid (`morl.weights.uniform_grid`), same order.
    """
    if not 0.0 < step <= 1.0:
        raise ValueError(f"preference grid step must be in (0, 1], got {step!r}")
    n_per_dim = int(round(1.0 / step)) + 1
    if abs((n_per_dim - 1) * step - 1.0) > 1e-6:
        raise ValueError(f"preference grid step {step!r} must divide 1 (e.g. 0.01, 0.05, 0.1)")
    return uniform_grid(m, n_per_dim)


@dataclass(frozen=True)
class SubspaceGrid:
    """A preference grid cut into ``n`` contiguous sub-spaces, padded to one array for vmapped sampling.

    ``points[s, :counts[s]]`` are sub-space ``s``'s preferences; the rest is padding (never drawn).
    """

    points: np.ndarray  # [n, L, m] float32
    counts: np.ndarray  # [n] int32

    @staticmethod
    def make(m: int, step: float, n: int) -> SubspaceGrid:
        full = grid(m, step)
        if n < 1 or n > len(full):
            raise ValueError(
                f"cannot split a grid of {len(full)} preferences into {n} sub-spaces; "
                f"use 1 <= n <= {len(full)} (or a finer step)"
            )
        parts = np.array_split(full, n)
        longest = max(len(p) for p in parts)
        points = np.zeros((n, longest, m), np.float32)
        for i, part in enumerate(parts):
            points[i, : len(part)] = part
            points[i, len(part) :] = part[0]
        return SubspaceGrid(points, np.array([len(p) for p in parts], np.int32))

    @property
    def num_subspaces(self) -> int:
        return int(self.points.shape[0])

    def sample(self, key: jax.Array, subspace: jax.Array) -> jax.Array:
        """One preference per entry of ``subspace`` (int array ``[N]``), uniform within that sub-space."""
        points, counts = jnp.asarray(self.points), jnp.asarray(self.counts)
        u = jax.random.uniform(key, subspace.shape)
        j = jnp.minimum((u * counts[subspace]).astype(jnp.int32), counts[subspace] - 1)
        return points[subspace, j]


def gaussian_preferences(key: jax.Array, n: int, m: int, decimals: int | None = None) -> jax.Array:
    """``n`` preferences ``|N(0, I)| / L1``, shape ``[n, m]``; ``decimals`` rounds them (PD-MORL: 3)."""
    w = random_weights(m, n, key, dist="gaussian")
    return w if decimals is None else jnp.round(w, decimals)


def jitter_preference(key: jax.Array, w: jax.Array, scale: float = 0.05) -> jax.Array:
    """PD-MORL's key-run exploration: ``w + clip(N(0, scale^2), +-scale)``, then ``|.|`` and L1-normalised."""
    noise = jnp.clip(jax.random.normal(key, w.shape) * scale, -scale, scale)
    w = jnp.abs(w + noise)
    return w / jnp.sum(w, axis=-1, keepdims=True)


def generate_weights_batch_dfs(
    m: int, min_weight: float = 0.0, max_weight: float = 1.0, delta_weight: float = 0.5
) -> np.ndarray:
    """The official deterministic preference grid (PGMORL / C-MORL ``utils.generate_weights_batch_dfs``).

    Depth-first over objectives 0..m-2: each coordinate runs ``min, min + delta, ...`` while it is below
    ``max + delta/2`` and the partial sum stays below ``1 + delta/2``; the last coordinate is ``1 - sum``, so
    it may fall outside [min, max] (e.g. 3 objectives, [.2, .8], delta .3 gives (.2, .8, 0)). Float steps are
    accumulated as the official code does; round-off below 1e-9 is cleaned so each row is a valid preference.
    """
    if m < 1 or delta_weight <= 0:
        raise ValueError(
            f"generate_weights_batch_dfs: need m >= 1 and delta_weight > 0, got m={m}, delta={delta_weight}"
        )
    out: list[list[float]] = []

    def dfs(prefix: list[float]) -> None:
        if len(prefix) == m - 1:
            out.append(prefix + [1.0 - float(np.sum(prefix))])
            return
        w = min_weight
        while w < max_weight + 0.5 * delta_weight and float(np.sum(prefix)) + w < 1.0 + 0.5 * delta_weight:
            dfs(prefix + [w])
            w += delta_weight

    dfs([])
    grid = np.asarray(out, np.float64)
    grid[np.abs(grid) < 1e-9] = 0.0
    if (grid < 0).any():
        raise ValueError(
            f"generate_weights_batch_dfs(m={m}, min={min_weight}, max={max_weight}, delta={delta_weight}) "
            "produced a negative last weight; use max_weight <= 1"
        )
    return grid
