"""PD-MORL's interpolator ``I``: key preferences -> normalised key returns, a linear-kernel RBF (scipy's
``RBFInterpolator(kernel='linear')``, degree-1 polynomial) solved in JAX, so it can be refitted inside jitted code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Interpolator:
    """Linear-kernel RBF interpolator from key preferences to normalised key returns (scipy's RBFInterpolator,
    ``kernel='linear'``, ``degree=1``, ``smoothing=0``), plus the key returns it was fitted on."""

    points: jax.Array  # [K, m] key preferences
    returns: jax.Array  # [K, m] best key returns so far (discounted, unshifted)
    shift: jax.Array  # [m] added to returns and Q-values before cosines
    coeffs: jax.Array  # [K + m + 1, m]
    center: jax.Array  # [m] polynomial domain shift (scipy's)
    scale: jax.Array  # [m] polynomial domain scale


def _poly(x: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    xhat = (x - center) / scale
    return jnp.concatenate([jnp.ones(x.shape[:-1] + (1,), x.dtype), xhat], axis=-1)


def _dist(a: jax.Array, b: jax.Array) -> jax.Array:
    d = a[:, None, :] - b[None, :, :]
    return jnp.sqrt(jnp.maximum(jnp.sum(d * d, axis=-1), 0.0))


def fit_rbf(points: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Coefficients of the linear-kernel RBF interpolant with a degree-1 polynomial through ``(points, values)``.

    Solved by least squares: the key preferences lie on the simplex, so the polynomial block is rank-deficient
    (scipy's LU happens to go through); every least-squares solution gives the same values on the simplex.
    """
    points = points.astype(jnp.float32)
    lo, hi = jnp.min(points, axis=0), jnp.max(points, axis=0)
    center = (hi + lo) / 2
    scale = jnp.where(hi - lo == 0, 1.0, (hi - lo) / 2)
    kernel = -_dist(points, points)
    p = _poly(points, center, scale)
    q = p.shape[1]
    lhs = jnp.block([[kernel, p], [p.T, jnp.zeros((q, q), jnp.float32)]])
    rhs = jnp.concatenate([values.astype(jnp.float32), jnp.zeros((q, values.shape[1]), jnp.float32)])
    coeffs = jnp.linalg.pinv(lhs, rtol=1e-5) @ rhs
    return coeffs, center, scale


def eval_rbf(points: jax.Array, coeffs: jax.Array, center: jax.Array, scale: jax.Array, x: jax.Array) -> jax.Array:
    k = points.shape[0]
    return -_dist(x, points) @ coeffs[:k] + _poly(x, center, scale) @ coeffs[k:]


def make_interpolator(points: jax.Array, returns: jax.Array, shift: jax.Array, norm: str) -> Interpolator:
    shifted = returns + shift
    order = 1 if norm == "l1" else 2
    size = jnp.linalg.norm(shifted, ord=order, axis=1, keepdims=True)
    key_unit = points / jnp.linalg.norm(points, ord=order, axis=1, keepdims=True)
    # a key run that earned nothing (zero shifted return, e.g. a looping policy) says nothing about the direction
    # of its part of the front: the key preference itself stands in (a zero w_p would zero every Eq. 5 score)
    unit = jnp.where(size > 1e-6, shifted / jnp.maximum(size, 1e-6), key_unit)
    coeffs, center, scale = fit_rbf(points, unit)
    return Interpolator(points, returns, shift, coeffs, center, scale)


def interpolate(interp: Interpolator, w: jax.Array) -> jax.Array:
    """``w_p = I(w)`` for preferences ``[N, m]``."""
    return eval_rbf(interp.points, interp.coeffs, interp.center, interp.scale, w)


def key_preferences(m: int) -> np.ndarray:
    """The m corners and the uniform preference (the official discrete interpolator's points; for m = 2 the same
    three points as the continuous scripts' ``linspace`` over the grid)."""
    return np.concatenate([np.eye(m), np.full((1, m), 1.0 / m)]).astype(np.float32)


def refit(interp: Interpolator, new_returns: jax.Array, norm: str) -> Interpolator:
    """Replace key returns whose scalarised value improved, refit (official ``train_*_MO_TD3_HER.py``)."""
    better = jnp.sum(interp.points * new_returns, -1) > jnp.sum(interp.points * interp.returns, -1)
    returns = jnp.where(better[:, None], new_returns, interp.returns)
    return make_interpolator(interp.points, returns, interp.shift, norm)
