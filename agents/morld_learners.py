"""MORL/D's inner learners: one member's single-objective learner behind one interface, pure and vmappable over
the population. `DQNLearner` (discrete actions, a vector-valued double DQN) and `SACLearner` (continuous actions,
`agents.sac.SAC`) both offer ``init``, ``behaviour`` (exploration), ``archived`` (what the Pareto archive keeps),
``act`` (evaluation), ``transfer`` (take a neighbour's networks) and ``update`` (one gradient step, returning the
utopia-point candidate seen by the Tchebycheff scalarisation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from morl.agents.networks import ObsEncoder, ReluMLP
from morl.agents.sac import SAC, SACState
from morl.agents.scalarization import Scalarization, initial_utopia, update_utopia

PyTree = Any


@struct.dataclass
class DQNState:
    """One DQN member: online and target Q-network parameters, Adam state, gradient steps so far."""

    q: PyTree
    target: PyTree
    opt: PyTree
    steps: jax.Array  # int32


@dataclass(frozen=True)
class DQNLearner:
    """Vector-valued double DQN for one member (pure, vmappable over the population)."""

    encoder: ObsEncoder
    num_actions: int
    reward_dim: int
    scal: Scalarization
    hidden: tuple[int, ...]
    lr: float
    gamma: float
    tau: float
    target_net_freq: int
    max_grad_norm: float | None
    weighted_loss: bool = False

    @property
    def net(self) -> ReluMLP:
        """``Q(s)`` flat, ``[B, A * m]`` (`q_values` reshapes it)."""
        return ReluMLP(self.num_actions * self.reward_dim, self.hidden, "lecun_normal")

    @property
    def tx(self) -> optax.GradientTransformation:
        chain = [optax.clip_by_global_norm(self.max_grad_norm)] if self.max_grad_norm is not None else []
        return optax.chain(*chain, optax.adam(self.lr))

    def init(self, key: jax.Array) -> DQNState:
        params = self.net.init(key, jnp.zeros((1, self.encoder.dim), jnp.float32))
        return DQNState(q=params, target=params, opt=self.tx.init(params), steps=jnp.int32(0))

    def q_values(self, params: PyTree, obs: jax.Array) -> jax.Array:
        """``Q(s) -> [B, A, m]``: one value vector per action."""
        out = self.net.apply(params, self.encoder(obs))
        return out.reshape(out.shape[:-1] + (self.num_actions, self.reward_dim))

    def greedy(self, params: PyTree, w: jax.Array, z: jax.Array, obs: jax.Array) -> jax.Array:
        return jnp.argmax(self.scal(w, self.q_values(params, obs), z), axis=-1).astype(jnp.int32)

    def behaviour(self, p: dict, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Epsilon-greedy (``p["epsilon"]``), uniform while ``p["random"]``."""
        k_eps, k_act = jax.random.split(key)
        greedy = self.greedy(p["q"], p["w"], p["z"], obs)
        rand = jax.random.randint(k_act, greedy.shape, 0, self.num_actions, dtype=jnp.int32)
        explore = (jax.random.uniform(k_eps, greedy.shape) < p["epsilon"]) | p["random"]
        return jnp.where(explore, rand, greedy)

    def archived(self, state: DQNState, w: jax.Array, z: jax.Array) -> dict:
        return {"q": state.q, "w": w, "z": z}

    def act(self, ap: dict, w: jax.Array, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Evaluation action of an archived policy (its own weight and utopia point; the argument ``w`` is unused)."""
        return self.greedy(ap["q"], ap["w"], ap["z"], obs)

    def transfer(self, dst: DQNState, src: DQNState) -> DQNState:
        return DQNState(q=src.q, target=src.target, opt=self.tx.init(src.q), steps=dst.steps)

    def update(
        self, state: DQNState, w: jax.Array, z: jax.Array, batch: dict, key: jax.Array
    ) -> tuple[DQNState, jax.Array, dict]:
        """One gradient step; returns the new state, the utopia candidate ``max Q(s', .) + tau`` and logs."""
        q_next_online = self.q_values(state.q, batch["next_obs"])  # [B, A, m]
        q_next_target = self.q_values(state.target, batch["next_obs"])
        a_star = jnp.argmax(self.scal(w, q_next_online, z), axis=-1)
        nxt = jnp.take_along_axis(q_next_target, a_star[:, None, None], axis=1)[:, 0]
        not_term = 1.0 - batch["terminated"].astype(jnp.float32)
        target = jax.lax.stop_gradient(batch["reward"] + self.gamma * not_term[:, None] * nxt)
        action = batch["action"].astype(jnp.int32).reshape(-1)

        # weighted_loss: component i of the squared error counts m * w_i (the greedy action reads only w . Q)
        lw = self.reward_dim * w / jnp.sum(w) if self.weighted_loss else jnp.ones_like(w)

        def loss_fn(params):
            q = jnp.take_along_axis(self.q_values(params, batch["obs"]), action[:, None, None], axis=1)[:, 0]
            return jnp.mean(jnp.square(q - target) * lw), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.q)
        updates, opt = self.tx.update(grads, state.opt, state.q)
        params = optax.apply_updates(state.q, updates)
        steps = state.steps + 1
        due = steps % self.target_net_freq == 0
        target_params = jax.tree.map(
            lambda o, t: jnp.where(due, self.tau * o + (1.0 - self.tau) * t, t), params, state.target
        )
        z_seen = update_utopia(initial_utopia(self.reward_dim), jax.lax.stop_gradient(q_next_online), self.scal.tau)
        logs = {"loss": loss, "q_mean": jnp.mean(self.scal(w, q, z))}
        return DQNState(q=params, target=target_params, opt=opt, steps=steps), z_seen, logs


@dataclass(frozen=True)
class SACLearner:
    """`agents.sac.SAC` behind the learner interface (the archive keeps the actor only)."""

    sac: SAC
    scal: Scalarization
    reward_dim: int

    def init(self, key: jax.Array) -> SACState:
        return self.sac.init(key)

    def behaviour(self, p: dict, obs: jax.Array, key: jax.Array) -> jax.Array:
        k_pi, k_rand = jax.random.split(key)
        space = self.sac.action_space
        low = jnp.asarray(space.low, jnp.float32)
        high = jnp.asarray(space.high, jnp.float32)
        rand = jax.random.uniform(k_rand, (obs.shape[0],) + tuple(space.shape), jnp.float32, low, high)
        return jnp.where(p["random"], rand, self.sac.act(p["actor"], obs, k_pi)).astype(space.dtype)

    def archived(self, state: SACState, w: jax.Array, z: jax.Array) -> dict:
        return {"actor": state.actor}

    def act(self, ap: dict, w: jax.Array, obs: jax.Array, key: jax.Array) -> jax.Array:
        return self.sac.mode(ap["actor"], obs).astype(self.sac.action_space.dtype)

    def transfer(self, dst: SACState, src: SACState) -> SACState:
        return self.sac.reset_optimizers(src.replace(steps=dst.steps, log_alpha=dst.log_alpha))

    def update(
        self, state: SACState, w: jax.Array, z: jax.Array, batch: dict, key: jax.Array
    ) -> tuple[SACState, jax.Array, dict]:
        seen = []

        def scal(v):
            seen.append(v)
            return self.scal(w, v, z)

        state, logs = self.sac.update(state, batch, scal, key)
        z_seen = update_utopia(initial_utopia(self.reward_dim), jax.lax.stop_gradient(seen[0]), self.scal.tau)
        return state, z_seen, {"loss": logs["q_loss"], "q_mean": logs["q_mean"], "alpha": logs["alpha"]}
