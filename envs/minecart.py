"""Minecart (Abels et al. 2019), step-identical to MO-Gymnasium 1.3.2 ``minecart-v0`` and
``minecart-deterministic-v0``.

A cart starts at the base in the corner (0, 0) of the unit square, drives to mines, mines two ores into
a 1.5-capacity cart and drives back; re-entering the base ends the episode with reward ``[ore1, ore2,
fuel]`` where the ores are the cart's content. Fuel is paid every step: -0.02, -0.12 when
accelerating, -0.22 when mining. Actions: 0 mine, 1 left, 2 right, 3 accelerate, 4 brake, 5 none; each
is repeated for ``frame_skip`` (4) physics frames. Observation ``[x, y, speed, sin, cos, ore1/cap,
ore2/cap]`` (float32). Each mining frame draws ``max(0, N(mu, sigma))`` per ore at the nearest mine
(sigma = 0 in the deterministic config); a draw that overflows the cart is scaled down to fit.

Precision. MO-Gymnasium integrates the kinematics in float64 and its wall and base tests are exact
comparisons (``x == 1``, ``distance < 0.15``). Plain float32 positions drift by ~1e-5 over an episode,
enough to flip those tests now and then, so positions and speed are kept as float32 pairs (double-float:
``pos + pos_lo`` is the exact value, ~48 bits, built from error-free float32 operations that XLA keeps
intact) and angles as exact integer degrees. The state then stays within ~1e-12 of the reference's
over 1000-step episodes (the reference's own float64 rounding accounts for most of that), and the
observed x, y, speed, sin, cos equal the reference's float32 observation bit for bit; ore content is
summed in float32 (within a few ulps). The only remaining differences are exact-arithmetic ties that
float64 itself resolves by rounding noise (a cart returning to exactly ``y == 1`` after mirror-symmetric
turns; about one step in 1300, near walls), see ``tests/test_envs_minecart.py``.

Randomness. The reference draws ore with ``scipy.stats.norm(...).rvs()`` from numpy's *global* RNG.
Ours draws standard normals from the step key into ``state.ore_noise``, which the *next* step's mining
frames use (frame ``f`` uses row ``f``); a test can overwrite that field to replay the reference's draws.

Reference points: ``minecart-v0`` uses (-1, -1, -200) (MORL-Baselines' benchmark runs, issue #43);
``minecart-deterministic-v0`` uses (0, 0, -200) (MORL-Baselines ``examples/pcn_minecart.py``, gamma 1).
Not ported: ``minecart-rgb-v0`` (pygame image observations).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

# --------------------------------------------------------------------------- constants (MO-Gymnasium's)
EPS_SPEED = 0.001      # below this the cart does not move and can mine
ROTATION = 10          # degrees per frame
ACCELERATION = 0.0075  # speed per frame
MAX_SPEED = 1.0
MINE_RADIUS = 0.14
BASE_RADIUS = 0.15
FUEL_IDLE, FUEL_ACC, FUEL_MINE = -0.005, -0.025, -0.05  # per frame
ACT_MINE, ACT_LEFT, ACT_RIGHT, ACT_ACCEL, ACT_BRAKE, ACT_NONE = range(6)
START_ANGLE = 45

# mine_config.json / mine_config_det.json of MO-Gymnasium 1.3.2 (x, y, [(mu, sigma) per ore])
_MINES = [((0.16, 0.84), (0.2, 0.0)), ((0.5, 0.84), (0.15, 0.1)), ((0.84, 0.84), (0.2, 0.2)),
          ((0.84, 0.5), (0.1, 0.15)), ((0.84, 0.16), (0.0, 0.2))]


def _config(sigma: float) -> dict:
    return {"capacity": 1.5, "mine_cnt": len(_MINES), "ore_cnt": 2,
            "mines": [{"x": x, "y": y, "distributions": [[mu, sigma] for mu in means]}
                      for (x, y), means in _MINES]}


CONFIGS = {"default": _config(0.05), "deterministic": _config(0.0)}
_MINE_XY = np.array([xy for xy, _ in _MINES], np.float64)
_ORE_MEAN = np.array([means for _, means in _MINES], np.float64)

# --------------------------------------------------------------------------- double-float arithmetic
# A value is a pair (hi, lo) of float32 with hi = fl(hi + lo); hi + lo holds ~48 significant bits. Every
# building block is an error-free transform, valid under IEEE round-to-nearest without reassociation
# (XLA's default; products are split by bit masks so an fma contraction cannot change them either).


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a, b):  # needs |a| >= |b| (or a == 0)
    s = a + b
    return s, b - (s - a)


def _df_add(x, y):
    s, e = _two_sum(x[0], y[0])
    t, f = _two_sum(x[1], y[1])
    s, e = _fast_two_sum(s, e + t)
    return _fast_two_sum(s, e + f)


def _df_neg(x):
    return -x[0], -x[1]


def _df_sub(x, y):
    return _df_add(x, _df_neg(y))


def _split(a):
    """a = hi + lo with 12 significant bits each, so products of halves are exact in float32."""
    hi = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(a, jnp.uint32) & jnp.uint32(0xFFFFF000), jnp.float32)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, (((ah * bh - p) + ah * bl) + al * bh) + al * bl


def _df_mul(x, y):
    p, e = _two_prod(x[0], y[0])
    return _fast_two_sum(p, e + (x[0] * y[1] + x[1] * y[0]))


def _df_sqrt(x):
    """sqrt of a non-negative double-float: float32 root plus one Newton correction."""
    pos = x[0] > 0
    safe = jnp.where(pos, x[0], 1.0)
    s = jnp.sqrt(safe)
    r = _df_sub((safe, jnp.where(pos, x[1], 0.0)), _two_prod(s, s))
    hi, lo = _fast_two_sum(s, r[0] / (2.0 * s))
    return jnp.where(pos, hi, 0.0), jnp.where(pos, lo, 0.0)


def _df_lt(x, y):
    return (x[0] < y[0]) | ((x[0] == y[0]) & (x[1] < y[1]))


def _df_where(c, x, y):
    return jnp.where(c, x[0], y[0]), jnp.where(c, x[1], y[1])


def split_f64(v) -> tuple[np.ndarray, np.ndarray]:
    """float64 value(s) -> (hi, lo) float32 with hi + lo = v to ~2^-48 relative (host side)."""
    v = np.asarray(v, np.float64)
    hi = v.astype(np.float32)
    return hi, (v - hi.astype(np.float64)).astype(np.float32)


def _df_const(v: float):
    hi, lo = split_f64(v)
    return jnp.float32(hi), jnp.float32(lo)


# Angles stay integers (multiples of 5 degrees: 45 +- 10s); wall slides can take them a little outside
# [0, 360) until the next turn wraps them, so the tables span [-720, 1080) degrees (any other angle is
# looked up modulo 1800, which is a multiple of 360).
_ANGLE_LO, _N_ANGLES = -720, 1800
_DEGREES = np.arange(_ANGLE_LO, _ANGLE_LO + _N_ANGLES)
# physics: math.cos(angle * math.pi / 180) in float64, as double-float
_COS = split_f64([math.cos(a * math.pi / 180) for a in _DEGREES])
_SIN = split_f64([math.sin(a * math.pi / 180) for a in _DEGREES])
_TRIG = np.stack([_COS[0], _SIN[0], _COS[1], _SIN[1]], axis=1)  # one gather per frame
# observation: float32(math.sin(math.radians(angle)))
_OBS_SIN = np.array([math.sin(math.radians(a)) for a in _DEGREES], np.float32)
_OBS_COS = np.array([math.cos(math.radians(a)) for a in _DEGREES], np.float32)


def _angle_index(angle):
    return jnp.mod(angle - _ANGLE_LO, _N_ANGLES)


# --------------------------------------------------------------------------- state and params
@struct.dataclass
class MinecartState:
    pos: jax.Array        # float32 (2,): x, y rounded to float32 (what the observation shows)
    pos_lo: jax.Array     # float32 (2,): the rest; the position is exactly pos + pos_lo
    speed: jax.Array      # float32 ()
    speed_lo: jax.Array   # float32 (): speed + speed_lo is the speed
    angle: jax.Array      # int32 degrees (exact)
    content: jax.Array    # float32 (ore_cnt,): ore in the cart
    departed: jax.Array   # bool: has left the base (returning then ends the episode)
    end: jax.Array        # bool: returned to base (stays true; the engine resets)
    ore_noise: jax.Array  # float32 (frame_skip, ore_cnt): standard normals the next step's mining uses
    time: jax.Array       # int32 steps taken


@struct.dataclass
class MinecartParams(EnvParams):
    """Mines and cart as data: vmap over variants of the same shapes without recompiling.

    ``mine_pos + mine_pos_lo`` is the float64 mine position (``split_f64``); build variants with
    ``Minecart.params_from_config`` so the two stay consistent.
    """

    max_steps: int = 1000
    # defaults: minecart-v0's mines
    mine_pos: jax.Array = struct.field(default_factory=lambda: jnp.asarray(split_f64(_MINE_XY)[0]))
    mine_pos_lo: jax.Array = struct.field(default_factory=lambda: jnp.asarray(split_f64(_MINE_XY)[1]))
    ore_mean: jax.Array = struct.field(default_factory=lambda: jnp.asarray(_ORE_MEAN, jnp.float32))
    ore_std: jax.Array = struct.field(default_factory=lambda: jnp.full(_ORE_MEAN.shape, 0.05, jnp.float32))
    capacity: float = 1.5


def _load_config(config: str | Mapping) -> dict:
    if isinstance(config, Mapping):
        data = dict(config)
    elif config in CONFIGS:
        data = CONFIGS[config]
    elif isinstance(config, (str, Path)) and str(config).endswith(".json"):
        with open(config) as f:
            data = json.load(f)
    else:
        raise ValueError(f"unknown minecart config {config!r}; use one of {sorted(CONFIGS)}, a dict in "
                         "MO-Gymnasium's mine_config.json format, or a path to such a .json file")
    mines = data.get("mines", [])
    if len(mines) == 0 or len(mines) != data.get("mine_cnt", len(mines)):
        raise ValueError("minecart config: list every mine under 'mines' (x, y, distributions); random "
                         "mine placement (MO-Gymnasium's fallback for missing mines) is not supported")
    ore_cnt = int(data.get("ore_cnt", len(mines[0]["distributions"])))
    for i, m in enumerate(mines):
        if "distributions" not in m or len(m["distributions"]) != ore_cnt:
            raise ValueError(f"minecart config: mine {i} needs 'distributions' with one [mu, sigma] per ore "
                             f"({ore_cnt} ores)")
    return {"capacity": float(data["capacity"]), "ore_cnt": ore_cnt,
            "pos": np.array([[m["x"], m["y"]] for m in mines], np.float64),
            "dist": np.array([m["distributions"] for m in mines], np.float64)}  # (mines, ores, 2)


# --------------------------------------------------------------------------- the env
class Minecart(Environment):
    """Minecart; ``config`` is "default", "deterministic", a mine_config.json-style dict or a path."""

    def __init__(self, config: str | Mapping = "default", frame_skip: int = 4,
                 incremental_frame_skip: bool = True):
        if int(frame_skip) < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        self.frame_skip = int(frame_skip)
        self.incremental_frame_skip = bool(incremental_frame_skip)
        self.config = _load_config(config)
        self.ore_cnt = self.config["ore_cnt"]
        self.deterministic = bool(np.all(self.config["dist"][..., 1] == 0))
        self.reward_names = tuple(f"ore{i + 1}" for i in range(self.ore_cnt)) + ("fuel",)
        # MORL-Baselines: (0, 0, -200) with the deterministic config (pcn_minecart.py, gamma 1),
        # (-1, -1, -200) otherwise (benchmark runs of issue #43)
        self.ref_point = (0.0,) * self.ore_cnt + (-200.0,) if self.deterministic else \
            (-1.0,) * self.ore_cnt + (-200.0,)
        # jitted so that eager callers (the twin harness's resync) do not compile op by op
        self._obs_jit = jax.jit(self._obs)
        fs = self.frame_skip
        idle = np.float32(FUEL_IDLE * fs)  # the reference adds to a float32 reward vector
        self._fuel = np.array([idle + np.float32(FUEL_MINE * fs), idle, idle,
                               idle + np.float32(FUEL_ACC * fs), idle, idle], np.float32)

    # ------------------------------------------------------------------ declarations
    def params_from_config(self, config: str | Mapping, **kwargs: Any) -> MinecartParams:
        """Params for another mine layout with the same numbers of mines and ores (vmap-able)."""
        c = _load_config(config)
        if c["pos"].shape != self.config["pos"].shape or c["ore_cnt"] != self.ore_cnt:
            raise ValueError(f"config has {c['pos'].shape[0]} mines / {c['ore_cnt']} ores; this env was built "
                             f"for {self.config['pos'].shape[0]} / {self.ore_cnt}: make a new Minecart(config=...)")
        hi, lo = split_f64(c["pos"])
        return MinecartParams(mine_pos=jnp.asarray(hi), mine_pos_lo=jnp.asarray(lo),
                              ore_mean=jnp.asarray(c["dist"][..., 0], jnp.float32),
                              ore_std=jnp.asarray(c["dist"][..., 1], jnp.float32),
                              capacity=c["capacity"], **kwargs)

    @property
    def default_params(self) -> MinecartParams:
        hi, lo = split_f64(self.config["pos"])
        return MinecartParams(mine_pos=jnp.asarray(hi), mine_pos_lo=jnp.asarray(lo),
                              ore_mean=jnp.asarray(self.config["dist"][..., 0], jnp.float32),
                              ore_std=jnp.asarray(self.config["dist"][..., 1], jnp.float32),
                              capacity=self.config["capacity"])

    @property
    def observation_space(self) -> Box:
        return Box(-1.0, 1.0, (5 + self.ore_cnt,), jnp.float32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(6)

    @property
    def reward_space(self) -> Box:
        cap = self.config["capacity"]
        return Box(np.append(np.zeros(self.ore_cnt), -1.0), np.append(np.full(self.ore_cnt, cap), 0.0),
                   (self.ore_cnt + 1,), jnp.float32)

    # ------------------------------------------------------------------ dynamics
    def get_obs(self, state: MinecartState, params: MinecartParams) -> jax.Array:
        """``[x, y, speed, sin, cos, content / capacity]`` as the reference's float32 observation."""
        return self._obs_jit(state, params)

    def _obs(self, state: MinecartState, params: MinecartParams) -> jax.Array:
        i = _angle_index(state.angle)
        return jnp.concatenate([
            state.pos, state.speed[None], jnp.asarray(_OBS_SIN)[i][None], jnp.asarray(_OBS_COS)[i][None],
            state.content / jnp.float32(params.capacity)]).astype(jnp.float32)

    def reset(self, key: jax.Array, params: MinecartParams) -> tuple[jax.Array, MinecartState]:
        z2 = jnp.zeros(2, jnp.float32)
        state = MinecartState(
            pos=z2, pos_lo=z2, speed=jnp.float32(0), speed_lo=jnp.float32(0),
            angle=jnp.int32(START_ANGLE), content=jnp.zeros(self.ore_cnt, jnp.float32),
            departed=jnp.bool_(False), end=jnp.bool_(False),
            ore_noise=jax.random.normal(key, (self.frame_skip, self.ore_cnt), jnp.float32),
            time=jnp.int32(0))
        return self.get_obs(state, params), state

    def step(self, key: jax.Array, state: MinecartState, action: jax.Array, params: MinecartParams):
        fs = self.frame_skip
        action = jnp.asarray(action, jnp.int32)
        # incremental: the action acts on every frame; otherwise once, fs times as strong, then fs moves
        mult = 1 if self.incremental_frame_skip else fs
        accel = _df_const(ACCELERATION * mult)
        one = (jnp.float32(MAX_SPEED), jnp.float32(0))
        base_r2 = _df_const(BASE_RADIUS * BASE_RADIUS)

        # Mining first: a MINE step never moves the cart (mining needs speed < EPS, and then the cart
        # stands still), so every mine() call of the step sees the same place and speed. The reference
        # makes fs calls (one per frame, or fs in its single frame), or one call if the episode had
        # already ended (its frame loop breaks after the first frame).
        n_calls = jnp.where(state.end & self.incremental_frame_skip, 1, fs)
        content = self._mine(state, action == ACT_MINE, n_calls, params)

        # One move per loop iteration (XLA duplicates work when several moves share one body). The
        # action (and the reference's `if end: break`) acts on frames where it acts, the base test
        # follows every move (incremental) or only the last one (otherwise).
        incremental = self.incremental_frame_skip

        def frame(i, c):
            pos, speed, angle, content, departed, end, alive, ore_reward = c
            act = alive & (incremental | (i == 0))  # the action even acts on the frame after the end
            angle = jnp.where(act & (action == ACT_LEFT), jnp.mod(angle - ROTATION * mult, 360), angle)
            angle = jnp.where(act & (action == ACT_RIGHT), jnp.mod(angle + ROTATION * mult, 360), angle)
            faster = _df_add(speed, accel)
            faster = _df_where(_df_lt(faster, one), faster, one)
            speed = _df_where(act & (action == ACT_ACCEL), faster, speed)
            speed = _df_where(act & (action == ACT_BRAKE), (jnp.float32(0), jnp.float32(0)), speed)
            alive = alive & ~(act & end)
            pos, speed, angle = self._move(pos, speed, angle, alive)
            sq = _df_mul(pos, pos)
            in_base = _df_lt(_df_add((sq[0][0], sq[1][0]), (sq[0][1], sq[1][1])), base_r2)
            check = alive & (incremental | (i == fs - 1))
            arrive = check & in_base & departed
            ore_reward = ore_reward + jnp.where(arrive, content, 0.0)
            content = jnp.where(arrive, 0.0, content)
            return (pos, speed, angle, content, departed | (check & ~in_base), end | arrive, alive, ore_reward)

        carry = ((state.pos, state.pos_lo), (state.speed, state.speed_lo), state.angle, content,
                 state.departed, state.end, jnp.bool_(True), jnp.zeros(self.ore_cnt, jnp.float32))
        pos, speed, angle, content, departed, end, _, ore_reward = jax.lax.fori_loop(0, fs, frame, carry)

        fuel = jnp.asarray(self._fuel)[jnp.clip(action, 0, 5)]
        fuel = jnp.where((action >= 0) & (action <= 5), fuel, jnp.float32(self._fuel[ACT_NONE]))
        reward = jnp.concatenate([ore_reward, fuel[None]]).astype(jnp.float32)
        time = state.time + 1
        new = MinecartState(
            pos=pos[0], pos_lo=pos[1], speed=speed[0], speed_lo=speed[1], angle=angle, content=content,
            departed=departed, end=end, ore_noise=jax.random.normal(key, (fs, self.ore_cnt), jnp.float32),
            time=time)
        return self.get_obs(new, params), new, reward, end, time_limit(time, params), {}

    def _mine(self, state: MinecartState, mine_action, n_calls, params: MinecartParams):
        """``n_calls`` x ``Minecart.mine()``: draw at the nearest mine if stopped within its radius."""
        d = _df_sub((state.pos[None], state.pos_lo[None]), (params.mine_pos, params.mine_pos_lo))
        sq = _df_mul(d, d)
        d2 = _df_add((sq[0][:, 0], sq[1][:, 0]), (sq[0][:, 1], sq[1][:, 1]))
        i = jnp.argmin(d2[0] + d2[1])  # first of equals, as Python's min()
        in_reach = ~_df_lt(_df_const(MINE_RADIUS * MINE_RADIUS), (d2[0][i], d2[1][i]))
        ok = mine_action & _df_lt((state.speed, state.speed_lo), _df_const(EPS_SPEED)) & in_reach
        capacity = jnp.float32(params.capacity)
        content = state.content
        for k in range(self.frame_skip):  # each call draws one normal per ore: row k of ore_noise
            mined = jnp.maximum(0.0, params.ore_mean[i] + params.ore_std[i] * state.ore_noise[k])
            free = capacity - jnp.sum(content)
            total = jnp.sum(mined)
            # the reference divides by zero when the cart is over-full by rounding and both draws are 0
            scale = jnp.where(total > free, free / jnp.where(total > 0, total, 1.0), 1.0)
            content = jnp.where(ok & (k < n_calls), content + mined * scale, content)
        return content

    def _move(self, pos, speed, angle, active):
        """``Cart.step()``: move by speed along the heading; clip to the square, sliding along walls."""
        trig = jnp.asarray(_TRIG)[_angle_index(angle)]  # cos hi, sin hi, cos lo, sin lo
        vel = _df_mul((speed[0][None], speed[1][None]), (trig[:2], trig[2:]))  # (vx, vy)
        zero, one = jnp.zeros(2, jnp.float32), jnp.ones(2, jnp.float32)
        at0 = (pos[0] == 0) & (pos[1] == 0)
        at1 = (pos[0] == 1) & (pos[1] == 0)
        fast = _df_lt(_df_const(EPS_SPEED), vel) | _df_lt(vel, _df_const(-EPS_SPEED))
        sign = jnp.where(vel[0] > 0, 1, -1)
        free = ~(at0 | at1)  # not on a wall in that coordinate
        x, y = 0, 1
        turn = (jnp.where(free[y] & fast[y] & at1[x] & (vel[0][x] > 0), ROTATION * sign[y], 0)
                - jnp.where(free[y] & fast[y] & at0[x] & (vel[0][x] < 0), ROTATION * sign[y], 0)
                - jnp.where(free[x] & fast[x] & at1[y] & (vel[0][y] > 0), ROTATION * sign[x], 0)
                + jnp.where(free[x] & fast[x] & at0[y] & (vel[0][y] < 0), ROTATION * sign[x], 0))
        new = _df_add(pos, vel)
        low, high = _df_lt(new, (zero, zero)), _df_lt((one, zero), new)
        new = (jnp.where(low, 0.0, jnp.where(high, 1.0, new[0])), jnp.where(low | high, 0.0, new[1]))
        # the reference sets speed = |new - old|: the same speed unless a wall clipped the move
        d = _df_sub(new, pos)
        sq = _df_mul(d, d)
        clipped_speed = _df_sqrt(_df_add((sq[0][0], sq[1][0]), (sq[0][1], sq[1][1])))
        moves = active & ~_df_lt(speed, _df_const(EPS_SPEED))
        new_speed = _df_where(jnp.any(low | high), clipped_speed, speed)
        return (_df_where(moves, new, pos), _df_where(moves, new_speed, speed),
                jnp.where(moves, angle + turn, angle))

    # ------------------------------------------------------------------ fronts (host side, numpy)
    def _host_config(self, params: MinecartParams | None) -> tuple[np.ndarray, np.ndarray, float]:
        if params is None:
            return self.config["pos"], self.config["dist"], self.config["capacity"]
        pos = np.asarray(params.mine_pos, np.float64) + np.asarray(params.mine_pos_lo, np.float64)
        dist = np.stack([np.asarray(params.ore_mean, np.float64), np.asarray(params.ore_std, np.float64)], -1)
        return pos, dist, float(params.capacity)

    def pareto_front(self, gamma: float = 1.0, symmetric: bool = True,
                     params: MinecartParams | None = None) -> np.ndarray:
        """MO-Gymnasium's approximate front (``Minecart.pareto_front``), shape [n, ore_cnt + 1].

        Enumerates, per mine and a virtual empty mine by the base: turn towards it, every
        accelerate/coast pattern that reaches it, brake, turn around, mine 1..k times (k fills the cart
        on average) and come back with the same (``symmetric``) or any pattern; keeps the non-dominated
        discounted returns. Approximate: it is not the true front (MO-Gymnasium issue #78).
        """
        pos, dist, capacity = self._host_config(params)
        return _approximate_front(pos, dist, capacity, self.frame_skip, self.incremental_frame_skip,
                                  float(gamma), bool(symmetric))

    def convex_coverage_set(self, gamma: float = 1.0, symmetric: bool = True,
                            params: MinecartParams | None = None) -> np.ndarray:
        """MO-Gymnasium's approximate CCS: the front's points on the convex hull (with their minimum)."""
        from scipy.spatial import ConvexHull

        front = self.pareto_front(gamma, symmetric, params)
        points = np.concatenate([front.min(axis=0, keepdims=True), front])
        vertices = [i - 1 for i in ConvexHull(points).vertices if i != 0]
        return front[vertices]


# --------------------------------------------------------------------------- front helpers (host)
def _truncated_mean(mean: float, std: float) -> float:
    """Mean of N(mean, std) truncated to [0, inf) (what MO-Gymnasium's front assumes a mine yields)."""
    if std == 0:
        return mean
    from scipy.stats import norm

    a, b = (0.0 - mean) / std, (float("inf") - mean) / std
    value = mean + ((norm.pdf(a) - norm.pdf(b)) / (norm.cdf(b) - norm.cdf(a))) * std
    return 0.0 if np.isnan(value) else float(value)


def _non_dominated(points: list[np.ndarray]) -> list[np.ndarray]:
    """Points not weakly dominated by another (maximisation); duplicates keep their first copy."""
    pts = np.asarray(points)
    keep = []
    for i, p in enumerate(pts):
        dominated = np.all(pts >= p, axis=1) & (np.any(pts > p, axis=1) | (np.arange(len(pts)) < i))
        if not dominated.any():
            keep.append(i)
    return [pts[i] for i in keep]


def _approach_patterns(distance: float, frame_skip: int, incremental: bool) -> list[list[int]]:
    """Every accelerate/coast sequence (starting with one accelerate) that covers ``distance``."""
    fs = frame_skip
    first = distance - (fs * (fs + 1) / 2 * ACCELERATION if incremental else ACCELERATION * fs * fs)
    stack, done = [(ACCELERATION * fs, first, [ACT_ACCEL])], []
    while stack:
        speed, left, seq = stack.pop()
        # accelerate once more: distance of fs frames whose speed grows by ACCELERATION each
        new_speed = speed + ACCELERATION * fs
        n = new_speed / ACCELERATION
        moved = n * (n + 1) / 2 * ACCELERATION - (n - fs) * ((n - fs) + 1) / 2 * ACCELERATION
        for step_left, step_speed, action in ((left - moved, new_speed, ACT_ACCEL),
                                              (left - speed * fs, speed, ACT_NONE)):
            if step_left <= 0:
                done.append(seq + [action])
            else:
                stack.append((step_speed, step_left, seq + [action]))
    return done


def _approximate_front(mine_pos: np.ndarray, mine_dist: np.ndarray, capacity: float, frame_skip: int,
                       incremental: bool, gamma: float, symmetric: bool) -> np.ndarray:
    fs = frame_skip
    ore_cnt = mine_dist.shape[1]
    fuel = np.array([FUEL_MINE + FUEL_IDLE, FUEL_IDLE, FUEL_IDLE, FUEL_IDLE + FUEL_ACC, FUEL_IDLE, FUEL_IDLE]) * fs
    corner = (BASE_RADIUS ** 2 / 2) ** 0.5  # an empty mine just outside the base
    mines = [(p, np.array([_truncated_mean(m, s) for m, s in d])) for p, d in zip(mine_pos, mine_dist)]
    mines.append((np.array([corner, corner]), np.zeros(ore_cnt)))
    turn_around = [ACT_LEFT] * (180 // (ROTATION * fs))
    front: list[np.ndarray] = []
    for pos, means in mines:
        pos = np.asarray(pos, np.float64)
        distance = np.sqrt(np.dot(pos, pos)) - MINE_RADIUS - BASE_RADIUS / 2
        angle = np.degrees(np.arctan2(np.linalg.det([pos, [1.0, 1.0]]), np.dot(pos, [1.0, 1.0])))
        rotations = int(math.ceil(abs(angle) / (ROTATION * fs)))
        patterns = _approach_patterns(distance, fs, incremental)
        means = means * fs
        total = np.sum(means)
        max_mining = 0 if total == 0 else int(math.ceil(capacity / total))
        minings = [[ACT_MINE] * i for i in range(1, max_mining + 1)]
        turn = [ACT_LEFT] * rotations
        if minings:
            back = [[ACT_BRAKE] + turn_around]
            if symmetric:
                seqs = [turn + go + b + m + go for go, b, m in itertools.product(patterns, back, minings)]
            else:
                seqs = [turn + go + b + m + ret
                        for go, b, m, ret in itertools.product(patterns, back, minings, patterns)]
        elif symmetric:
            seqs = [turn + go + turn_around + [ACT_NONE] + go[1:] for go in patterns]
        else:
            seqs = [turn + go + turn_around + [ACT_NONE] + ret[1:]
                    for go, ret in itertools.product(patterns, patterns)]
        longest = max((len(p) for p in patterns), default=0)
        max_len = rotations + 2 * longest + 1 + len(turn_around) + max((len(m) for m in minings), default=0)
        discount = gamma ** np.arange(max_len)
        for s in seqs:
            rewards = np.zeros((len(s), ore_cnt + 1))
            rewards[:, -1] = fuel[s]
            n_mine = s.count(ACT_MINE)
            rewards[-1, :-1] = means * n_mine / max(1, (total * n_mine) / capacity)
            front.append(np.dot(discount[:len(s)], rewards))
        front = _non_dominated(front)
    return np.array(front)


register("minecart-v0", Minecart, config="default")
register("minecart-deterministic-v0", Minecart, config="deterministic")
