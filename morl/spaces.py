"""JAX-friendly spaces: `Discrete` and `Box`, with sampling from an explicit key.

They mirror gymnasium's spaces (and convert to them with `to_gymnasium`) so an env declares its spaces once
and both the jitted engine and the gymnasium bridge read the same declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """Integer actions or observations in ``{start, ..., start + n - 1}``."""

    n: int
    start: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self) -> Any:
        return jnp.int32

    def sample(self, key: jax.Array, batch: tuple[int, ...] = ()) -> jax.Array:
        return jax.random.randint(key, batch, self.start, self.start + self.n, dtype=jnp.int32)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        if x.shape != () or not np.issubdtype(x.dtype, np.integer):
            return False
        return bool(self.start <= int(x) < self.start + self.n)

    def to_gymnasium(self) -> gymnasium.spaces.Discrete:
        return gymnasium.spaces.Discrete(self.n, start=self.start)

    def describe(self) -> str:
        return f"Discrete({self.n})" if self.start == 0 else f"Discrete({self.n}, start={self.start})"


@dataclass(frozen=True, eq=False)
class Box:
    """A box of shape ``shape`` bounded by ``low`` and ``high`` (broadcastable, may be infinite)."""

    low: Any
    high: Any
    shape: tuple[int, ...]
    dtype: Any = jnp.float32

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "low", np.broadcast_to(np.asarray(self.low, dtype=np.float64), shape).copy())
        object.__setattr__(self, "high", np.broadcast_to(np.asarray(self.high, dtype=np.float64), shape).copy())

    @property
    def is_integer(self) -> bool:
        return jnp.issubdtype(self.dtype, jnp.integer)

    def sample(self, key: jax.Array, batch: tuple[int, ...] = ()) -> jax.Array:
        """Uniform where bounded, normal where unbounded, shifted exponential where half-bounded (as gymnasium).

        ``batch`` prepends axes: one draw of shape ``batch + shape`` is far cheaper than vmapping over keys.
        """
        low, high = np.asarray(self.low), np.asarray(self.high)
        shape = tuple(batch) + self.shape
        if self.is_integer:
            lo = np.where(np.isfinite(low), low, np.iinfo(np.int32).min // 2).astype(np.int32)
            hi = np.where(np.isfinite(high), high, np.iinfo(np.int32).max // 2).astype(np.int32)
            return jax.random.randint(key, shape, lo, hi + 1, dtype=self.dtype)
        bounded_below, bounded_above = np.isfinite(low), np.isfinite(high)
        if np.all(bounded_below & bounded_above):
            return jax.random.uniform(key, shape, minval=low, maxval=high).astype(self.dtype)
        k1, k2, k3 = jax.random.split(key, 3)
        uniform = jax.random.uniform(
            k1, shape, minval=np.where(bounded_below, low, 0.0), maxval=np.where(bounded_above, high, 1.0)
        )
        normal = jax.random.normal(k2, shape)
        expo = jax.random.exponential(k3, shape)
        out = jnp.where(
            bounded_below & bounded_above,
            uniform,
            jnp.where(bounded_below, low + expo, jnp.where(bounded_above, high - expo, normal)),
        )
        return out.astype(self.dtype)

    def contains(self, x: Any) -> bool:
        x = np.asarray(x)
        if x.shape != self.shape:
            return False
        return bool(np.all(x >= self.low) and np.all(x <= self.high))

    def to_gymnasium(self) -> gymnasium.spaces.Box:
        dtype = np.dtype(self.dtype)
        low, high = self.low.astype(dtype), self.high.astype(dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            low = np.where(np.isfinite(self.low), self.low, info.min).astype(dtype)
            high = np.where(np.isfinite(self.high), self.high, info.max).astype(dtype)
        return gymnasium.spaces.Box(low=low, high=high, shape=self.shape, dtype=dtype)

    def describe(self) -> str:
        lo, hi = np.unique(self.low), np.unique(self.high)
        lo_s = f"{lo[0]:g}" if lo.size == 1 else "[...]"
        hi_s = f"{hi[0]:g}" if hi.size == 1 else "[...]"
        return f"Box({lo_s}, {hi_s}, {self.shape}, {np.dtype(self.dtype).name})"


Space = Discrete | Box


def from_gymnasium(space: gymnasium.Space) -> Space:
    """Convert a gymnasium Discrete or Box space (what vector-reward envs use) into ours."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return Discrete(int(space.n), int(space.start))
    if isinstance(space, gymnasium.spaces.Box):
        return Box(
            space.low, space.high, space.shape, jnp.dtype(space.dtype) if space.dtype != np.float64 else jnp.float32
        )
    raise TypeError(
        f"space {space!r} is not supported by the rollout engine; flatten it first "
        "(gymnasium.wrappers.FlattenObservation) so it becomes a Box"
    )
