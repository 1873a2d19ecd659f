"""The MJX robots: observation, reward vector, health rule and reset noise of each MO-Gymnasium v5 env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from morl.envs.mujoco.mjx_env import MJXEnv, impl_field
from morl.envs.mujoco.robots import Robot
from morl.spaces import Discrete

__all__ = [
    "HopperMJX",
    "Walker2dMJX",
    "HalfCheetahMJX",
    "SwimmerMJX",
    "AntMJX",
    "HumanoidMJX",
    "ReacherMJX",
    "MJX_CLASSES",
    "REACHER_ACTIONS",
    "REACHER_GOALS",
]


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
        return jnp.all(_in_open(state, -100.0, 100.0)) & _in_open(z, 0.7, jnp.inf) & _in_open(angle, -0.2, 0.2)

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
        return jnp.clip(impl_field(d, "cfrc_ext"), -1.0, 1.0)

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
        return jnp.concatenate(
            [
                d.qpos[2:],
                d.qvel,
                impl_field(d, "cinert")[1:].ravel(),
                d.cvel[1:].ravel(),
                d.qfrc_actuator[6:],
                impl_field(d, "cfrc_ext")[1:].ravel(),
            ]
        ).astype(jnp.float32)

    def healthy(self, d):
        return _in_open(d.qpos[2], 1.0, 2.0)

    def reward(self, d_before, d_after, ctrl):
        vx = (self.mass_center(d_after)[0] - self.mass_center(d_before)[0]) / self.dt
        h = 5.0 * self.healthy(d_after).astype(jnp.float32)
        contact = -jnp.minimum(5e-7 * jnp.sum(jnp.square(impl_field(d_after, "cfrc_ext"))), 10.0)
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


MJX_CLASSES = {
    "mo-hopper-v5": HopperMJX,
    "mo-hopper-2obj-v5": HopperMJX,
    "mo-halfcheetah-v5": HalfCheetahMJX,
    "mo-walker2d-v5": Walker2dMJX,
    "mo-ant-v5": AntMJX,
    "mo-ant-2obj-v5": AntMJX,
    "mo-swimmer-v5": SwimmerMJX,
    "mo-humanoid-v5": HumanoidMJX,
    "mo-reacher-v5": ReacherMJX,
}
