"""Breakable Bottles (Vamplew et al. 2021, "Potential-based multiobjective RL approaches to low-impact agents").

A corridor of ``size`` cells: bottles are picked up at the source (cell 0) and delivered at the
destination (cell ``size - 1``). Actions: 0 left, 1 right, 2 pick up; the agent carries at most 2
bottles. Moving off an interior cell while carrying 2 drops one there with probability ``prob_drop``.
Entering the destination delivers everything carried (at most 2 delivered in total); delivering the
second bottle ends the episode. Reward ``[time_penalty, bottle_reward * delivered_now, phi(s') - phi(s)]``
with potential ``phi = -1`` while any bottle lies on the ground, else 0. With ``unbreakable_bottles``
a dropped bottle can be picked up again.

Step-identical to MO-Gymnasium 1.3.2 ``breakable-bottles-v0`` (TimeLimit 100), including its real
start: the agent starts at the DESTINATION (cell ``size - 1``), as its ``reset`` does, not at cell 0
as its docstring says.

Observation (flat int32, length ``size + 1``, for speed in the jitted engine) and its mapping to
MO-Gymnasium's Dict observation::

    obs[0]            = obs_dict["location"]
    obs[1]            = obs_dict["bottles_carrying"]
    obs[2]            = obs_dict["bottles_delivered"]
    obs[3:size + 1]   = obs_dict["bottles_dropped"]   # one entry per interior cell 1..size-2

``bottles_dropped`` holds COUNTS, as the reference's values do (it declares ``MultiBinary`` but a cell
can hold several dropped bottles).

``morl.to_gymnasium("breakable-bottles-v0")`` shows MO-Gymnasium's view, declared here
(`BreakableBottles.gymnasium_observation_space`, `to_gymnasium_observation`, `gymnasium_reward_space`):
the same ``Dict`` observation space, observations as dicts with MO-Gymnasium's keys in its order, the three
``Discrete`` entries as Python ints (as MO-Gymnasium returns them) and ``bottles_dropped`` as an int8 array
of the counts (MO-Gymnasium returns a list, which gymnasium's checker flags; the values are equal), and
MO-Gymnasium's reward space ``[-inf, 0, -1] .. [0, 2 * bottle_reward, 0]`` (with ``unbreakable_bottles``
the potential's high is 1: picking a dropped bottle up again raises the potential, which MO-Gymnasium's
declaration misses). The reward itself stays a float32 array (MO-Gymnasium returns a list).

The drop is the only random event: a key-derived uniform ``u`` drops a bottle when ``u < prob_drop``,
and ``prob_drop`` is a params field (so a test can force the outcome with 0 or 1, and variants vmap).
"""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

LEFT, RIGHT, PICKUP = 0, 1, 2
MAX_CARRY = 2
MAX_DELIVERED = 2
# declared upper bound of a dropped-bottle count: a count cannot exceed the steps taken (in fact each
# drop takes >= 3 steps), so the registered time limit bounds it
DROPPED_HIGH = 100


@struct.dataclass
class BottlesState:
    location: jax.Array  # int32
    carrying: jax.Array  # int32, 0..2
    delivered: jax.Array  # int32, 0..2
    dropped: jax.Array  # int32 [size - 2], bottles lying on interior cells 1..size-2
    time: jax.Array


@struct.dataclass
class BottlesParams(EnvParams):
    max_steps: int = 100
    prob_drop: float = 0.1
    unbreakable_bottles: bool = False


class BreakableBottles(Environment):
    """See the module docstring for the dynamics and the observation layout.

    Reference point: MORL-Baselines has none. Under the 100-step limit the (discounted or not) returns
    lie in time [-100, -10], bottles [0, 50], potential [-1, 0] (the potential term telescopes to
    ``phi(s_T) - phi(s_0) = phi(s_T)``). We put the reference one unit below each worst return:
    ``(-101, -1, -2)``, so that every achievable return, for any discount, strictly dominates it.
    """

    reward_names = ("time", "bottles", "potential")

    def __init__(self, size: int = 5, time_penalty: float = -1.0, bottle_reward: float = 25.0):
        if int(size) != size or size < 3:
            raise ValueError(
                f"size={size!r}: need an integer >= 3 (source, at least one interior cell, "
                "destination); MO-Gymnasium's default is 5"
            )
        self.size = int(size)
        self.time_penalty = float(time_penalty)
        self.bottle_reward = float(bottle_reward)
        self.ref_point = (-float(self.default_params.max_steps) - 1.0, -1.0, -2.0)

    @property
    def default_params(self) -> BottlesParams:
        return BottlesParams()

    @property
    def observation_space(self) -> Box:
        # [location, bottles_carrying, bottles_delivered, bottles_dropped[0..size-3]] (see module docstring)
        high = np.array([self.size - 1, MAX_CARRY, MAX_DELIVERED] + [DROPPED_HIGH] * (self.size - 2))
        return Box(0, high, (self.size + 1,), jnp.int32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(3)

    @property
    def reward_space(self) -> Box:
        # potential can be +1 when the last dropped bottle is picked up again (unbreakable bottles);
        # MO-Gymnasium's declared high of 0 misses that
        tp = self.time_penalty
        return Box(
            np.array([tp, 0.0, -1.0]), np.array([tp, MAX_DELIVERED * self.bottle_reward, 1.0]), (3,), jnp.float32
        )

    # ------------------------------------------------------------------ MO-Gymnasium's view (the bridge's)
    def gymnasium_observation_space(self, params: BottlesParams | None = None) -> gymnasium.spaces.Dict:
        """MO-Gymnasium's Dict observation space (``morl.to_gymnasium`` shows it)."""
        return gymnasium.spaces.Dict(
            {
                "location": gymnasium.spaces.Discrete(self.size),
                "bottles_carrying": gymnasium.spaces.Discrete(MAX_CARRY + 1),
                "bottles_delivered": gymnasium.spaces.Discrete(MAX_DELIVERED + 1),
                "bottles_dropped": gymnasium.spaces.MultiBinary(self.size - 2),
            }
        )

    def to_gymnasium_observation(self, obs: np.ndarray, params: BottlesParams | None = None) -> dict:
        """The flat observation as MO-Gymnasium's dict (keys in its order; see the module docstring)."""
        return {
            "location": int(obs[0]),
            "bottles_carrying": int(obs[1]),
            "bottles_delivered": int(obs[2]),
            "bottles_dropped": np.asarray(obs[3:], dtype=np.int8),
        }

    def gymnasium_reward_space(self, params: BottlesParams | None = None) -> gymnasium.spaces.Box:
        """MO-Gymnasium's reward space; the potential's high is 1 with ``unbreakable_bottles`` (see above)."""
        params = self.default_params if params is None else params
        potential_high = 1.0 if bool(params.unbreakable_bottles) else 0.0
        low = np.array([-np.inf, 0.0, -1.0], np.float32)
        high = np.array([max(0.0, self.time_penalty), MAX_DELIVERED * self.bottle_reward, potential_high], np.float32)
        return gymnasium.spaces.Box(low, high, (3,), np.float32)

    def get_obs(self, state: BottlesState, params: BottlesParams | None = None) -> jax.Array:
        head = jnp.stack([state.location, state.carrying, state.delivered])
        return jnp.concatenate([head, state.dropped]).astype(jnp.int32)

    def reset(self, key, params):
        state = BottlesState(
            location=jnp.int32(self.size - 1),
            carrying=jnp.int32(0),
            delivered=jnp.int32(0),
            dropped=jnp.zeros(self.size - 2, jnp.int32),
            time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step(self, key, state, action, params):
        last = self.size - 1
        loc, carrying, dropped = state.location, state.carrying, state.dropped
        interior = (loc >= 1) & (loc <= last - 1)
        cell = jnp.clip(loc - 1, 0, self.size - 3)  # index into `dropped` (only meaningful when interior)

        # move, possibly dropping a bottle on the cell being left
        left = (action == LEFT) & (loc > 0)
        right = (action == RIGHT) & (loc < last)
        u = jax.random.uniform(key)
        drop = (left | right) & interior & (carrying > 1) & (u < params.prob_drop)
        carrying = carrying - drop.astype(jnp.int32)
        dropped = dropped.at[cell].add(drop.astype(jnp.int32))
        loc = loc + right.astype(jnp.int32) - left.astype(jnp.int32)

        # entering the destination delivers what is carried (surplus beyond 2 delivered is lost)
        deliver = right & (loc == last) & (carrying > 0)
        total = jnp.minimum(state.delivered + carrying, MAX_DELIVERED)
        n_delivered = jnp.where(deliver, total - state.delivered, 0)
        delivered = jnp.where(deliver, total, state.delivered)
        carrying = jnp.where(deliver, 0, carrying)
        terminated = deliver & (delivered == MAX_DELIVERED)

        # pick up at the source, or (unbreakable bottles) a dropped bottle on an interior cell
        pickup = (action == PICKUP) & (carrying < MAX_CARRY)
        from_source = pickup & (loc == 0)
        from_ground = pickup & interior & (dropped[cell] > 0) & params.unbreakable_bottles
        carrying = carrying + (from_source | from_ground).astype(jnp.int32)
        dropped = dropped.at[cell].add(-from_ground.astype(jnp.int32))

        potential_before = jnp.where(state.dropped.sum() > 0, -1.0, 0.0)
        potential_after = jnp.where(dropped.sum() > 0, -1.0, 0.0)
        reward = jnp.stack(
            [
                jnp.float32(self.time_penalty),
                self.bottle_reward * n_delivered.astype(jnp.float32),
                potential_after - potential_before,
            ]
        ).astype(jnp.float32)
        time = state.time + 1
        state = BottlesState(location=loc, carrying=carrying, delivered=delivered, dropped=dropped, time=time)
        return self.get_obs(state), state, reward, terminated, time_limit(time, params), {}


register("breakable-bottles-v0", BreakableBottles)
