"""CAPQL: concave-augmented Pareto Q-learning (Lu, Herman, Yu, ICLR 2023) as MORL-Baselines implements it, in JAX.

One preference-conditioned soft actor-critic serves every preference. The actor ``pi(a | s, w)`` and an ensemble of
``num_q_nets`` vector critics ``Q_k(s, w, a) -> [m]`` see the preference concatenated to the observation (the shared
`agents.sac.SAC` block, built on the features ``[obs, w]``). Every env step draws a fresh preference, acts with it
and stores it with the transition; learning replays the stored preferences:

- critic target, per objective: ``y = r + gamma (1 - terminated) (min_k Q'_k(s', w, a') - alpha log pi(a' | s', w))``
  with ``a' ~ pi(s', w)``. The minimum over the ensemble is taken **component by component** (not by the scalarised
  value, as the MOSAC block does), and the entropy bonus is added to **every** objective: the concave augmentation;
- critic loss: the mean over the ensemble of each critic's MSE to ``y`` (mean over the batch and the objectives);
- actor loss: ``mean(alpha log pi(a | s, w) - w . min_k Q_k(s, w, a))``, ``a ~ pi(s, w)`` reparameterised;
- every update: one critic step, one actor step, Polyak averaging of every target critic (``tau``); ``alpha`` fixed.

A training chunk is one jitted scan over vector env steps (``num_envs`` envs, MORL-Baselines: 1), each followed by
``gradient_updates`` updates, so ``update`` is pure and vmaps over seeds. Where this differs from MORL-Baselines and
from the official code: docs/algorithms/capql.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agent import AgentSpec, JitTrainer, check_config, episode_return_logs, register_agent
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.networks import observation_dim, preprocess_obs
from morl.agents.preferences import gaussian_preferences
from morl.agents.sac import SAC
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution
from morl.spaces import Box

PyTree = Any
#: MORL-Baselines clips the log-probabilities of sampled actions to this range
LOG_PROB_CLIP = 1e3


# =============================================================================================== config
@dataclass(frozen=True)
class CAPQLConfig:
    """CAPQL settings. Defaults: MORL-Baselines ``CAPQL.__init__`` (docs/sources.md), which deviates from the official
    code (batch 256, 10k random steps, 10M steps) in ``batch_size`` and ``learning_starts``.

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the random
    warm-up (``learning_starts``) included. Training stops at the first vector step that reaches the budget, so a
    run uses at most ``total_timesteps + num_envs - 1`` transitions (exactly the budget when it is a multiple of
    ``num_envs``); the rest of the last chunk is computed and discarded (no replay write, no learning)."""

    total_timesteps: int = 1_000_000  # training budget in env steps (MORL-Baselines' train(total_timesteps)
    # has no default; the official code runs 10M)
    learning_rate: float = 3e-4  # Adam learning rate of the actor and the critics
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak coefficient of the target critics, every update
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    net_arch: tuple[int, ...] = (256, 256)  # hidden layer widths of the actor and every critic (ReLU)
    batch_size: int = 128  #: MORL-Baselines (official: 256)
    num_q_nets: int = 2  # critics in the ensemble; the target takes their element-wise minimum
    alpha: float = 0.2  # entropy coefficient (fixed): the strength of the concave augmentation
    learning_starts: int = 1000  #: MORL-Baselines (official: 10,000): uniform random actions and no updates before
    # this many env steps
    gradient_updates: int = 1  # updates per vector env step
    weight_angle: float = 22.5  # training preferences: uniform angle within this many degrees of the uniform
    # preference (both codes); 0 = |N(0, I)| L1-normalised over the whole simplex (the official code's other sampler)
    stochastic_behaviour: bool = False  #: MORL-Baselines acts with the deterministic tanh(mean) after the warm-up;
    # True samples a ~ pi(s, w) as the official code does
    num_envs: int = 1  # envs stepped in lockstep (ours; MORL-Baselines: 1)
    steps_per_chunk: int = 1000  # vector env steps per jitted training chunk (one `update` call)

    def __post_init__(self):
        check_config(
            "capql",
            self,
            at_least_one=(
                "total_timesteps",
                "buffer_size",
                "batch_size",
                "num_q_nets",
                "gradient_updates",
                "num_envs",
                "steps_per_chunk",
            ),
            non_negative=("alpha", "learning_starts"),
            unit_interval=("tau",),
        )
        if not 0.0 <= self.weight_angle < 90.0:
            raise ValueError(
                f"capql config: weight_angle must be in [0, 90) degrees, got {self.weight_angle!r} "
                "(0 samples |N(0, I)| preferences over the whole simplex)"
            )
        if not self.net_arch or min(self.net_arch) < 1:
            raise ValueError(f"capql config: net_arch needs at least one layer of >= 1 units, got {self.net_arch!r}")
        if self.num_envs > self.buffer_size:
            raise ValueError(
                f"capql config: buffer_size ({self.buffer_size}) must hold one vector step (num_envs={self.num_envs})"
            )


# =============================================================================================== blocks
def angle_preferences(key: jax.Array, n: int, m: int, angle_deg: float) -> jax.Array:
    """``n`` preferences ``[n, m]`` within ``angle_deg`` of the uniform preference (MORL-Baselines'
    ``WeightSamplerAngle``): a uniform random direction ``s`` orthogonal to ``1 / sqrt(m)``, an angle
    ``theta ~ U(0, angle)``, ``w = 1 / sqrt(m) + tan(theta) s``, L1-normalised. ``angle_deg = 0``: ``|N(0, I)|``
    L1-normalised (the official code's sampler for angle 0)."""
    if angle_deg == 0.0:
        return gaussian_preferences(key, n, m)
    k_dir, k_angle = jax.random.split(key)
    center = jnp.full((m,), 1.0 / np.sqrt(m), jnp.float32)
    s = jax.random.normal(k_dir, (n, m), jnp.float32)
    s = s - (s @ center)[:, None] * center[None]
    s = s / jnp.linalg.norm(s, axis=1, keepdims=True)
    theta = jax.random.uniform(k_angle, (n, 1), jnp.float32) * np.deg2rad(angle_deg)
    w = jnp.tan(theta) * s + center[None]
    return w / jnp.sum(jnp.abs(w), axis=1, keepdims=True)


def capql_target(
    q_next: jax.Array, logp_next: jax.Array, reward: jax.Array, terminated: jax.Array, gamma: float, alpha: float
) -> jax.Array:
    """The augmented TD target ``r + gamma (1 - terminated) (min_k Q'_k - alpha log pi)``, ``[B, m]``.

    ``q_next [K, B, m]``: the target critics at ``(s', w, a')``; the minimum is element-wise over ``K``, and
    ``alpha log pi(a' | s', w)`` (``logp_next [B]``) is subtracted from every objective."""
    soft = jnp.min(q_next, axis=0) - alpha * logp_next[:, None]
    return jax.lax.stop_gradient(td.bootstrap(reward, terminated, gamma, soft))


def capql_actor_loss(q_pi: jax.Array, logp: jax.Array, w: jax.Array, alpha: float) -> jax.Array:
    """``mean(alpha log pi - w . min_k Q_k(s, w, a))`` with ``q_pi [K, B, m]`` the online critics at ``a ~ pi``."""
    return jnp.mean(alpha * logp - td.scalarize(w, jnp.min(q_pi, axis=0)))


# =============================================================================================== state
@struct.dataclass
class CAPQLState:
    actor: PyTree
    critic: PyTree  # the ensemble, leaves stacked on a leading axis of num_q_nets
    critic_target: PyTree
    actor_opt: PyTree
    critic_opt: PyTree
    replay: rb.Replay
    rollout: RolloutState
    key: jax.Array
    env_steps: jax.Array  # int32
    updates: jax.Array  # int32 gradient updates so far


class CAPQLTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`); ``update`` is one jitted chunk, pure, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: CAPQLConfig, env, env_params=None):
        space = env.action_space
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise ValueError(f"capql needs a 1-D Box action space; {env.name} has {space!r}")
        if not (np.isfinite(np.asarray(space.low)).all() and np.isfinite(np.asarray(space.high)).all()):
            raise ValueError(f"capql squashes actions with tanh and needs finite action bounds; {env.name}'s are not")
        if env.reward_dim < 2:
            raise ValueError(f"capql needs at least 2 objectives; {env.name} has {env.reward_dim}")
        require_pure_jax(env, "CAPQL")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.obs_dim = observation_dim(env.observation_space)
        # the SAC block on the features [obs, w]: its actor is pi(a | s, w), its critic Q(s, w, a)
        features = Box(-np.inf, np.inf, (self.obs_dim + self.m,), jnp.float32)
        self.sac = SAC(features, space, self.m, hidden=tuple(config.net_arch), gamma=config.gamma, tau=config.tau)
        self.tx = optax.adam(config.learning_rate)
        self.rollout = make_rollout(env, self._behaviour_policy, config.num_envs, 1, gamma=config.gamma)
        # a buffer larger than the whole budget never evicts: cap it (exact, and XLA then copies less per step)
        self.capacity = min(config.buffer_size, config.total_timesteps + config.num_envs)
        self._compile()

    # ------------------------------------------------------------------ protocol
    def solution(self, state: CAPQLState) -> Solution:
        return Solution(act=self._act, params=state.actor, conditioned=True, greedy=True)

    # ------------------------------------------------------------------ pieces
    def features(self, obs: jax.Array, w: jax.Array) -> jax.Array:
        """``[obs, w]`` as float32 ``[B, obs_dim + m]``: what the actor and the critics read."""
        x = preprocess_obs(self.env.observation_space, obs)
        return jnp.concatenate([x, jnp.broadcast_to(w, (x.shape[0], self.m)).astype(jnp.float32)], axis=-1)

    def _act(self, actor: PyTree, w: jax.Array, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Deterministic ``tanh(mean)`` rescaled to the bounds (evaluation)."""
        return self.sac.mode(actor, self.features(obs, jnp.asarray(w, jnp.float32)))

    def sample(self, actor: PyTree, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``a ~ pi(. | s, w)`` and its log-probability (clipped to +-1e3 as MORL-Baselines) from features ``x``."""
        a, logp = self.sac.sample(actor, x, key)
        return a, jnp.clip(logp, -LOG_PROB_CLIP, LOG_PROB_CLIP)

    def _behaviour_policy(self, p, obs, key):
        k_pi, k_rand = jax.random.split(key)
        x = self.features(obs, p["w"])
        if self.config.stochastic_behaviour:
            action = self.sample(p["actor"], x, k_pi)[0]
        else:
            action = self.sac.mode(p["actor"], x)
        space = self.env.action_space
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
        rand = jax.random.uniform(k_rand, action.shape, jnp.float32, low, high)
        return jnp.where(p["random"], rand, action).astype(space.dtype), ()

    def _init_fn(self, key: jax.Array) -> CAPQLState:
        c = self.config
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        x = jnp.zeros((1, self.obs_dim + self.m), jnp.float32)
        a = jnp.zeros((1, self.sac.action_dim), jnp.float32)
        actor = self.sac.actor_net.init(k_actor, x)
        critic = jax.vmap(lambda k: self.sac.critic_net.init(k, x, a))(jax.random.split(k_critic, c.num_q_nets))
        rstate = self.rollout.init.pure(k_env, self.env_params)
        action = jnp.zeros((self.sac.action_dim,), jnp.float32)
        example = rb.transition_example(rstate.obs[0], action, self.m, w=jnp.zeros((self.m,), jnp.float32))
        replay = rb.init(example, self.capacity)
        return CAPQLState(
            actor,
            critic,
            critic,
            self.tx.init(actor),
            self.tx.init(critic),
            replay,
            rstate,
            key,
            jnp.int32(0),
            jnp.int32(0),
        )

    def _gradient_step(self, state: CAPQLState, key: jax.Array, enabled: jax.Array) -> tuple[CAPQLState, dict]:
        """One CAPQL update (critic step, actor step against the new critics, Polyak); with ``enabled`` False the
        state is left as it was (computed, then discarded with `where`)."""
        c = self.config
        k_batch, k_next, k_pi = jax.random.split(key, 3)
        batch, _ = rb.sample(state.replay, k_batch, c.batch_size)
        x, x_next = self.features(batch["obs"], batch["w"]), self.features(batch["next_obs"], batch["w"])
        a_next, logp_next = self.sample(state.actor, x_next, k_next)
        q_next = self.sac.q_values(state.critic_target, x_next, a_next)
        target = capql_target(q_next, logp_next, batch["reward"], batch["terminated"], c.gamma, c.alpha)

        def critic_loss(critic):
            loss, q = self.sac.critic_loss(critic, x, batch["action"], target)  # summed over the ensemble
            return loss / c.num_q_nets, q

        (q_loss, q), g_critic = jax.value_and_grad(critic_loss, has_aux=True)(state.critic)
        upd, critic_opt = self.tx.update(g_critic, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, upd)

        def actor_loss(actor):
            a_pi, logp = self.sample(actor, x, k_pi)
            return capql_actor_loss(self.sac.q_values(critic, x, a_pi), logp, batch["w"], c.alpha)

        pi_loss, g_actor = jax.value_and_grad(actor_loss)(state.actor)
        upd, actor_opt = self.tx.update(g_actor, state.actor_opt, state.actor)
        actor = optax.apply_updates(state.actor, upd)
        target = td.polyak(critic, state.critic_target, c.tau)
        keep = lambda new, old: td.select_params(enabled, new, old)  # noqa: E731
        state = state.replace(
            actor=keep(actor, state.actor),
            critic=keep(critic, state.critic),
            critic_target=keep(target, state.critic_target),
            actor_opt=keep(actor_opt, state.actor_opt),
            critic_opt=keep(critic_opt, state.critic_opt),
            updates=state.updates + enabled.astype(jnp.int32),
        )
        logs = {
            "q_loss": jnp.where(enabled, q_loss, 0.0),
            "pi_loss": jnp.where(enabled, pi_loss, 0.0),
            "q_mean": jnp.where(enabled, jnp.mean(q), 0.0),
        }
        return state, logs

    def _iteration(self, state: CAPQLState, _):
        c = self.config
        key, k_roll, k_w, k_upd = jax.random.split(state.key, 4)
        active = state.env_steps < c.total_timesteps
        w = angle_preferences(k_w, c.num_envs, self.m, c.weight_angle)  # a fresh preference every step
        # MORL-Baselines: step t (1-based) acts at random while t < learning_starts, and learns from t >= it
        policy_params = {"actor": state.actor, "w": w, "random": state.env_steps + c.num_envs < c.learning_starts}
        rstate, traj = self.rollout.run.pure(policy_params, state.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)  # the one step: leaves [N, ...]
        items = {
            "obs": tr.obs,
            "action": tr.action.astype(jnp.float32).reshape(c.num_envs, -1),
            "w": w,
            "reward": tr.reward,
            "next_obs": tr.next_obs,
            "terminated": tr.terminated.astype(jnp.float32),
        }
        env_steps = jnp.where(active, state.env_steps + c.num_envs, state.env_steps)
        learning = active & (env_steps >= c.learning_starts) & (state.replay.size > 0)

        def one(s, k):
            return self._gradient_step(s, k, learning)

        # learn first, then store this step's transitions: sampling from a buffer that was just written makes XLA
        # fuse the write into the read and copy the whole buffer every step
        stepped = state.replace(rollout=rstate, key=key, env_steps=env_steps)
        if c.gradient_updates == 1:  # no inner loop: a while loop around the buffer makes XLA copy it
            new_state, logs = one(stepped, k_upd)
        else:
            new_state, logs = jax.lax.scan(one, stepped, jax.random.split(k_upd, c.gradient_updates))
            logs = jax.tree.map(jnp.mean, logs)
        replay = rb.add(new_state.replay, items)
        replay = replay.replace(
            pos=jnp.where(active, replay.pos, new_state.replay.pos),
            size=jnp.where(active, replay.size, new_state.replay.size),
        )
        new_state = new_state.replace(replay=replay)
        done = (tr.terminated | tr.truncated) & active
        finished = jnp.sum(done.astype(jnp.int32))
        ep_return = jnp.sum(jnp.where(done[:, None], tr.episode_return, 0.0), axis=0)
        return new_state, (logs, finished, ep_return)

    def _chunk(self, state: CAPQLState) -> tuple[CAPQLState, dict]:
        state, (logs, finished, ep_return) = jax.lax.scan(
            self._iteration, state, None, length=self.config.steps_per_chunk
        )
        episodes = jnp.sum(finished)
        out = {k: jnp.mean(v) for k, v in logs.items()}
        out.update({"episodes": episodes, "updates": state.updates, **episode_return_logs(ep_return, episodes)})
        return state, out


def make_trainer(config: CAPQLConfig, env, env_params=None) -> CAPQLTrainer:
    return CAPQLTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="capql",
        config_cls=CAPQLConfig,
        make_trainer=make_trainer,
        summary="CAPQL (Lu et al. 2023), MORL-Baselines' variant: one preference-conditioned SAC, vector critics with "
        "the entropy bonus on every objective",
        action_kinds=("continuous",),
    )
)
