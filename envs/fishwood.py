"""FishWood (Roijers et al. 2018, "Multi-objective RL for the expected utility of the return"; ESR setting).

A fisherman is either fishing (state 0) or in the woods (state 1) and starts in the woods. Each step,
the CURRENT state pays: in the woods wood +1 with probability ``woodproba`` (0.9), while fishing fish +1
with probability ``fishproba`` (0.1); then the state becomes the action (0 go fishing, 1 go to the woods).
Reward order ``[fish, wood]`` (the order the reference code uses; its class docstring says otherwise).

Step-identical to MO-Gymnasium 1.3.2 ``fishwood-v0``: every episode lasts exactly ``max_steps`` = 200
steps (its ``MAX_TS``; no TimeLimit wrapper is registered) and the last step reports terminated AND
truncated, as the reference does. Bootstrapping code should read ``truncated``: the episode is cut by
time, not ended by a terminal state.

The catch is the only random event: one key-derived uniform ``u`` per step, a catch when
``u < probability``; both probabilities are params fields (named as MO-Gymnasium's kwargs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from morl.env import Environment, EnvParams
from morl.registry import register
from morl.spaces import Box, Discrete

FISH, WOOD = 0, 1


@struct.dataclass
class FishWoodState:
    location: jax.Array  # int32: 0 fishing, 1 woods
    time: jax.Array


@struct.dataclass
class FishWoodParams(EnvParams):
    max_steps: int = 200
    fishproba: float = 0.1
    woodproba: float = 0.9


class FishWood(Environment):
    """Observation: ``[location]`` int32, shape (1,), as MO-Gymnasium's.

    Reference point: MORL-Baselines has none (it uses FishWood only for ESR, with EUPG). Rewards are in
    {0, 1}, so every return is >= 0; we put the reference one reward unit below, ``(-1, -1)``, so that a
    point with 0 fish (or 0 wood) still adds hypervolume.
    """

    reward_names = ("fish", "wood")
    ref_point = (-1.0, -1.0)

    @property
    def default_params(self) -> FishWoodParams:
        return FishWoodParams()

    @property
    def observation_space(self) -> Box:
        return Box(0, 1, (1,), jnp.int32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(2)

    @property
    def reward_space(self) -> Box:
        return Box(0.0, 1.0, (2,), jnp.float32)

    def get_obs(self, state: FishWoodState, params: FishWoodParams | None = None) -> jax.Array:
        return state.location.astype(jnp.int32)[None]

    def reset(self, key, params):
        state = FishWoodState(location=jnp.int32(WOOD), time=jnp.int32(0))
        return self.get_obs(state), state

    def step(self, key, state, action, params):
        u = jax.random.uniform(key)
        fish = (state.location == FISH) & (u < params.fishproba)
        wood = (state.location == WOOD) & (u < params.woodproba)
        reward = jnp.stack([fish, wood]).astype(jnp.float32)
        time = state.time + 1
        state = FishWoodState(location=jnp.asarray(action, jnp.int32), time=time)
        done = time >= params.max_steps
        return self.get_obs(state), state, reward, done, done, {}


register("fishwood-v0", FishWood)
