"""The factory behind every MuJoCo id: picks the backend (MJX or native MuJoCo) and checks the arguments."""

from __future__ import annotations

import importlib.util
from typing import Any

import jax
import numpy as np

from morl.envs.mujoco.robots import (
    INSTALL_HINT,
    PHYSICS,
    ROBOTS,
    Robot,
    apply_physics,
    check_max_steps,
    mujoco_warnings_as_python,
)
from morl.envs.mujoco.robots_mjx import MJX_CLASSES

__all__ = ["BACKENDS", "make_mujoco"]

BACKENDS = ("auto", "mjx", "mujoco")


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS}, got {backend!r}: 'mjx' (pure JAX, for GPU/TPU), "
            "'mujoco' (native MuJoCo on the host, fastest on a CPU) or 'auto' (picks by device)"
        )
    if backend == "auto":
        return "mjx" if jax.default_backend() in ("gpu", "tpu") else "mujoco"
    return backend


def make_mujoco(
    robot: str,
    backend: str = "auto",
    max_steps: int | None = None,
    reset_noise_scale: float | None = None,
    threads: int | None = None,
    physics: str = "exact",
    **unknown: Any,
):
    """The entry point of every MuJoCo id: an MJX `Environment` or a host `GymnasiumEnv`.

    ``max_steps`` (time limit) and ``reset_noise_scale`` act the same on both backends. ``threads``: stepping
    threads of the native backend (`morl.envs.mujoco.native`; None = one per core). ``physics``: "exact" (the
    XML's solver options, MO-Gymnasium's twin) or "fast" (the robot's `FastPhysics` preset, on either backend:
    see docs/mujoco.md for what it changes and how far its rewards move).
    """
    if robot not in ROBOTS:
        raise ValueError(f"unknown MuJoCo robot {robot!r}; one of {sorted(ROBOTS)}")
    spec = ROBOTS[robot]
    if unknown:
        raise TypeError(
            f"{robot}: unknown argument(s) {sorted(unknown)}; accepted: backend "
            f"{BACKENDS}, max_steps, reset_noise_scale, threads, physics {PHYSICS}"
        )
    if max_steps is not None:
        max_steps = check_max_steps(max_steps)
    if reset_noise_scale is not None and not (np.isfinite(reset_noise_scale) and reset_noise_scale >= 0):
        raise ValueError(f"{robot}: reset_noise_scale must be a finite number >= 0, got {reset_noise_scale!r}")
    if physics not in PHYSICS:
        raise ValueError(
            f"{robot}: physics must be one of {PHYSICS}, got {physics!r}: 'exact' (the XML's solver "
            "options, MO-Gymnasium's twin) or 'fast' (Euler, capped solver: see docs/mujoco.md)"
        )
    chosen = _resolve_backend(backend)
    if chosen == "mjx":
        if threads is not None:
            raise ValueError(
                f"{robot}: threads applies to backend='mujoco' (native stepping threads); MJX runs "
                "the batch as one XLA program"
            )
        cls = MJX_CLASSES[robot]
        return cls(
            spec, **dict(spec.gym_kwargs), max_steps=max_steps, reset_noise_scale=reset_noise_scale, physics=physics
        )
    return _make_host(spec, max_steps, reset_noise_scale, threads, physics)


class _MOGymFactory:
    """Builds MO-Gymnasium's env as ``mo_gym.make`` does (env checker off), with MuJoCo's load-time warnings
    kept out of ``MUJOCO_LOG.TXT``, and the ``physics`` preset applied to its model. A picklable ``env_fn`` for the
    host path's vector envs."""

    def __init__(self, gym_id: str, kwargs: dict[str, Any], physics: str = "exact"):
        self.gym_id, self.kwargs, self.physics = gym_id, dict(kwargs), physics

    def __call__(self):
        import gymnasium
        import mo_gymnasium  # noqa: F401  (registers the ids)

        with mujoco_warnings_as_python():
            env = gymnasium.make(self.gym_id, disable_env_checker=True, **self.kwargs)
        if self.physics != "exact":  # gymnasium's do_simulation and dt read the frame skip
            env.unwrapped.frame_skip = apply_physics(env.unwrapped.model, ROBOTS[self.gym_id], self.physics)
        return env


def _make_host(
    spec: Robot, max_steps: int | None, reset_noise_scale: float | None, threads: int | None, physics: str = "exact"
):
    """The host-path descriptor: the batched native stepper for the robots it covers, else MO-Gymnasium's own v5
    env (as ``morl.make("gym:<id>")``); both with our declarations (reference point, reward names)."""
    from morl.gym_bridge import from_gymnasium

    if importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("imageio") is None:
        raise ImportError(f"{spec.gym_id} with backend='mujoco' needs mujoco and imageio; {INSTALL_HINT}")
    kwargs: dict[str, Any] = {"max_episode_steps": spec.max_steps if max_steps is None else max_steps}
    if reset_noise_scale is not None:
        if spec.gym_id == "mo-reacher-v5":
            if reset_noise_scale != spec.reset_noise_scale:
                raise ValueError(
                    "mo-reacher-v5 with backend='mujoco': MO-Gymnasium's reacher has no "
                    "reset_noise_scale (its qvel noise is fixed at 0.005); drop the argument or use "
                    "backend='mjx'"
                )
        else:
            kwargs["reset_noise_scale"] = float(reset_noise_scale)
    from morl.envs.mujoco.native import NATIVE_ROBOTS, NativeMujocoEnv

    factory = _MOGymFactory(spec.gym_id, kwargs, physics)
    if spec.gym_id in NATIVE_ROBOTS:  # batched C stepping, MO-Gymnasium's formulas (bit-identical, tested)
        env = NativeMujocoEnv(spec.gym_id, factory, spec.ref_point, spec.reward_names, threads)
    else:
        if threads is not None:
            raise ValueError(
                f"{spec.gym_id}: threads applies to the batched native robots "
                f"{sorted(NATIVE_ROBOTS)}; this robot steps MO-Gymnasium's own vector env"
            )
        env = from_gymnasium(factory, ref_point=spec.ref_point, reward_names=spec.reward_names)
    env.backend = "mujoco"
    return env


make_mujoco.bench_backends = ("mjx", "mujoco")  # `morl bench rollout` measures the engine with each
make_mujoco.bench_physics = PHYSICS  # and MJX with each physics preset (exact, fast)
