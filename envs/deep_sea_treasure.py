"""Deep Sea Treasure (Yang et al. 2019; concave: Vamplew et al. 2018; mirrored: Felten et al. 2022).

A submarine starts at the top-left (mirrored: top-middle) of a grid and moves up/down/left/right; rocks
and the border block moves. Entering a treasure cell ends the episode with reward ``[treasure, -1]``;
every other step gives ``[0, -1]``. Step-identical to MO-Gymnasium 1.3.2 ``deep-sea-treasure*-v0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

ROCK = -10.0

CONVEX_MAP = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0.7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [-10, 8.2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [-10, -10, 11.5, 0, 0, 0, 0, 0, 0, 0, 0],
        [-10, -10, -10, 14.0, 15.1, 16.1, 0, 0, 0, 0, 0],
        [-10, -10, -10, -10, -10, -10, 0, 0, 0, 0, 0],
        [-10, -10, -10, -10, -10, -10, 0, 0, 0, 0, 0],
        [-10, -10, -10, -10, -10, -10, 19.6, 20.3, 0, 0, 0],
        [-10, -10, -10, -10, -10, -10, -10, -10, 0, 0, 0],
        [-10, -10, -10, -10, -10, -10, -10, -10, 22.4, 0, 0],
        [-10, -10, -10, -10, -10, -10, -10, -10, -10, 23.7, 0],
    ]
)

CONCAVE_MAP = np.where(CONVEX_MAP > 0, 0.0, CONVEX_MAP)
for (r, c), v in zip(
    [(1, 0), (2, 1), (3, 2), (4, 3), (4, 4), (4, 5), (7, 6), (7, 7), (9, 8), (10, 9)],
    [1.0, 2.0, 3.0, 5.0, 8.0, 16.0, 24.0, 50.0, 74.0, 124.0],
):
    CONCAVE_MAP[r, c] = v

_R = -10
MIRRORED_MAP = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, _R, _R, 2.0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, _R, _R, _R, _R, 3.0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, _R, _R, _R, _R, _R, _R, 5.0, 8.0, 16.0, 0, 0, 0, 0],
        [0, 0, 0, 0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 0, 0, 0, 0],
        [0, 0, 0, 0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 0, 0, 0, 0],
        [0, 0, 0, 0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 24.0, 50.0, 0, 0],
        [0, 0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 0, 0],
        [0, 0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 74.0, 0],
        [0, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, _R, 124.0],
    ]
)

# (treasure value, steps to reach it) along the shortest paths, as MO-Gymnasium stores them
CONVEX_FRONT = np.array(
    [[0.7, 1], [8.2, 3], [11.5, 5], [14.0, 7], [15.1, 8], [16.1, 9], [19.6, 13], [20.3, 14], [22.4, 17], [23.7, 19]]
)
CONCAVE_FRONT = np.array(
    [[1.0, 1], [2.0, 3], [3.0, 5], [5.0, 7], [8.0, 8], [16.0, 9], [24.0, 13], [50.0, 14], [74.0, 17], [124.0, 19]]
)

MAPS = {
    "convex": (CONVEX_MAP, (0, 0), CONVEX_FRONT),
    "concave": (CONCAVE_MAP, (0, 0), CONCAVE_FRONT),
    # MO-Gymnasium gives the mirrored map the concave front (same treasures and distances)
    "mirrored": (MIRRORED_MAP, (0, 10), CONCAVE_FRONT),
}

# 0 up, 1 down, 2 left, 3 right
MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int32)


@struct.dataclass
class DSTState:
    pos: jax.Array  # int32 (row, col)
    time: jax.Array


@struct.dataclass
class DSTParams(EnvParams):
    max_steps: int = 100


class DeepSeaTreasure(Environment):
    reward_names = ("treasure", "time")
    deterministic = True  # a fixed start cell, moves without noise

    def __init__(self, map_name: str = "convex", float_state: bool = False):
        if map_name not in MAPS:
            raise ValueError(f"unknown map_name {map_name!r}; choose one of {sorted(MAPS)}")
        self.map_name = map_name
        self.float_state = float_state
        sea_map, start, front = MAPS[map_name]
        self._map_np = sea_map.astype(np.float32)
        self._start = np.array(start, dtype=np.int32)
        self._front = front
        self.ref_point = (0.0, -25.0)  # MORL-Baselines' DST reference point (examples/ols_dst.py, tests)

    @property
    def default_params(self) -> DSTParams:
        return DSTParams()

    @property
    def observation_space(self) -> Box:
        if self.float_state:
            return Box(0.0, 1.0, (2,), jnp.float32)
        return Box(0, self._map_np.shape[1], (2,), jnp.int32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(4)

    @property
    def reward_space(self) -> Box:
        return Box(np.array([0.0, -1.0]), np.array([self._map_np.max(), -1.0]), (2,), jnp.float32)

    def _obs(self, pos: jax.Array) -> jax.Array:
        return pos.astype(jnp.float32) * 0.1 if self.float_state else pos

    def reset(self, key, params):
        pos = jnp.asarray(self._start)
        return self._obs(pos), DSTState(pos=pos, time=jnp.int32(0))

    def step(self, key, state, action, params):
        sea_map = jnp.asarray(self._map_np)
        rows, cols = self._map_np.shape
        target = state.pos + jnp.asarray(MOVES)[action]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        clipped = jnp.clip(target, 0, jnp.array([rows - 1, cols - 1]))
        valid = inside & (sea_map[clipped[0], clipped[1]] != ROCK)
        pos = jnp.where(valid, target, state.pos)
        cell = sea_map[pos[0], pos[1]]
        terminated = (cell != 0.0) & (cell != ROCK)
        treasure = jnp.where(terminated, cell, 0.0)
        reward = jnp.stack([treasure, jnp.float32(-1.0)]).astype(jnp.float32)
        time = state.time + 1
        state = DSTState(pos=pos, time=time)
        return self._obs(pos), state, reward, terminated, time_limit(time, params), {}

    def pareto_front(self, gamma: float = 1.0) -> np.ndarray:
        # Scalar powers, as MO-Gymnasium computes them: numpy's vectorised power can differ by 1 ulp.
        steps = self._front[:, 1].astype(int)
        treasure = np.array([value * gamma ** float(n - 1) for value, n in zip(self._front[:, 0], steps)])
        time = np.array([-np.sum(np.array([gamma**i for i in range(n)])) for n in steps])
        return np.stack([treasure, time], axis=1)


#: the three maps' ids (agents give them the same per-env settings)
DST_IDS = ("deep-sea-treasure-v0", "deep-sea-treasure-concave-v0", "deep-sea-treasure-mirrored-v0")
for _id, _map in zip(DST_IDS, ("convex", "concave", "mirrored")):
    register(_id, DeepSeaTreasure, map_name=_map)
