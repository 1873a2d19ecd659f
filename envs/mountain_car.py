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

Precision: bit-identical to the references, whose arithmetic is float64 and, for the continuous car,
float32 where numpy makes it so. Discrete (MO-Gymnasium's step): float64 throughout. Continuous
(gymnasium's ``Continuous_MountainCarEnv.step``, numpy >= 2 scalar rules): the state is float64 after
``reset`` and float32 after every step, so the first step of an episode runs in float64 and later ones
in float32 (``force * power`` and ``velocity + ...`` in float32 when the force is a float32 action,
``0.0025 * cos(3 * position)`` in float64 from a float32 ``3 * position``, comparisons with Python
floats in float32). The step traces its physics under ``jax.enable_x64`` and the state keeps position
and velocity as float64 words (``uint32 (2,)``, ``bits_f64`` reads them), params likewise
(``env.make_params(force=...)`` builds variants); observations and rewards are float32 as gymnasium
casts them. XLA's fused multiply-add is kept out where the reference rounds a product before adding
(``rn``, see ``envs/float64.py``), and XLA's float64 ``cos`` equals the C library's ``math.cos`` on
the reachable positions (checked in ``tests/test_envs_control.py``).
"""

from __future__ import annotations

from dataclasses import fields

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from morl.env import Environment, EnvParams, time_limit
from morl.envs.float64 import as_bits, as_f64, bits_f64, f64_bits, rn
from morl.registry import register
from morl.spaces import Box, Discrete

#: gymnasium's MountainCar bounds: position in [-1.2, 0.6], |velocity| <= 0.07
OBS_LOW = np.array([-1.2, -0.07], dtype=np.float32)
OBS_HIGH = np.array([0.6, 0.07], dtype=np.float32)
#: the speed objective is 15 |v|; MO-Gymnasium declares its upper bound as 1.1 (15 * 0.07 = 1.05)
SPEED_SCALE = 15.0
SPEED_HIGH = 1.1

__all__ = [
    "MOMountainCar",
    "MOContinuousMountainCar",
    "MountainCarState",
    "MountainCarParams",
    "ContinuousMountainCarParams",
    "bits_f64",
    "f64_bits",
]


@struct.dataclass
class MountainCarState:
    position: jax.Array  # uint32 (2,): float64 (``bits_f64`` reads it)
    velocity: jax.Array  # uint32 (2,): float64
    time: jax.Array  # int32 steps taken


def _f64_field(value: float):
    return struct.field(default_factory=lambda: jnp.asarray(f64_bits(value)))


@struct.dataclass
class MountainCarParams(EnvParams):
    """Physics of gymnasium's discrete MountainCar, float64 values as uint32 words (data: vmap over them
    without recompiling). Build variants with ``MOMountainCar().make_params(force=0.0015, ...)``."""

    max_steps: int = 200
    min_position: jax.Array = _f64_field(-1.2)
    max_position: jax.Array = _f64_field(0.6)
    max_speed: jax.Array = _f64_field(0.07)
    goal_position: jax.Array = _f64_field(0.5)
    goal_velocity: jax.Array = _f64_field(0.0)
    force: jax.Array = _f64_field(0.001)
    gravity: jax.Array = _f64_field(0.0025)
    start_low: jax.Array = _f64_field(-0.6)
    start_high: jax.Array = _f64_field(-0.4)


@struct.dataclass
class ContinuousMountainCarParams(EnvParams):
    """Physics of gymnasium's Continuous_MountainCarEnv (goal 0.45, power 0.0015, TimeLimit 999), float64
    values as uint32 words; ``MOContinuousMountainCar().make_params(power=0.002)`` builds variants."""

    max_steps: int = 999
    min_position: jax.Array = _f64_field(-1.2)
    max_position: jax.Array = _f64_field(0.6)
    max_speed: jax.Array = _f64_field(0.07)
    goal_position: jax.Array = _f64_field(0.45)
    goal_velocity: jax.Array = _f64_field(0.0)
    min_action: jax.Array = _f64_field(-1.0)
    max_action: jax.Array = _f64_field(1.0)
    power: jax.Array = _f64_field(0.0015)
    gravity: jax.Array = _f64_field(0.0025)  # gymnasium's step writes 0.0025 as a literal; we read this
    start_low: jax.Array = _f64_field(-0.6)
    start_high: jax.Array = _f64_field(-0.4)


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
    """Shared reset, observation and params of both mountain cars."""

    _params_type: type = MountainCarParams

    def make_params(self, **values) -> EnvParams:
        """Params with some physics values replaced (floats; ``max_steps`` an int)."""
        names = {f.name for f in fields(self._params_type)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown mountain car params {unknown}; known: {sorted(names)}")
        return self._params_type(
            **{k: (v if k == "max_steps" else jnp.asarray(f64_bits(v))) for k, v in values.items()}
        )

    @property
    def default_params(self):
        return self._params_type()

    def reset(self, key: jax.Array, params) -> tuple[jax.Array, MountainCarState]:
        words = jax.random.bits(key, (2,), jnp.uint32)  # drawn in the caller's (float32) mode
        with jax.enable_x64(True):
            # np_random.uniform(low, high): low + (high - low) * u, u a 53-bit uniform in [0, 1)
            u = (
                (words[0] >> 5).astype(jnp.float64) * 67108864.0 + (words[1] >> 6).astype(jnp.float64)
            ) / 9007199254740992.0
            low, high = as_f64(params.start_low), as_f64(params.start_high)
            position = low + rn((high - low) * u)
            zero = jnp.zeros((), jnp.float64)
            state = MountainCarState(position=as_bits(position), velocity=as_bits(zero), time=jnp.int32(0))
            return jnp.stack([position, zero]).astype(jnp.float32), state

    def get_obs(self, state: MountainCarState, params=None) -> jax.Array:
        """The observation of a state, ``[position, velocity]`` (float32)."""
        with jax.enable_x64(True):
            return jnp.stack([as_f64(state.position), as_f64(state.velocity)]).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        return Box(OBS_LOW, OBS_HIGH, (2,), jnp.float32)


class MOMountainCar(_MountainCarBase):
    """Discrete mountain car (actions 0 push left, 1 no push, 2 push right) with 1 to 4 objectives."""

    _params_type = MountainCarParams

    def __init__(
        self, add_speed_objective: bool = False, remove_move_penalty: bool = False, merge_move_penalty: bool = False
    ):
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
        with jax.enable_x64(True):
            return self._step64(state, jnp.asarray(action, jnp.int32), params)

    def _step64(self, state, action, params):
        p, v = as_f64(state.position), as_f64(state.velocity)
        min_p, max_p, max_v = as_f64(params.min_position), as_f64(params.max_position), as_f64(params.max_speed)
        # velocity += (action - 1) * force + math.cos(3 * position) * (-gravity)
        push = (action - 1).astype(jnp.float64) * as_f64(params.force)
        v = v + (push + rn(jnp.cos(3.0 * p) * -as_f64(params.gravity)))
        v = lax.min(lax.max(v, -max_v), max_v)  # np.clip
        p = lax.min(lax.max(p + v, min_p), max_p)
        v = jnp.where((p == min_p) & (v < 0), 0.0, v)
        terminated = (p >= as_f64(params.goal_position)) & (v >= as_f64(params.goal_velocity))
        one, zero = jnp.float32(-1.0), jnp.float32(0.0)
        parts = [jnp.where(terminated, zero, one)]
        if not self.remove_move_penalty:
            if self.merge_move_penalty:
                parts.append(jnp.where(action != 1, one, zero))
            else:
                parts += [jnp.where(action == 0, one, zero), jnp.where(action == 2, one, zero)]
        if self.add_speed_objective:
            parts.append((SPEED_SCALE * jnp.abs(v)).astype(jnp.float32))  # 15 * abs(velocity), float64
        reward = jnp.stack(parts)
        time = state.time + 1
        new = MountainCarState(position=as_bits(p), velocity=as_bits(v), time=time)
        obs = jnp.stack([p, v]).astype(jnp.float32)
        return obs, new, reward, terminated, time_limit(time, params), {}


class MOContinuousMountainCar(_MountainCarBase):
    """Continuous mountain car: action a in [-1, 1] (the force is clipped there), rewards [time, -a^2]."""

    reward_names = ("time", "fuel")
    _params_type = ContinuousMountainCarParams

    def __init__(self):
        self.ref_point = _undiscounted_ref_point(self.reward_space.low, self.default_params.max_steps)

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
        with jax.enable_x64(True):
            return self._step64(state, action.reshape(()), params)

    def _step64(self, state, a, params):
        """gymnasium's step with numpy's scalar types: float64 on an episode's first step (the reset
        state is float64), float32 after (the stored state is float32). A Python float meeting a float32
        value becomes float32 (NEP 50), in arithmetic and comparisons alike; the flags ``*_py`` track
        which values are Python floats (the bounds the clips assign)."""
        f32, f64 = jnp.float32, jnp.float64
        p, v = as_f64(state.position), as_f64(state.velocity)
        wide = state.time == 0  # position and velocity are float64 (reset), else float32
        min_a, max_a = as_f64(params.min_action), as_f64(params.max_action)
        min_p, max_p, max_v = as_f64(params.min_position), as_f64(params.max_position), as_f64(params.max_speed)
        power, gravity = as_f64(params.power), as_f64(params.gravity)
        goal_p, goal_v = as_f64(params.goal_position), as_f64(params.goal_velocity)
        r32 = lambda x: x.astype(f32).astype(f64)  # noqa: E731  (a float64 value rounded to float32)

        def cmp_lt(x, bound, x_py):  # x < bound, x float64 / Python or float32 (bound rounded then)
            return x < jnp.where(wide | x_py, bound, r32(bound))

        # force = min(max(action[0], min_action), max_action): the float32 action or a Python float bound
        a64 = a.astype(f64)
        low = a64 < r32(min_a)
        high = ~low & (a64 > r32(max_a))
        force_py = low | high
        force = jnp.where(low, min_a, jnp.where(high, max_a, a64))
        # force * power - 0.0025 * math.cos(3 * position): float32 if the force is, else float64
        three_p = jnp.where(wide, 3.0 * p, (3.0 * p.astype(f32)).astype(f64))
        slope = rn(gravity * jnp.cos(three_p))
        dv_py = rn(force * power) - slope
        dv_32 = (rn(a * power.astype(f32)) - slope.astype(f32)).astype(f64)
        dv = jnp.where(force_py, dv_py, dv_32)
        # velocity += dv: float64 on the first step, else float32 (a Python dv is rounded first)
        v = jnp.where(wide, v + dv, (v.astype(f32) + dv.astype(f32)).astype(f64))
        v_high = ~cmp_lt(v, max_v, False) & (v != jnp.where(wide, max_v, r32(max_v)))  # v > max_speed
        v = jnp.where(v_high, max_v, v)
        v_low = cmp_lt(v, -max_v, v_high)
        v = jnp.where(v_low, -max_v, v)
        v_py = v_high | v_low
        # position += velocity
        p = jnp.where(wide, p + v, (p.astype(f32) + v.astype(f32)).astype(f64))
        p_high = ~cmp_lt(p, max_p, False) & (p != jnp.where(wide, max_p, r32(max_p)))
        p = jnp.where(p_high, max_p, p)
        p_low = cmp_lt(p, min_p, p_high)
        p = jnp.where(p_low, min_p, p)
        p_py = p_high | p_low
        stop = (p == jnp.where(wide | p_py, min_p, r32(min_p))) & (v < 0)
        v = jnp.where(stop, 0.0, v)
        v_py = v_py | stop
        terminated = ~cmp_lt(p, goal_p, p_py) & ~cmp_lt(v, goal_v, v_py)
        reward = jnp.stack(
            [jnp.where(terminated, f32(0.0), f32(-1.0)), (-(a64 * a64)).astype(f32)]
        )  # -math.pow(action[0], 2), exact in float64
        time = state.time + 1
        p, v = p.astype(f32), v.astype(f32)  # np.array([position, velocity], dtype=np.float32)
        new = MountainCarState(position=as_bits(p.astype(f64)), velocity=as_bits(v.astype(f64)), time=time)
        return jnp.stack([p, v]), new, reward, terminated, time_limit(time, params), {}


def _check_discrete_action(action, n: int) -> None:
    """Reject bad concrete actions with a clear message (traced actions cannot be checked in jit)."""
    if isinstance(action, jax.core.Tracer):
        return
    a = np.asarray(action)
    if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= int(a) < n:
        raise ValueError(
            f"mountain car takes one integer action in {{0, ..., {n - 1}}} "
            f"(0 push left, 1 no push, 2 push right); got {action!r}"
        )


register("mo-mountaincar-v0", MOMountainCar)
register("mo-mountaincar-3d-v0", MOMountainCar, add_speed_objective=True, merge_move_penalty=True)
register("mo-mountaincar-timemove-v0", MOMountainCar, merge_move_penalty=True)
register("mo-mountaincar-timespeed-v0", MOMountainCar, remove_move_penalty=True, add_speed_objective=True)
register("mo-mountaincarcontinuous-v0", MOContinuousMountainCar)
