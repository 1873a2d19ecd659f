"""Benchmarks: env steps/s of the engine beside the reference stack, measured in the same run.

Speed is measured here, never asserted in tests. Ratios are quoted against MO-Gymnasium measured in the
same process on the same machine, because absolute figures on a shared machine drift by 20-30%.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass

import jax

import morl
from morl.rollout import make_rollout, random_policy


@dataclass
class BenchRow:
    what: str
    num_envs: int
    steps: int
    seconds: float
    compile_seconds: float | None = None  # trace + compile of the engine (probe program), when measured
    variant: str = ""  # the make() kwargs that distinguish engine rows, e.g. "backend=mjx"

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def machine() -> str:
    import os

    devs = jax.devices()
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"{len(devs)} x {devs[0].platform}:{devs[0].device_kind}"
    )


#: steps per call of the probe program that measures compile time and the cost of one step
PROBE_STEPS = 16


def steps_per_call(seconds_per_step: float, max_steps: int, target_call_s: float) -> int:
    """Scan length for the timed program: one call lasts about ``target_call_s`` (so a row stays within
    its time on any device, e.g. MJX robots at thousands of envs), never more than ``max_steps`` (the
    user's ``--num-steps``) nor fewer than the probe's length (per-call dispatch would dominate)."""
    if seconds_per_step <= 0:
        return max_steps
    return int(max(min(max_steps, PROBE_STEPS), min(max_steps, target_call_s / seconds_per_step)))


def bench_engine(
    env_id: str,
    num_envs: int,
    num_steps: int = 1000,
    min_seconds: float = 2.0,
    seed: int = 0,
    env_kwargs: dict | None = None,
) -> BenchRow:
    """The engine with a random policy (auto-reset and episode statistics included, compile excluded).

    A short probe program (``PROBE_STEPS`` steps per call) is compiled first: its first call minus a
    second one is the compile time, reported apart; its second call prices one step, which chooses the
    timed program's steps per call (``steps_per_call``: about ``min_seconds / 4`` per call, at most
    ``num_steps``). ``env_kwargs`` go to ``morl.make`` (e.g. ``{"backend": "mujoco"}``). Host envs run at
    most 64 envs x 200 steps per call, and an env may cap the sizes for the device it runs on through a
    ``bench_size`` attribute ((num_envs, num_steps), e.g. MJX on a CPU).
    """
    env, params = morl.make(env_id, **(env_kwargs or {}))
    is_host = getattr(env, "is_host", False)
    cap = (64, 200) if is_host else getattr(env, "bench_size", None)
    if cap is not None:
        num_envs, num_steps = min(num_envs, cap[0]), min(num_steps, cap[1])
    key = jax.random.PRNGKey(seed)

    def timed_call(rollout, state, k):
        t = time.perf_counter()
        state, out = rollout.run((), state, k, params)
        jax.block_until_ready(out)
        return state, time.perf_counter() - t

    probe_len = min(PROBE_STEPS, num_steps)
    probe = make_rollout(env, random_policy(env), num_envs, probe_len, emit="summary", seed=seed)
    state = probe.init(key, params)
    state, first = timed_call(probe, state, key)
    state, second = timed_call(probe, state, jax.random.fold_in(key, 1))
    compile_s = max(first - second, 0.0)
    # a probe call of >= 50 ms already makes dispatch (well under 1 ms) negligible: time the probe itself
    length = probe_len if second >= 0.05 else steps_per_call(second / probe_len, num_steps, min_seconds / 4)
    rollout = probe
    if length != probe_len:
        rollout = make_rollout(env, random_policy(env), num_envs, length, emit="summary", seed=seed)
        state, _ = timed_call(rollout, state, jax.random.fold_in(key, 2))  # its own compile, not timed
    calls, elapsed = 0, 0.0
    while elapsed < min_seconds:
        key, k = jax.random.split(key)
        state, dt = timed_call(rollout, state, k)
        calls, elapsed = calls + 1, elapsed + dt
    how = "host path" if is_host else f"jit+vmap, {jax.devices()[0].platform}"
    variant = ", ".join(f"{k}={v}" for k, v in (env_kwargs or {}).items())
    tag = f", {variant}" if variant else ""
    return BenchRow(
        f"morl engine ({how}{tag}; {length} steps/call)",
        num_envs,
        calls * num_envs * length,
        elapsed,
        compile_s,
        variant,
    )


def engine_variants(env_id: str) -> list[dict]:
    """The ``morl.make`` kwargs to benchmark an id with: one entry per backend where its entry point lists
    several (``entry_point.bench_backends``, e.g. the MuJoCo ids: MJX and native MuJoCo), plus MJX with each
    further physics preset (``entry_point.bench_physics``, e.g. ``fast``), else ``[{}]``."""
    if env_id.startswith("gym:"):
        return []
    from morl.registry import spec

    entry = spec(env_id).load()
    backends = getattr(entry, "bench_backends", None)
    if not backends:
        return [{}]
    variants = [{"backend": b} for b in backends]
    presets = getattr(entry, "bench_physics", ())
    variants += [{"backend": "mjx", "physics": p} for p in presets[1:] if "mjx" in backends]
    return variants


def _gym_id(env_id: str) -> str:
    return env_id[len("gym:") :] if env_id.startswith("gym:") else env_id


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


def bench_rollout(
    env_id: str, num_envs: int = 4096, num_steps: int = 1000, min_seconds: float = 2.0, reference: bool = True
) -> list[BenchRow]:
    rows = [bench_engine(env_id, num_envs, num_steps, min_seconds, env_kwargs=kw) for kw in engine_variants(env_id)]
    if reference:
        rows.append(bench_mo_gymnasium_single(env_id, min_seconds))
        rows.append(bench_mo_gymnasium_vector(env_id, 64, min_seconds))
    return rows
