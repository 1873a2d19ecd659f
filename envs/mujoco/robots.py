"""The robots as data: what differs between MO-Gymnasium's v5 MuJoCo envs, and where their XML files live."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Robot", "FastPhysics", "ROBOTS", "PHYSICS", "apply_physics", "asset_path", "mujoco_warnings_as_python"]

INSTALL_HINT = "install the MuJoCo extra: pip install 'morl[mujoco]' (mujoco, mujoco-mjx, imageio)"

#: ``physics=`` presets: "exact" runs the XML's own solver options (the twin of MO-Gymnasium); "fast" trades
#: accuracy for speed as MuJoCo Playground and Brax do (see `FastPhysics` and docs/mujoco.md)
PHYSICS = ("exact", "fast")


@dataclass(frozen=True)
class FastPhysics:
    """The ``physics="fast"`` solver options of one robot: Euler steps (one forward pass per step instead of
    RK4's four), no implicit joint damping in Euler where that leaves the rewards in place (``eulerdamp`` off
    saves a second factorisation per step), and caps on the Newton and line-search iterations chosen from
    C MuJoCo's counts over random rollouts (experiments/mjx_solver_stats.py). Timestep and frame skip are kept,
    so ``dt`` and the rewards' scale are MO-Gymnasium's."""

    iterations: int
    ls_iterations: int
    eulerdamp: bool = False
    #: Euler steps per XML timestep (the timestep divided, the frame skip multiplied: ``dt`` unchanged), where
    #: one Euler step per timestep moves the episode statistics (ant: 2, still half of RK4's forward passes)
    substeps: int = 1


@dataclass(frozen=True)
class Robot:
    """One MO-Gymnasium v5 robot. Values are MO-Gymnasium 1.3.2's / gymnasium 1.x's v5 defaults."""

    gym_id: str  # MO-Gymnasium id of the twin
    xml: str  # model file name
    xml_package: str  # the package whose envs/mujoco/assets/ holds the file
    frame_skip: int
    reset_noise_scale: float
    reward_names: tuple[str, ...]
    ref_point: tuple[float, ...]
    max_steps: int = 1000
    gym_kwargs: tuple[tuple[str, Any], ...] = ()  # kwargs MO-Gymnasium's registration adds
    mjx_solver_newton: bool = False  # MJX lacks PGS: switch to Newton (humanoid)
    fast: FastPhysics = FastPhysics(100, 50)  # the physics="fast" preset (every robot sets its caps)


#: the fast caps are the largest Newton iteration count and line-search cost evaluations (``solver.neval``) that
#: C MuJoCo needed over 20,000 random-action env steps per robot under the fast integrator and flags
#: (experiments/mjx_solver_stats.py --physics fast --uncapped): they did not truncate a single solve there
ROBOTS: dict[str, Robot] = {
    "mo-hopper-v5": Robot(
        "mo-hopper-v5",
        "hopper.xml",
        "gymnasium",
        4,
        5e-3,
        ("forward", "jump", "energy"),
        (-100.0,) * 3,
        fast=FastPhysics(5, 8),
    ),
    "mo-hopper-2obj-v5": Robot(
        "mo-hopper-2obj-v5",
        "hopper.xml",
        "gymnasium",
        4,
        5e-3,
        ("forward", "jump"),
        (-100.0,) * 2,
        gym_kwargs=(("cost_objective", False),),
        fast=FastPhysics(5, 8),
    ),
    "mo-halfcheetah-v5": Robot(
        "mo-halfcheetah-v5",
        "half_cheetah.xml",
        "gymnasium",
        5,
        0.1,
        ("forward", "energy"),
        (-100.0,) * 2,
        fast=FastPhysics(5, 7, eulerdamp=True),
    ),
    "mo-walker2d-v5": Robot(
        "mo-walker2d-v5",
        "walker2d_v5.xml",
        "gymnasium",
        4,
        5e-3,
        ("forward", "energy"),
        (-100.0,) * 2,
        fast=FastPhysics(6, 8),
    ),
    "mo-ant-v5": Robot(
        "mo-ant-v5",
        "ant.xml",
        "gymnasium",
        5,
        0.1,
        ("x_velocity", "y_velocity", "energy"),
        (-100.0,) * 3,
        fast=FastPhysics(7, 8, substeps=2),
    ),
    "mo-ant-2obj-v5": Robot(
        "mo-ant-2obj-v5",
        "ant.xml",
        "gymnasium",
        5,
        0.1,
        ("x_velocity", "y_velocity"),
        (-100.0,) * 2,
        gym_kwargs=(("cost_objective", False),),
        fast=FastPhysics(7, 8, substeps=2),
    ),
    "mo-swimmer-v5": Robot(
        "mo-swimmer-v5",
        "swimmer.xml",
        "gymnasium",
        4,
        0.1,
        ("forward", "energy"),
        (-100.0,) * 2,
        fast=FastPhysics(3, 4),
    ),
    "mo-humanoid-v5": Robot(
        "mo-humanoid-v5",
        "humanoid.xml",
        "gymnasium",
        5,
        1e-2,
        ("forward", "energy"),
        (-100.0,) * 2,
        mjx_solver_newton=True,
        fast=FastPhysics(6, 10),
    ),
    # reacher: the noise scale is the half-width of the qvel noise (MO-Gymnasium hard-codes 0.005; its qpos
    # noise is overwritten by the fixed start pose and targets)
    "mo-reacher-v5": Robot(
        "mo-reacher-v5",
        "mo_reacher.xml",
        "mo_gymnasium",
        2,
        5e-3,
        ("target_1", "target_2", "target_3", "target_4"),
        (-20.0,) * 4,
        max_steps=50,
        fast=FastPhysics(2, 3),
    ),
}


def apply_physics(model, robot: Robot, physics: str) -> int:
    """Set ``model.opt`` (an ``MjModel``) for a ``physics`` preset ("exact" leaves the XML's options) and return
    the frame skip that keeps the env's ``dt``."""
    import mujoco

    if physics not in PHYSICS:
        raise ValueError(
            f"{robot.gym_id}: physics must be one of {PHYSICS}, got {physics!r}: 'exact' (the XML's "
            "solver options, MO-Gymnasium's twin) or 'fast' (Euler, capped solver: see docs/mujoco.md)"
        )
    if physics == "fast":
        model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER
        if not robot.fast.eulerdamp:
            model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        model.opt.iterations = robot.fast.iterations
        model.opt.ls_iterations = robot.fast.ls_iterations
        model.opt.timestep = model.opt.timestep / robot.fast.substeps
        return robot.frame_skip * robot.fast.substeps
    return robot.frame_skip


def asset_path(robot: Robot) -> str:
    """Path of the robot's XML inside the installed gymnasium / mo_gymnasium package (no import needed)."""
    spec = importlib.util.find_spec(robot.xml_package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{robot.gym_id}: package {robot.xml_package!r} is not installed; it ships {robot.xml}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "envs", "mujoco", "assets", robot.xml)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{robot.gym_id}: {path} does not exist (is {robot.xml_package} complete?)")
    return path


@contextlib.contextmanager
def mujoco_warnings_as_python():
    """Route MuJoCo's warnings while loading models to Python's ``warnings`` instead of its default handler,
    which appends them to ``MUJOCO_LOG.TXT`` in the working directory. gymnasium's half_cheetah.xml uses the
    deprecated ``settotalmass`` attribute (harmless, not ours to fix): that warning is dropped."""
    import mujoco

    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def import_mujoco():
    """``mujoco`` and ``mujoco.mjx``; mjx prints a line about the optional Warp backend on import, muted."""
    try:
        import mujoco

        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco import mjx
    except ImportError as e:
        raise ImportError(f"the MJX backend needs mujoco and mujoco-mjx ({e}); {INSTALL_HINT}") from None
    return mujoco, mjx


def check_max_steps(max_steps: Any) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int (e.g. 500 for the C-MORL protocol), got {max_steps!r}")
    return int(max_steps)
