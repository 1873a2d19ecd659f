"""The MJX base env: MuJoCo's ``mj_step`` in MJX pieces, the reset and the engine protocol (pure JAX)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams, time_limit
from morl.envs.mujoco.robots import (
    Robot,
    apply_physics,
    asset_path,
    check_max_steps,
    import_mujoco,
    mujoco_warnings_as_python,
)
from morl.spaces import Box, Discrete

__all__ = ["MujocoParams", "MujocoState", "MJXEnv", "impl_field"]


@struct.dataclass
class MujocoParams(EnvParams):
    max_steps: int = 1000
    #: half-width of the uniform reset noise (the std of the normal qvel noise for halfcheetah and ant)
    reset_noise_scale: float = 5e-3


@struct.dataclass
class MujocoState:
    data: Any  # mjx.Data: kept whole, as MuJoCo keeps MjData (solver warm start, stale kinematics)
    time: jax.Array


def impl_field(d, name: str) -> jax.Array:
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

    ``physics="fast"`` builds the model with the robot's `FastPhysics` options (Euler, capped solver) before
    ``put_model``: the same code then runs fewer forward passes and solver iterations per env step.
    """

    backend = "mjx"
    uses_cfrc_ext = False  # call rne_postconstraint after the substeps (as gymnasium's MujocoEnv does)

    def __init__(
        self, robot: Robot, max_steps: int | None = None, reset_noise_scale: float | None = None, physics: str = "exact"
    ):
        mujoco, mjx = import_mujoco()
        self._mjx = mjx
        self.robot = robot
        self.reward_names = robot.reward_names
        self.ref_point = robot.ref_point
        self.spec_id = robot.gym_id
        with mujoco_warnings_as_python():
            model = mujoco.MjModel.from_xml_path(asset_path(robot))
        if robot.mjx_solver_newton:
            model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        self.frame_skip = apply_physics(model, robot, physics)
        self.physics_preset = physics
        self.mj_model = model
        self.mx = mjx.put_model(model, impl="jax")
        self._data0 = mjx.make_data(self.mx, impl="jax")  # mj_resetData's state
        self.dt = float(model.opt.timestep) * self.frame_skip
        self.init_qpos = np.asarray(model.qpos0, np.float32)
        self._setup_integration(mujoco, model)
        self.nq, self.nv, self.nu = int(model.nq), int(model.nv), int(model.nu)
        self._ctrl_low = np.asarray(model.actuator_ctrlrange[:, 0], np.float32)
        self._ctrl_high = np.asarray(model.actuator_ctrlrange[:, 1], np.float32)
        self._params = MujocoParams(
            max_steps=robot.max_steps if max_steps is None else check_max_steps(max_steps),
            reset_noise_scale=robot.reset_noise_scale if reset_noise_scale is None else float(reset_noise_scale),
        )
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
    @abstractmethod
    def observation(self, d) -> jax.Array:
        """The robot's observation from MJX data (MO-Gymnasium's layout)."""

    def healthy(self, d) -> jax.Array:
        return jnp.asarray(True)

    terminates = False  # terminate_when_unhealthy

    @abstractmethod
    def reward(self, d_before, d_after, ctrl: jax.Array) -> jax.Array:
        """The reward vector from the data before and after a step and the action written to ``ctrl``."""

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
    def set_state(
        self, qpos: jax.Array, qvel: jax.Array, params: MujocoParams | None = None
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
        for stage in (
            mjx.kinematics,
            mjx.com_pos,
            mjx.camlight,
            mjx.tendon,
            mjx.crb,
            mjx.tendon_armature,
            mjx.factor_m,
            mjx.collision,
        ):
            d = stage(m, d)
        d = self._align_capsule_frames(d)
        for stage in (
            mjx.make_constraint,
            mjx.transmission,
            mjx.sensor_pos,
            mjx.fwd_velocity,
            mjx.sensor_vel,
            mjx.fwd_actuation,
            mjx.fwd_acceleration,
        ):
            d = stage(m, d)
        if impl_field(d, "efc_J").size == 0:
            return d.replace(qacc=d.qacc_smooth)
        return mjx.sensor_acc(m, mjx.solve(m, d))

    def _align_capsule_frames(self, d):
        """MuJoCo aligns the first tangent of a plane-capsule contact with the capsule's axis (projected on the
        plane); MJX builds it from the normal alone. With pyramidal friction cones the tangents decide the
        friction pyramid, so without this a capsule foot that is not aligned with the world axes (ant, humanoid)
        slides differently than in MuJoCo."""
        if not self._plane_capsule:
            return d
        con = impl_field(d, "contact")
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
            quat = _quat_integrate(qpos[qadr + 3 : qadr + 7], qvel[vadr + 3 : vadr + 6], h)
            out = out.at[qadr + 3 : qadr + 7].set(quat)
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
            quat = qpos[qadr + 3 : qadr + 7]
            qpos = qpos.at[qadr + 3 : qadr + 7].set(quat / jnp.linalg.norm(quat))
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
        return (self.observation(d), MujocoState(d, time), reward, terminated, time_limit(time, params), {})

    def get_obs(self, state: MujocoState, params: MujocoParams | None = None) -> jax.Array:
        return self.observation(state.data)

    @property
    def bench_size(self) -> tuple[int, int] | None:
        """(num_envs, num_steps) of one benchmark call (`morl.bench`): MJX on a CPU runs ~1k steps/s."""
        return (128, 10) if jax.default_backend() == "cpu" else None

    def __repr__(self) -> str:
        return f"<MJXEnv {self.name}>"


_GEOM_PLANE, _GEOM_CAPSULE = 0, 3  # mjtGeom
_RK4_A = np.array([0.0, 0.5, 0.5, 1.0], np.float32)  # stage offsets (Butcher tableau diagonal)
_RK4_B = np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6], np.float32)  # stage weights


def _quat_integrate(quat: jax.Array, omega: jax.Array, h) -> jax.Array:
    """``mju_quatIntegrate``: rotate ``quat`` by the body-frame angular velocity ``omega`` over ``h``."""
    speed = jnp.linalg.norm(omega)
    axis = omega / jnp.where(speed > 0, speed, 1.0)
    half = 0.5 * h * speed
    rot = jnp.concatenate([jnp.cos(half)[None], axis * jnp.sin(half)])
    w1, x1, y1, z1 = quat
    w2, x2, y2, z2 = rot
    out = jnp.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )
    return out / jnp.linalg.norm(out)
