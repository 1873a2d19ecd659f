"""The environment protocol: pure, jit/vmap-able functions over pytrees, with a vector reward.

An environment is a stateless object that declares its spaces once and implements two pure functions

    reset(key, params) -> (obs, state)
    step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)

``reward`` is float32 of shape ``[reward_dim]``. ``params`` is a pytree (a ``flax.struct`` dataclass) so
env variants are data: vmap over them, no recompiles. ``state`` carries a ``time`` counter; envs with a
time limit report ``truncated = time >= params.max_steps`` exactly as gymnasium's ``TimeLimit`` does
(both flags can be true on the same step). The engine, not the env, auto-resets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.compile_cache import enable_compilation_cache
from morl.spaces import Space

enable_compilation_cache()

PyTree = Any


@struct.dataclass
class EnvParams:
    """Parameters every env shares. Env families subclass this and add their own fields."""

    max_steps: int = 100


class Environment(ABC):
    """Base class of pure-JAX vector-reward environments.

    Subclasses set the class attributes below (or properties) and implement ``reset`` and ``step``.
    """

    #: names of the objectives, in reward-vector order
    reward_names: tuple[str, ...] = ()
    #: default reference point for hypervolume (MORL-Baselines' where one exists)
    ref_point: tuple[float, ...] | None = None
    #: the id this env was made under (set by `morl.make`)
    spec_id: str | None = None
    #: True when ``reset`` and ``step`` never use their keys, so a greedy policy repeats one episode: the evaluator
    #: then runs it once instead of ``EvalProtocol.episodes`` times (same mean). Leave False when unsure.
    deterministic: bool = False

    # ----------------------------------------------------------------- to implement
    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    @abstractmethod
    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, PyTree]: ...

    @abstractmethod
    def step(
        self, key: jax.Array, state: PyTree, action: jax.Array, params: EnvParams
    ) -> tuple[jax.Array, PyTree, jax.Array, jax.Array, jax.Array, dict]: ...

    @property
    @abstractmethod
    def observation_space(self) -> Space: ...

    @property
    @abstractmethod
    def action_space(self) -> Space: ...

    @property
    @abstractmethod
    def reward_space(self) -> Space: ...

    # ----------------------------------------------------------------- derived
    @property
    def reward_dim(self) -> int:
        return int(self.reward_space.shape[0])

    @property
    def max_steps(self) -> int:
        return int(self.default_params.max_steps)

    def pareto_front(self, gamma: float = 1.0) -> np.ndarray | None:
        """The true Pareto front of discounted vector returns, shape [n, reward_dim]; None when unknown."""
        return None

    @property
    def has_known_front(self) -> bool:
        return type(self).pareto_front is not Environment.pareto_front

    @property
    def name(self) -> str:
        return self.spec_id or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def time_limit(time: jax.Array, params: EnvParams) -> jax.Array:
    """gymnasium's TimeLimit: truncated once ``time`` (steps taken) reaches ``params.max_steps``."""
    return time >= params.max_steps


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    """``where(pred, a, b)`` leaf by leaf, with a scalar ``pred`` broadcast over each leaf."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
