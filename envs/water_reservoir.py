"""Water reservoir (dam) control (Castelletti, Pianosi & Restelli 2012; MiPS port by Parisi).

The agent chooses how much water a dam releases each day; a random inflow N(40, 10) refills it. Up to
four costs, in this order: flooding upstream (level above 50), water-supply deficit (release below 50),
hydro-power deficit (power below 4.36) and flooding downstream (release above 30). Bit-identical to
MO-Gymnasium 1.3.2 ``water-reservoir-v0`` (float32 as the reference, except the new level: its float64
inflow makes ``level + inflow - release`` float64 before the float32 cast, and ours too, traced under
``jax.enable_x64``; the inflow's mean and std are float64 params words, ``env.make_params``):

* the release is bounded to ``[max(s - 100, 0), s]``; out-of-bounds releases are clipped and, with
  ``penalize``, every objective gets ``-penalize * |clipped - asked|``;
* with ``normalized_action`` the action in [0, 1] maps linearly onto that interval (no penalty, and,
  as in MO-Gymnasium, no clipping of actions outside [0, 1]);
* the episode is truncated after ``time_limit`` (100) steps and never terminates;
* the start level is one of 10 fixed values (``S_INIT``), an integer in [0, 160) when ``penalize``,
  or ``initial_state`` when given (always observed with shape (1,); MO-Gymnasium returns a scalar
  initial_state as given).

The inflow's mean and std are params, so a twin test (or a climate study) can set them: with
``inflow_std = 0`` the inflow is exactly ``inflow_mean``. The drawn inflow is returned as
``info["inflow"]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from morl.env import Environment, EnvParams, time_limit
from morl.envs.float64 import as_f64, f64_bits, rn
from morl.registry import register
from morl.spaces import Box

S = 1.0  # reservoir surface
W_IRR = 50.0  # water demand
H_FLO_U = 50.0  # flooding threshold upstream (dam height)
S_MIN_REL = 100.0  # release threshold (max capacity)
Q_MEF = 0.0  # minimum environmental flow
GAMMA_H2O = 1000.0  # water density
W_HYD = 4.36  # hydro-power demand
Q_FLO_D = 30.0  # flooding threshold downstream
ETA = 1.0  # turbine efficiency
G = 9.81  # gravity

#: the 10 start levels MO-Gymnasium draws from uniformly (when not penalize)
S_INIT = np.array(
    [96.855361, 58.046026, 116.15767, 20.164311, 79.191, 140.13098, 131.01816, 44.351321, 13.185943, 73.508622],
    dtype=np.float32,
)

#: a cap on the inflow used only for the reference point: mean + 5 std (P(inflow > it) ~ 3e-7)
_INFLOW_CAP = 40.0 + 5 * 10.0


@struct.dataclass
class WaterReservoirState:
    level: jax.Array  # float32 scalar, the reservoir level s
    time: jax.Array  # int32 steps taken


@struct.dataclass
class WaterReservoirParams(EnvParams):
    max_steps: int = 100
    inflow_mean: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(40.0)))  # float64 words
    inflow_std: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(10.0)))


class WaterReservoir(Environment):
    """The dam: observation ``[level]``, action ``[release]`` (or ``[fraction]``), ``nO`` costs."""

    ALL_REWARD_NAMES = ("flooding_upstream", "water_deficit", "hydro_deficit", "flooding_downstream")

    def __init__(
        self,
        nO: int = 2,
        penalize: bool | float = False,
        normalized_action: bool = False,
        time_limit: int = 100,
        initial_state: float | None = None,
    ):
        if nO not in (2, 3, 4):
            raise ValueError(f"water reservoir: nO (number of objectives) must be 2, 3 or 4; got {nO!r}")
        if isinstance(penalize, (bool, np.bool_)):
            coef = 1.0 if penalize else 0.0
        else:
            coef = float(penalize)
            if not coef >= 0.0:
                raise ValueError(f"water reservoir: penalize must be a bool or a non-negative number; got {penalize!r}")
        if int(time_limit) < 1:
            raise ValueError(f"water reservoir: time_limit must be >= 1 steps; got {time_limit!r}")
        if initial_state is not None:
            init = np.asarray(initial_state, dtype=np.float64)
            if init.size != 1 or not np.isfinite(init).all() or float(init.reshape(())) < 0:
                raise ValueError(
                    "water reservoir: initial_state must be one finite level >= 0 (or None for "
                    f"a random start); got {initial_state!r}"
                )
            initial_state = float(init.reshape(()))
        self.nO = int(nO)
        self.penalize = penalize
        self.penalty_coef = coef
        self.normalized_action = bool(normalized_action)
        self.time_limit = int(time_limit)
        self.initial_state = initial_state
        self.reward_names = self.ALL_REWARD_NAMES[: self.nO]
        self.ref_point = self._derive_ref_point()

    def _derive_ref_point(self) -> tuple[float, ...]:
        """Worst undiscounted return of each cost over the horizon, minus a margin of 1.

        MORL-Baselines has no point for this env. A release is always forced into [s - 100, s], so the
        level after a step is at most 100 + inflow <= 190 (inflow capped at mean + 5 std = 90), and a
        start level is below 160. Per step, then: flooding upstream >= -(190 - 50) = -140; water deficit
        >= -50 (release >= 0); hydro deficit >= -4.36; flooding downstream >= -(190 - 30) = -160
        (release <= level). Times the horizon (``time_limit``) minus 1, as for the mountain cars.
        With ``penalize`` the penalty has no bound, so policies asking for far out-of-bounds releases
        can fall outside this point; so can an ``initial_state`` above 190.
        """
        level_max = S_MIN_REL + _INFLOW_CAP
        per_step = (-(level_max - H_FLO_U), -W_IRR, -W_HYD, -(level_max - Q_FLO_D))
        return tuple(round(self.time_limit * r - 1.0, 6) for r in per_step[: self.nO])

    @property
    def default_params(self) -> WaterReservoirParams:
        return WaterReservoirParams(max_steps=self.time_limit)

    def make_params(self, inflow_mean: float = 40.0, inflow_std: float = 10.0, **kwargs) -> WaterReservoirParams:
        """Params with another inflow N(mean, std) (float64 values; ``max_steps`` as a keyword)."""
        kwargs.setdefault("max_steps", self.time_limit)
        return WaterReservoirParams(
            inflow_mean=jnp.asarray(f64_bits(inflow_mean)), inflow_std=jnp.asarray(f64_bits(inflow_std)), **kwargs
        )

    @property
    def observation_space(self) -> Box:
        return Box(0.0, np.inf, (1,), jnp.float32)

    @property
    def action_space(self) -> Box:
        return Box(0.0, 1.0 if self.normalized_action else np.inf, (1,), jnp.float32)

    @property
    def reward_space(self) -> Box:
        return Box(-np.inf, 0.0, (self.nO,), jnp.float32)

    def get_obs(self, state: WaterReservoirState, params=None) -> jax.Array:
        """The observation of a state, ``[level]`` (float32)."""
        return jnp.reshape(state.level, (1,)).astype(jnp.float32)

    def reset(self, key: jax.Array, params: WaterReservoirParams) -> tuple[jax.Array, WaterReservoirState]:
        if self.initial_state is not None:
            level = jnp.float32(self.initial_state)
        elif self.penalize:
            level = jax.random.randint(key, (), 0, 160).astype(jnp.float32)
        else:
            level = jnp.asarray(S_INIT)[jax.random.randint(key, (), 0, S_INIT.size)]
        state = WaterReservoirState(level=level, time=jnp.int32(0))
        return self.get_obs(state), state

    def step(self, key, state, action, params):
        action = jnp.asarray(action, jnp.float32)
        if action.size != 1:
            raise ValueError(f"water reservoir takes one action value, shape (1,); got shape {action.shape}")
        z = jax.random.normal(key, (), jnp.float32)  # in the caller's mode: jax.random does not trace under x64
        with jax.enable_x64(True):
            return self._step64(z, state, action.reshape(()), params)

    def _step64(self, z, state, a, params):
        """The reference's numpy arithmetic: float32, but for ``state + inflow - action`` (float64)."""
        f32, zero = jnp.float32, jnp.float32(0.0)
        s = state.level
        lower = lax.max(s - f32(S_MIN_REL), zero)
        upper = s
        if self.normalized_action:
            release = rn(a * (upper - lower)) + lower
            penalty = zero
        else:
            release = lax.min(lax.max(a, lower), upper)  # np.clip
            # -self.penalize: the int -1 or 0 for a bool (so +0.0, never -0.0), else the negated float
            neg = float(-self.penalize) if isinstance(self.penalize, (bool, np.bool_)) else -self.penalty_coef
            penalty = rn(f32(neg) * lax.abs(release - a))
        # np_random.normal(mean, std): mean + std * z, float64
        inflow = as_f64(params.inflow_mean) + rn(as_f64(params.inflow_std) * z.astype(jnp.float64))
        level = lax.max((s.astype(jnp.float64) + inflow) - release.astype(jnp.float64), 0.0).astype(f32)
        if self.normalized_action:  # -cost + 0.0 (a Python float): XLA would drop the "+ 0.0" that turns -0.0 into +0.0
            with_penalty = lambda cost: jnp.where(cost == 0, zero, -cost)  # noqa: E731
        else:
            with_penalty = lambda cost: -cost + penalty  # noqa: E731
        flooding_up = with_penalty(lax.max(level / f32(S) - f32(H_FLO_U), zero))
        deficit = with_penalty(lax.max(f32(W_IRR) - release, zero))
        q = lax.max(release - f32(Q_MEF), zero)
        # float32 products and quotients; the last quotient is taken in float64 and rounded (equal to the
        # float32 quotient: 53 >= 2 * 24 + 2), as XLA turns a float32 division by a constant into an
        # inexact multiplication by its reciprocal
        power = (f32(ETA * G * GAMMA_H2O) * level / f32(S) * q).astype(jnp.float64) / 3.6e6
        power = power.astype(f32)
        hydro = with_penalty(lax.max(f32(W_HYD) - power, zero))
        flooding_down = with_penalty(lax.max(release - f32(Q_FLO_D), zero))
        reward = jnp.stack([flooding_up, deficit, hydro, flooding_down][: self.nO])
        time = state.time + 1
        state = WaterReservoirState(level=level, time=time)
        truncated = time_limit(time, params)
        return self.get_obs(state), state, reward, jnp.asarray(False), truncated, {"inflow": inflow.astype(f32)}


register("water-reservoir-v0", WaterReservoir)
