"""Temporal-difference blocks with **vector** values: DDQN / Envelope / PD-MORL targets, TD3 losses.

Pure array functions, independent of any network: callers evaluate their networks and pass the outputs in.
Shapes: ``B`` batch, ``A`` discrete actions, ``m`` objectives, ``K`` sampled preferences. A Q-network of a
discrete agent outputs ``[B, A, m]`` (one value vector per action); a TD3 critic outputs ``[B, m]``.

Targets bootstrap on ``terminated`` only: a truncated transition (time limit) bootstraps from its true next
observation, which the rollout engine keeps (`morl.rollout.Transition.next_obs`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


# --------------------------------------------------------------------------- small pieces
def smooth_l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean Huber loss with delta 1 over all elements (torch's ``F.smooth_l1_loss``)."""
    d = jnp.abs(pred - target)
    return jnp.mean(jnp.where(d < 1.0, 0.5 * d * d, d - 0.5))


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(pred - target))


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Cosine of the angle between vectors along the last axis (torch's ``F.cosine_similarity``)."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
    return jnp.sum(a * b, axis=-1) / (na * nb)


def angle_deg(w: jax.Array, q: jax.Array) -> jax.Array:
    """PD-MORL's angle term: ``degrees(acos(clip(cos(w, q), 0, 0.9999)))`` along the last axis.

    The clip makes obtuse angles (cosine < 0) give a constant 90 degrees and no gradient, as the official code.
    """
    return jnp.rad2deg(jnp.arccos(jnp.clip(cosine_similarity(w, q), 0.0, 0.9999)))


def scalarize(w: jax.Array, q: jax.Array) -> jax.Array:
    """``w . q`` with ``w [..., m]`` broadcast against ``q [..., m]`` (e.g. ``[B, 1, m]`` x ``[B, A, m]``)."""
    return jnp.sum(w * q, axis=-1)


def polyak(online: PyTree, target: PyTree, tau: float | jax.Array) -> PyTree:
    """``tau * online + (1 - tau) * target`` leaf by leaf (``tau = 1`` copies)."""
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def select_params(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def linear_schedule(
    initial: float, final: float, decay_steps: int | None, step: jax.Array, warmup: int = 0
) -> jax.Array:
    """MORL-Baselines' ``linearly_decaying_value``: ``initial`` until ``warmup``, then linear to ``final``
    over ``decay_steps`` steps, then ``final``. ``decay_steps=None`` keeps ``initial`` forever."""
    if decay_steps is None:
        return jnp.float32(initial)
    left = decay_steps + warmup - step.astype(jnp.float32)
    value = final + (initial - final) * left / decay_steps
    return jnp.clip(value, min(initial, final), max(initial, final)).astype(jnp.float32)


def epsilon_greedy(key: jax.Array, greedy: jax.Array, num_actions: int, epsilon: jax.Array) -> jax.Array:
    """With probability ``epsilon`` a uniform random action, else ``greedy`` (int array ``[N]``)."""
    k_explore, k_action = jax.random.split(key)
    explore = jax.random.uniform(k_explore, greedy.shape) < epsilon
    random_action = jax.random.randint(k_action, greedy.shape, 0, num_actions, dtype=greedy.dtype)
    return jnp.where(explore, random_action, greedy)


def bootstrap(reward: jax.Array, terminated: jax.Array, gamma: float, next_value: jax.Array) -> jax.Array:
    """Vector TD target ``r + gamma * (1 - terminated) * next_value`` (``[B, m]``)."""
    return reward + gamma * (1.0 - terminated.astype(jnp.float32))[:, None] * next_value


def take_action(q: jax.Array, action: jax.Array) -> jax.Array:
    """The value vector of ``action`` in ``q [B, A, m]`` -> ``[B, m]``."""
    return jnp.take_along_axis(q, action.astype(jnp.int32)[:, None, None], axis=1)[:, 0]


# --------------------------------------------------------------------------- discrete: DDQN, Envelope, PD-MORL
def ddqn_next_value(q_next_online: jax.Array, q_next_target: jax.Array, w: jax.Array) -> jax.Array:
    """Double-DQN with vector values: ``Q_target(s', argmax_a w . Q_online(s', a))``, ``[B, m]``."""
    action = jnp.argmax(scalarize(w[:, None, :], q_next_online), axis=-1)
    return take_action(q_next_target, action)


def envelope_next_value(q_next_online: jax.Array, q_next_target: jax.Array, w: jax.Array) -> jax.Array:
    """Envelope operator (Yang et al. 2019) as MORL-Baselines' ``Envelope.envelope_target``.

    ``q_next_*``: ``[B, K, A, m]``, the next state's values conditioned on each of K sampled preferences
    ``w'_k``; ``w``: ``[B, m]``, the row's own preference. Picks ``(k*, a*) = argmax_{k, a} w . Q_online(s',
    a, w'_k)`` (per k the best action, then the best k) and returns ``Q_target(s', a*, w'_{k*})``, ``[B, m]``.
    """
    scal = scalarize(w[:, None, None, :], q_next_online)  # [B, K, A]
    best_action = jnp.argmax(scal, axis=-1)  # [B, K]
    best_k = jnp.argmax(jnp.max(scal, axis=-1), axis=-1)  # [B]
    per_k = jnp.take_along_axis(q_next_target, best_action[:, :, None, None], axis=2)[:, :, 0]  # [B, K, m]
    return jnp.take_along_axis(per_k, best_k[:, None, None], axis=1)[:, 0]


def preference_driven_action(
    q_next: jax.Array, w: jax.Array, w_p: jax.Array, shift: jax.Array | None = None
) -> jax.Array:
    """PD-MORL's Eq. 5 action: ``argmax_a clip(cos(w_p, Q(s', a) + shift), 0, 0.9999) * w . Q(s', a)``.

    ``q_next [B, A, m]``; ``w, w_p [B, m]`` (``w_p`` the interpolated preference); ``shift [m]`` is added to
    Q inside the cosine only (the official code adds 19 to DST's time objective there). Returns ``[B]``.
    """
    q_cos = q_next if shift is None else q_next + shift
    cos = jnp.clip(cosine_similarity(w_p[:, None, :], q_cos), 0.0, 0.9999)
    return jnp.argmax(cos * scalarize(w[:, None, :], q_next), axis=-1)


# --------------------------------------------------------------------------- continuous: TD3 with vector critics
def td3_target_action(
    key: jax.Array, next_action: jax.Array, policy_noise: float, noise_clip: float, low: jax.Array, high: jax.Array
) -> jax.Array:
    """TD3 target policy smoothing: ``clip(pi'(s') + clip(N(0, sigma^2), +-c), low, high)``.

    ``policy_noise`` and ``noise_clip`` are absolute (the caller multiplies by the action scale if wanted).
    """
    noise = jnp.clip(jax.random.normal(key, next_action.shape) * policy_noise, -noise_clip, noise_clip)
    return jnp.clip(next_action + noise, low, high)


def td3_min_vector(q1: jax.Array, q2: jax.Array, w: jax.Array) -> jax.Array:
    """The **whole vector** of the twin with the smaller ``w . Q`` (PD-MORL), ``[B, m]``.

    Contrast with CAPQL's element-wise minimum. Ties pick ``q1`` (torch.min returns the first index).
    """
    pick_two = scalarize(w, q2) < scalarize(w, q1)
    return jnp.where(pick_two[:, None], q2, q1)


def td3_critic_loss(q1: jax.Array, q2: jax.Array, target: jax.Array, w_p: jax.Array | None = None) -> jax.Array:
    """``SmoothL1(Q1, y) + SmoothL1(Q2, y)``, plus (PD-MORL) ``mean angle(w_p, Q1) + mean angle(w_p, Q2)``."""
    loss = smooth_l1(q1, target) + smooth_l1(q2, target)
    if w_p is not None:
        loss = loss + jnp.mean(angle_deg(w_p, q1)) + jnp.mean(angle_deg(w_p, q2))
    return loss


def td3_actor_loss(q1: jax.Array, w: jax.Array, w_p: jax.Array | None = None, angle_coef: float = 10.0) -> jax.Array:
    """``-mean(w . Q1(s, pi(s)))``, plus (PD-MORL) ``angle_coef * mean angle(w_p, Q1)``."""
    loss = -jnp.mean(scalarize(w, q1))
    if w_p is not None:
        loss = loss + angle_coef * jnp.mean(angle_deg(w_p, q1))
    return loss
