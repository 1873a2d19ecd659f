"""Multi-objective Mountain Car, discrete (Moore 1990; MO version: Vamplew et al. 2011) and continuous.

An under-powered car starts at the bottom of a valley and must rock back and forth to reach the flag on
the right hill. Step-identical (up to float32 rounding, see below) to MO-Gymnasium 1.3.2's
``mo-mountaincar-v0`` family and ``mo-mountaincarcontinuous-v0``, which build on gymnasium's
``MountainCarEnv`` / ``Continuous_MountainCarEnv`` constants.

Rewards (each step):

* discrete ``mo-mountaincar-v0``: ``[time, reverse, forward]``: time is -1 (0 on the step that reaches
  the goal), reverse is -1 when the action is 0 (push left), forward is -1 when it is 2 (push right).
  Variants (constructor flags, as MO-Gymnasium's): ``merge_move_penalty`` folds reverse/forward into one
  ``move`` penalty (-1 unless the action is 1, "no push"); ``remove_move_penalty`` drops them;
  ``add_speed_objective`` appends ``speed = 15 |v|`` (in [0, 1.05]).
* continuous ``mo-mountaincarcontinuous-v0``: ``[time, fuel]`` with fuel ``-a^2`` of the raw action
  (the force itself is clipped to [-1, 1]); the goal there is at x >= 0.45 (gymnasium's continuous
  constant), with power 0.0015.

Precision: the references integrate in float64 (discrete: always; continuous: on the first step, after
which gymnasium stores the state as float32 and computes ``cos`` in float64). We integrate in float32
(as gymnax does), so trajectories drift from the reference by float32 rounding only: at most 1.1e-5
(discrete, 200 steps) and 1.7e-5 (continuous, 999 steps) measured over the conformance tests' episodes,
largest near the unstable point where pushing right balances gravity. The tests hold it to 1e-4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

#: gymnasium's MountainCar bounds: position in [-1.2, 0.6], |velocity| <= 0.07
OBS_LOW = np.array([-1.2, -0.07], dtype=np.float32)
OBS_HIGH = np.array([0.6, 0.07], dtype=np.float32)
#: the speed objective is 15 |v|; MO-Gymnasium declares its upper bound as 1.1 (15 * 0.07 = 1.05)
SPEED_SCALE = 15.0
SPEED_HIGH = 1.1


@struct.dataclass
class MountainCarState:
    position: jax.Array  # float32 scalar
    velocity: jax.Array  # float32 scalar
    time: jax.Array      # int32 steps taken


@struct.dataclass
class MountainCarParams(EnvParams):
    """Physics of gymnasium's discrete MountainCar (all data: vmap over them without recompiling)."""

    max_steps: int = 200
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    start_low: float = -0.6
    start_high: float = -0.4


@struct.dataclass
class ContinuousMountainCarParams(EnvParams):
    """Physics of gymnasium's Continuous_MountainCarEnv (goal 0.45, power 0.0015, TimeLimit 999)."""

    max_steps: int = 999
    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.45
    goal_velocity: float = 0.0
    min_action: float = -1.0
    max_action: float = 1.0
    power: float = 0.0015
    gravity: float = 0.0025
    start_low: float = -0.6
    start_high: float = -0.4


def _undiscounted_ref_point(low: np.ndarray, horizon: int) -> tuple[float, ...]:
    """Default hypervolume reference point: the worst undiscounted return, minus a margin of 1.

    Every per-step reward of objective i is >= ``low[i]``, and an episode lasts at most ``horizon``
    steps, so no return is below ``horizon * low[i]`` (for objectives bounded below by 0, the worst
    return is 0). The margin of 1 (as in MORL-Baselines' lunar-lander point [-101, -1001, -101, -101])
    keeps the worst policies' points strictly dominating the reference point, so they still count.
    MORL-Baselines defines no point for these envs.
    """
    return tuple(float(horizon * min(lo, 0.0) - 1.0) for lo in low)


class _MountainCarBase(Environment):
    """Shared reset, observation and integration of both mountain cars."""

    def reset(self, key: jax.Array, params) -> tuple[jax.Array, MountainCarState]:
        position = jax.random.uniform(key, (), jnp.float32, params.start_low, params.start_high)
        state = MountainCarState(position=position, velocity=jnp.float32(0.0), time=jnp.int32(0))
        return self.get_obs(state, params), state

    def get_obs(self, state: MountainCarState, params=None) -> jax.Array:
        """The observation of a state, ``[position, velocity]`` (float32)."""
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        return Box(OBS_LOW, OBS_HIGH, (2,), jnp.float32)

    @staticmethod
    def _integrate(position, velocity, acceleration, params):
        """One Euler step as gymnasium does it: clip speed, move, clip position, stop at the left wall."""
        position = position.astype(jnp.float32)
        velocity = velocity + (acceleration - params.gravity * jnp.cos(3.0 * position))
        velocity = jnp.clip(velocity, -params.max_speed, params.max_speed)
        position = jnp.clip(position + velocity, params.min_position, params.max_position)
        velocity = jnp.where((position == params.min_position) & (velocity < 0), jnp.float32(0.0), velocity)
        terminated = (position >= params.goal_position) & (velocity >= params.goal_velocity)
        return position.astype(jnp.float32), velocity.astype(jnp.float32), terminated


class MOMountainCar(_MountainCarBase):
    """Discrete mountain car (actions 0 push left, 1 no push, 2 push right) with 1 to 4 objectives."""

    def __init__(self, add_speed_objective: bool = False, remove_move_penalty: bool = False,
                 merge_move_penalty: bool = False):
        self.add_speed_objective = bool(add_speed_objective)
        self.remove_move_penalty = bool(remove_move_penalty)
        self.merge_move_penalty = bool(merge_move_penalty)
        names = ["time"]
        if not self.remove_move_penalty:  # MO-Gymnasium: remove wins over merge
            names += ["move"] if self.merge_move_penalty else ["reverse", "forward"]
        if self.add_speed_objective:
            names.append("speed")
        self.reward_names = tuple(names)
        self.ref_point = _undiscounted_ref_point(self.reward_space.low, self.default_params.max_steps)

    @property
    def default_params(self) -> MountainCarParams:
        return MountainCarParams()

    @property
    def action_space(self) -> Discrete:
        return Discrete(3)

    @property
    def reward_space(self) -> Box:
        # MO-Gymnasium declares the time penalty's high as -1, but it is 0 on the goal step: we say 0.
        low = np.array([0.0 if n == "speed" else -1.0 for n in self.reward_names])
        high = np.array([SPEED_HIGH if n == "speed" else 0.0 for n in self.reward_names])
        return Box(low, high, (len(self.reward_names),), jnp.float32)

    def step(self, key, state, action, params):
        _check_discrete_action(action, 3)
        action = jnp.asarray(action, jnp.int32)
        acceleration = (action - 1).astype(jnp.float32) * params.force
        position, velocity, terminated = self._integrate(state.position, state.velocity, acceleration, params)
        one, zero = jnp.float32(-1.0), jnp.float32(0.0)
        parts = [jnp.where(terminated, zero, one)]
        if not self.remove_move_penalty:
            if self.merge_move_penalty:
                parts.append(jnp.where(action != 1, one, zero))
            else:
                parts += [jnp.where(action == 0, one, zero), jnp.where(action == 2, one, zero)]
        if self.add_speed_objective:
            parts.append(SPEED_SCALE * jnp.abs(velocity))
        reward = jnp.stack(parts).astype(jnp.float32)
        time = state.time + 1
        state = MountainCarState(position=position, velocity=velocity, time=time)
        return self.get_obs(state), state, reward, terminated, time_limit(time, params), {}


class MOContinuousMountainCar(_MountainCarBase):
    """Continuous mountain car: action a in [-1, 1] (the force is clipped there), rewards [time, -a^2]."""

    reward_names = ("time", "fuel")

    def __init__(self):
        self.ref_point = _undiscounted_ref_point(self.reward_space.low, self.default_params.max_steps)

    @property
    def default_params(self) -> ContinuousMountainCarParams:
        return ContinuousMountainCarParams()

    @property
    def action_space(self) -> Box:
        return Box(-1.0, 1.0, (1,), jnp.float32)

    @property
    def reward_space(self) -> Box:
        # fuel -a^2 >= -1 for actions inside the action space
        return Box(np.array([-1.0, -1.0]), np.array([0.0, 0.0]), (2,), jnp.float32)

    def step(self, key, state, action, params):
        action = jnp.asarray(action, jnp.float32)
        if action.size != 1:
            raise ValueError(f"mountain car (continuous) takes one action value, shape (1,); got shape {action.shape}")
        a = action.reshape(())
        force = jnp.clip(a, params.min_action, params.max_action)
        position, velocity, terminated = self._integrate(state.position, state.velocity, force * params.power,
                                                         params)
        reward = jnp.stack([jnp.where(terminated, jnp.float32(0.0), jnp.float32(-1.0)), -(a * a)])
        time = state.time + 1
        state = MountainCarState(position=position, velocity=velocity, time=time)
        return self.get_obs(state), state, reward.astype(jnp.float32), terminated, time_limit(time, params), {}


def _check_discrete_action(action, n: int) -> None:
    """Reject bad concrete actions with a clear message (traced actions cannot be checked in jit)."""
    if isinstance(action, jax.core.Tracer):
        return
    a = np.asarray(action)
    if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < n:
        raise ValueError(f"mountain car takes one integer action in {{0, ..., {n - 1}}} "
                         f"(0 push left, 1 no push, 2 push right); got {action!r}")


register("mo-mountaincar-v0", MOMountainCar)
register("mo-mountaincar-3d-v0", MOMountainCar, add_speed_objective=True, merge_move_penalty=True)
register("mo-mountaincar-timemove-v0", MOMountainCar, merge_move_penalty=True)
register("mo-mountaincar-timespeed-v0", MOMountainCar, remove_move_penalty=True, add_speed_objective=True)
register("mo-mountaincarcontinuous-v0", MOContinuousMountainCar)
