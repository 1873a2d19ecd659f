"""Shared network blocks (flax linen): the 64-64 tanh actor and vector critic of C-MORL / PGMORL, and the ReLU
MLP of the off-policy agents (`ReluMLP`, `ConditionedQ`: Envelope, PD-MORL, MORL/D, SAC).

The tanh networks follow the official C-MORL ones (``a2c_ppo_acktr/model.py``, see ``docs/sources.md``): separate
actor and critic MLPs, two hidden layers of 64 units with tanh, orthogonal initialisation with gain 1 on every
hidden layer, gain 0.01 on the actor's output layer and gain 1 on the critic's, zero
biases. The critic is a **vector critic**: one value per objective. Discrete action spaces get a categorical
head (logits); continuous ones a Gaussian head with a state-independent ``log_std`` parameter initialised
to 0.

`ActorCritic` wraps the two modules in plain functions over a params pytree
``{"actor": ..., "critic": ...}``, so that agents can ``vmap`` them over a population of policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from morl.spaces import Box, Discrete

PyTree = Any

_LOG_2PI = math.log(2.0 * math.pi)


def orthogonal(scale: float = 1.0):
    """Orthogonal kernel init, as ``flax.linen.initializers.orthogonal`` (same distribution and sign convention)
    but built from matmuls only.

    Why not flax's: it calls LAPACK's QR, a custom call that splits its batch over XLA's CPU thread pool and
    then waits. When two such calls run at once (a vmapped population init: actor and critic together) on a
    machine with few cores, each holds a pool thread waiting for work queued behind the other: a deadlock
    (it happens on 2 cores; same family as jax-ml/jax#25861). Here Q comes from classical Gram-Schmidt
    applied twice ("twice is enough": orthogonal to float32 precision), which yields the Q of a QR with a
    positive diagonal of R, exactly the Q that flax keeps after its sign correction.
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal init needs a kernel of rank >= 2, got shape {tuple(shape)}")
        n_rows, n_cols = math.prod(shape) // shape[-1], shape[-1]
        tall = (max(n_rows, n_cols), min(n_rows, n_cols))
        a = jax.random.normal(key, tall, jnp.float32)

        def column(j, q):
            v = a[:, j]
            v = v - q @ (q.T @ v)
            v = v - q @ (q.T @ v)
            return q.at[:, j].set(v / jnp.linalg.norm(v))

        q = jax.lax.fori_loop(0, tall[1], column, jnp.zeros(tall, jnp.float32))
        if n_rows < n_cols:
            q = q.T
        return (scale * q.reshape(shape)).astype(dtype)

    return init


class MLP(nn.Module):
    """tanh MLP with orthogonal init: ``hidden_gain`` on hidden layers, ``out_gain`` on the output layer."""

    out_dim: int
    hidden: Sequence[int] = (64, 64)
    hidden_gain: float = 1.0
    out_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = jnp.tanh(nn.Dense(width, kernel_init=orthogonal(self.hidden_gain), bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.out_dim, kernel_init=orthogonal(self.out_gain), bias_init=nn.initializers.zeros)(x)


class CategoricalActor(nn.Module):
    """Logits of a categorical policy (output gain 0.01: near-uniform at init)."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.num_actions, self.hidden, hidden_gain=1.0, out_gain=0.01)(obs)


class GaussianActor(nn.Module):
    """Mean of a diagonal Gaussian policy and its state-independent ``log_std`` (initialised to 0)."""

    action_dim: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.action_dim, self.hidden, hidden_gain=1.0, out_gain=0.01)(obs)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class VectorCritic(nn.Module):
    """One value per objective: ``[..., reward_dim]``."""

    reward_dim: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.reward_dim, self.hidden, hidden_gain=1.0, out_gain=1.0)(obs)


def observation_dim(space) -> int:
    """Length of the flat float vector `preprocess_obs` makes from an observation of ``space``."""
    if isinstance(space, Discrete):
        return int(space.n)
    if isinstance(space, Box):
        return int(np.prod(space.shape)) if len(space.shape) else 1
    raise TypeError(
        f"the MLP networks take Box or Discrete observations, got {type(space).__name__}; "
        "flatten the observation with a wrapper first"
    )


def preprocess_obs(space, obs: jax.Array) -> jax.Array:
    """Observations ``[B, *shape]`` -> float32 ``[B, observation_dim]`` (Discrete observations one-hot)."""
    if isinstance(space, Discrete):
        return jax.nn.one_hot(obs.reshape(obs.shape[0]) - space.start, space.n, dtype=jnp.float32)
    return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


@dataclass(frozen=True)
class ObsEncoder:
    """Observation features for the inner learners' networks.

    ``"raw"``: `agents.networks.preprocess_obs` (Box flattened as floats, Discrete one-hot). ``"onehot"``: an
    integer Box with finite bounds (a grid position such as deep-sea-treasure's (row, col)) becomes the
    concatenated one-hot codes of its coordinates; other spaces stay raw. A small ReLU network on raw
    coordinates overestimates the values of unvisited moves on DST and its greedy policies wander (measured);
    the coordinate code removes that without a larger network.
    """

    space: Any
    encoding: str = "raw"

    @property
    def _onehot(self) -> bool:
        sp = self.space
        return (
            self.encoding == "onehot"
            and isinstance(sp, Box)
            and jnp.issubdtype(sp.dtype, jnp.integer)
            and bool(np.all(np.isfinite(sp.low)) and np.all(np.isfinite(sp.high)))
        )

    @property
    def dim(self) -> int:
        if not self._onehot:
            return observation_dim(self.space)
        return int(np.sum(self.space.high - self.space.low + 1))

    def __call__(self, obs: jax.Array) -> jax.Array:
        if not self._onehot:
            return preprocess_obs(self.space, obs)
        low = np.asarray(self.space.low, np.int64).reshape(-1)
        sizes = (np.asarray(self.space.high, np.int64) - np.asarray(self.space.low, np.int64) + 1).reshape(-1)
        flat = obs.reshape(obs.shape[0], -1).astype(jnp.int32)
        return jnp.concatenate(
            [jax.nn.one_hot(flat[:, i] - int(low[i]), int(sizes[i]), dtype=jnp.float32) for i in range(len(sizes))],
            axis=-1,
        )


@dataclass(frozen=True)
class ActorCritic:
    """A separate actor and vector critic for one env's spaces, as pure functions over ``params``.

    ``raw`` actions are what the policy samples (continuous: before clipping to the action bounds); their
    log-probabilities are what PPO's ratio needs. ``env_action`` is what the env receives.
    """

    observation_space: Any
    action_space: Any
    reward_dim: int
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        if not isinstance(self.action_space, (Discrete, Box)):
            raise TypeError(
                f"ActorCritic supports Discrete and Box action spaces, got {type(self.action_space).__name__}"
            )
        if isinstance(self.action_space, Box) and len(self.action_space.shape) != 1:
            raise ValueError(f"continuous actions must be a 1-D Box, got shape {self.action_space.shape}")
        observation_dim(self.observation_space)  # fails early on an unsupported observation space

    # ------------------------------------------------------------------ modules
    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    @property
    def obs_dim(self) -> int:
        return observation_dim(self.observation_space)

    @property
    def actor(self) -> nn.Module:
        if self.discrete:
            return CategoricalActor(int(self.action_space.n), self.hidden)
        return GaussianActor(int(self.action_space.shape[0]), self.hidden)

    @property
    def critic(self) -> nn.Module:
        return VectorCritic(self.reward_dim, self.hidden)

    def init(self, key: jax.Array) -> PyTree:
        k_actor, k_critic = jax.random.split(key)
        dummy = jnp.zeros((1, self.obs_dim), jnp.float32)
        return {"actor": self.actor.init(k_actor, dummy), "critic": self.critic.init(k_critic, dummy)}

    # ------------------------------------------------------------------ functions of features [B, obs_dim]
    def value(self, critic_params: PyTree, x: jax.Array) -> jax.Array:
        """Vector values ``[B, reward_dim]``."""
        return self.critic.apply(critic_params, x)

    def sample(self, actor_params: PyTree, x: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(env_action, raw_action, log_prob)`` for a batch of features."""
        return head_sample(self.action_space, self.actor.apply(actor_params, x), key)

    def log_prob_entropy(self, actor_params: PyTree, x: jax.Array, raw: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Log-probability of ``raw`` actions and the policy's entropy, both ``[B]``."""
        return head_log_prob_entropy(self.action_space, self.actor.apply(actor_params, x), raw)

    def mode(self, actor_params: PyTree, x: jax.Array) -> jax.Array:
        """The deterministic (evaluation) action: argmax of the logits, or the Gaussian mean (clipped)."""
        return head_mode(self.action_space, self.actor.apply(actor_params, x))


# ----------------------------------------------------------------------------------- policy heads
# What an actor's output means: logits [B, A] for Discrete actions, (mean, log_std) [B, a] for a Box. Functions of
# that output, so that any network producing it (`ActorCritic`, a hypernetwork-generated actor) shares them.


def to_env_action(action_space, raw: jax.Array) -> jax.Array:
    """What the env receives: the index shifted by the space's start, or the raw action clipped to the bounds."""
    if isinstance(action_space, Discrete):
        return (raw + action_space.start).astype(action_space.dtype)
    low = jnp.asarray(action_space.low, jnp.float32)
    high = jnp.asarray(action_space.high, jnp.float32)
    return jnp.clip(raw, low, high).astype(action_space.dtype)


def head_sample(action_space, out, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(env_action, raw_action, log_prob)`` from an actor output."""
    if isinstance(action_space, Discrete):
        raw = jax.random.categorical(key, out, axis=-1)
        logp = jnp.take_along_axis(jax.nn.log_softmax(out), raw[:, None], axis=-1)[:, 0]
        return to_env_action(action_space, raw), raw, logp
    mean, log_std = out
    raw = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    return to_env_action(action_space, raw), raw, _gaussian_log_prob(raw, mean, log_std)


def head_log_prob_entropy(action_space, out, raw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-probability of ``raw`` actions and the policy's entropy, both ``[B]``."""
    if isinstance(action_space, Discrete):
        logp_all = jax.nn.log_softmax(out)
        logp = jnp.take_along_axis(logp_all, raw.astype(jnp.int32)[:, None], axis=-1)[:, 0]
        entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
        return logp, entropy
    mean, log_std = out
    entropy = jnp.sum(0.5 * (1.0 + _LOG_2PI) + log_std, axis=-1)
    return _gaussian_log_prob(raw, mean, log_std), entropy


def head_mode(action_space, out) -> jax.Array:
    """The deterministic action: argmax of the logits, or the Gaussian mean (clipped)."""
    if isinstance(action_space, Discrete):
        return to_env_action(action_space, jnp.argmax(out, axis=-1))
    return to_env_action(action_space, out[0])


def _gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z * z - log_std - 0.5 * _LOG_2PI, axis=-1)


# ----------------------------------------------------------------------------------- ReLU / preference-conditioned
def _relu_kernel_init(name: str):
    if name == "orthogonal":  # MORL-Baselines' layer_init: orthogonal, gain 1
        return orthogonal(1.0)
    if name == "xavier_normal":  # PD-MORL's init_weights
        return nn.initializers.xavier_normal()
    if name == "lecun_normal":  # flax's Dense default (MORL/D's learners)
        return nn.initializers.lecun_normal()
    raise ValueError(f"unknown kernel init {name!r}; use 'orthogonal', 'xavier_normal' or 'lecun_normal'")


class ReluMLP(nn.Module):
    """ReLU MLP with a linear output, the off-policy agents' one MLP: ``kernel`` init 'orthogonal' (gain 1,
    MORL-Baselines), 'xavier_normal' (PD-MORL) or 'lecun_normal' (MORL/D), zero biases."""

    out_dim: int
    hidden: Sequence[int] = (256, 256)
    kernel: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        init = _relu_kernel_init(self.kernel)
        for width in self.hidden:
            x = nn.relu(nn.Dense(width, kernel_init=init, bias_init=nn.initializers.zeros)(x))
        return nn.Dense(self.out_dim, kernel_init=init, bias_init=nn.initializers.zeros)(x)


class ConditionedQ(nn.Module):
    """Preference-conditioned vector Q-network ``Q(x, w) -> [B, A, m]`` (Envelope, PD-MORL): the preference is
    concatenated to the observation features."""

    num_actions: int
    reward_dim: int
    hidden: Sequence[int] = (256, 256, 256, 256)
    kernel: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        out = ReluMLP(self.num_actions * self.reward_dim, self.hidden, self.kernel)(jnp.concatenate([x, w], -1))
        return out.reshape(out.shape[:-1] + (self.num_actions, self.reward_dim))
