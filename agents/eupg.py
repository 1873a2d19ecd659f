"""Expected Utility Policy Gradient (Roijers, Steckelmacher & Nowé 2018) as MORL-Baselines implements it, in JAX.

An ESR agent: it maximises the expected utility of the episode's return, ``E[u(R)]``, for a (possibly non-linear)
utility ``u``. Since ``u`` does not distribute over time, the policy sees what the episode has accrued so far:
``pi(a | s, R^-_t)`` with ``R^-_t`` the undiscounted reward earned before step t. Episodic REINFORCE: after each
episode one Adam step on ``-mean_t log pi(a_t | s_t, R^-_t) * u(R^-_t + R^+_t)``, ``R^+_t`` the discounted reward
from t on (the paper's utility of accrued + future; MORL-Baselines scalarises ``R^+_t`` alone:
``utility_input="future"``). The policy is a tanh MLP whose action probabilities are normalised sigmoids.

A training chunk is one jitted scan over episodes (each a fresh reset and one rollout of the env's step limit,
its steps after the episode's end masked and not counted), vmappable over seeds. The evaluator runs the policy
(sampling its actions) with the running episode return as its accrued reward (`Solution.episode_context`).
Deviations from MORL-Baselines: docs/algorithms/eupg.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agent import AgentSpec, JitTrainer, check_config, episode_return_logs, register_agent, require_discrete
from morl.agents.networks import MLP, observation_dim, preprocess_obs
from morl.rollout import episode_limit, make_rollout, require_pure_jax
from morl.solution import Solution

PyTree = Any

UTILITIES = ("linear", "fishwood")


def utility(name: str, returns: jax.Array, weights: jax.Array) -> jax.Array:
    """``u(returns [..., m]) -> [...]``: ``linear`` is ``weights . R``; ``fishwood`` is FishWood's
    ``min(fish, floor(wood / 2))`` (Roijers et al. 2018; MORL-Baselines' examples/eupg_fishwood.py)."""
    if name == "fishwood":
        return jnp.minimum(returns[..., 0], jnp.floor(returns[..., 1] / 2.0))
    return jnp.sum(returns * weights, axis=-1)


# =============================================================================================== config
@dataclass(frozen=True)
class EUPGConfig:
    """EUPG settings. Defaults: MORL-Baselines ``EUPG.__init__`` (docs/sources.md); on fishwood-v0 the utility and
    budget of its examples/eupg_fishwood.py.

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition. Episodes run whole;
    the one the budget cuts is neither learned from nor counted past the budget (MORL-Baselines stops mid-episode too).
    """

    total_timesteps: int = 4_000_000  # training budget in env steps (MORL-Baselines' examples/eupg_fishwood.py)
    learning_rate: float = 1e-3  # Adam learning rate
    gamma: float = 0.99  # discount of the future reward R^+_t
    net_arch: tuple[int, ...] = (50,)  # hidden layer widths of the policy (tanh)
    utility: str = "linear"  # u: linear (weights . R) or fishwood (min(fish, floor(wood / 2)))
    weights: tuple[float, ...] | None = None  # linear utility's weights; None = all ones (MORL-Baselines' default)
    #: what u scores at step t: accrued+future = u(R^-_t + R^+_t) (the paper); future = u(R^+_t) (MORL-Baselines)
    utility_input: str = "accrued+future"
    max_episode_steps: int | None = None  # episode cap; None = the env's own time limit
    episodes_per_chunk: int = 50  # episodes per jitted training chunk (one `update` call)

    def __post_init__(self):
        check_config(
            "eupg",
            self,
            at_least_one=("total_timesteps", "episodes_per_chunk"),
            unit_interval=("gamma",),
            choices={"utility": UTILITIES, "utility_input": ("accrued+future", "future")},
        )
        if self.learning_rate <= 0:
            raise ValueError(f"eupg config: learning_rate must be > 0, got {self.learning_rate!r}")


# =============================================================================================== state
@struct.dataclass
class EUPGState:
    params: PyTree
    opt_state: PyTree
    key: jax.Array
    env_steps: jax.Array  # int32
    episodes: jax.Array  # int32


class EUPGTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`); ``update`` is one jitted chunk, pure, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: EUPGConfig, env, env_params=None):
        require_discrete(env, "EUPG")
        require_pure_jax(env, "EUPG")
        self.config = config
        self.env = env
        self.m = env.reward_dim
        if config.utility == "fishwood" and self.m != 2:
            raise ValueError(f"eupg config: the fishwood utility needs 2 objectives, {env.name} has {self.m}")
        if config.weights is not None and len(config.weights) != self.m:
            raise ValueError(f"eupg config: weights needs {self.m} values for {env.name}, got {config.weights!r}")
        self.weights = jnp.asarray(config.weights if config.weights is not None else np.ones(self.m), jnp.float32)
        self.env_params, self.horizon = episode_limit(
            env, env.default_params if env_params is None else env_params, config.max_episode_steps, "eupg: "
        )
        self.num_actions = int(env.action_space.n)
        self.net = MLP(self.num_actions, tuple(config.net_arch))
        self.tx = optax.adam(config.learning_rate)
        space = env.observation_space

        def probs(params, obs, accrued):
            """Normalised sigmoids of the MLP's outputs (MORL-Baselines' PolicyNet), ``[B, A]``."""
            x = jnp.concatenate([preprocess_obs(space, obs), accrued.astype(jnp.float32)], axis=-1)
            s = jax.nn.sigmoid(self.net.apply(params, x))
            return s / jnp.sum(s, axis=-1, keepdims=True)

        def act(params, w, obs, key, episode_return, episode_length):
            """The policy's own (stochastic) action: an ESR policy is a distribution, and its greedy action can
            lose everything (FishWood's always earns utility 0); MORL-Baselines evaluates EUPG by sampling too."""
            p = probs(params, obs, episode_return)
            return jax.random.categorical(key, jnp.log(p), axis=-1).astype(jnp.int32)

        def mode(params, obs, key, episode_return, episode_length):
            return jnp.argmax(probs(params, obs, episode_return), axis=-1).astype(jnp.int32), ()

        def behaviour(params, obs, key, episode_return, episode_length):
            p = probs(params, obs, episode_return)
            action = jax.random.categorical(key, jnp.log(p), axis=-1).astype(jnp.int32)
            return action, episode_return  # the accrued reward, stored with the step

        self.probs, self._act = probs, act
        self.rollout = make_rollout(env, behaviour, 1, self.horizon, gamma=config.gamma, episode_context=True)
        self._eval_rollouts = {
            kind: make_rollout(env, pol, 100, self.horizon, emit="summary", episode_context=True)
            for kind, pol in (("sampled", lambda *a: (behaviour(*a)[0], ())), ("greedy", mode))
        }
        self._eval = jax.jit(self._eval_fn, static_argnums=2)
        self._in_dim = observation_dim(space) + self.m
        self._compile()

    # ------------------------------------------------------------------ protocol
    def solution(self, state: EUPGState) -> Solution:
        """One policy (the accrued-reward policy, sampling its actions from the evaluator's keys), for the weights it
        was trained with."""
        return Solution(
            act=self._act,
            params=jax.tree.map(lambda x: x[None], state.params),
            candidate_weights=np.asarray(self.weights, np.float64)[None] / float(np.sum(np.abs(self.weights))),
            episode_context=True,
        )

    def expected_utility(self, state: EUPGState, key: jax.Array, greedy: bool = False) -> float:
        """The ESR objective ``E[u(R)]`` over 100 fresh episodes (undiscounted returns), with the policy's sampled
        actions (as MORL-Baselines' ``eval_mo_reward_conditioned`` and `solution`) or its most likely ones."""
        return float(self._eval(state.params, key, "greedy" if greedy else "sampled"))

    # ------------------------------------------------------------------ pieces
    def _eval_fn(self, params: PyTree, key: jax.Array, kind: str) -> jax.Array:
        rollout = self._eval_rollouts[kind]
        k_init, k_run = jax.random.split(key)
        _, summary = rollout.run.pure(params, rollout.init.pure(k_init, self.env_params), k_run, self.env_params)
        u = utility(self.config.utility, summary.first_return, self.weights)
        return jnp.sum(jnp.where(summary.episodes > 0, u, 0.0)) / jnp.maximum(jnp.sum(summary.episodes > 0), 1)

    def _init_fn(self, key: jax.Array) -> EUPGState:
        k_net, key = jax.random.split(key)
        params = self.net.init(k_net, jnp.zeros((1, self._in_dim), jnp.float32))
        return EUPGState(params, self.tx.init(params), key, jnp.int32(0), jnp.int32(0))

    def loss(self, params: PyTree, traj, mask: jax.Array) -> jax.Array:
        """``-mean_t log pi(a_t | s_t, R^-_t) u_t`` over the episode's steps (``mask [T]``)."""
        c = self.config
        reward = jnp.where(mask[:, None], traj.reward, 0.0)

        def back(future, r):
            future = r + c.gamma * future
            return future, future

        _, future = jax.lax.scan(back, jnp.zeros((self.m,), jnp.float32), reward, reverse=True)
        accrued = traj.extras
        scored = future + accrued if c.utility_input == "accrued+future" else future
        u = jax.lax.stop_gradient(utility(c.utility, scored, self.weights))
        p = self.probs(params, traj.obs, accrued)
        logp = jnp.log(jnp.take_along_axis(p, traj.action[:, None], axis=-1)[:, 0])
        return -jnp.sum(jnp.where(mask, logp * u, 0.0)) / jnp.maximum(jnp.sum(mask), 1)

    def _episode(self, state: EUPGState, _):
        c = self.config
        key, k_init, k_run = jax.random.split(state.key, 3)
        rstate = self.rollout.init.pure(k_init, self.env_params)
        _, traj = self.rollout.run.pure(state.params, rstate, k_run, self.env_params)
        traj = jax.tree.map(lambda x: x[:, 0], traj)  # the one env: leaves [T, ...]
        done = traj.terminated | traj.truncated
        # the first episode's steps: up to and including its first done
        before = jnp.cumsum(done) - done.astype(jnp.int32)
        mask = before == 0
        left = c.total_timesteps - state.env_steps
        steps = jnp.minimum(jnp.sum(mask), left).astype(jnp.int32)
        finished = jnp.any(done) & (jnp.sum(mask) <= left)  # an episode the budget cuts is not learned from
        loss, grads = jax.value_and_grad(self.loss)(state.params, traj, mask)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jnp.where(finished, new, old)  # noqa: E731
        last = jnp.argmax(done)
        ret = traj.episode_return[last]
        new_state = EUPGState(
            params=jax.tree.map(keep, params, state.params),
            opt_state=jax.tree.map(keep, opt_state, state.opt_state),
            key=key,
            env_steps=state.env_steps + jnp.maximum(steps, 0),
            episodes=state.episodes + finished.astype(jnp.int32),
        )
        return new_state, (finished, jnp.where(finished, loss, 0.0), jnp.where(finished, ret, 0.0))

    def _chunk(self, state: EUPGState) -> tuple[EUPGState, dict]:
        state, (finished, loss, ret) = jax.lax.scan(self._episode, state, None, length=self.config.episodes_per_chunk)
        episodes = jnp.sum(finished)
        n = jnp.maximum(episodes, 1)
        u = utility(self.config.utility, ret, self.weights)
        out = {
            "episodes": episodes,
            "loss": jnp.sum(loss) / n,
            #: the ESR objective on the chunk's training episodes (stochastic policy, undiscounted returns)
            "expected_utility": jnp.sum(jnp.where(finished, u, 0.0)) / n,
            **episode_return_logs(ret, episodes),
        }
        return state, out


def make_trainer(config: EUPGConfig, env, env_params=None) -> EUPGTrainer:
    return EUPGTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="eupg",
        config_cls=EUPGConfig,
        make_trainer=make_trainer,
        summary="Expected Utility Policy Gradient (Roijers et al. 2018): ESR, REINFORCE on the accrued reward",
        action_kinds=("discrete",),
        env_defaults={"fishwood-v0": {"utility": "fishwood"}},
    )
)
