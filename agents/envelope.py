"""Envelope Q-learning (Yang, Sun, Narasimhan, NeurIPS 2019) as MORL-Baselines implements it, in JAX.

One preference-conditioned Q-network ``Q(s, w) -> [A, m]`` serves every preference. Each gradient step pairs a
minibatch (prioritised replay) with ``num_sample_w`` sampled preferences and regresses on the envelope target
``r + gamma Q_target(s', a*, w_k*)``, ``(k*, a*)`` maximising ``w . Q(s', a, w_k)`` over the sampled preferences,
with a homotopy between the vector and the scalarised loss. A training chunk is one jitted scan over env steps and
gradient steps. The algorithm step by step, and where it differs from MORL-Baselines and from the official code:
docs/algorithms/envelope.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from morl.agent import AgentSpec, JitTrainer, check_config, episode_return_logs, register_agent, require_discrete
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.networks import ConditionedQ, observation_dim, preprocess_obs
from morl.agents.preferences import gaussian_preferences
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution

PyTree = Any


# =============================================================================================== config
@dataclass(frozen=True)
class EnvelopeConfig:
    """Envelope settings. Defaults: MORL-Baselines ``Envelope.__init__`` (docs/sources.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the random
    warm-up (``learning_starts``) included. Training stops at the first vector step that reaches the budget, so
    a run uses at most ``total_timesteps + num_envs - 1`` transitions (exactly the budget when it is a multiple
    of ``num_envs``); the rest of the last chunk is computed and discarded (no replay write, no learning)."""

    total_timesteps: int = 100_000  # training budget in env steps (MORL-Baselines' train(total_timesteps))
    learning_rate: float = 3e-4  # Adam learning rate
    initial_epsilon: float = 0.01  # epsilon-greedy: start value (after learning_starts)
    final_epsilon: float = 0.01  # epsilon-greedy: final value
    epsilon_decay_steps: int | None = None  # env steps of the linear decay; None = fixed epsilon
    tau: float = 1.0  # target update: 1 = hard copy every target_net_update_freq steps,
    # < 1 = Polyak every step
    target_net_update_freq: int = 200  # vector env steps (learner iterations) between hard target copies
    # (ignored when tau < 1); with MORL-Baselines' one env these are its env steps
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    net_arch: tuple[int, ...] = (256, 256, 256, 256)  # hidden layer widths of the Q-network (ReLU)
    batch_size: int = 256  # transitions per gradient step (each paired with num_sample_w preferences)
    learning_starts: int = 100  # random actions and no updates before this many env steps
    gradient_updates: int = 1  # gradient steps per (vector) env step
    gamma: float = 0.99  # discount
    max_grad_norm: float | None = 1.0  # global gradient-norm clip; None = no clip
    envelope: bool = True  # envelope target (max over sampled preferences); False = double-DQN target
    num_sample_w: int = 4  # preferences sampled per gradient step (>= 2 for the envelope)
    per: bool = True  # prioritised replay (proportional, no importance weights)
    per_alpha: float = 0.6  # priority exponent
    initial_homotopy_lambda: float = 0.0  # weight of the scalarised (w.Q) loss at the start
    final_homotopy_lambda: float = 1.0  # ... and at the end of its schedule
    homotopy_decay_steps: int | None = None  # env steps of the linear homotopy schedule; None = fixed at the
    # initial value
    num_envs: int = 1  # envs stepped in lockstep (ours; MORL-Baselines: 1)
    steps_per_chunk: int = 1000  # vector env steps per jitted training chunk (one `update` call)

    def __post_init__(self):
        check_config(
            "envelope",
            self,
            at_least_one=(
                "num_sample_w",
                "total_timesteps",
                "buffer_size",
                "batch_size",
                "num_envs",
                "steps_per_chunk",
                "target_net_update_freq",
                "gradient_updates",
            ),
            unit_interval=("tau",),
        )
        if self.envelope and self.num_sample_w < 2:
            raise ValueError(
                f"envelope config: num_sample_w must be >= 2 for the envelope target, got "
                f"{self.num_sample_w!r}; or set envelope=False"
            )
        if self.num_envs > self.buffer_size:
            raise ValueError(
                f"envelope config: buffer_size ({self.buffer_size}) must hold one vector step "
                f"(num_envs={self.num_envs})"
            )


# =============================================================================================== state
@struct.dataclass
class EnvelopeState:
    q_params: PyTree
    target_params: PyTree
    opt_state: PyTree
    replay: rb.Replay
    rollout: RolloutState
    w: jax.Array  # [N, m] the preference of each env's current episode
    key: jax.Array
    env_steps: jax.Array  # int32
    updates: jax.Array  # int32 gradient steps so far


class EnvelopeTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`); ``update`` is one jitted chunk, pure, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: EnvelopeConfig, env, env_params=None):
        require_discrete(env, "Envelope")
        require_pure_jax(env, "Envelope")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.num_actions = int(env.action_space.n)
        self.net = ConditionedQ(self.num_actions, self.m, tuple(config.net_arch), "orthogonal")
        chain = [optax.clip_by_global_norm(config.max_grad_norm)] if config.max_grad_norm is not None else []
        self.tx = optax.chain(*chain, optax.adam(config.learning_rate))
        self.rollout = make_rollout(env, self._behaviour_policy, config.num_envs, 1, gamma=config.gamma)
        # a buffer larger than the whole budget never evicts: cap it (exact, and XLA then copies less per step)
        self.capacity = min(config.buffer_size, config.total_timesteps + config.num_envs)
        space = env.observation_space

        def act(params, w, obs, key):
            x = preprocess_obs(space, obs)
            wb = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
            return jnp.argmax(td.scalarize(wb[:, None, :], self.net.apply(params, x, wb)), axis=-1).astype(jnp.int32)

        self._act = act
        self._compile()

    # ------------------------------------------------------------------ protocol
    def solution(self, state: EnvelopeState) -> Solution:
        return Solution(act=self._act, params=state.q_params, conditioned=True, greedy=True)

    # ------------------------------------------------------------------ pieces
    def q_values(self, params: PyTree, obs: jax.Array, w: jax.Array) -> jax.Array:
        """``Q(s, w)`` for raw observations ``[B, ...]`` and preferences ``[B, m]`` -> ``[B, A, m]``."""
        return self.net.apply(params, preprocess_obs(self.env.observation_space, obs), w)

    def _behaviour_policy(self, p, obs, key):
        k_eps, k_rand = jax.random.split(key)
        greedy = jnp.argmax(td.scalarize(p["w"][:, None, :], self.q_values(p["q"], obs, p["w"])), axis=-1)
        action = td.epsilon_greedy(k_eps, greedy.astype(jnp.int32), self.num_actions, p["epsilon"])
        random_action = jax.random.randint(k_rand, action.shape, 0, self.num_actions, dtype=jnp.int32)
        return jnp.where(p["random"], random_action, action), ()

    def _init_fn(self, key: jax.Array) -> EnvelopeState:
        c = self.config
        k_net, k_env, k_w, key = jax.random.split(key, 4)
        x = jnp.zeros((1, observation_dim(self.env.observation_space)), jnp.float32)
        params = self.net.init(k_net, x, jnp.zeros((1, self.m), jnp.float32))
        rstate = self.rollout.init.pure(k_env, self.env_params)
        example = rb.transition_example(rstate.obs[0], jnp.int32(0), self.m)
        replay = rb.init(example, self.capacity, prioritized=c.per)
        w = gaussian_preferences(k_w, c.num_envs, self.m)
        return EnvelopeState(params, params, self.tx.init(params), replay, rstate, w, key, jnp.int32(0), jnp.int32(0))

    def _gradient_step(self, state: EnvelopeState, key: jax.Array, enabled: jax.Array) -> tuple[EnvelopeState, dict]:
        """One gradient step; with ``enabled`` False it leaves the state as it was (computed, then discarded:
        a `where` on the results, not a `cond`, so XLA updates the replay's sum tree in place)."""
        c = self.config
        k_batch, k_w = jax.random.split(key)
        batch, idx = rb.sample(state.replay, k_batch, c.batch_size)
        sampled_w = gaussian_preferences(k_w, c.num_sample_w, self.m)  # [K, m]
        bsz, k = c.batch_size, c.num_sample_w
        # next-state values for every (transition b, sampled preference k): [B, K, A, m]
        next_x = jnp.repeat(preprocess_obs(self.env.observation_space, batch["next_obs"]), k, axis=0)
        w_bk = jnp.tile(sampled_w, (bsz, 1))
        q_next_online = self.net.apply(state.q_params, next_x, w_bk).reshape(bsz, k, self.num_actions, self.m)
        q_next_target = self.net.apply(state.target_params, next_x, w_bk).reshape(bsz, k, self.num_actions, self.m)
        if c.envelope:
            nxt = jax.vmap(
                lambda w: td.envelope_next_value(q_next_online, q_next_target, jnp.broadcast_to(w, (bsz, self.m)))
            )(sampled_w)
        else:
            nxt = jax.vmap(
                lambda j: td.ddqn_next_value(
                    q_next_online[:, j], q_next_target[:, j], jnp.broadcast_to(sampled_w[j], (bsz, self.m))
                )
            )(jnp.arange(k))
        # rows ordered (preference j, transition b), as MORL-Baselines' repeat_interleave / repeat
        nxt = nxt.reshape(k * bsz, self.m)
        tile = lambda x: jnp.tile(x, (k,) + (1,) * (x.ndim - 1))  # noqa: E731
        w_rows = jnp.repeat(sampled_w, bsz, axis=0)
        target = jax.lax.stop_gradient(td.bootstrap(tile(batch["reward"]), tile(batch["terminated"]), c.gamma, nxt))
        x_rows = tile(preprocess_obs(self.env.observation_space, batch["obs"]))
        a_rows = tile(batch["action"])
        lam = td.linear_schedule(
            c.initial_homotopy_lambda,
            c.final_homotopy_lambda,
            c.homotopy_decay_steps,
            state.env_steps,
            c.learning_starts,
        )

        def loss_fn(params):
            q = td.take_action(self.net.apply(params, x_rows, w_rows), a_rows)
            loss = td.mse(q, target)
            aux = td.mse(td.scalarize(w_rows, q), td.scalarize(w_rows, target))
            return jnp.where(lam > 0, (1.0 - lam) * loss + lam * aux, loss), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.q_params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.q_params)
        params = optax.apply_updates(state.q_params, updates)
        replay = state.replay
        if c.per:
            td_err = q[:bsz] - target[:bsz]
            prio = (jnp.abs(td.scalarize(w_rows[:bsz], td_err)) + replay.max_priority) ** c.per_alpha
            replay = rb.update_priorities(replay, idx, prio, enabled)
        state = state.replace(
            q_params=td.select_params(enabled, params, state.q_params),
            opt_state=td.select_params(enabled, opt_state, state.opt_state),
            replay=replay,
            updates=state.updates + enabled.astype(jnp.int32),
        )
        # the extreme Q components trained on: outside the env's range of returns they show overestimation
        q_max, q_min = jnp.where(enabled, jnp.max(q), 0.0), jnp.where(enabled, jnp.min(q), 0.0)
        return state, {"loss": jnp.where(enabled, loss, 0.0), "homotopy_lambda": lam, "q_max": q_max, "q_min": q_min}

    def _iteration(self, state: EnvelopeState, _):
        c = self.config
        key, k_roll, k_w, k_upd = jax.random.split(state.key, 4)
        active = state.env_steps < c.total_timesteps
        epsilon = td.linear_schedule(
            c.initial_epsilon, c.final_epsilon, c.epsilon_decay_steps, state.env_steps, c.learning_starts
        )
        policy_params = {
            "q": state.q_params,
            "w": state.w,
            "epsilon": epsilon,
            "random": state.env_steps < c.learning_starts,
        }
        rstate, traj = self.rollout.run.pure(policy_params, state.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)  # the one step: leaves [N, ...]
        items = {
            "obs": tr.obs,
            "action": tr.action.astype(jnp.int32),
            "reward": tr.reward,
            "next_obs": tr.next_obs,
            "terminated": tr.terminated.astype(jnp.float32),
        }
        done = tr.terminated | tr.truncated
        new_w = jnp.where((done & active)[:, None], gaussian_preferences(k_w, c.num_envs, self.m), state.w)
        # past the budget (the last chunk's tail) nothing counts: no env steps, no replay growth, no learning.
        # Gated with `where` on scalars, never by keeping the old state alive (that would copy the buffer).
        env_steps = jnp.where(active, state.env_steps + c.num_envs, state.env_steps)
        learning = active & (env_steps >= c.learning_starts)

        def one(s, k):
            return self._gradient_step(s, k, learning)

        # learn first, then store this step's transitions: sampling from a buffer that was just written
        # makes XLA fuse the write into the read and copy the whole buffer every step
        stepped = state.replace(rollout=rstate, w=new_w, key=key, env_steps=env_steps)
        if c.gradient_updates == 1:  # no inner loop: a while loop around the buffer makes XLA copy it
            new_state, logs = one(stepped, k_upd)
        else:
            new_state, logs = jax.lax.scan(one, stepped, jax.random.split(k_upd, c.gradient_updates))
            extreme = {"q_max": jnp.max, "q_min": jnp.min}
            logs = {k: extreme.get(k, jnp.mean)(v) for k, v in logs.items()}
        replay = rb.add(new_state.replay, items)
        replay = replay.replace(
            pos=jnp.where(active, replay.pos, new_state.replay.pos),
            size=jnp.where(active, replay.size, new_state.replay.size),
        )
        new_state = new_state.replace(replay=replay)
        if c.tau < 1.0:
            sync = td.polyak(new_state.q_params, new_state.target_params, c.tau)
            new_state = new_state.replace(target_params=td.select_params(learning, sync, new_state.target_params))
        else:
            # counted in vector steps (learner iterations), not transitions: with N envs in lockstep a copy every
            # 200 transitions would come every 200 / N gradient steps and the target would chase the online net
            # (DST, 16 envs, 1 gradient step per vector step: HV swung 4-99% and ended on one point)
            period = c.target_net_update_freq * c.num_envs
            crossed = (env_steps // period) > (state.env_steps // period)
            new_state = new_state.replace(
                target_params=td.select_params(learning & crossed, new_state.q_params, new_state.target_params)
            )
        finished = jnp.sum(jnp.where(done & active, 1, 0))
        ep_return = jnp.sum(jnp.where((done & active)[:, None], tr.episode_return, 0.0), axis=0)
        return new_state, (logs, epsilon, finished, ep_return)

    def _chunk(self, state: EnvelopeState) -> tuple[EnvelopeState, dict]:
        state, (logs, epsilon, finished, ep_return) = jax.lax.scan(
            self._iteration, state, None, length=self.config.steps_per_chunk
        )
        episodes = jnp.sum(finished)
        out = {
            "loss": jnp.mean(logs["loss"]),
            "q_max": jnp.max(logs["q_max"]),
            "q_min": jnp.min(logs["q_min"]),
            "homotopy_lambda": logs["homotopy_lambda"][-1],
            "epsilon": epsilon[-1],
            "episodes": episodes,
            "updates": state.updates,
            **episode_return_logs(ep_return, episodes),
        }
        return state, out


def make_trainer(config: EnvelopeConfig, env, env_params=None) -> EnvelopeTrainer:
    return EnvelopeTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="envelope",
        config_cls=EnvelopeConfig,
        make_trainer=make_trainer,
        summary="Envelope Q-learning (Yang et al. 2019), MORL-Baselines' variant: one preference-conditioned Q-network",
        action_kinds=("discrete",),
    )
)
