"""Toy environments shared by the tests: problems small enough that their answer is known by hand (and the order
the test files run in: the slowest first).

- `OneStep`: one step from a constant observation, reward ``reward_fn(action)`` (bandits, continuous arcs);
  `bandit2`, `arc` and `gaussian_bandit` build the ones the PPO and C-MORL tests use.
- `Chain`: walk right from 0 to 5 within 20 steps, reward 1 on arrival (a discrete credit-assignment problem).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.spaces import Box, Discrete, Space

#: the test files that take longest (cold compilation cache), started first: the parallel workers of the README's
#: `pytest -n ... --dist loadfile` take one file at a time, so a long file started last would run alone at the end
SLOWEST_FIRST = (
    "test_morld.py",
    "test_c_morl.py",
    "test_pd_morl.py",
    "test_gpi.py",
    "test_budgets.py",
    "test_envs_mujoco.py",
    "test_pbt.py",
    "test_envelope.py",
    "test_hyper_ppo.py",
    "test_cluster.py",
    "test_pgmorl.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every file keeps its tests' order


@struct.dataclass
class StepCount:
    time: jax.Array


class OneStep(Environment):
    """Episodes of one step from the observation ``[1.0]``; the reward is ``reward_fn(action)`` (float32)."""

    def __init__(
        self,
        action_space: Space,
        reward_fn: Callable[[jax.Array], jax.Array],
        reward_space: Box,
        reward_names: tuple[str, ...],
        ref_point: tuple[float, ...] | None = None,
        name: str = "OneStep",
    ):
        self._action_space, self._reward_space, self.reward_fn = action_space, reward_space, reward_fn
        self.reward_names, self.ref_point, self.spec_id = reward_names, ref_point, name

    @property
    def default_params(self):
        return EnvParams(max_steps=1)

    @property
    def observation_space(self):
        return Box(0.0, 1.0, (1,), jnp.float32)

    @property
    def action_space(self):
        return self._action_space

    @property
    def reward_space(self):
        return self._reward_space

    def reset(self, key, params):
        return jnp.ones((1,), jnp.float32), StepCount(jnp.int32(0))

    def step(self, key, state, action, params):
        reward = self.reward_fn(action)
        return jnp.ones((1,), jnp.float32), StepCount(state.time + 1), reward, jnp.bool_(True), jnp.bool_(False), {}


#: C-MORL on a host env in a few seconds: two policies, one update of each stage, 2 envs x 32 steps (tests of the
#: host path: gym:deep-sea-treasure-v0 with a 20-step time limit)
CMORL_HOST_TINY = dict(
    total_steps=256,
    init_steps=128,
    init_weight_delta=1.0,
    num_select=1,
    num_envs=2,
    num_steps=32,
    num_minibatches=2,
    epochs=2,
)

# A 2-objective bandit whose constrained optimum is known (C-MORL's extension test): a0 = (1, 1) is pi_r's
# favourite; maximising G_0 subject to G_1 >= 0.9 G_1(pi_r) is answered by a1 = (1.3, 0.95), without the constraint
# by a2 = (1.5, 0.2); symmetrically for G_1.
BANDIT = np.array([[1.0, 1.0], [1.3, 0.95], [1.5, 0.2], [0.95, 1.3], [0.2, 1.5]], np.float32)


def bandit2() -> OneStep:
    return OneStep(
        Discrete(len(BANDIT)),
        lambda a: jnp.asarray(BANDIT)[a],
        Box(0.0, 1.5, (2,), jnp.float32),
        ("r0", "r1"),
        (0.0, 0.0),
        "Bandit2",
    )


def arc() -> OneStep:
    """Continuous action a in [-1, 1], reward (a, 1 - a^2): a concave front (a, 1 - a^2), a in [0, 1]."""

    def reward(action):
        a = action[0]
        return jnp.stack([a, 1.0 - a * a]).astype(jnp.float32)

    return OneStep(
        Box(-1.0, 1.0, (1,), jnp.float32),
        reward,
        Box(-1.0, 1.0, (2,), jnp.float32),
        ("a", "1 - a^2"),
        (-1.0, -1.0),
        "Arc",
    )


def gaussian_bandit() -> OneStep:
    """Continuous action a in [-2, 2], reward -(a - 1)^2: the best action is 1."""
    return OneStep(
        Box(-2.0, 2.0, (1,), jnp.float32),
        lambda a: -((a - 1.0) ** 2).astype(jnp.float32),
        Box(-9.0, 0.0, (1,), jnp.float32),
        ("r",),
        None,
        "GaussianBandit",
    )


@struct.dataclass
class ChainState:
    pos: jax.Array
    time: jax.Array


class Chain(Environment):
    """Walk right from 0 to 5 (actions: 0 left, 1 right); reward 1 on arrival; time limit 20."""

    reward_names = ("goal",)

    @property
    def default_params(self):
        return EnvParams(max_steps=20)

    @property
    def observation_space(self):
        return Box(0, 5, (1,), jnp.int32)

    @property
    def action_space(self):
        return Discrete(2)

    @property
    def reward_space(self):
        return Box(0.0, 1.0, (1,), jnp.float32)

    def reset(self, key, params):
        return jnp.zeros((1,), jnp.int32), ChainState(jnp.int32(0), jnp.int32(0))

    def step(self, key, state, action, params):
        pos = jnp.clip(state.pos + 2 * action - 1, 0, 5)
        time = state.time + 1
        done = pos == 5
        reward = jnp.where(done, 1.0, 0.0)[None].astype(jnp.float32)
        return pos[None], ChainState(pos, time), reward, done, time_limit(time, params), {}
