"""Resource Gathering (Barrett & Narayanan 2008): fetch gold and/or a gem past two enemies and come home.

A 5x5 grid: gold at (0, 2), gem at (1, 4), enemies at (0, 3) and (1, 2), home at (4, 2), where the agent
starts. Moves are up/down/left/right; a move off the grid leaves the agent in place. Stepping on a resource
picks it up (it stays on the map). On an enemy cell the agent dies with probability
``params.enemy_kill_prob`` (0.1): reward ``[-1, 0, 0]``, episode over. Being home after a move ends the
episode with reward ``[0, has_gold, has_gem]``; a wall-bumping move taken at home counts as being home, so
it ends the episode at once with ``[0, 0, 0]`` (MO-Gymnasium's behaviour, kept on purpose). Time limit 100.
Step-identical to MO-Gymnasium 1.3.2 ``resource-gathering-v0`` (the kill draw comes from ``key`` instead of
the env's ``np_random``; the twin test forces both to the same outcome through ``enemy_kill_prob``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

EMPTY, GOLD, GEM, ENEMY, HOME = 0, 1, 2, 3, 4

# MO-Gymnasium's map: [" ", " ", "R1", "E2", " "], [" ", " ", "E1", " ", "R2"], 2 empty rows, [" ", " ", "H", " ", " "]
MAP = np.array(
    [
        [EMPTY, EMPTY, GOLD, ENEMY, EMPTY],
        [EMPTY, EMPTY, ENEMY, EMPTY, GEM],
        [EMPTY, EMPTY, EMPTY, EMPTY, EMPTY],
        [EMPTY, EMPTY, EMPTY, EMPTY, EMPTY],
        [EMPTY, EMPTY, HOME, EMPTY, EMPTY],
    ],
    dtype=np.int32,
)
HOME_POS = np.array([4, 2], dtype=np.int32)

# 0 up, 1 down, 2 left, 3 right
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


@struct.dataclass
class ResourceGatheringState:
    pos: jax.Array  # int32 (row, col)
    has_gold: jax.Array  # int32 0/1
    has_gem: jax.Array  # int32 0/1
    time: jax.Array


@struct.dataclass
class ResourceGatheringParams(EnvParams):
    max_steps: int = 100
    #: probability that an enemy cell kills the agent; a field so tests (and curricula) can set it,
    #: e.g. 0.0 or 1.0 to force an outcome
    enemy_kill_prob: float = 0.1


class ResourceGathering(Environment):
    reward_names = ("enemy", "gold", "gem")

    def __init__(self):
        # MO-Gymnasium gives no reference point; (-1, -1, -2) is the one used with MORL-Baselines (MO-Gym #104)
        self.ref_point = (-1.0, -1.0, -2.0)

    @property
    def default_params(self) -> ResourceGatheringParams:
        return ResourceGatheringParams()

    @property
    def observation_space(self) -> Box:
        return Box(0, 5, (4,), jnp.int32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(4)

    @property
    def reward_space(self) -> Box:
        return Box(np.array([-1.0, 0.0, 0.0]), np.array([0.0, 1.0, 1.0]), (3,), jnp.float32)

    def get_obs(self, state: ResourceGatheringState, params: ResourceGatheringParams) -> jax.Array:
        """``[row, col, has_gold, has_gem]`` (int32), as MO-Gymnasium's ``get_state``."""
        return jnp.concatenate([state.pos, jnp.stack([state.has_gold, state.has_gem])]).astype(jnp.int32)

    def reset(self, key: jax.Array, params: ResourceGatheringParams) -> tuple[jax.Array, ResourceGatheringState]:
        state = ResourceGatheringState(
            pos=jnp.asarray(HOME_POS), has_gold=jnp.int32(0), has_gem=jnp.int32(0), time=jnp.int32(0)
        )
        return self.get_obs(state, params), state

    def step(self, key: jax.Array, state: ResourceGatheringState, action: jax.Array, params: ResourceGatheringParams):
        rows, cols = MAP.shape
        target = state.pos + jnp.asarray(MOVES)[action]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        pos = jnp.where(inside, target, state.pos)
        cell = jnp.asarray(MAP)[pos[0], pos[1]]
        has_gold = jnp.where(cell == GOLD, 1, state.has_gold).astype(jnp.int32)
        has_gem = jnp.where(cell == GEM, 1, state.has_gem).astype(jnp.int32)
        killed = (cell == ENEMY) & (jax.random.uniform(key) < params.enemy_kill_prob)
        home = cell == HOME
        reward = jnp.stack(
            [
                jnp.where(killed, -1.0, 0.0).astype(jnp.float32),  # +0.0, not -0.0, as MO-Gymnasium
                jnp.where(home, has_gold, 0).astype(jnp.float32),
                jnp.where(home, has_gem, 0).astype(jnp.float32),
            ]
        )
        time = state.time + 1
        state = ResourceGatheringState(pos=pos, has_gold=has_gold, has_gem=has_gem, time=time)
        return self.get_obs(state, params), state, reward, killed | home, time_limit(time, params), {}

    def pareto_front(self, gamma: float = 1.0) -> np.ndarray:
        """MO-Gymnasium's front: the non-dominated expected returns of six hand-derived policies.

        Each policy is a list of (probability, outcome, steps) terms: the outcome vector arrives after
        ``steps + 1`` moves, so it is discounted by ``gamma**steps``. Survival past one enemy is 0.9.
        Returned rows are unique and sorted lexicographically (MO-Gymnasium returns them in set order).
        """
        p, q = 0.1, 0.9  # MO-Gymnasium's front is computed for the default kill probability
        died, gold, gem, both = (
            np.array([-1.0, 0.0, 0.0]),
            np.array([0.0, 1.0, 0.0]),
            np.array([0.0, 0.0, 1.0]),
            np.array([0.0, 1.0, 1.0]),
        )
        policies = [
            [(1.0, gem, 10)],  # straight to the gem and back
            [(q * q, both, 12), (p, died, 7), (q * p, died, 9)],  # both resources, through both enemies
            [(q * q, gold, 8), (p, died, 3), (q * p, died, 5)],  # gold, through E1 there and back
            [(q, both, 14), (p, died, 7)],  # both resources, dodging E1, through E2
            [(1.0, gold, 12)],  # gold, dodging every enemy
            [(q, gold, 10), (p, died, 7)],  # gold, through E1 once
        ]
        candidates = []
        for terms in policies:
            ret = np.zeros(3)
            for prob, outcome, steps in terms:
                ret = ret + prob * outcome * gamma**steps
            candidates.append(ret)
        return _non_dominated(np.array(candidates))


def _non_dominated(points: np.ndarray) -> np.ndarray:
    """Unique rows not weakly dominated by another row (maximisation), sorted lexicographically."""
    points = np.unique(points, axis=0)
    keep = [not np.any(np.all(points >= x, axis=1) & np.any(points > x, axis=1)) for x in points]
    return points[np.array(keep)]


register("resource-gathering-v0", ResourceGathering)
