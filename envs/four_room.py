"""Four Room (Barreto et al. 2017; the MO version of Alegre et al. 2022).

A 13x13 grid split into four rooms by walls with passages. The agent starts in the bottom-left corner
and moves left/up/right/down (note: NOT DST's order); walls and the border block moves. Twelve shapes
of three types lie on the grid: entering an uncollected shape collects it and pays a one-hot reward at
its type; entering the goal (top-right) pays ``[1, 1, 1]`` and ends the episode. No step cost.
Step-identical to MO-Gymnasium 1.3.2 ``four-room-v0`` (TimeLimit 200).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

# 'X' wall, '1'/'2'/'3' shape types, 'S' start, 'G' goal, '.' empty. Row 0 is the top.
LAYOUT = (
    "1....2X.....G",
    "......X......",
    "......1......",
    ".............",
    "......X......",
    "2....3X......",
    "XX3.XXXXX.1XX",
    "......X2....3",
    "......X......",
    ".............",
    "......2......",
    "......X......",
    "S.....X3....1",
)


def _parse(layout: tuple[str, ...]):
    grid = np.array([list(row) for row in layout])
    walls = grid == "X"
    # MO-Gymnasium numbers the shapes column-major (its constructor loops `for c: for r:`), and the
    # collected flags in the observation follow that numbering
    shape_id = np.full(grid.shape, -1, dtype=np.int32)
    shape_type = []
    for c in range(grid.shape[1]):
        for r in range(grid.shape[0]):
            if grid[r, c] in "123":
                shape_id[r, c] = len(shape_type)
                shape_type.append(int(grid[r, c]) - 1)
    start = tuple(int(v) for v in np.argwhere(grid == "S")[0])
    goal = tuple(int(v) for v in np.argwhere(grid == "G")[0])
    return walls, shape_id, np.array(shape_type, dtype=np.int32), start, goal


WALLS, SHAPE_ID, SHAPE_TYPE, START, GOAL = _parse(LAYOUT)
N_SHAPES = len(SHAPE_TYPE)  # 12
N_TYPES = 3

# 0 left, 1 up, 2 right, 3 down (as MO-Gymnasium's FourRoom)
MOVES = np.array([[0, -1], [-1, 0], [0, 1], [1, 0]], dtype=np.int32)


@struct.dataclass
class FourRoomState:
    pos: jax.Array  # int32 (row, col)
    collected: jax.Array  # int32 [12] flags, column-major shape order
    time: jax.Array


@struct.dataclass
class FourRoomParams(EnvParams):
    max_steps: int = 200


class FourRoom(Environment):
    """Observation: ``[row, col, collected_0, ..., collected_11]`` int32 (MO-Gymnasium's exact layout).

    Reference point: MORL-Baselines has none. Rewards are in {0, 1} per objective, so every (discounted)
    return is >= 0; we put the reference one reward unit below that, ``(-1, -1, -1)``, so that a front
    point scoring 0 on some objective still adds hypervolume (with 0 it would add none).
    """

    deterministic = True  # a fixed start cell, moves without noise

    reward_names = ("shape_1", "shape_2", "shape_3")
    ref_point = (-1.0, -1.0, -1.0)

    @property
    def default_params(self) -> FourRoomParams:
        return FourRoomParams()

    @property
    def observation_space(self) -> Box:
        # MO-Gymnasium declares every entry in [0, 13] (13 = number of rows), position and flags alike
        return Box(0, WALLS.shape[0], (2 + N_SHAPES,), jnp.int32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(4)

    @property
    def reward_space(self) -> Box:
        return Box(0.0, 1.0, (N_TYPES,), jnp.float32)

    def get_obs(self, state: FourRoomState, params: FourRoomParams | None = None) -> jax.Array:
        return jnp.concatenate([state.pos, state.collected]).astype(jnp.int32)

    def reset(self, key, params):
        state = FourRoomState(
            pos=jnp.asarray(START, dtype=jnp.int32), collected=jnp.zeros(N_SHAPES, dtype=jnp.int32), time=jnp.int32(0)
        )
        return self.get_obs(state), state

    def step(self, key, state, action, params):
        rows, cols = WALLS.shape
        target = state.pos + jnp.asarray(MOVES)[action]
        inside = (target[0] >= 0) & (target[0] < rows) & (target[1] >= 0) & (target[1] < cols)
        r, c = jnp.clip(target[0], 0, rows - 1), jnp.clip(target[1], 0, cols - 1)
        moved = inside & ~jnp.asarray(WALLS)[r, c]
        pos = jnp.where(moved, target, state.pos)

        at_goal = moved & (pos[0] == GOAL[0]) & (pos[1] == GOAL[1])
        sid = jnp.asarray(SHAPE_ID)[pos[0], pos[1]]
        safe_sid = jnp.maximum(sid, 0)
        new_shape = moved & (sid >= 0) & (state.collected[safe_sid] == 0)
        collected = state.collected.at[safe_sid].set(jnp.where(new_shape, 1, state.collected[safe_sid]))

        one_hot = jax.nn.one_hot(jnp.asarray(SHAPE_TYPE)[safe_sid], N_TYPES, dtype=jnp.float32)
        reward = jnp.where(
            at_goal, jnp.ones(N_TYPES, jnp.float32), jnp.where(new_shape, one_hot, jnp.zeros(N_TYPES, jnp.float32))
        )
        time = state.time + 1
        state = FourRoomState(pos=pos, collected=collected, time=time)
        return self.get_obs(state), state, reward, at_goal, time_limit(time, params), {}


register("four-room-v0", FourRoom)
