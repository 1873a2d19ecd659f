"""Scalarisation functions, neighbourhoods and weight adaptation for the decomposition agents (MORL/D, PGMORL).

Everything here is a pure ``jax.numpy`` function with static shapes (jit- and vmap-able); values are vectors
along the last axis (``[..., m]``) and larger is better in every objective.

- `weighted_sum`: ``w . v``.
- `tchebycheff`: ``-max_i w_i |v_i - z_i|`` with ``z`` the utopia point, negated so that larger is better.
  This is MORL-Baselines' ``tchebicheff(tau, reward_dim)`` (pymoo's ``Tchebicheff`` on the values, negated).
  There the utopia point is adapted online inside the closure: before each call it becomes
  ``max(z, v + tau)`` for the values being scalarised; `update_utopia` does that update explicitly.
- `Scalarization`: the two behind one static switch, so a learner takes it as a config value.
- `neighbourhoods`: for every weight, the ``n`` nearest other weights by squared Euclidean distance
  (MORL-Baselines' ``nearest_neighbors`` with its ``dist_metric``), ties broken by index.
- `psa_weights`: Pareto simulated annealing (Czyzak and Jaszkiewicz 1998) as MORL/D applies it: each
  member finds the closest archive point at squared distance > ``min_sq_dist`` (0.01) from its own
  evaluation; objective by objective its weight is multiplied by ``1 + delta`` where the member is at
  least as good as that point and divided by ``1 + delta`` where it is worse; then L1-renormalised.
  A member with no such point keeps its (renormalised) weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

__all__ = [
    "weighted_sum",
    "tchebycheff",
    "update_utopia",
    "Scalarization",
    "neighbourhoods",
    "psa_weights",
    "initial_utopia",
    "dominated_by",
]


def weighted_sum(w: jax.Array, v: jax.Array) -> jax.Array:
    """``w . v`` along the last axis (``w`` broadcasts against ``v``)."""
    return jnp.sum(w * v, axis=-1)


def tchebycheff(w: jax.Array, v: jax.Array, utopia: jax.Array) -> jax.Array:
    """Negated weighted Tchebycheff distance to the utopia point: ``-max_i w_i |v_i - z_i|``."""
    return -jnp.max(w * jnp.abs(v - utopia), axis=-1)


def initial_utopia(m: int) -> jax.Array:
    """The utopia point before any value was seen (MORL-Baselines starts at -inf)."""
    return jnp.full((m,), -jnp.inf, jnp.float32)


def update_utopia(utopia: jax.Array, values: jax.Array, tau: float = 0.5) -> jax.Array:
    """``max(z, max(values) + tau)`` per objective, the maximum taken over every leading axis of ``values``."""
    m = utopia.shape[-1]
    return jnp.maximum(utopia, jnp.max(values.reshape(-1, m), axis=0) + tau)


@dataclass(frozen=True)
class Scalarization:
    """A scalarisation chosen by name: ``"ws"`` (weighted sum) or ``"tch"`` (Tchebycheff, utopia offset ``tau``)."""

    method: str = "ws"
    tau: float = 0.5

    def __post_init__(self):
        if self.method not in ("ws", "tch"):
            raise ValueError(f"scalarization must be 'ws' (weighted sum) or 'tch' (Tchebycheff), got {self.method!r}")

    def __call__(self, w: jax.Array, v: jax.Array, utopia: jax.Array | None = None) -> jax.Array:
        """Scalarise ``v [..., m]``; ``tch`` first moves the utopia point to cover ``v`` (MORL-Baselines'
        closure semantics), so a -inf (initial) utopia point is safe."""
        if self.method == "ws":
            return weighted_sum(w, v)
        if utopia is None:
            raise ValueError("Tchebycheff scalarisation needs the utopia point")
        return tchebycheff(w, v, update_utopia(utopia, jax.lax.stop_gradient(v), self.tau))


def neighbourhoods(weights: jax.Array, n: int) -> jax.Array:
    """Indices ``[P, n]`` of the ``n`` nearest other weights of each weight (squared Euclidean distance)."""
    p = weights.shape[0]
    if not 0 <= n < p:
        raise ValueError(f"neighbourhood size must be in [0, pop_size - 1] = [0, {p - 1}], got {n}")
    d2 = jnp.sum(jnp.square(weights[:, None, :] - weights[None, :, :]), axis=-1)
    d2 = jnp.where(jnp.eye(p, dtype=bool), jnp.inf, d2)
    return jnp.argsort(d2, axis=1, stable=True)[:, :n].astype(jnp.int32)


def psa_weights(
    weights: jax.Array,
    evals: jax.Array,
    archive: jax.Array,
    valid: jax.Array,
    delta: float = 0.1,
    min_sq_dist: float = 0.01,
    skip_dominated: bool = False,
) -> jax.Array:
    """PSA weight adaptation of a population (see the module docstring).

    ``weights``, ``evals``: ``[P, m]`` each member's weight and its latest evaluation; ``archive``: ``[K, m]``
    archive evaluations, ``valid``: ``[K]`` which rows are real. Returns the new weights ``[P, m]``.
    ``skip_dominated``: a member whose evaluation some archive row dominates keeps its weight. PSA reads a
    member's evaluation as its trade-off; a failed policy (a minecart that never drives home: fuel -20) is no
    trade-off, and moving on it divides the weight of every objective the failure is bad in.
    """
    d2 = jnp.sum(jnp.square(evals[:, None, :] - archive[None, :, :]), axis=-1)  # [P, K]
    ok = valid[None, :] & (d2 > min_sq_dist)
    closest = jnp.argmin(jnp.where(ok, d2, jnp.inf), axis=1)  # first of the ties
    found = jnp.any(ok, axis=1)
    point = archive[closest]
    factor = jnp.where(evals >= point, 1.0 + delta, 1.0 / (1.0 + delta))
    moved = jnp.where(found[:, None], weights * factor, weights)
    if skip_dominated:
        moved = jnp.where(dominated_by(evals, archive, valid)[:, None], weights, moved)
    return moved / jnp.sum(jnp.abs(moved), axis=1, keepdims=True)


def dominated_by(points: jax.Array, archive: jax.Array, valid: jax.Array) -> jax.Array:
    """``[P]``: whether some valid archive row (``[K, m]``) Pareto-dominates each of ``points [P, m]``."""
    a, p = archive[None, :, :], points[:, None, :]
    dom = jnp.all(a >= p, axis=-1) & jnp.any(a > p, axis=-1) & valid[None, :]
    return jnp.any(dom, axis=1)
