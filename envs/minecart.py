"""Minecart (Abels et al. 2019), bit-identical to MO-Gymnasium 1.3.2 ``minecart-v0`` and
``minecart-deterministic-v0``.

A cart starts at the base in the corner (0, 0) of the unit square, drives to mines, mines two ores into
a 1.5-capacity cart and drives back; re-entering the base ends the episode with reward ``[ore1, ore2,
fuel]`` where the ores are the cart's content. Fuel is paid every step: -0.02, -0.12 when
accelerating, -0.22 when mining. Actions: 0 mine, 1 left, 2 right, 3 accelerate, 4 brake, 5 none; each
is repeated for ``frame_skip`` (4) physics frames. Observation ``[x, y, speed, sin, cos, ore1/cap,
ore2/cap]`` (float32). Each mining frame draws ``max(0, N(mu, sigma))`` per ore at the nearest mine
(sigma = 0 in the deterministic config); a draw that overflows the cart is scaled down to fit.

Precision: float64, operation for operation. MO-Gymnasium keeps position, speed and cart content in
float64 and tests them exactly (``y == 1`` starts a wall slide, ``distance < 0.15`` ends the episode); an
exact-arithmetic tie (a cart turning 355 -> 5 degrees on a wall comes back to ``y = 1 - 3e-17``, which float64
rounds to 1) is decided by float64 rounding, so only the same float64 operations in the same order give the same
trajectories. The step runs its physics under ``jax.enable_x64`` and keeps float64 values as uint32 words in the
state (``envs/float64.py``); observations and rewards are float32, cast from the float64 values as MO-Gymnasium
casts them. The reference's ``mag(v) = sqrt(np.dot(v, v))`` rounds as this machine's numpy does (``dot2``), and
``rn`` keeps XLA from fusing a product into the following add where the reference rounds the product first.

``tests/test_envs_minecart.py`` runs both ids step by step beside MO-Gymnasium with every observation and
reward bit-equal and no resynchronisation. Configs whose mines lie within reach of a wall or of the base are
rejected (there a MINE step could mine after the cart stopped on the wall mid-step, which this step does not
model; MO-Gymnasium's two configs are far from both).

Speed: under ``vmap`` only the carts that mine on a step (MINE, stopped, near a mine: about 1% under a
random policy) run the mining, gathered into a few lanes (``_where_needed``); the frame loop is a
``fori_loop`` (unrolled, XLA duplicates work).

Randomness. The reference draws ore with ``scipy.stats.norm(...).rvs()`` from numpy's *global* RNG.
Ours draws standard normals from the key of a step that mines (frame ``f`` uses row ``f``; none at all
in a config with sigma 0, whose ``make_params`` then refuses ``ore_std > 0``), or takes them from
``state.ore_noise`` (float64 words) when ``state.noise_given`` is set: a test replays the reference's draws
that way. The reference computes ``max(0, z * sigma + mu)``, and so do we.

Reference points: ``minecart-v0`` uses (-1, -1, -200) (MORL-Baselines' benchmark runs, issue #43);
``minecart-deterministic-v0`` uses (0, 0, -200) (MORL-Baselines ``examples/pcn_minecart.py``, gamma 1).
Not ported: ``minecart-rgb-v0`` (pygame image observations).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax
from jax.custom_batching import custom_vmap

from morl.env import Environment, EnvParams, time_limit
from morl.envs.float64 import as_bits, as_f64, bits_f64, dot2, dot_rounding, f64_bits, np_sum, rn, sqrt_threshold
from morl.registry import register
from morl.spaces import Box, Discrete

# --------------------------------------------------------------------------- constants (MO-Gymnasium's)
EPS_SPEED = 0.001  # below this the cart does not move and can mine
ROTATION = 10  # degrees per frame
ACCELERATION = 0.0075  # speed per frame
MAX_SPEED = 1.0
MINE_RADIUS = 0.14
BASE_RADIUS = 0.15
FUEL_IDLE, FUEL_ACC, FUEL_MINE = -0.005, -0.025, -0.05  # per frame
ACT_MINE, ACT_LEFT, ACT_RIGHT, ACT_ACCEL, ACT_BRAKE, ACT_NONE = range(6)
START_ANGLE = 45
MAX_ORES = 8  # np.sum adds up to 8 values left to right (pairwise beyond), which np_sum reproduces

# mine_config.json / mine_config_det.json of MO-Gymnasium 1.3.2 (x, y, [(mu, sigma) per ore])
_MINES = [
    ((0.16, 0.84), (0.2, 0.0)),
    ((0.5, 0.84), (0.15, 0.1)),
    ((0.84, 0.84), (0.2, 0.2)),
    ((0.84, 0.5), (0.1, 0.15)),
    ((0.84, 0.16), (0.0, 0.2)),
]


def _config(sigma: float) -> dict:
    return {
        "capacity": 1.5,
        "mine_cnt": len(_MINES),
        "ore_cnt": 2,
        "mines": [{"x": x, "y": y, "distributions": [[mu, sigma] for mu in means]} for (x, y), means in _MINES],
    }


CONFIGS = {"default": _config(0.05), "deterministic": _config(0.0)}
_MINE_XY = np.array([xy for xy, _ in _MINES], np.float64)
_ORE_MEAN = np.array([means for _, means in _MINES], np.float64)

BASE_SQ = sqrt_threshold(BASE_RADIUS, strict=True)  # in base: |pos|^2 (as mag rounds it) < BASE_SQ
MINE_SQ = sqrt_threshold(MINE_RADIUS, strict=False)  # mineable: |pos - mine|^2 <= MINE_SQ

# Angles stay integers (multiples of 5 degrees: 45 +- 10s); wall slides can take them a little outside
# [0, 360) until the next turn wraps them; the tables span [-720, 1080) degrees, far beyond that.
_ANGLE_LO, _N_ANGLES = -720, 1800
_DEGREES = np.arange(_ANGLE_LO, _ANGLE_LO + _N_ANGLES)
# physics: math.cos(angle * math.pi / 180) in float64
_TRIG = np.array([[math.cos(a * math.pi / 180), math.sin(a * math.pi / 180)] for a in _DEGREES], np.float64)
# observation: float32(math.sin(math.radians(angle)))
_OBS_TRIG = np.array([[math.sin(math.radians(a)), math.cos(math.radians(a))] for a in _DEGREES], np.float32)


def _angle_index(angle):
    """Row of an angle in the tables. A turn wraps the angle into [0, 360) and a wall slide moves it by
    10 degrees towards the wall's direction, which it never passes (the slide stops there), so angles
    stay within [-10, 370]; the clip only keeps the index inside the table."""
    return jnp.clip(angle - _ANGLE_LO, 0, _N_ANGLES - 1)


# --------------------------------------------------------------------------- work only where needed
def _where_needed(f, need, default, args, shares: tuple[int, ...] = (64, 16)):
    """``f(*args)`` where ``need``, else ``default`` (pytrees of arrays; f returns default's structure).

    Unbatched, a ``lax.cond``. Under ``vmap`` (where a cond would run ``f`` on every lane), the lanes
    that need ``f`` are gathered into the smallest of ``axis_size // share`` slots that holds them, and
    ``f`` runs on those only; if more lanes need it, on all of them. Each lane's result depends on its
    own inputs only, never on which other lanes needed ``f``.
    """

    @custom_vmap
    def run(need, default, args):
        return lax.cond(need, lambda: f(*args), lambda: default)

    @run.def_vmap
    def run_batched(axis_size, in_batched, need, default, args):
        need_b, default_b, args_b = in_batched
        full = lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x))  # noqa: E731
        need = full(need, need_b)
        default = jax.tree.map(full, default, default_b)
        axes = jax.tree.map(lambda b: 0 if b else None, args_b)  # unbatched args (params) stay unbatched
        tiers = sorted({max(1, axis_size // share) for share in shares if axis_size // share < axis_size})

        def some(slots):
            def gathered():
                # the needing lanes first, in lane order (top_k: far cheaper than nonzero on a CPU)
                rank = need.astype(jnp.float32) * 2.0 - jnp.arange(axis_size, dtype=jnp.float32) / axis_size
                take = lax.top_k(rank, slots)[1]
                idx = jnp.where(need[take], take, axis_size)  # slots beyond the needing lanes write nowhere
                sub = jax.tree.map(lambda x, b: x[take] if b else x, args, args_b)
                out = jax.vmap(f, in_axes=axes)(*sub)
                return jax.tree.map(lambda d, o: d.at[idx].set(o, mode="drop"), default, out)

            return gathered

        def every():
            out = jax.vmap(f, in_axes=axes)(*args)
            return jax.tree.map(lambda d, o: jnp.where(need.reshape((-1,) + (1,) * (o.ndim - 1)), o, d), default, out)

        count = jnp.sum(need)
        tier = sum((count > slots).astype(jnp.int32) for slots in tiers)
        out = lax.switch(tier, [some(slots) for slots in tiers] + [every])
        return out, jax.tree.map(lambda _: True, out)

    return run(need, default, args)


# --------------------------------------------------------------------------- state and params
@struct.dataclass
class MinecartState:
    """Float64 values are kept as their uint32 words (``bits_f64(state.pos)`` reads them on the host)."""

    pos: jax.Array  # uint32 (2, 2): x, y as float64
    speed: jax.Array  # uint32 (2,): float64
    angle: jax.Array  # int32 degrees (exact)
    content: jax.Array  # uint32 (ore_cnt, 2): ore in the cart, float64
    departed: jax.Array  # bool: has left the base (returning then ends the episode)
    end: jax.Array  # bool: returned to base (stays true; the engine resets)
    ore_noise: jax.Array  # uint32 (frame_skip, ore_cnt, 2): float64 standard normals a test injects ...
    noise_given: jax.Array  # bool: ... for the next step's mining, instead of drawing from its key
    time: jax.Array  # int32 steps taken


@struct.dataclass
class MinecartParams(EnvParams):
    """Mines and cart as data (float64 values as uint32 words): vmap over variants of the same shapes
    without recompiling. Build variants with ``Minecart.params_from_config`` or ``Minecart.make_params``."""

    max_steps: int = 1000
    # defaults: minecart-v0's mines
    mine_pos: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(_MINE_XY)))
    ore_mean: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(_ORE_MEAN)))
    ore_std: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(np.full(_ORE_MEAN.shape, 0.05))))
    capacity: jax.Array = struct.field(default_factory=lambda: jnp.asarray(f64_bits(1.5)))


def _load_config(config: str | Mapping) -> dict:
    if isinstance(config, Mapping):
        data = dict(config)
    elif config in CONFIGS:
        data = CONFIGS[config]
    elif isinstance(config, (str, Path)) and str(config).endswith(".json"):
        with open(config) as f:
            data = json.load(f)
    else:
        raise ValueError(
            f"unknown minecart config {config!r}; use one of {sorted(CONFIGS)}, a dict in "
            "MO-Gymnasium's mine_config.json format, or a path to such a .json file"
        )
    mines = data.get("mines", [])
    if len(mines) == 0 or len(mines) != data.get("mine_cnt", len(mines)):
        raise ValueError(
            "minecart config: list every mine under 'mines' (x, y, distributions); random "
            "mine placement (MO-Gymnasium's fallback for missing mines) is not supported"
        )
    ore_cnt = int(data.get("ore_cnt", len(mines[0]["distributions"])))
    if not 1 <= ore_cnt <= MAX_ORES:
        raise ValueError(f"minecart config: ore_cnt must be 1..{MAX_ORES}, got {ore_cnt}")
    for i, m in enumerate(mines):
        if "distributions" not in m or len(m["distributions"]) != ore_cnt:
            raise ValueError(
                f"minecart config: mine {i} needs 'distributions' with one [mu, sigma] per ore ({ore_cnt} ores)"
            )
        x, y = float(m["x"]), float(m["y"])
        if min(x, y, 1 - x, 1 - y) <= MINE_RADIUS or math.hypot(x, y) <= MINE_RADIUS + BASE_RADIUS:
            raise ValueError(
                f"minecart config: mine {i} at ({x}, {y}) is within {MINE_RADIUS} of a wall or "
                f"within {MINE_RADIUS + BASE_RADIUS} of the base; move it inside "
                f"[{MINE_RADIUS}, {1 - MINE_RADIUS}]^2 and away from the base"
            )
    return {
        "capacity": float(data["capacity"]),
        "ore_cnt": ore_cnt,
        "pos": np.array([[m["x"], m["y"]] for m in mines], np.float64),
        "dist": np.array([m["distributions"] for m in mines], np.float64),
    }  # (mines, ores, 2)


# --------------------------------------------------------------------------- the env
class Minecart(Environment):
    """Minecart; ``config`` is "default", "deterministic", a mine_config.json-style dict or a path."""

    def __init__(self, config: str | Mapping = "default", frame_skip: int = 4, incremental_frame_skip: bool = True):
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
        self.ref_point = (0.0,) * self.ore_cnt + (-200.0,) if self.deterministic else (-1.0,) * self.ore_cnt + (-200.0,)
        self._obs_jit = jax.jit(self._obs)
        self._dot = dot_rounding()  # np.dot as this machine's numpy rounds it (probed), fastest exact way
        fs = self.frame_skip
        idle = np.float32(FUEL_IDLE * fs)  # the reference adds to a float32 reward vector
        self._fuel = np.array(
            [idle + np.float32(FUEL_MINE * fs), idle, idle, idle + np.float32(FUEL_ACC * fs), idle, idle], np.float32
        )

    # ------------------------------------------------------------------ declarations
    def make_params(self, mine_pos=None, ore_mean=None, ore_std=None, capacity=None, **kwargs: Any) -> MinecartParams:
        """Params from float64 values (host arrays; ``None`` keeps this env's config)."""
        c = self.config

        def pick(value, default):
            return np.asarray(default if value is None else value, np.float64)

        mine_pos, ore_mean = pick(mine_pos, c["pos"]), pick(ore_mean, c["dist"][..., 0])
        ore_std, capacity = pick(ore_std, c["dist"][..., 1]), pick(capacity, c["capacity"])
        if mine_pos.shape != c["pos"].shape or not ore_mean.shape == ore_std.shape == c["dist"].shape[:2]:
            raise ValueError(
                f"params for {c['pos'].shape[0]} mines and {self.ore_cnt} ores expected; got "
                f"mine_pos {mine_pos.shape}, ore_mean {ore_mean.shape}, ore_std {ore_std.shape}: "
                "make a new Minecart(config=...) for another layout"
            )
        if self.deterministic and np.any(ore_std != 0):
            raise ValueError(
                "this minecart draws no ore noise (built from a config with sigma 0); for ore_std > 0 "
                "build it from a config with sigma > 0, e.g. Minecart('default')"
            )
        return MinecartParams(
            mine_pos=jnp.asarray(f64_bits(mine_pos)),
            ore_mean=jnp.asarray(f64_bits(ore_mean)),
            ore_std=jnp.asarray(f64_bits(ore_std)),
            capacity=jnp.asarray(f64_bits(capacity)),
            **kwargs,
        )

    def params_from_config(self, config: str | Mapping, **kwargs: Any) -> MinecartParams:
        """Params for another mine layout with the same numbers of mines and ores (vmap-able)."""
        c = _load_config(config)
        if c["pos"].shape != self.config["pos"].shape or c["ore_cnt"] != self.ore_cnt:
            raise ValueError(
                f"config has {c['pos'].shape[0]} mines / {c['ore_cnt']} ores; this env was built "
                f"for {self.config['pos'].shape[0]} / {self.ore_cnt}: make a new Minecart(config=...)"
            )
        return self.make_params(c["pos"], c["dist"][..., 0], c["dist"][..., 1], c["capacity"], **kwargs)

    @property
    def default_params(self) -> MinecartParams:
        return self.make_params()

    @property
    def observation_space(self) -> Box:
        return Box(-1.0, 1.0, (5 + self.ore_cnt,), jnp.float32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(6)

    @property
    def reward_space(self) -> Box:
        cap = self.config["capacity"]
        return Box(
            np.append(np.zeros(self.ore_cnt), -1.0),
            np.append(np.full(self.ore_cnt, cap), 0.0),
            (self.ore_cnt + 1,),
            jnp.float32,
        )

    # ------------------------------------------------------------------ dynamics
    def get_obs(self, state: MinecartState, params: MinecartParams) -> jax.Array:
        """``[x, y, speed, sin, cos, content / capacity]`` as the reference's float32 observation."""
        return self._obs_jit(state, params)

    def _obs(self, state: MinecartState, params: MinecartParams) -> jax.Array:
        with jax.enable_x64(True):
            return self._obs64(
                as_f64(state.pos), as_f64(state.speed), state.angle, as_f64(state.content), as_f64(params.capacity)
            )

    @staticmethod
    def _obs64(pos, speed, angle, content, capacity):
        trig = jnp.asarray(_OBS_TRIG)[_angle_index(angle)]
        return jnp.concatenate(
            [pos.astype(jnp.float32), speed.astype(jnp.float32)[None], trig, (content / capacity).astype(jnp.float32)]
        )

    def reset(self, key: jax.Array, params: MinecartParams) -> tuple[jax.Array, MinecartState]:
        with jax.enable_x64(True):
            zero = jnp.zeros((), jnp.uint32)
            state = MinecartState(
                pos=jnp.broadcast_to(zero, (2, 2)),
                speed=jnp.broadcast_to(zero, (2,)),
                angle=jnp.int32(START_ANGLE),
                content=jnp.broadcast_to(zero, (self.ore_cnt, 2)),
                departed=jnp.bool_(False),
                end=jnp.bool_(False),
                ore_noise=jnp.broadcast_to(zero, (self.frame_skip, self.ore_cnt, 2)),
                noise_given=jnp.bool_(False),
                time=jnp.int32(0),
            )
            obs = self._obs64(
                jnp.zeros(2, jnp.float64),
                jnp.float64(0),
                state.angle,
                jnp.zeros(self.ore_cnt, jnp.float64),
                as_f64(params.capacity),
            )
        return obs, state

    def step(self, key: jax.Array, state: MinecartState, action: jax.Array, params: MinecartParams):
        action = jnp.asarray(action, jnp.int32)
        # Mining first: a MINE step mines only if the cart stands still (speed < EPS), and then it does
        # not move for the whole step; a moving cart that stops on a wall mid-step is out of every
        # mine's reach (the config check). Few carts mine on a step, so under vmap the mining (distances,
        # ore draws) runs on those carts only (``_where_needed``).
        with jax.enable_x64(True):
            # a superset of the carts that mine: MINE, stopped, and within reach of a mine up to rounding
            # (plain float64 squares, within a few ulps of the exact ones; the margin is 2^-30 relative)
            d = as_f64(state.pos)[None, :] - as_f64(params.mine_pos)
            near = jnp.any(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] <= MINE_SQ * (1 + 2.0**-30))
            need = (action == ACT_MINE) & (as_f64(state.speed) < EPS_SPEED) & near
        mine_params = (params.mine_pos, params.ore_mean, params.ore_std, params.capacity)
        content = _where_needed(
            self._mine,
            need,
            state.content,
            (key, state.pos, state.content, state.ore_noise, state.noise_given, state.end, mine_params),
        )
        with jax.enable_x64(True):
            return self._step64(state, content, action, params)

    def _mine(self, key, pos, content, noise, noise_given, end, mine_params):
        """``Minecart.mine()`` on every mining call of a MINE step of a stopped cart (uint32 words in and
        out): the reference makes fs calls (one per frame, or fs in its single frame), or one if the
        episode had already ended (its frame loop breaks after the first frame's action). Each call
        draws one normal per ore at the nearest mine if the cart is within its reach."""
        if self.deterministic:  # sigma = 0: the draws do not matter (0 * z)
            z = jnp.zeros((self.frame_skip, self.ore_cnt), jnp.float32)
        else:  # in the caller's (float32) mode: jax.random does not trace under x64
            z = jax.random.normal(key, (self.frame_skip, self.ore_cnt), jnp.float32)
        with jax.enable_x64(True):
            z = jnp.where(noise_given, as_f64(noise), z.astype(jnp.float64))
            n_calls = jnp.where(end & self.incremental_frame_skip, 1, self.frame_skip)
            mine_pos, ore_mean, ore_std, capacity = (as_f64(v) for v in mine_params)
            x, y, content = as_f64(pos[0]), as_f64(pos[1]), as_f64(content)
            # mag(cart.pos - mine.pos)^2 as numpy rounds it
            d2 = dot2(x - mine_pos[:, 0], y - mine_pos[:, 1], self._dot)
            dist = jnp.sqrt(d2)
            nearest, i = d2[0], jnp.int32(0)  # min(mines, key=distance): the first of equal distances
            for j in range(1, d2.shape[0]):
                closer = dist[j] < dist[i]
                nearest, i = jnp.where(closer, d2[j], nearest), jnp.where(closer, j, i)
            ok = nearest <= MINE_SQ
            mean, std = ore_mean[i], ore_std[i]
            for k in range(self.frame_skip):  # each call draws one normal per ore: row k of the noise
                raw = rn(z[k] * std) + mean  # scipy's norm(mu, sigma).rvs(): z * scale + loc
                mined = jnp.where(raw > 0.0, raw, 0.0)  # max(0.0, raw)
                free = capacity - np_sum(content)
                total = np_sum(mined)
                mined = jnp.where(total > free, rn(mined * (free / total)), mined)
                content = jnp.where(ok & (k < n_calls), content + mined, content)
            return as_bits(content)

    def _step64(self, state, content, action, params):
        fs = self.frame_skip
        incremental = self.incremental_frame_skip
        mult = 1 if incremental else fs  # otherwise the action acts once, fs times as strong, then fs moves
        x, y = as_f64(state.pos[0]), as_f64(state.pos[1])
        speed = as_f64(state.speed)
        capacity = as_f64(params.capacity)
        content = as_f64(content)

        left, right = action == ACT_LEFT, action == ACT_RIGHT
        accel, brake = action == ACT_ACCEL, action == ACT_BRAKE

        def frame(i, c):
            x, y, speed, angle, content, departed, end, alive, ore_reward = c
            act = alive & (incremental | (i == 0))  # the action even acts on the frame after the end
            turn = jnp.where(left, -ROTATION * mult, ROTATION * mult)  # Cart.rotate: (angle + r) % 360
            angle = jnp.where(act & (left | right), jnp.mod(angle + turn, 360), angle)
            faster = speed + ACCELERATION * mult  # clip(speed + a, 0, MAX_SPEED)
            faster = jnp.where(faster <= 0, 0.0, jnp.where(faster >= MAX_SPEED, MAX_SPEED, faster))
            speed = jnp.where(act & accel, faster, speed)
            speed = jnp.where(act & brake, 0.0, speed)  # clip(speed - 1 * mult, 0, 1): speed <= 1
            alive = alive & ~(act & end)
            x, y, speed, angle = self._move(x, y, speed, angle, alive, self._dot)
            in_base = dot2(x, y, self._dot) < BASE_SQ  # mag(pos - HOME_POS) < BASE_RADIUS
            check = alive & (incremental | (i == fs - 1))
            arrive = check & in_base & departed
            ore_reward = jnp.where(arrive, content.astype(jnp.float32), ore_reward)
            content = jnp.where(arrive, 0.0, content)
            return (x, y, speed, angle, content, departed | (check & ~in_base), end | arrive, alive, ore_reward)

        carry = (
            x,
            y,
            speed,
            state.angle,
            content,
            state.departed,
            state.end,
            jnp.bool_(True),
            jnp.zeros(self.ore_cnt, jnp.float32),
        )
        x, y, speed, angle, content, departed, end, _, ore_reward = lax.fori_loop(0, fs, frame, carry)

        fuel = jnp.asarray(self._fuel)[jnp.clip(action, 0, 5)]
        fuel = jnp.where((action >= 0) & (action <= 5), fuel, jnp.float32(self._fuel[ACT_NONE]))
        reward = jnp.concatenate([ore_reward, fuel[None]])
        time = state.time + 1
        new = MinecartState(
            pos=as_bits(jnp.stack([x, y])),
            speed=as_bits(speed),
            angle=angle,
            content=as_bits(content),
            departed=departed,
            end=end,
            ore_noise=state.ore_noise,
            noise_given=jnp.bool_(False),
            time=time,
        )
        obs = self._obs64(jnp.stack([x, y]), speed, angle, content, capacity)
        return obs, new, reward, end, time_limit(time, params), {}

    @staticmethod
    def _move(x, y, speed, angle, active, rounding):
        """``Cart.step()``: move by speed along the heading; clip to the square, sliding along walls."""
        trig = jnp.asarray(_TRIG)[_angle_index(angle)]
        vx, vy = rn(speed * trig[0]), rn(speed * trig[1])
        fast_x = (vx > EPS_SPEED) | (vx < -EPS_SPEED)
        fast_y = (vy > EPS_SPEED) | (vy < -EPS_SPEED)
        sign_x = jnp.where(vx > 0, ROTATION, -ROTATION).astype(jnp.int32)
        sign_y = jnp.where(vy > 0, ROTATION, -ROTATION).astype(jnp.int32)
        free_x, free_y = (x != 0) & (x != 1), (y != 0) & (y != 1)
        turn = (
            jnp.where(free_y & fast_y & (x == 1) & (vx > 0), sign_y, 0)
            - jnp.where(free_y & fast_y & (x == 0) & (vx < 0), sign_y, 0)
            - jnp.where(free_x & fast_x & (y == 1) & (vy > 0), sign_x, 0)
            + jnp.where(free_x & fast_x & (y == 0) & (vy < 0), sign_x, 0)
        ).astype(jnp.int32)
        nx, ny = x + vx, y + vy
        nx = jnp.where(nx <= 0, 0.0, jnp.where(nx >= 1, 1.0, nx))  # clip(v, 0, 1)
        ny = jnp.where(ny <= 0, 0.0, jnp.where(ny >= 1, 1.0, ny))
        new_speed = jnp.sqrt(dot2(x - nx, y - ny, rounding))  # mag(pre - pos)
        moves = active & (speed >= EPS_SPEED)
        return (
            jnp.where(moves, nx, x),
            jnp.where(moves, ny, y),
            jnp.where(moves, new_speed, speed),
            jnp.where(moves, angle + turn, angle),
        )

    # ------------------------------------------------------------------ fronts (host side, numpy)
    def _host_config(self, params: MinecartParams | None) -> tuple[np.ndarray, np.ndarray, float]:
        if params is None:
            return self.config["pos"], self.config["dist"], self.config["capacity"]
        pos = bits_f64(params.mine_pos)
        dist = np.stack([bits_f64(params.ore_mean), bits_f64(params.ore_std)], -1)
        return pos, dist, float(bits_f64(params.capacity))

    def pareto_front(
        self, gamma: float = 1.0, symmetric: bool = True, params: MinecartParams | None = None
    ) -> np.ndarray:
        """MO-Gymnasium's approximate front (``Minecart.pareto_front``), shape [n, ore_cnt + 1].

        Enumerates, per mine and a virtual empty mine by the base: turn towards it, every
        accelerate/coast pattern that reaches it, brake, turn around, mine 1..k times (k fills the cart
        on average) and come back with the same (``symmetric``) or any pattern; keeps the non-dominated
        discounted returns. Approximate: it is not the true front (MO-Gymnasium issue #78).
        """
        from morl.envs.minecart_front import approximate_front  # it imports this module's constants

        pos, dist, capacity = self._host_config(params)
        return approximate_front(
            pos, dist, capacity, self.frame_skip, self.incremental_frame_skip, float(gamma), bool(symmetric)
        )

    def route_returns(
        self, gamma: float = 1.0, symmetric: bool = False, params: MinecartParams | None = None
    ) -> np.ndarray:
        """The discounted return of every action sequence `pareto_front` enumerates, dominated ones included,
        ``[n, ore_cnt + 1]``; row ``i`` is the same sequence for every ``gamma`` (to pair discounted with
        undiscounted returns)."""
        from morl.envs.minecart_front import route_returns

        pos, dist, capacity = self._host_config(params)
        return route_returns(
            pos, dist, capacity, self.frame_skip, self.incremental_frame_skip, float(gamma), bool(symmetric)
        )

    def convex_coverage_set(
        self, gamma: float = 1.0, symmetric: bool = True, params: MinecartParams | None = None
    ) -> np.ndarray:
        """MO-Gymnasium's approximate CCS: the front's points on the convex hull (with their minimum)."""
        from scipy.spatial import ConvexHull  # loaded only when a CCS is asked for

        front = self.pareto_front(gamma, symmetric, params)
        points = np.concatenate([front.min(axis=0, keepdims=True), front])
        vertices = [i - 1 for i in ConvexHull(points).vertices if i != 0]
        return front[vertices]


register("minecart-v0", Minecart, config="default")
register("minecart-deterministic-v0", Minecart, config="deterministic")
