"""PD-MORL MO-TD3-HER (``pd-morl``): a preference-conditioned actor and twin vector critics, guided by the angle
between the interpolated preference and the Q vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from morl.agent import AgentSpec, check_config, register_agent
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.networks import ReluMLP, observation_dim, preprocess_obs
from morl.agents.pd_morl.base import Lane, PDMORLBase, PDState
from morl.agents.pd_morl.interpolator import Interpolator, interpolate, make_interpolator
from morl.agents.preferences import jitter_preference
from morl.rollout import make_rollout
from morl.solution import Solution
from morl.spaces import Box


@dataclass(frozen=True)
class PDMORLConfig:
    """MO-TD3-HER settings. Defaults: the official MuJoCo settings (``Walker2d_MO_TD3_HER`` for the main run,
    ``Walker2d_MO_TD3_HER_Key`` for the key runs; docs/sources.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the key
    runs included: the ``m + 1`` key runs take ``(m + 1) * key_timesteps`` and the main run the rest, which must
    be positive (else a one-line error). The default is the paper's total for two objectives: main run 10M plus
    3 key runs x 2M (the official key scripts run outside the main budget; here they are inside it). With m
    objectives the key runs take (m + 1) x 2M of it. The main run's random warm-up (``start_timesteps`` per env)
    is part of the main run."""

    total_timesteps: int = 16_000_000  # the whole budget, key runs included: official main run 10M (1M
    # iterations x 10 processes) + 3 key runs x 2M (two objectives)
    key_timesteps: int = 2_000_000  # env steps of each key-preference run (official key scripts: 2M)
    lr_actor: float = 3e-4  # Adam learning rate of the actor
    lr_critic: float = 3e-4  # Adam learning rate of the twin critics
    gamma: float = 0.995  # discount of the main run (and of evaluated key returns)
    key_gamma: float = 0.99  # discount of the key runs
    batch_size: int = 256  # main-run minibatch
    key_batch_size: int = 100  # key-run minibatch
    hidden: int = 400  # layer width of actor and critics
    num_layers: int = 2  # hidden ReLU layers (official: input layer + layer_N=1 hidden layer)
    buffer_size: int = 2_000_000  # main-run replay capacity in entries (HER copies included)
    key_buffer_size: int = 500_000  # key-run replay capacity
    start_timesteps: int = 10_000  # per-env random-action steps at the start of the main run
    key_start_timesteps: int = 25_000  # ... of each key run (counted over the lane's envs)
    expl_noise: float = 0.1  # Gaussian exploration noise, times the action half-range
    policy_noise: float = 0.2  # target policy smoothing noise, times the action half-range
    noise_clip: float = 0.5  # ... clipped at this, times the action half-range
    policy_freq: int = 10  # critic updates per actor update, main run (Hopper: 20)
    key_policy_freq: int = 2  # ... key runs (Swimmer 5, Hopper 10)
    tau: float = 0.005  # Polyak coefficient of both targets (applied on actor-update steps)
    actor_loss_coeff: float = 10.0  # weight of the angle term in the actor loss
    max_grad_norm: float = 100.0  # gradient-norm clip of actor and critics
    weight_num: int = 3  # HER: relabelled copies per transition
    her_start: int | None = None  # HER starts past this many buffer entries;
    # None = start_timesteps x num_subspaces
    w_step: float = 0.001  # spacing of the preference grid
    num_subspaces: int = 10  # contiguous sub-spaces of the grid (official: process_count)
    envs_per_subspace: int = 1  # envs drawing from each sub-space
    updates_per_step: float = 1.0  # critic updates per env transition (official: 1)
    cosine_shift: tuple[float, ...] | None = None  # added to Q and key returns inside cosines; None = from the key runs
    refit_interpolator: bool = True  # refit I from the conditioned policy at the key preferences after each chunk
    refit_norm: Literal["l1", "l2"] = "l1"  # normalisation of refitted key returns (official: L1 on refit, L2 at first)
    eval_episodes: int = 3  # episodes per key preference when evaluating (official eval_episodes 3)
    steps_per_chunk: int = 1000  # vector env steps per jitted chunk
    critic_angle_coeff: float = 1.0  # weight of the angle terms in the critic loss (official: 1, none)
    normalize_obs: bool = True  # scale observation dims with finite Box bounds to [-1, 1] (none on MuJoCo)
    noise_correlation: float = 0.0  # AR(1) coefficient of the exploration noise per env step (0: i.i.d.,
    # official); > 0 also makes the random warm-up correlated (see module doc)

    def __post_init__(self):
        check_config(
            "pd-morl",
            self,
            at_least_one=(
                "total_timesteps",
                "key_timesteps",
                "batch_size",
                "key_batch_size",
                "hidden",
                "num_layers",
                "buffer_size",
                "key_buffer_size",
                "policy_freq",
                "key_policy_freq",
                "num_subspaces",
                "envs_per_subspace",
                "steps_per_chunk",
                "eval_episodes",
            ),
            choices={"refit_norm": ("l1", "l2")},
        )
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(f"pd-morl config: noise_correlation must be in [0, 1), got {self.noise_correlation!r}")
        if self.updates_per_step <= 0:
            raise ValueError(f"pd-morl config: updates_per_step must be > 0, got {self.updates_per_step!r}")

    @property
    def num_envs(self) -> int:
        return self.num_subspaces * self.envs_per_subspace


def _obs_scaling(space, enabled: bool) -> tuple[jax.Array | None, jax.Array | None]:
    """Center and half-width mapping the finite-bounded dims of a Box observation space to [-1, 1] (other dims:
    center 0, scale 1); ``(None, None)`` when disabled, for non-Box spaces, or when no dim has finite bounds."""
    if not enabled or not isinstance(space, Box):
        return None, None
    low = np.broadcast_to(np.asarray(space.low, np.float64), space.shape).reshape(-1)
    high = np.broadcast_to(np.asarray(space.high, np.float64), space.shape).reshape(-1)
    finite = np.isfinite(low) & np.isfinite(high) & (high > low)
    if not finite.any():
        return None, None
    center = np.where(finite, (high + low) / 2, 0.0)
    scale = np.where(finite, (high - low) / 2, 1.0)
    return jnp.asarray(center, jnp.float32), jnp.asarray(scale, jnp.float32)


class Actor(nn.Module):
    """``pi(s, w) = center + half_range * tanh(MLP([s, w]))`` (official: ``max_action * tanh``)."""

    action_dim: int
    hidden: tuple[int, ...]
    center: tuple[float, ...]
    half_range: tuple[float, ...]

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        out = jnp.tanh(ReluMLP(self.action_dim, self.hidden, "xavier_normal")(jnp.concatenate([x, w], -1)))
        return jnp.asarray(self.center, jnp.float32) + jnp.asarray(self.half_range, jnp.float32) * out


class TwinCritic(nn.Module):
    """Two independent vector critics ``Q_i(s, w, a) -> [B, m]``."""

    reward_dim: int
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, a: jax.Array) -> tuple[jax.Array, jax.Array]:
        inp = jnp.concatenate([x, w, a], -1)
        return (
            ReluMLP(self.reward_dim, self.hidden, "xavier_normal", name="q1")(inp),
            ReluMLP(self.reward_dim, self.hidden, "xavier_normal", name="q2")(inp),
        )


class PDMORLTrainer(PDMORLBase):
    """MO-TD3-HER (chunked `morl.agent.Trainer`). Lane params are ``{"actor", "critic"}``, likewise targets and
    optimiser states."""

    agent_name = "pd-morl"

    def __init__(self, config: PDMORLConfig, env, env_params=None):
        space = env.action_space
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise ValueError(
                f"pd-morl needs a 1-D Box action space; {env.name} has {space!r} "
                "(use pd-morl-discrete for discrete actions)"
            )
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"pd-morl needs a bounded action space (tanh actor); {env.name}'s is unbounded")
        self.low, self.high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
        self.half = (self.high - self.low) / 2
        self.action_dim = int(space.shape[0])
        hidden = (config.hidden,) * config.num_layers
        center, half_range = tuple(((high + low) / 2).tolist()), tuple(((high - low) / 2).tolist())
        self.actor = Actor(self.action_dim, hidden, center, half_range)
        self.critic = TwinCritic(env.reward_dim, hidden)
        self.tx_actor = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr_actor))
        self.tx_critic = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr_critic))
        self._setup_common(config, env, env_params)
        self.rollout = make_rollout(env, self._behaviour_policy, self.num_envs, 1, gamma=config.gamma)
        self.her_start = (
            config.her_start if config.her_start is not None else config.start_timesteps * config.num_subspaces
        )
        self._obs_center, self._obs_scale = _obs_scaling(env.observation_space, config.normalize_obs)
        x_of = self._x

        def act(params, w, obs, key):
            x = x_of(obs)
            wb = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
            return self.actor.apply(params, x, wb)

        self._act = act
        self._compile()

    # the solution and key evaluation use the actor only
    def _greedy(self, params, w, obs):
        return self._act(params, w, obs, None)

    def _policy_params(self, params):
        return params["actor"]

    def solution(self, state: PDState) -> Solution:
        return Solution(act=self._act, params=state.main.params["actor"], conditioned=True, greedy=True)

    def _x(self, obs):
        x = preprocess_obs(self.env.observation_space, obs)
        if self._obs_center is None:
            return x
        return (x - self._obs_center) / self._obs_scale

    def _behaviour_policy(self, p, obs, key):
        """Actor plus exploration noise, or random actions during the warm-up. The noise ``z`` (unit variance per
        dimension) is AR(1) across env steps, ``z' = rho z + sqrt(1 - rho^2) eps``; ``rho = 0`` is the official
        i.i.d. Gaussian noise and uniform warm-up. With ``rho > 0`` the warm-up acts ``clip(center + half z)``:
        correlated pushes build momentum (mountain car) where i.i.d. uniform actions cancel out."""
        k_noise, k_rand = jax.random.split(key)
        rho = self.config.noise_correlation
        eps = jax.random.normal(k_noise, p["noise"].shape)
        z = eps if rho == 0.0 else rho * p["noise"] + np.sqrt(1.0 - rho * rho) * eps
        a = self.actor.apply(p["actor"], self._x(obs), p["w"])
        a = jnp.clip(a + z * self.half * p["expl_noise"], self.low, self.high)
        if rho == 0.0:
            rand = jax.random.uniform(k_rand, a.shape, minval=self.low, maxval=self.high)
        else:
            rand = jnp.clip((self.low + self.high) / 2 + self.half * z, self.low, self.high)
        return jnp.where(p["random"], rand, a), z

    def _lane_init(self, key: jax.Array, w: jax.Array, capacity: int) -> Lane:
        k_a, k_c, k_env = jax.random.split(key, 3)
        x = jnp.zeros((1, observation_dim(self.env.observation_space)), jnp.float32)
        w1 = jnp.zeros((1, self.m), jnp.float32)
        actor = self.actor.init(k_a, x, w1)
        critic = self.critic.init(k_c, x, w1, jnp.zeros((1, self.action_dim), jnp.float32))
        params = {"actor": actor, "critic": critic}
        opt = {"actor": self.tx_actor.init(actor), "critic": self.tx_critic.init(critic)}
        rstate = self.rollout.init.pure(k_env, self.env_params)
        action = jnp.zeros((self.action_dim,), jnp.float32)
        example = rb.transition_example(rstate.obs[0], action, self.m, w=jnp.zeros((self.m,), jnp.float32))
        replay = rb.init(example, capacity)
        noise = jnp.zeros((self.num_envs, self.action_dim), jnp.float32)
        return Lane(params, params, opt, replay, rstate, w, jnp.int32(0), jnp.int32(0), noise)

    def _init_fn(self, key: jax.Array) -> PDState:
        c = self.config
        k_keys, k_main, k_w, key = jax.random.split(key, 4)
        keys = jax.vmap(
            lambda k, w: self._lane_init(k, jnp.broadcast_to(w, (self.num_envs, self.m)), c.key_buffer_size)
        )(jax.random.split(k_keys, self.num_keys), self.key_w)
        main = self._lane_init(k_main, self._episode_preferences(k_w, True, None), c.buffer_size)
        interp = make_interpolator(self.key_w, jnp.zeros((self.num_keys, self.m)), jnp.zeros((self.m,)), "l2")
        key_returns = jnp.full((self.num_keys, self.m), -1e9, jnp.float32)
        return PDState(jnp.int32(0), keys, key_returns, main, interp, key)

    def _iteration(self, lane: Lane, key: jax.Array, *, main: bool, w_key, interp: Interpolator, budget: int):
        c = self.config
        k_roll, k_w, k_her, k_upd, k_jit = jax.random.split(key, 5)
        active = lane.steps < budget
        start = c.start_timesteps * self.num_envs if main else c.key_start_timesteps
        w_act = lane.w if main else jitter_preference(k_jit, jnp.broadcast_to(w_key, (self.num_envs, self.m)))
        policy_params = {
            "actor": lane.params["actor"],
            "w": w_act,
            "expl_noise": c.expl_noise,
            "random": lane.steps < start,
            "noise": lane.noise,
        }
        lane, tr = self._step(
            lane, policy_params, w_act, active, k_roll, k_w, k_her, main=main, w_key=w_key, her_start=self.her_start
        )
        lane = lane.replace(noise=jnp.where(active, tr.extras, lane.noise))
        batch = c.batch_size if main else c.key_batch_size
        learning = active & (lane.replay.size >= 2 * batch * max(c.weight_num, 1))
        lane, logs = self._learn(lane, k_upd, learning, main, interp)
        return lane, jax.tree.map(jnp.mean, logs)

    def _gradient_step(self, lane: Lane, key: jax.Array, enabled, main: bool, interp: Interpolator):
        c = self.config
        k_batch, k_noise = jax.random.split(key)
        batch_size, gamma = (c.batch_size, c.gamma) if main else (c.key_batch_size, c.key_gamma)
        policy_freq = c.policy_freq if main else c.key_policy_freq
        batch, _ = rb.sample(lane.replay, k_batch, batch_size)
        x, nx, w, a = self._x(batch["obs"]), self._x(batch["next_obs"]), batch["w"], batch["action"]
        w_p = interpolate(interp, w) if main else None
        shift = interp.shift
        next_a = td.td3_target_action(
            k_noise,
            self.actor.apply(lane.target["actor"], nx, w),
            c.policy_noise * self.half,
            c.noise_clip * self.half,
            self.low,
            self.high,
        )
        q1n, q2n = self.critic.apply(lane.target["critic"], nx, w, next_a)
        y = jax.lax.stop_gradient(
            td.bootstrap(batch["reward"], batch["terminated"], gamma, td.td3_min_vector(q1n, q2n, w))
        )

        def critic_loss(cp):
            q1, q2 = self.critic.apply(cp, x, w, a)
            loss = td.td3_critic_loss(q1, q2, y)
            if main:  # angles between w_p and the (shifted) Q vectors; official: no coefficient
                loss = loss + c.critic_angle_coeff * (
                    jnp.mean(td.angle_deg(w_p, q1 + shift)) + jnp.mean(td.angle_deg(w_p, q2 + shift))
                )
            return loss

        loss_c, g = jax.value_and_grad(critic_loss)(lane.params["critic"])
        upd, opt_c = self.tx_critic.update(g, lane.opt_state["critic"], lane.params["critic"])
        critic = optax.apply_updates(lane.params["critic"], upd)
        updates = lane.updates + enabled.astype(jnp.int32)
        critic = td.select_params(enabled, critic, lane.params["critic"])
        opt_c = td.select_params(enabled, opt_c, lane.opt_state["critic"])

        def actor_step(operand):
            actor, opt_a, target = operand

            def actor_loss(ap):
                q1, _ = self.critic.apply(critic, x, w, self.actor.apply(ap, x, w))
                loss = td.td3_actor_loss(q1, w)
                if main:
                    loss = loss + c.actor_loss_coeff * jnp.mean(td.angle_deg(w_p, q1 + shift))
                return loss

            loss_a, ga = jax.value_and_grad(actor_loss)(actor)
            ua, opt_a = self.tx_actor.update(ga, opt_a, actor)
            actor = optax.apply_updates(actor, ua)
            target = {
                "actor": td.polyak(actor, target["actor"], c.tau),
                "critic": td.polyak(critic, target["critic"], c.tau),
            }
            return (actor, opt_a, target), loss_a

        do_actor = enabled & (updates % policy_freq == 0)
        (actor, opt_a, target), loss_a = jax.lax.cond(
            do_actor,
            actor_step,
            lambda op: (op, jnp.float32(0.0)),
            (lane.params["actor"], lane.opt_state["actor"], lane.target),
        )
        lane = lane.replace(
            params={"actor": actor, "critic": critic},
            opt_state={"actor": opt_a, "critic": opt_c},
            target=target,
            updates=updates,
        )
        return lane, {"loss": jnp.where(enabled, loss_c, 0.0), "actor_loss": loss_a}


def make_continuous_trainer(config: PDMORLConfig, env, env_params=None) -> PDMORLTrainer:
    return PDMORLTrainer(config, env, env_params)


CONTINUOUS_ENV_DEFAULTS: dict[str, dict[str, Any]] = {}

CONTINUOUS_SPEC = register_agent(
    AgentSpec(
        name="pd-morl",
        config_cls=PDMORLConfig,
        make_trainer=make_continuous_trainer,
        summary="PD-MORL MO-TD3-HER (Basaklar et al. 2023): one preference-conditioned actor, angle-guided twin "
        "vector critics, key-preference interpolator, HER, sub-space envs",
        action_kinds=("continuous",),
        env_defaults=CONTINUOUS_ENV_DEFAULTS,
    )
)
