"""Soft actor-critic with a **vector** critic and a pluggable scalarisation: MORL/D's continuous inner learner.

Follows MORL-Baselines' ``MOSAC`` (``single_policy/ser/mosac_continuous_action.py``, cleanRL's SAC; docs/sources.md)
for everything but the critic loss:

- tanh-squashed Gaussian actor (ReLU MLP, mean and ``log_std`` heads, ``log_std`` squashed into [-5, 2]), actions
  rescaled to the Box bounds, log-probabilities corrected for the squashing (``log(scale (1 - tanh^2) + 1e-6)``);
- twin critics ``Q_k(s, a) -> [m]`` (ReLU MLPs on ``[obs, action]``) and Polyak-averaged target critics
  (``tau``, every ``target_net_freq`` updates);
- delayed actor: every ``policy_freq``-th update runs ``policy_freq`` actor (and temperature) steps;
- temperature ``alpha`` auto-tuned towards the target entropy ``-|A|`` (or fixed), Adam on ``log_alpha`` with the
  critic learning rate.

The critic is trained on **vector** TD targets: per twin ``k``,
``y = r + gamma (1 - terminated) (Q'_{k*}(s', a') - alpha log pi(a'|s') 1)`` with ``a' ~ pi(s')`` and ``k*`` the twin
whose scalarised target value ``scal(Q'_k(s', a'))`` is smaller; loss ``sum_k MSE(Q_k(s, a), y)`` over objectives.
The entropy bonus is added to every objective, so for a weighted sum with ``sum(w) = 1`` the scalarised target is
exactly MOSAC's ``w . r + gamma (min_k w . Q'_k - alpha log pi)``; MOSAC regresses only ``w . Q`` and leaves the
components free, here every component is fitted (the Tchebycheff scalarisation needs meaningful components).
The actor minimises ``alpha log pi(a|s) - scal(Q_{k*}(s, a))``, ``a ~ pi(s)`` reparameterised, ``k*`` the smaller twin.

``scal`` is any function ``values[..., m] -> [...]`` (a closure over the member's weight and utopia point), so the same
block serves weighted-sum and Tchebycheff members. Pure functions over a `SACState`; vmap them over a population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agents.networks import ReluMLP, observation_dim, preprocess_obs

PyTree = Any
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class SquashedGaussianActor(nn.Module):
    """Mean and log-std (squashed into [LOG_STD_MIN, LOG_STD_MAX]) of the pre-tanh Gaussian.

    The ReLU trunk is written out rather than a `networks.ReluMLP`: two heads share it, and its layers sit beside
    the heads (``Dense_0`` .. ``Dense_{n+1}``), parameter paths that seed flax's init."""

    action_dim: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.tanh(nn.Dense(self.action_dim)(x))
        return mean, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)


class VectorQCritic(nn.Module):
    """``Q(s, a) -> [..., m]``."""

    reward_dim: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, x, a):
        # the submodule's name is part of its parameter path, which seeds flax's init: this name keeps the
        # parameters of a given seed what they are
        mlp = ReluMLP(self.reward_dim, self.hidden, "lecun_normal", name="_ReluMLP_0")
        return mlp(jnp.concatenate([x, a], axis=-1))


@struct.dataclass
class SACState:
    actor: PyTree
    critic: PyTree  # twin critics, leaves stacked on a leading axis of 2
    critic_target: PyTree
    actor_opt: PyTree
    critic_opt: PyTree
    log_alpha: jax.Array  # float32 scalar
    alpha_opt: PyTree
    steps: jax.Array  # int32 updates so far


@dataclass(frozen=True)
class SAC:
    """SAC for one env's spaces (Box actions); every method is pure and vmappable over a population."""

    observation_space: Any
    action_space: Any
    reward_dim: int
    hidden: tuple[int, ...] = (256, 256)
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    gamma: float = 0.99
    tau: float = 0.005
    policy_freq: int = 2
    target_net_freq: int = 1
    alpha: float = 0.2
    autotune: bool = True
    max_grad_norm: float | None = None

    def __post_init__(self):
        shape = getattr(self.action_space, "shape", None)
        if type(self.action_space).__name__ != "Box" or shape is None or len(shape) != 1:
            raise ValueError(f"SAC needs a 1-D Box action space, got {self.action_space!r}")
        if not np.all(np.isfinite(np.asarray(self.action_space.low))) or not np.all(
            np.isfinite(np.asarray(self.action_space.high))
        ):
            raise ValueError("SAC squashes actions with tanh and needs finite action bounds")
        if self.policy_freq < 1 or self.target_net_freq < 1:
            raise ValueError("SAC: policy_freq and target_net_freq must be >= 1")

    # ------------------------------------------------------------------ modules
    @property
    def action_dim(self) -> int:
        return int(self.action_space.shape[0])

    @property
    def actor_net(self) -> nn.Module:
        return SquashedGaussianActor(self.action_dim, self.hidden)

    @property
    def critic_net(self) -> nn.Module:
        return VectorQCritic(self.reward_dim, self.hidden)

    @property
    def target_entropy(self) -> float:
        return -float(self.action_dim)

    def _tx(self, lr: float) -> optax.GradientTransformation:
        chain = [optax.clip_by_global_norm(self.max_grad_norm)] if self.max_grad_norm is not None else []
        return optax.chain(*chain, optax.adam(lr))

    def _scale_bias(self):
        low = jnp.asarray(self.action_space.low, jnp.float32)
        high = jnp.asarray(self.action_space.high, jnp.float32)
        return (high - low) / 2.0, (high + low) / 2.0

    def features(self, obs: jax.Array) -> jax.Array:
        return preprocess_obs(self.observation_space, obs)

    def init(self, key: jax.Array) -> SACState:
        k_actor, k_critic = jax.random.split(key)
        x = jnp.zeros((1, observation_dim(self.observation_space)), jnp.float32)
        a = jnp.zeros((1, self.action_dim), jnp.float32)
        actor = self.actor_net.init(k_actor, x)
        critic = jax.vmap(lambda k: self.critic_net.init(k, x, a))(jax.random.split(k_critic, 2))
        log_alpha = jnp.float32(np.log(self.alpha))
        return SACState(
            actor,
            critic,
            critic,
            self._tx(self.policy_lr).init(actor),
            self._tx(self.q_lr).init(critic),
            log_alpha,
            self._tx(self.q_lr).init(log_alpha),
            jnp.int32(0),
        )

    def reset_optimizers(self, state: SACState) -> SACState:
        """Fresh Adam states (after the networks were overwritten, e.g. by a parameter transfer)."""
        return state.replace(
            actor_opt=self._tx(self.policy_lr).init(state.actor),
            critic_opt=self._tx(self.q_lr).init(state.critic),
            alpha_opt=self._tx(self.q_lr).init(state.log_alpha),
        )

    # ------------------------------------------------------------------ acting
    def sample(self, actor: PyTree, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Reparameterised actions in the Box bounds and their log-probabilities, from features ``x [B, d]``."""
        mean, log_std = self.actor_net.apply(actor, x)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        y = jnp.tanh(u)
        scale, bias = self._scale_bias()
        logp = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2.0 * np.pi)
        logp = jnp.sum(logp - jnp.log(scale * (1.0 - y**2) + 1e-6), axis=-1)
        return y * scale + bias, logp

    def mode(self, actor: PyTree, obs: jax.Array) -> jax.Array:
        """Deterministic action ``tanh(mean)`` rescaled (evaluation)."""
        mean, _ = self.actor_net.apply(actor, self.features(obs))
        scale, bias = self._scale_bias()
        return jnp.tanh(mean) * scale + bias

    def act(self, actor: PyTree, obs: jax.Array, key: jax.Array) -> jax.Array:
        """Stochastic action (exploration)."""
        return self.sample(actor, self.features(obs), key)[0]

    def q_values(self, critic: PyTree, x: jax.Array, a: jax.Array) -> jax.Array:
        """Both twins' value vectors ``[2, B, m]``."""
        return jax.vmap(lambda p: self.critic_net.apply(p, x, a))(critic)

    # ------------------------------------------------------------------ losses
    def td_target(
        self,
        state: SACState,
        x_next: jax.Array,
        reward: jax.Array,
        terminated: jax.Array,
        scal: Callable[[jax.Array], jax.Array],
        key: jax.Array,
    ) -> jax.Array:
        """Vector soft TD target ``r + gamma (1 - terminated) (Q'_{k*}(s', a') - alpha log pi(a'|s'))``, ``[B, m]``,
        no gradient: ``a' ~ pi(s')``, ``k*`` the target twin with the smaller ``scal``."""
        alpha = jnp.exp(state.log_alpha)
        a_next, logp_next = self.sample(state.actor, x_next, key)
        q_next = self.q_values(state.critic_target, x_next, a_next)  # [2, B, m]
        pick = jnp.argmin(scal(q_next), axis=0)  # [B]
        q_next_min = jnp.take_along_axis(q_next, pick[None, :, None], axis=0)[0]  # [B, m]
        not_term = 1.0 - terminated.astype(jnp.float32)
        target = reward + self.gamma * not_term[:, None] * (q_next_min - alpha * logp_next[:, None])
        return jax.lax.stop_gradient(target)

    def critic_loss(self, critic: PyTree, x: jax.Array, a: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``sum_k mean_{b, i} (Q_k(s, a)_i - y_i)^2`` over the twins, and both twins' values ``[2, B, m]``."""
        q = self.q_values(critic, x, a)
        return jnp.sum(jnp.mean(jnp.square(q - target[None]), axis=(1, 2))), q

    def actor_loss(
        self,
        actor: PyTree,
        critic: PyTree,
        log_alpha: jax.Array,
        x: jax.Array,
        scal: Callable[[jax.Array], jax.Array],
        key: jax.Array,
    ) -> tuple[jax.Array, jax.Array]:
        """``mean(alpha log pi(a|s) - min_k scal(Q_k(s, a)))`` with ``a ~ pi(s)`` reparameterised, and ``log pi``."""
        a_pi, logp = self.sample(actor, x, key)
        v = scal(self.q_values(critic, x, a_pi))  # [2, B]
        return jnp.mean(jnp.exp(log_alpha) * logp - jnp.min(v, axis=0)), logp

    def alpha_loss(self, log_alpha: jax.Array, logp: jax.Array) -> jax.Array:
        """Temperature loss ``-mean(alpha (log pi + target_entropy))`` (no gradient through ``log pi``)."""
        ent = jax.lax.stop_gradient(logp) + self.target_entropy
        return -jnp.mean(jnp.exp(log_alpha) * ent)

    # ------------------------------------------------------------------ learning
    def update(
        self, state: SACState, batch: dict, scal: Callable[[jax.Array], jax.Array], key: jax.Array
    ) -> tuple[SACState, dict]:
        """One SAC update from ``batch`` (``obs, action, reward [B, m], next_obs, terminated``), scalarised by
        ``scal``."""
        k_next, k_actor = jax.random.split(key)
        x, x_next = self.features(batch["obs"]), self.features(batch["next_obs"])
        a = batch["action"].reshape(x.shape[0], self.action_dim).astype(jnp.float32)
        target = self.td_target(state, x_next, batch["reward"], batch["terminated"], scal, k_next)

        (q_loss, q), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(state.critic, x, a, target)
        updates, critic_opt = self._tx(self.q_lr).update(grads, state.critic_opt, state.critic)
        critic = optax.apply_updates(state.critic, updates)
        state = state.replace(critic=critic, critic_opt=critic_opt)

        def actor_steps(state):
            def one(state, k):
                (loss, logp), g = jax.value_and_grad(self.actor_loss, has_aux=True)(
                    state.actor, state.critic, state.log_alpha, x, scal, k
                )
                upd, actor_opt = self._tx(self.policy_lr).update(g, state.actor_opt, state.actor)
                state = state.replace(actor=optax.apply_updates(state.actor, upd), actor_opt=actor_opt)
                if self.autotune:
                    ga = jax.grad(self.alpha_loss)(state.log_alpha, logp)
                    upd, alpha_opt = self._tx(self.q_lr).update(ga, state.alpha_opt, state.log_alpha)
                    state = state.replace(log_alpha=optax.apply_updates(state.log_alpha, upd), alpha_opt=alpha_opt)
                return state, loss

            state, losses = jax.lax.scan(one, state, jax.random.split(k_actor, self.policy_freq))
            return state, jnp.mean(losses)

        state, pi_loss = jax.lax.cond(
            state.steps % self.policy_freq == 0, actor_steps, lambda s: (s, jnp.float32(0.0)), state
        )
        steps = state.steps + 1
        target_params = jax.lax.cond(
            steps % self.target_net_freq == 0,
            lambda: jax.tree.map(lambda o, t: self.tau * o + (1.0 - self.tau) * t, state.critic, state.critic_target),
            lambda: state.critic_target,
        )
        state = state.replace(critic_target=target_params, steps=steps)
        logs = {"q_loss": q_loss, "pi_loss": pi_loss, "alpha": jnp.exp(state.log_alpha), "q_mean": jnp.mean(scal(q))}
        return state, logs
