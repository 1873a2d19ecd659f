"""MuJoCo multi-objective locomotion: MO-Gymnasium 1.3.2's v5 robots in MJX, or native MuJoCo on the host.

Ids: ``mo-hopper-v5`` (3 objectives), ``mo-hopper-2obj-v5``, ``mo-halfcheetah-v5``, ``mo-walker2d-v5``,
``mo-ant-v5`` (3), ``mo-ant-2obj-v5``, ``mo-swimmer-v5``, ``mo-humanoid-v5``, ``mo-reacher-v5`` (9 discrete
actions, 4 targets). Each id takes ``backend=``:

- ``"mjx"``: a pure-JAX `Environment` (jit/vmap; the engine's fast path on GPU/TPU). The physics is MJX
  (``mujoco.mjx``, JAX implementation) on the same XML files gymnasium and MO-Gymnasium ship, with the same
  frame skip, reset noise (drawn from the key), health/termination rules, observation layout and reward
  vector formulas as MO-Gymnasium's v5 envs. It runs in float32, so it matches MuJoCo's float64 to float32
  rounding (tests state the tolerances).
- ``"mujoco"``: native MuJoCo (float64) behind the engine's host path (`morl.gym_bridge.GymnasiumEnv`). For
  hopper, ant (both), halfcheetah, walker2d and swimmer the batch is stepped in C on one thread per core with
  MO-Gymnasium's formulas applied to the whole batch in numpy (`morl.envs.mujoco.native`: trajectories equal
  MO-Gymnasium's bit for bit, faster than its ``MOSyncVectorEnv``: see the README); humanoid and reacher
  step MO-Gymnasium's own envs. ``morl.make("gym:<id>")`` always gives MO-Gymnasium's own envs.
- ``"auto"`` (default): MJX when ``jax.default_backend()`` is ``gpu``/``tpu``, native MuJoCo otherwise. On
  a CPU, MJX is ~15-25x slower than native MuJoCo (measured: see the README) and compiles for about a
  minute per robot, so the native simulator is the CPU default.

Other arguments (both backends): ``max_steps`` (the time limit; the C-MORL protocol evaluates with
``max_steps=500``, MO-Gymnasium registers 1000, reacher 50), ``reset_noise_scale`` and ``physics``: ``"exact"``
(default: the XML's solver options, MO-Gymnasium's twin) or ``"fast"`` (Euler, capped solver, per robot: the
MJX hopper engine 12x faster on a CPU, rewards within sampling error of MO-Gymnasium's over random episodes;
docs/mujoco.md); native only: ``threads`` (stepping threads, default one per core).

Deviation (MJX only): ``mo-humanoid-v5``'s XML asks for MuJoCo's PGS constraint solver, which MJX does not
implement; the MJX humanoid uses the Newton solver (same constraint model and iterations, a different
algorithm: results agree with PGS up to PGS's convergence error). The native backend is unchanged.

Reference points: ``[-100] * m`` for hopper (2 and 3 objectives), ant (2 and 3), halfcheetah and humanoid,
as C-MORL's scripts and MORL-Baselines' examples use them. No paper or library publishes one for walker2d
and swimmer: we use ``[-100, -100]`` by analogy (same reward scales as hopper/halfcheetah). Reacher has no
published point either: ``[-20] * 4`` bounds every return from below (each step's reward is
``1 - 4 * distance >= -0.4`` because the fingertip stays within 0.21 of the origin and the targets sit at 0.14,
and an episode has 50 steps).
"""

from morl.envs.mujoco.backend import BACKENDS, make_mujoco
from morl.envs.mujoco.mjx_env import MJXEnv, MujocoParams, MujocoState
from morl.envs.mujoco.robots import ROBOTS, Robot, asset_path, mujoco_warnings_as_python
from morl.registry import register

__all__ = [
    "MujocoParams",
    "MujocoState",
    "MJXEnv",
    "make_mujoco",
    "ROBOTS",
    "BACKENDS",
    "Robot",
    "asset_path",
    "mujoco_warnings_as_python",
]

for _id in ROBOTS:
    register(_id, make_mujoco, robot=_id)
del _id
