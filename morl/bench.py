"""Benchmarks: env steps/s of the engine beside the reference stack, measured in the same run.

Speed is measured here, never asserted in tests. Ratios are quoted against MO-Gymnasium measured in the
same process on the same machine, because absolute figures on a shared machine drift by 20-30%.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import jax
import numpy as np

import morl
from morl.rollout import make_rollout, random_policy


@dataclass
class BenchRow:
    what: str
    num_envs: int
    steps: int
    seconds: float
    compile_seconds: float | None = None  # the engine's first call (trace + compile + one run), when measured
    variant: str = ""                     # the make() kwargs that distinguish engine rows, e.g. "backend=mjx"

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def machine() -> str:
    import os

    devs = jax.devices()
    return (f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
            f"{len(devs)} x {devs[0].platform}:{devs[0].device_kind}")


def bench_engine(env_id: str, num_envs: int, num_steps: int = 1000, min_seconds: float = 2.0, seed: int = 0,
                 env_kwargs: dict | None = None) -> BenchRow:
    """The engine with a random policy (auto-reset and episode statistics included, compile excluded).

    ``env_kwargs`` go to ``morl.make`` (e.g. ``{"backend": "mujoco"}``). Host envs run at most 64 envs x 200
    steps per call, and an env may cap the sizes for the device it runs on through a ``bench_size`` attribute
    ((num_envs, num_steps), e.g. MJX on a CPU), so one call stays within seconds.
    """
    env, params = morl.make(env_id, **(env_kwargs or {}))
    is_host = getattr(env, "is_host", False)
    cap = (64, 200) if is_host else getattr(env, "bench_size", None)
    if cap is not None:
        num_envs, num_steps = min(num_envs, cap[0]), min(num_steps, cap[1])
    rollout = make_rollout(env, random_policy(env), num_envs, num_steps, emit="summary", seed=seed)
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    state = rollout.init(key, params)
    state, out = rollout.run((), state, key, params)  # compile
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    calls, start = 0, time.perf_counter()
    while True:
        key, k = jax.random.split(key)
        state, out = rollout.run((), state, k, params)
        jax.block_until_ready(out)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            break
    how = "host path" if is_host else f"jit+vmap, {jax.devices()[0].platform}"
    variant = ", ".join(f"{k}={v}" for k, v in (env_kwargs or {}).items())
    tag = f", {variant}" if variant else ""
    return BenchRow(f"morl engine ({how}{tag}; first call {compile_s:.1f} s)", num_envs,
                    calls * num_envs * num_steps, elapsed, compile_s, variant)


def engine_variants(env_id: str) -> list[dict]:
    """The ``morl.make`` kwargs to benchmark an id with: one entry per backend where its entry point lists
    several (``entry_point.bench_backends``, e.g. the MuJoCo ids: MJX and native MuJoCo), else ``[{}]``."""
    if env_id.startswith("gym:"):
        return []
    from morl.registry import spec

    backends = getattr(spec(env_id).load(), "bench_backends", None)
    return [{"backend": b} for b in backends] if backends else [{}]


def _gym_id(env_id: str) -> str:
    return env_id[len("gym:"):] if env_id.startswith("gym:") else env_id


def _mo_gym_make(gym_id: str):
    """``mo_gym.make``; MuJoCo's load-time warnings go to Python's ``warnings`` (not MUJOCO_LOG.TXT + stderr)."""
    import importlib.util

    import mo_gymnasium as mo_gym

    if importlib.util.find_spec("mujoco") is None:
        return mo_gym.make(gym_id)
    from morl.envs.mujoco import mujoco_warnings_as_python

    with mujoco_warnings_as_python():
        return mo_gym.make(gym_id)


def bench_mo_gymnasium_single(env_id: str, min_seconds: float = 2.0, seed: int = 0) -> BenchRow:
    """MO-Gymnasium's plain loop: one env, random actions, reset on episode end."""
    env = _mo_gym_make(_gym_id(env_id))
    env.action_space.seed(seed)
    env.reset(seed=seed)
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        steps += 1000
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return BenchRow("MO-Gymnasium single env", 1, steps, elapsed)


def bench_mo_gymnasium_vector(env_id: str, num_envs: int = 64, min_seconds: float = 2.0, seed: int = 0) -> BenchRow:
    """MO-Gymnasium's ``MOSyncVectorEnv`` with random actions (it auto-resets itself)."""
    from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

    vec = MOSyncVectorEnv([lambda: _mo_gym_make(_gym_id(env_id)) for _ in range(num_envs)])
    vec.reset(seed=seed)
    vec.action_space.seed(seed)
    steps, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            vec.step(vec.action_space.sample())
        steps += 20 * num_envs
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            vec.close()
            return BenchRow(f"MO-Gymnasium MOSyncVectorEnv({num_envs})", num_envs, steps, elapsed)


def bench_rollout(env_id: str, num_envs: int = 4096, num_steps: int = 1000, min_seconds: float = 2.0,
                  reference: bool = True) -> list[BenchRow]:
    rows = [bench_engine(env_id, num_envs, num_steps, min_seconds, env_kwargs=kw) for kw in engine_variants(env_id)]
    if reference:
        rows.append(bench_mo_gymnasium_single(env_id, min_seconds))
        rows.append(bench_mo_gymnasium_vector(env_id, 64, min_seconds))
    return rows
