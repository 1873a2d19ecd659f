"""Native MuJoCo, batched: the CPU backend of the MuJoCo ids (``backend="mujoco"``).

Why: MO-Gymnasium's MuJoCo envs spend about 60% of a hopper step in Python (wrappers, health checks, info
dicts), and its ``MOSyncVectorEnv`` steps one env after the other on one core. Here one ``MjData`` per env is
stepped by MuJoCo's own ``mj_step`` on a small thread pool (``mj_step`` releases the GIL, so slices of the batch
run on different cores), and the observations, reward vectors and terminations of the whole batch are computed
at once with numpy, by MO-Gymnasium 1.3.2's v5 formulas, in the same dtypes and the same order of operations.
Resets draw the same reset noise from the same per-env generators as gymnasium (``reset(seed=s)`` seeds env ``i``
with ``s + i``; a reset after an episode continues that env's stream). With the same seed and the same actions
the trajectories equal ``MOSyncVectorEnv``'s bit for bit (tests/test_envs_mujoco.py).

Robots: hopper (3 and 2 objectives), halfcheetah, walker2d, swimmer and ant (3 and 2 objectives; it also reads
the torso position and the external contact forces, after ``mj_rnePostConstraint`` as gymnasium calls it).
Humanoid and reacher read more derived quantities (centre of mass, inertias, actuator forces, fingertip) and keep
MO-Gymnasium's own vector env on the host path. ``morl.make("gym:<id>")`` always gives
MO-Gymnasium's own envs (the reference this backend is tested and benchmarked against).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from morl.gym_bridge import GymnasiumEnv

__all__ = ["NATIVE_ROBOTS", "NativeMujocoEnv", "NativeMujocoVectorEnv", "default_threads"]


# =====================================================================================================
# per-robot formulas (batched; dtypes and operation order as in MO-Gymnasium 1.3.2 / gymnasium 1.x v5)
# =====================================================================================================


class _Batch:
    """The per-env simulator quantities the formulas read (rows = envs)."""

    def __init__(self, qpos: np.ndarray, qvel: np.ndarray, body_xy: np.ndarray | None, cfrc_ext: np.ndarray | None):
        self.qpos, self.qvel, self.body_xy, self.cfrc_ext = qpos, qvel, body_xy, cfrc_ext


def _ctrl_cost(u, action: np.ndarray) -> np.ndarray:
    # gymnasium: ctrl_cost_weight * np.sum(np.square(action)), in the action's dtype
    return u._ctrl_cost_weight * np.sum(np.square(action), axis=1)


def _x_velocity(u, before: _Batch, after: _Batch) -> np.ndarray:
    return (after.qpos[:, 0] - before.qpos[:, 0]) / u.dt


def _in_open(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo < x) & (x < hi)


def _hopper_healthy(u, b: _Batch) -> np.ndarray:
    state = np.concatenate([b.qpos, b.qvel], axis=1)[:, 2:]
    lo, hi = u._healthy_state_range
    return (
        np.all((lo < state) & (state < hi), axis=1)
        & _in_open(b.qpos[:, 1], *u._healthy_z_range)
        & _in_open(b.qpos[:, 2], *u._healthy_angle_range)
    )


def _walker_healthy(u, b: _Batch) -> np.ndarray:
    return _in_open(b.qpos[:, 1], *u._healthy_z_range) & _in_open(b.qpos[:, 2], *u._healthy_angle_range)


def _ant_healthy(u, b: _Batch) -> np.ndarray:
    lo, hi = u._healthy_z_range  # closed interval here, as gymnasium's ant
    finite = np.all(np.isfinite(b.qpos), axis=1) & np.all(np.isfinite(b.qvel), axis=1)
    return finite & (lo <= b.qpos[:, 2]) & (b.qpos[:, 2] <= hi)


def _survive(u, healthy: np.ndarray) -> np.ndarray:
    # hopper/walker: is_healthy is a Python bool, so is_healthy * healthy_reward is a Python float, which numpy
    # adds to a float32 array in float32
    return (healthy * u._healthy_reward).astype(np.float32)[:, None]


def _add_f64(vec: np.ndarray, term: np.ndarray) -> np.ndarray:
    # ``float32_array += float64 scalar``: computed in float64, then rounded to float32
    return (vec.astype(np.float64) + term[:, None]).astype(np.float32)


def _hopper_reward(u, before, after, action, healthy):
    x_velocity = _x_velocity(u, before, after)
    height = 10 * (after.qpos[:, 1] - u.init_qpos[1])
    neg_energy = -_ctrl_cost(u, action)
    if u._cost_objective:
        vec = np.stack([x_velocity, height, neg_energy / u._ctrl_cost_weight], axis=1).astype(np.float32)
    else:
        vec = np.stack([x_velocity, height], axis=1).astype(np.float32)
        vec = vec + neg_energy[:, None]
    return vec + _survive(u, healthy)


def _plain_reward(u, before, after, action, healthy):  # halfcheetah, swimmer: [x velocity, -energy]
    x_velocity = _x_velocity(u, before, after)
    return np.stack([x_velocity, -_ctrl_cost(u, action) / u._ctrl_cost_weight], axis=1).astype(np.float32)


def _walker_reward(u, before, after, action, healthy):  # the same plus the survival reward on both
    return _plain_reward(u, before, after, action, healthy) + _survive(u, healthy)


def _ant_contact_forces(u, b: _Batch) -> np.ndarray:
    return np.clip(b.cfrc_ext, *u._contact_force_range)


def _ant_reward(u, before, after, action, healthy):
    xy_velocity = (after.body_xy - before.body_xy) / u.dt
    neg_energy = -_ctrl_cost(u, action)
    if u._cost_objective:
        vec = np.stack([xy_velocity[:, 0], xy_velocity[:, 1], neg_energy / u._ctrl_cost_weight], axis=1).astype(
            np.float32
        )
    else:
        vec = xy_velocity.astype(np.float32) + neg_energy[:, None]
    # here is_healthy is a numpy bool, so the survival reward is a float64 scalar (added in float64)
    vec = _add_f64(vec, healthy * u._healthy_reward)
    contact_cost = u._contact_cost_weight * np.sum(np.square(_ant_contact_forces(u, after)), axis=(1, 2))
    return _add_f64(vec, -contact_cost)


def _obs(skip: int, clip_velocity: bool):
    def observation(u, b: _Batch) -> np.ndarray:
        position = b.qpos if not u._exclude_current_positions_from_observation else b.qpos[:, skip:]
        velocity = np.clip(b.qvel, -10, 10) if clip_velocity else b.qvel
        return np.concatenate([position, velocity], axis=1)

    return observation


def _ant_obs(u, b: _Batch) -> np.ndarray:
    position = b.qpos if not u._exclude_current_positions_from_observation else b.qpos[:, 2:]
    parts = [position, b.qvel]
    if u._include_cfrc_ext_in_observation:
        parts.append(_ant_contact_forces(u, b)[:, 1:].reshape(len(b.qpos), -1))
    return np.concatenate(parts, axis=1)


class _Formulas:
    def __init__(
        self,
        observation: Callable,
        reward: Callable,
        healthy: Callable | None,
        qvel_noise: str,
        body_frame: bool = False,
    ):
        self.observation, self.reward, self.healthy, self.qvel_noise = observation, reward, healthy, qvel_noise
        self.body_frame = body_frame  # needs the main body's position and the external contact forces


_HOPPER = _Formulas(_obs(1, True), _hopper_reward, _hopper_healthy, "uniform")
_ANT = _Formulas(_ant_obs, _ant_reward, _ant_healthy, "normal", body_frame=True)
#: robot id -> its formulas; the others (humanoid, reacher) use MO-Gymnasium's vector env
NATIVE_ROBOTS: dict[str, _Formulas] = {
    "mo-hopper-v5": _HOPPER,
    "mo-hopper-2obj-v5": _HOPPER,
    "mo-walker2d-v5": _Formulas(_obs(1, True), _walker_reward, _walker_healthy, "uniform"),
    "mo-halfcheetah-v5": _Formulas(_obs(1, False), _plain_reward, None, "normal"),
    "mo-swimmer-v5": _Formulas(_obs(2, False), _plain_reward, None, "uniform"),
    "mo-ant-v5": _ANT,
    "mo-ant-2obj-v5": _ANT,
}


def default_threads() -> int:
    """One stepping thread per core, at most 8 (past that the Python part of each step dominates)."""
    return max(1, min(os.cpu_count() or 1, 8))


# =====================================================================================================
# the vector env
# =====================================================================================================


class NativeMujocoVectorEnv:
    """``num_envs`` copies of one MO-Gymnasium v5 robot, stepped in C on ``threads`` threads.

    The API is MOSyncVectorEnv's where the rollout engine uses it (``reset(seed=)``, ``step(actions)`` ->
    ``(obs, reward[n, m] float32, terminated, truncated, info)``), with one difference: a copy whose episode
    ended is not auto-reset; call ``reset_done(mask)`` (the engine does), and stepping it before that raises.
    ``probe`` is an MO-Gymnasium env of the robot, made with the kwargs to reproduce: its model, initial state,
    frame skip, weights and ranges are read from it, so every MO-Gymnasium kwarg is honoured.
    """

    def __init__(self, robot: str, probe: Any, num_envs: int, max_steps: int | None, threads: int | None = None):
        import mujoco

        if robot not in NATIVE_ROBOTS:
            raise ValueError(f"no native batched stepper for {robot!r}; robots with one: {sorted(NATIVE_ROBOTS)}")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"{robot}: num_envs must be a positive int, got {num_envs!r}")
        threads = default_threads() if threads is None else threads
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"{robot}: threads must be a positive int (or None for one per core), got {threads!r}")
        self._mujoco = mujoco
        self._probe = probe  # keeps the model alive
        self._u = u = probe.unwrapped
        self._formulas = NATIVE_ROBOTS[robot]
        self.robot, self.num_envs, self.max_steps = robot, int(num_envs), max_steps
        self.model = u.model
        self.frame_skip = int(u.frame_skip)
        self._datas = [mujoco.MjData(self.model) for _ in range(self.num_envs)]
        self.qpos = np.zeros((self.num_envs, self.model.nq))
        self.qvel = np.zeros((self.num_envs, self.model.nv))
        body = self._formulas.body_frame
        if body:  # ant: the main body's xy position (velocities) and the external contact forces (obs, cost)
            main = u._main_body
            self._main_body = (
                mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, main) if isinstance(main, str) else int(main)
            )
        self.body_xy = np.zeros((self.num_envs, 2)) if body else None
        self.cfrc_ext = np.zeros((self.num_envs, self.model.nbody, 6)) if body else None
        self._t = np.zeros(self.num_envs, np.int64)
        self._ended = np.ones(self.num_envs, bool)
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self.action_shape = (self.num_envs, self.model.nu)
        threads = min(int(threads), self.num_envs)
        self._slices = [s for s in np.array_split(np.arange(self.num_envs), threads) if len(s)]
        self._pool = ThreadPoolExecutor(len(self._slices)) if len(self._slices) > 1 else None

    # ------------------------------------------------------------------ resets
    def _reset_one(self, i: int) -> None:
        mujoco, u, d = self._mujoco, self._u, self._datas[i]
        if self._rngs[i] is None:  # gymnasium: an env never seeded draws a random seed at its first reset
            self._rngs[i] = np.random.Generator(np.random.PCG64(np.random.SeedSequence(None)))
        rng, scale = self._rngs[i], u._reset_noise_scale
        mujoco.mj_resetData(self.model, d)
        qpos = u.init_qpos + rng.uniform(low=-scale, high=scale, size=self.model.nq)
        if self._formulas.qvel_noise == "normal":
            qvel = u.init_qvel + scale * rng.standard_normal(self.model.nv)
        else:
            qvel = u.init_qvel + rng.uniform(low=-scale, high=scale, size=self.model.nv)
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_forward(self.model, d)
        self._copy_out(i, d)
        self._t[i] = 0
        self._ended[i] = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset every copy; with ``seed`` copy ``i`` is seeded with ``seed + i`` (gymnasium's vector rule)."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"{self.robot}: seed must be an int >= 0 or None, got {seed!r}")
            self._rngs = [
                np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed) + i)))
                for i in range(self.num_envs)
            ]
        for i in range(self.num_envs):
            self._reset_one(i)
        return self._formulas.observation(self._u, self._batch()), {}

    def reset_done(self, mask: np.ndarray) -> np.ndarray:
        """Reset the copies where ``mask`` is True (episodes that ended); returns their new observations."""
        idx = np.flatnonzero(np.asarray(mask, bool))
        for i in idx:
            self._reset_one(int(i))
        return self._formulas.observation(self._u, self._batch(idx))

    # ------------------------------------------------------------------ step
    def _copy_out(self, i: int, d) -> None:
        self.qpos[i] = d.qpos
        self.qvel[i] = d.qvel
        if self.body_xy is not None:
            self.body_xy[i] = d.xpos[self._main_body, :2]
            self.cfrc_ext[i] = d.cfrc_ext

    def _batch(self, idx: np.ndarray | None = None) -> _Batch:
        pick = (lambda a: a) if idx is None else (lambda a: None if a is None else a[idx])
        return _Batch(pick(self.qpos), pick(self.qvel), pick(self.body_xy), pick(self.cfrc_ext))

    def _step_slice(self, idx: np.ndarray, action: np.ndarray) -> None:
        mj_step, model, fs = self._mujoco.mj_step, self.model, self.frame_skip
        # gymnasium calls mj_rnePostConstraint after stepping, for cfrc_ext (only ant reads it)
        post = self._mujoco.mj_rnePostConstraint if self.body_xy is not None else None
        for i in idx:
            d = self._datas[i]
            d.ctrl[:] = action[i]
            mj_step(model, d, nstep=fs)
            if post is not None:
                post(model, d)
            self._copy_out(i, d)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        action = np.asarray(actions)
        if action.shape != self.action_shape:
            raise ValueError(
                f"{self.robot}: actions of shape {action.shape}, expected {self.action_shape} "
                f"(one row of {self.model.nu} controls per env)"
            )
        if self._ended.any():
            raise RuntimeError(
                f"{self.robot}: env(s) {np.flatnonzero(self._ended).tolist()} ended their episode "
                "and were not reset; call reset_done(terminated | truncated) after a step"
            )
        before = _Batch(self.qpos.copy(), None, None if self.body_xy is None else self.body_xy.copy(), None)
        if self._pool is None:
            self._step_slice(self._slices[0], action)
        else:
            for f in [self._pool.submit(self._step_slice, s, action) for s in self._slices]:
                f.result()
        u, fm, after = self._u, self._formulas, self._batch()
        if fm.healthy is None:
            healthy = np.ones(self.num_envs, bool)
            terminated = np.zeros(self.num_envs, bool)
        else:
            healthy = fm.healthy(u, after)
            terminated = ~healthy & bool(u._terminate_when_unhealthy)
        reward = fm.reward(u, before, after, action, healthy)
        self._t += 1
        truncated = (self._t >= self.max_steps) if self.max_steps is not None else np.zeros(self.num_envs, bool)
        self._ended = terminated | truncated
        return fm.observation(u, after), reward, terminated, truncated, {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        threads = len(self._slices)
        return f"<NativeMujocoVectorEnv {self.robot} x{self.num_envs}, {threads} thread(s)>"


# =====================================================================================================
# the descriptor the engine sees
# =====================================================================================================


class NativeMujocoEnv(GymnasiumEnv):
    """The host-path descriptor of a batched robot: ``make_vector_env`` builds a `NativeMujocoVectorEnv`
    (``make_single`` still returns MO-Gymnasium's env, for users who want one ``gymnasium.Env``)."""

    def __init__(self, robot: str, env_fn: Callable[[], Any], ref_point, reward_names, threads: int | None):
        super().__init__(env_fn, ref_point=ref_point, reward_names=reward_names)
        self.robot, self.threads = robot, threads

    def make_vector_env(self, num_envs: int, seed: int | None = None) -> NativeMujocoVectorEnv:
        vec = NativeMujocoVectorEnv(self.robot, self._probe, num_envs, self.max_steps, self.threads)
        vec.reset(seed=seed)
        return vec

    def __repr__(self) -> str:
        return f"<NativeMujocoEnv {self.name}>"
