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
``max_steps=500``, MO-Gymnasium registers 1000, reacher 50) and ``reset_noise_scale``; native only:
``threads`` (stepping threads, default one per core).

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

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.registry import register
from morl.spaces import Box, Discrete

__all__ = ["MujocoParams", "MujocoState", "MJXEnv", "make_mujoco", "ROBOTS", "BACKENDS", "asset_path"]

BACKENDS = ("auto", "mjx", "mujoco")

_INSTALL_HINT = "install the MuJoCo extra: pip install 'morl[mujoco]' (mujoco, mujoco-mjx, imageio)"


# =====================================================================================================
# robots: what differs between the envs, as data
# =====================================================================================================

@dataclass(frozen=True)
class Robot:
    """One MO-Gymnasium v5 robot. Values are MO-Gymnasium 1.3.2's / gymnasium 1.x's v5 defaults."""

    gym_id: str                     # MO-Gymnasium id of the twin
    xml: str                        # model file name
    xml_package: str                # the package whose envs/mujoco/assets/ holds the file
    frame_skip: int
    reset_noise_scale: float
    reward_names: tuple[str, ...]
    ref_point: tuple[float, ...]
    max_steps: int = 1000
    gym_kwargs: tuple[tuple[str, Any], ...] = ()   # kwargs MO-Gymnasium's registration adds
    mjx_solver_newton: bool = False                # MJX lacks PGS: switch to Newton (humanoid)


ROBOTS: dict[str, Robot] = {
    "mo-hopper-v5": Robot("mo-hopper-v5", "hopper.xml", "gymnasium", 4, 5e-3,
                          ("forward", "jump", "energy"), (-100.0,) * 3),
    "mo-hopper-2obj-v5": Robot("mo-hopper-2obj-v5", "hopper.xml", "gymnasium", 4, 5e-3,
                               ("forward", "jump"), (-100.0,) * 2, gym_kwargs=(("cost_objective", False),)),
    "mo-halfcheetah-v5": Robot("mo-halfcheetah-v5", "half_cheetah.xml", "gymnasium", 5, 0.1,
                               ("forward", "energy"), (-100.0,) * 2),
    "mo-walker2d-v5": Robot("mo-walker2d-v5", "walker2d_v5.xml", "gymnasium", 4, 5e-3,
                            ("forward", "energy"), (-100.0,) * 2),
    "mo-ant-v5": Robot("mo-ant-v5", "ant.xml", "gymnasium", 5, 0.1,
                       ("x_velocity", "y_velocity", "energy"), (-100.0,) * 3),
    "mo-ant-2obj-v5": Robot("mo-ant-2obj-v5", "ant.xml", "gymnasium", 5, 0.1,
                            ("x_velocity", "y_velocity"), (-100.0,) * 2, gym_kwargs=(("cost_objective", False),)),
    "mo-swimmer-v5": Robot("mo-swimmer-v5", "swimmer.xml", "gymnasium", 4, 0.1,
                           ("forward", "energy"), (-100.0,) * 2),
    "mo-humanoid-v5": Robot("mo-humanoid-v5", "humanoid.xml", "gymnasium", 5, 1e-2,
                            ("forward", "energy"), (-100.0,) * 2, mjx_solver_newton=True),
    # reacher: the noise scale is the half-width of the qvel noise (MO-Gymnasium hard-codes 0.005; its qpos
    # noise is overwritten by the fixed start pose and targets)
    "mo-reacher-v5": Robot("mo-reacher-v5", "mo_reacher.xml", "mo_gymnasium", 2, 5e-3,
                           ("target_1", "target_2", "target_3", "target_4"), (-20.0,) * 4, max_steps=50),
}


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


def _import_mujoco():
    """``mujoco`` and ``mujoco.mjx``; mjx prints a line about the optional Warp backend on import, muted."""
    try:
        import mujoco
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco import mjx
    except ImportError as e:
        raise ImportError(f"the MJX backend needs mujoco and mujoco-mjx ({e}); {_INSTALL_HINT}") from None
    return mujoco, mjx


# =====================================================================================================
# MJX backend
# =====================================================================================================

@struct.dataclass
class MujocoParams(EnvParams):
    max_steps: int = 1000
    #: half-width of the uniform reset noise (the std of the normal qvel noise for halfcheetah and ant)
    reset_noise_scale: float = 5e-3


@struct.dataclass
class MujocoState:
    data: Any         # mjx.Data: kept whole, as MuJoCo keeps MjData (solver warm start, stale kinematics)
    time: jax.Array


def _impl_field(d, name: str) -> jax.Array:
    """A Data field that MJX keeps in ``d._impl`` (cinert, cfrc_ext) or, in older versions, on ``d``."""
    impl = getattr(d, "_impl", None)
    return getattr(impl, name) if impl is not None and hasattr(impl, name) else getattr(d, name)


class MJXEnv(Environment):
    """Base of the MJX robots. Subclasses define the observation, reward, health and reset noise.

    ``step`` writes the action into ``ctrl``, runs ``frame_skip`` MuJoCo steps (`substep`: MJX's forward stages,
    then the XML's integrator, as ``mjx.step`` does, plus MuJoCo's plane-capsule contact frames), then computes
    the observation and reward vector from the resulting data exactly as MO-Gymnasium reads them from
    ``MjData`` (including the kinematic quantities that ``mj_step`` leaves from its last forward pass, which
    MO-Gymnasium's ant, humanoid and reacher read).
    """

    backend = "mjx"
    uses_cfrc_ext = False  # call rne_postconstraint after the substeps (as gymnasium's MujocoEnv does)

    def __init__(self, robot: Robot, max_steps: int | None = None, reset_noise_scale: float | None = None):
        mujoco, mjx = _import_mujoco()
        self._mjx = mjx
        self.robot = robot
        self.reward_names = robot.reward_names
        self.ref_point = robot.ref_point
        self.spec_id = robot.gym_id
        with mujoco_warnings_as_python():
            model = mujoco.MjModel.from_xml_path(asset_path(robot))
        if robot.mjx_solver_newton:
            model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        self.mj_model = model
        self.mx = mjx.put_model(model, impl="jax")
        self._data0 = mjx.make_data(self.mx, impl="jax")  # mj_resetData's state
        self.frame_skip = robot.frame_skip
        self.dt = float(model.opt.timestep) * robot.frame_skip
        self.init_qpos = np.asarray(model.qpos0, np.float32)
        self._setup_integration(mujoco, model)
        self.nq, self.nv, self.nu = int(model.nq), int(model.nv), int(model.nu)
        self._ctrl_low = np.asarray(model.actuator_ctrlrange[:, 0], np.float32)
        self._ctrl_high = np.asarray(model.actuator_ctrlrange[:, 1], np.float32)
        self._params = MujocoParams(
            max_steps=robot.max_steps if max_steps is None else _check_max_steps(max_steps),
            reset_noise_scale=robot.reset_noise_scale if reset_noise_scale is None else float(reset_noise_scale))
        self._obs_dim = int(self.observation(self._data0).shape[0])

    def _setup_integration(self, mujoco, model) -> None:
        if model.na:
            raise NotImplementedError(f"{self.robot.gym_id}: actuator activations are not supported (na={model.na})")
        integrators = {int(mujoco.mjtIntegrator.mjINT_EULER): "euler", int(mujoco.mjtIntegrator.mjINT_RK4): "rk4"}
        if int(model.opt.integrator) not in integrators:
            raise NotImplementedError(f"{self.robot.gym_id}: integrator {model.opt.integrator} is not supported")
        self._integrator = integrators[int(model.opt.integrator)]
        self._timestep = float(model.opt.timestep)
        free, q_of_v = [], []
        for j in range(model.njnt):
            qadr, vadr, jtype = int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j]), int(model.jnt_type[j])
            if jtype == int(mujoco.mjtJoint.mjJNT_FREE):
                free.append((qadr, vadr))
                q_of_v += [(qadr + i, vadr + i) for i in range(3)]
            elif jtype in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                q_of_v.append((qadr, vadr))
            else:
                raise NotImplementedError(f"{self.robot.gym_id}: ball joints are not supported")
        self._free_joints = tuple(free)
        self._q_of_v = np.asarray(q_of_v, np.int32).reshape(-1, 2)
        gtypes = set(int(t) for t in model.geom_type)
        self._plane_capsule = _GEOM_PLANE in gtypes and _GEOM_CAPSULE in gtypes

    #: RK4 stages unrolled into the program: 1 on a CPU (one inlined forward: half the compile time), 4 on
    #: accelerators (what mjx.step does; faster steps)
    @property
    def rk4_unroll(self) -> int:
        return 1 if jax.default_backend() == "cpu" else 4

    # ------------------------------------------------------------------ declared
    @property
    def default_params(self) -> MujocoParams:
        return self._params

    @property
    def observation_space(self) -> Box:
        return Box(-np.inf, np.inf, (self._obs_dim,), jnp.float32)

    @property
    def action_space(self) -> Box | Discrete:
        return Box(self._ctrl_low, self._ctrl_high, (self.nu,), jnp.float32)

    @property
    def reward_space(self) -> Box:
        return Box(-np.inf, np.inf, (len(self.reward_names),), jnp.float32)

    # ------------------------------------------------------------------ per robot
    def observation(self, d) -> jax.Array:
        raise NotImplementedError

    def healthy(self, d) -> jax.Array:
        return jnp.asarray(True)

    terminates = False  # terminate_when_unhealthy

    def reward(self, d_before, d_after, ctrl: jax.Array) -> jax.Array:
        """The reward vector from the data before and after a step and the action written to ``ctrl``."""
        raise NotImplementedError

    def reset_qpos_qvel(self, key: jax.Array, params: MujocoParams) -> tuple[jax.Array, jax.Array]:
        """Initial state + uniform noise on qpos and qvel (hopper, walker2d, swimmer, humanoid)."""
        kp, kv = jax.random.split(key)
        s = params.reset_noise_scale
        qpos = self.init_qpos + jax.random.uniform(kp, (self.nq,), minval=-s, maxval=s)
        qvel = jax.random.uniform(kv, (self.nv,), minval=-s, maxval=s)
        return qpos, qvel

    def reset_kinematics(self, d):
        """What ``mj_forward`` in gymnasium's ``set_state`` computes that the observation or the first step's
        reward reads (the next ``mjx.step`` recomputes the rest). Default: nothing (qpos/qvel suffice)."""
        return d

    def action_to_ctrl(self, action: jax.Array) -> jax.Array:
        return jnp.asarray(action, jnp.float32)

    # ------------------------------------------------------------------ protocol
    def set_state(self, qpos: jax.Array, qvel: jax.Array, params: MujocoParams | None = None
                  ) -> tuple[jax.Array, MujocoState]:
        """The reset state at a given qpos/qvel (gymnasium's ``mj_resetData`` + ``set_state``): (obs, state)."""
        d = self._data0.replace(qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32))
        # MJX's kinematics writes normalised free-joint quaternions back into qpos; MuJoCo's mj_forward does not,
        # and the observation shows the noisy, unnormalised quaternion of the reset (ant, humanoid)
        d = self.reset_kinematics(d).replace(qpos=d.qpos)
        return self.observation(d), MujocoState(d, jnp.zeros((), jnp.int32))

    def reset(self, key: jax.Array, params: MujocoParams) -> tuple[jax.Array, MujocoState]:
        qpos, qvel = self.reset_qpos_qvel(key, params)
        return self.set_state(qpos, qvel, params)

    # ------------------------------------------------------------------ physics (mj_step, in MJX pieces)
    def forward(self, d):
        """``mj_forward`` from MJX's public stages (as ``mjx.forward``), with one correction: plane-capsule
        contacts get MuJoCo's contact frame (see `_align_capsule_frames`)."""
        mjx, m = self._mjx, self.mx
        for stage in (mjx.kinematics, mjx.com_pos, mjx.camlight, mjx.tendon, mjx.crb, mjx.tendon_armature,
                      mjx.factor_m, mjx.collision):
            d = stage(m, d)
        d = self._align_capsule_frames(d)
        for stage in (mjx.make_constraint, mjx.transmission, mjx.sensor_pos, mjx.fwd_velocity, mjx.sensor_vel,
                      mjx.fwd_actuation, mjx.fwd_acceleration):
            d = stage(m, d)
        if _impl_field(d, "efc_J").size == 0:
            return d.replace(qacc=d.qacc_smooth)
        return mjx.sensor_acc(m, mjx.solve(m, d))

    def _align_capsule_frames(self, d):
        """MuJoCo aligns the first tangent of a plane-capsule contact with the capsule's axis (projected on the
        plane); MJX builds it from the normal alone. With pyramidal friction cones the tangents decide the
        friction pyramid, so without this a capsule foot that is not aligned with the world axes (ant, humanoid)
        slides differently than in MuJoCo."""
        if not self._plane_capsule:
            return d
        con = _impl_field(d, "contact")
        gtype = jnp.asarray(self.mj_model.geom_type)
        mask = (gtype[con.geom[:, 0]] == _GEOM_PLANE) & (gtype[con.geom[:, 1]] == _GEOM_CAPSULE)
        normal = con.frame[:, 0]
        axis = d.geom_xmat[con.geom[:, 1]][:, :, 2]
        tangent = axis - jnp.sum(axis * normal, axis=-1, keepdims=True) * normal
        norm = jnp.linalg.norm(tangent, axis=-1, keepdims=True)
        ok = mask[:, None] & (norm > 1e-6)  # a capsule standing on end keeps MJX's frame
        tangent = jnp.where(ok, tangent / jnp.where(ok, norm, 1.0), con.frame[:, 1])
        frame = jnp.stack([normal, tangent, jnp.where(ok, jnp.cross(normal, tangent), con.frame[:, 2])], axis=1)
        return d.tree_replace({"_impl.contact": con.replace(frame=frame)})

    def _integrate_pos(self, qpos: jax.Array, qvel: jax.Array, h) -> jax.Array:
        """``mj_integratePos``: qpos advanced by qvel * h (quaternions of free joints rotate)."""
        out = qpos + h * self._qvel_to_qpos(qvel)  # hinge and slide joints; free-joint positions
        for qadr, vadr in self._free_joints:
            quat = _quat_integrate(qpos[qadr + 3:qadr + 7], qvel[vadr + 3:vadr + 6], h)
            out = out.at[qadr + 3:qadr + 7].set(quat)
        return out

    def _qvel_to_qpos(self, qvel: jax.Array) -> jax.Array:
        """qvel scattered to qpos layout (free joints: linear part; quaternion slots 0)."""
        return jnp.zeros(self.nq, qvel.dtype).at[self._q_of_v[:, 0]].set(qvel[self._q_of_v[:, 1]])

    def _rk4(self, d):
        """MuJoCo's RK4 step (``mj_step`` with ``integrator="RK4"``): the 4 stage evaluations run as one scan
        over a single ``forward`` (compiles ~2x faster than 4 inlined copies; same arithmetic as MJX's)."""
        h = self._timestep
        # MJX's forward writes normalised quaternions back into qpos; the first stage does so before RK4 reads
        # the initial state
        q0 = self._normalize_quats(d.qpos)
        v0, t0 = d.qvel, d.time

        def stage(carry, x):
            d, kqvel, kqacc, vsum, asum = carry
            a, b, first = x
            qpos = jnp.where(first, q0, self._integrate_pos(q0, kqvel, a * h))
            qvel = jnp.where(first, v0, v0 + kqacc * (a * h))
            d = self.forward(d.replace(qpos=qpos, qvel=qvel, time=t0 + a * h))
            return (d, qvel, d.qacc, vsum + b * qvel, asum + b * d.qacc), None

        zero = jnp.zeros_like(v0)
        xs = (jnp.asarray(_RK4_A), jnp.asarray(_RK4_B), jnp.arange(4) == 0)
        (d, _, _, vsum, asum), _ = jax.lax.scan(stage, (d, v0, zero, zero, zero), xs, unroll=self.rk4_unroll)
        qvel = v0 + asum * h
        return d.replace(qpos=self._integrate_pos(q0, vsum, h), qvel=qvel, time=t0 + h, qacc_warmstart=d.qacc)

    def _normalize_quats(self, qpos: jax.Array) -> jax.Array:
        for qadr, _ in self._free_joints:
            quat = qpos[qadr + 3:qadr + 7]
            qpos = qpos.at[qadr + 3:qadr + 7].set(quat / jnp.linalg.norm(quat))
        return qpos

    def substep(self, d):
        """One ``mj_step``."""
        if self._integrator == "euler":
            return self._mjx.euler(self.mx, self.forward(d))
        return self._rk4(d)

    def physics(self, d, ctrl: jax.Array):
        """``frame_skip`` MuJoCo steps with ``ctrl`` held (gymnasium's ``do_simulation``)."""
        d = d.replace(ctrl=ctrl)
        d = jax.lax.fori_loop(0, self.frame_skip, lambda _, x: self.substep(x), d)
        if self.uses_cfrc_ext:
            d = self._mjx.rne_postconstraint(self.mx, d)
        return d

    def step(self, key: jax.Array, state: MujocoState, action: jax.Array, params: MujocoParams):
        ctrl = self.action_to_ctrl(action)
        d = self.physics(state.data, ctrl)
        reward = self.reward(state.data, d, ctrl).astype(jnp.float32)
        terminated = jnp.logical_and(~self.healthy(d), self.terminates)
        time = state.time + 1
        return (self.observation(d), MujocoState(d, time), reward, terminated, time_limit(time, params),
                {})

    def get_obs(self, state: MujocoState, params: MujocoParams | None = None) -> jax.Array:
        return self.observation(state.data)

    @property
    def bench_size(self) -> tuple[int, int] | None:
        """(num_envs, num_steps) of one benchmark call (`morl.bench`): MJX on a CPU runs ~1k steps/s."""
        return (128, 10) if jax.default_backend() == "cpu" else None

    def __repr__(self) -> str:
        return f"<MJXEnv {self.name}>"


_GEOM_PLANE, _GEOM_CAPSULE = 0, 3  # mjtGeom
_RK4_A = np.array([0.0, 0.5, 0.5, 1.0], np.float32)        # stage offsets (Butcher tableau diagonal)
_RK4_B = np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6], np.float32)  # stage weights


def _quat_integrate(quat: jax.Array, omega: jax.Array, h) -> jax.Array:
    """``mju_quatIntegrate``: rotate ``quat`` by the body-frame angular velocity ``omega`` over ``h``."""
    speed = jnp.linalg.norm(omega)
    axis = omega / jnp.where(speed > 0, speed, 1.0)
    half = 0.5 * h * speed
    rot = jnp.concatenate([jnp.cos(half)[None], axis * jnp.sin(half)])
    w1, x1, y1, z1 = quat
    w2, x2, y2, z2 = rot
    out = jnp.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])
    return out / jnp.linalg.norm(out)


def _check_max_steps(max_steps: Any) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int (e.g. 500 for the C-MORL protocol), got {max_steps!r}")
    return int(max_steps)


def _energy(ctrl: jax.Array) -> jax.Array:
    """MO-Gymnasium's energy objective: ``reward_ctrl / ctrl_cost_weight = -sum(a^2)``."""
    return -jnp.sum(jnp.square(ctrl))


def _in_open(x, low, high):
    return (low < x) & (x < high)


class _PlanarMixin:
    """hopper, walker2d, halfcheetah: x from qpos[0]; the observation drops it."""

    clip_qvel = True

    def observation(self, d):
        qvel = jnp.clip(d.qvel, -10.0, 10.0) if self.clip_qvel else d.qvel
        return jnp.concatenate([d.qpos[1:], qvel]).astype(jnp.float32)

    def velocity(self, d_before, d_after):
        return (d_after.qpos[0] - d_before.qpos[0]) / self.dt


class HopperMJX(_PlanarMixin, MJXEnv):
    terminates = True

    def __init__(self, robot: Robot, cost_objective: bool = True, **kw):
        self.cost_objective = cost_objective
        super().__init__(robot, **kw)

    def healthy(self, d):
        z, angle = d.qpos[1], d.qpos[2]
        state = jnp.concatenate([d.qpos, d.qvel])[2:]
        return (jnp.all(_in_open(state, -100.0, 100.0)) & _in_open(z, 0.7, jnp.inf)
                & _in_open(angle, -0.2, 0.2))

    def reward(self, d_before, d_after, ctrl):
        h = self.healthy(d_after).astype(jnp.float32)  # healthy_reward 1.0
        vx = self.velocity(d_before, d_after)
        jump = 10.0 * (d_after.qpos[1] - self.init_qpos[1])
        if self.cost_objective:
            return jnp.stack([vx, jump, _energy(ctrl)]) + h
        return jnp.stack([vx, jump]) + 1e-3 * _energy(ctrl) + h  # ctrl_cost_weight 1e-3 on both


class Walker2dMJX(_PlanarMixin, MJXEnv):
    terminates = True

    def healthy(self, d):
        return _in_open(d.qpos[1], 0.8, 2.0) & _in_open(d.qpos[2], -1.0, 1.0)

    def reward(self, d_before, d_after, ctrl):
        h = self.healthy(d_after).astype(jnp.float32)
        return jnp.stack([self.velocity(d_before, d_after), _energy(ctrl)]) + h


class HalfCheetahMJX(_PlanarMixin, MJXEnv):
    clip_qvel = False

    def reward(self, d_before, d_after, ctrl):
        return jnp.stack([self.velocity(d_before, d_after), _energy(ctrl)])

    def reset_qpos_qvel(self, key, params):
        kp, kv = jax.random.split(key)
        s = params.reset_noise_scale
        qpos = self.init_qpos + jax.random.uniform(kp, (self.nq,), minval=-s, maxval=s)
        return qpos, s * jax.random.normal(kv, (self.nv,))


class SwimmerMJX(MJXEnv):
    def observation(self, d):
        return jnp.concatenate([d.qpos[2:], d.qvel]).astype(jnp.float32)

    def reward(self, d_before, d_after, ctrl):
        return jnp.stack([(d_after.qpos[0] - d_before.qpos[0]) / self.dt, _energy(ctrl)])


class AntMJX(MJXEnv):
    """x/y velocity of the torso frame (``data.body(1).xpos``, as left by ``mj_step``), contact forces clipped
    to [-1, 1] in the observation and in the contact cost (weight 5e-4) added to every objective."""

    terminates = True
    uses_cfrc_ext = True

    def __init__(self, robot: Robot, cost_objective: bool = True, **kw):
        self.cost_objective = cost_objective
        super().__init__(robot, **kw)

    def contact_forces(self, d):
        return jnp.clip(_impl_field(d, "cfrc_ext"), -1.0, 1.0)

    def observation(self, d):
        return jnp.concatenate([d.qpos[2:], d.qvel, self.contact_forces(d)[1:].ravel()]).astype(jnp.float32)

    def healthy(self, d):
        state = jnp.concatenate([d.qpos, d.qvel])
        return jnp.all(jnp.isfinite(state)) & (0.2 <= d.qpos[2]) & (d.qpos[2] <= 1.0)

    def reward(self, d_before, d_after, ctrl):
        v = (d_after.xpos[1, :2] - d_before.xpos[1, :2]) / self.dt
        h = self.healthy(d_after).astype(jnp.float32)
        contact = -5e-4 * jnp.sum(jnp.square(self.contact_forces(d_after)))
        if self.cost_objective:
            r = jnp.stack([v[0], v[1], _energy(ctrl)])
        else:
            r = v + 0.5 * _energy(ctrl)  # ctrl_cost_weight 0.5 on both
        return r + h + contact

    def reset_qpos_qvel(self, key, params):
        kp, kv = jax.random.split(key)
        s = params.reset_noise_scale
        qpos = self.init_qpos + jax.random.uniform(kp, (self.nq,), minval=-s, maxval=s)
        return qpos, s * jax.random.normal(kv, (self.nv,))

    def reset_kinematics(self, d):
        return self._mjx.kinematics(self.mx, d)  # body xpos for the first step's velocity


class HumanoidMJX(MJXEnv):
    """Velocity of the mass centre (from ``xipos``); observation with cinert, cvel, qfrc_actuator and
    cfrc_ext; healthy reward 5 and the contact cost (5e-7, capped at 10) added to both objectives."""

    terminates = True
    uses_cfrc_ext = True

    def __init__(self, robot: Robot, **kw):
        super().__init__(robot, **kw)
        mass = np.asarray(self.mj_model.body_mass, np.float32)
        self._mass_weights = mass / mass.sum()

    def mass_center(self, d):
        return (self._mass_weights @ d.xipos)[:2]

    def observation(self, d):
        return jnp.concatenate([
            d.qpos[2:], d.qvel, _impl_field(d, "cinert")[1:].ravel(), d.cvel[1:].ravel(),
            d.qfrc_actuator[6:], _impl_field(d, "cfrc_ext")[1:].ravel()]).astype(jnp.float32)

    def healthy(self, d):
        return _in_open(d.qpos[2], 1.0, 2.0)

    def reward(self, d_before, d_after, ctrl):
        vx = (self.mass_center(d_after)[0] - self.mass_center(d_before)[0]) / self.dt
        h = 5.0 * self.healthy(d_after).astype(jnp.float32)
        contact = -jnp.minimum(5e-7 * jnp.sum(jnp.square(_impl_field(d_after, "cfrc_ext"))), 10.0)
        return jnp.stack([vx, _energy(ctrl)]) + h + contact

    def reset_kinematics(self, d):
        # positions, com inertias and com velocities; qfrc_actuator and cfrc_ext are 0 after a reset (ctrl = 0)
        mjx, mx = self._mjx, self.mx
        return mjx.com_vel(mx, mjx.com_pos(mx, mjx.kinematics(mx, d)))


#: reacher's 9 discrete actions: index 3 * i1 + i2 -> (torque1, torque2), each from [-1, 0, 1]
REACHER_ACTIONS = np.array([(a1, a2) for a1 in (-1.0, 0.0, 1.0) for a2 in (-1.0, 0.0, 1.0)], np.float32)
REACHER_GOALS = np.array([0.14, 0.0, -0.14, 0.0, 0.0, 0.14, 0.0, -0.14], np.float32)


class ReacherMJX(MJXEnv):
    """A 2-link arm and 4 targets; reward i = 1 - 4 * |fingertip - target_i| (xy), read from the data
    *before* the step as MO-Gymnasium does. Never terminates."""

    def __init__(self, robot: Robot, **kw):
        super().__init__(robot, **kw)
        names = [self.mj_model.body(i).name for i in range(self.mj_model.nbody)]
        self._fingertip = names.index("fingertip")
        self._targets = np.array([names.index(f"target{i}") for i in range(1, 5)])

    @property
    def action_space(self) -> Discrete:
        return Discrete(len(REACHER_ACTIONS))

    def action_to_ctrl(self, action):
        return jnp.asarray(REACHER_ACTIONS)[action]

    def observation(self, d):
        theta = d.qpos[:2]
        return jnp.concatenate([jnp.cos(theta), jnp.sin(theta), 0.1 * d.qvel[:2]]).astype(jnp.float32)

    def reward(self, d_before, d_after, ctrl):
        tip = d_before.xpos[self._fingertip, :2]
        return 1.0 - 4.0 * jnp.linalg.norm(tip[None, :] - d_before.xpos[self._targets, :2], axis=-1)

    def reset_qpos_qvel(self, key, params):
        qpos = jnp.asarray(self.init_qpos).at[:2].set(jnp.array([0.0, 3.1415 / 2])).at[-8:].set(REACHER_GOALS)
        s = params.reset_noise_scale
        qvel = jax.random.uniform(key, (self.nv,), minval=-s, maxval=s).at[-8:].set(0.0)
        return qpos, qvel

    def reset_kinematics(self, d):
        return self._mjx.kinematics(self.mx, d)  # fingertip/target positions for the first reward


_MJX_CLASSES = {
    "mo-hopper-v5": HopperMJX, "mo-hopper-2obj-v5": HopperMJX, "mo-halfcheetah-v5": HalfCheetahMJX,
    "mo-walker2d-v5": Walker2dMJX, "mo-ant-v5": AntMJX, "mo-ant-2obj-v5": AntMJX, "mo-swimmer-v5": SwimmerMJX,
    "mo-humanoid-v5": HumanoidMJX, "mo-reacher-v5": ReacherMJX,
}


# =====================================================================================================
# the factory behind every id: picks the backend
# =====================================================================================================

def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}: 'mjx' (pure JAX, for GPU/TPU), "
                         "'mujoco' (native MuJoCo on the host, fastest on a CPU) or 'auto' (picks by device)")
    if backend == "auto":
        return "mjx" if jax.default_backend() in ("gpu", "tpu") else "mujoco"
    return backend


def make_mujoco(robot: str, backend: str = "auto", max_steps: int | None = None,
                reset_noise_scale: float | None = None, threads: int | None = None, **unknown: Any):
    """The entry point of every MuJoCo id: an MJX `Environment` or a host `GymnasiumEnv`.

    ``max_steps`` (time limit) and ``reset_noise_scale`` act the same on both backends. ``threads``: stepping
    threads of the native backend (`morl.envs.mujoco.native`; None = one per core).
    """
    if robot not in ROBOTS:
        raise ValueError(f"unknown MuJoCo robot {robot!r}; one of {sorted(ROBOTS)}")
    spec = ROBOTS[robot]
    if unknown:
        raise TypeError(f"{robot}: unknown argument(s) {sorted(unknown)}; accepted: backend "
                        f"{BACKENDS}, max_steps, reset_noise_scale, threads")
    if max_steps is not None:
        max_steps = _check_max_steps(max_steps)
    if reset_noise_scale is not None and not (np.isfinite(reset_noise_scale) and reset_noise_scale >= 0):
        raise ValueError(f"{robot}: reset_noise_scale must be a finite number >= 0, got {reset_noise_scale!r}")
    chosen = _resolve_backend(backend)
    if chosen == "mjx":
        if threads is not None:
            raise ValueError(f"{robot}: threads applies to backend='mujoco' (native stepping threads); MJX runs "
                             "the batch as one XLA program")
        cls = _MJX_CLASSES[robot]
        return cls(spec, **dict(spec.gym_kwargs), max_steps=max_steps, reset_noise_scale=reset_noise_scale)
    return _make_host(spec, max_steps, reset_noise_scale, threads)


class _MOGymFactory:
    """Builds MO-Gymnasium's env as ``mo_gym.make`` does (env checker off), with MuJoCo's load-time warnings
    kept out of ``MUJOCO_LOG.TXT``. A picklable ``env_fn`` for the host path's vector envs."""

    def __init__(self, gym_id: str, kwargs: dict[str, Any]):
        self.gym_id, self.kwargs = gym_id, dict(kwargs)

    def __call__(self):
        import gymnasium
        import mo_gymnasium  # noqa: F401  (registers the ids)

        with mujoco_warnings_as_python():
            return gymnasium.make(self.gym_id, disable_env_checker=True, **self.kwargs)


def _make_host(spec: Robot, max_steps: int | None, reset_noise_scale: float | None, threads: int | None):
    """The host-path descriptor: the batched native stepper for the robots it covers, else MO-Gymnasium's own v5
    env (as ``morl.make("gym:<id>")``); both with our declarations (reference point, reward names)."""
    from morl.gym_bridge import from_gymnasium

    if importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("imageio") is None:
        raise ImportError(f"{spec.gym_id} with backend='mujoco' needs mujoco and imageio; {_INSTALL_HINT}")
    kwargs: dict[str, Any] = {"max_episode_steps": spec.max_steps if max_steps is None else max_steps}
    if reset_noise_scale is not None:
        if spec.gym_id == "mo-reacher-v5":
            if reset_noise_scale != spec.reset_noise_scale:
                raise ValueError("mo-reacher-v5 with backend='mujoco': MO-Gymnasium's reacher has no "
                                 "reset_noise_scale (its qvel noise is fixed at 0.005); drop the argument or use "
                                 "backend='mjx'")
        else:
            kwargs["reset_noise_scale"] = float(reset_noise_scale)
    from morl.envs.mujoco.native import NATIVE_ROBOTS, NativeMujocoEnv

    factory = _MOGymFactory(spec.gym_id, kwargs)
    if spec.gym_id in NATIVE_ROBOTS:  # batched C stepping, MO-Gymnasium's formulas (bit-identical, tested)
        env = NativeMujocoEnv(spec.gym_id, factory, spec.ref_point, spec.reward_names, threads)
    else:
        if threads is not None:
            raise ValueError(f"{spec.gym_id}: threads applies to the batched native robots "
                             f"{sorted(NATIVE_ROBOTS)}; this robot steps MO-Gymnasium's own vector env")
        env = from_gymnasium(factory, ref_point=spec.ref_point, reward_names=spec.reward_names)
    env.backend = "mujoco"
    return env


make_mujoco.bench_backends = ("mjx", "mujoco")  # `morl bench rollout` measures the engine with each

for _id in ROBOTS:
    register(_id, make_mujoco, robot=_id)
del _id
