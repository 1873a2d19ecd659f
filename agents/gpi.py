"""GPI-LS and GPI-PD (Alegre, Bazzan, Roijers, Nowé, da Silva, AAMAS 2023) as MORL-Baselines implements them, in JAX.

One preference-conditioned vector Q-network ``Q(s, a, w) -> [A, m]`` (an ensemble of ``num_nets`` of them, as the
reference) is trained on a growing **weight support**: the preferences whose policies the agent keeps. Training
runs in iterations of ``timesteps_per_iter`` env steps. Before each, linear support (`agents.linear_support`)
computes the corner weights of the current CCS and picks the one where the GPI policy improves most on the CCS
(GPI-LS priority); the iteration trains on that weight, the support and the four next corners, changing the acting
preference every episode. Acting and evaluation use **generalised policy improvement** over the support:
``a(s, w) = argmax_a max_i w . Q(s, a, w_i)`` (`gpi_action`). After the iteration the GPI policy is evaluated at
each of those weights and the values are added to the CCS.

GPI-PD adds **GPI prioritisation** (replay priorities from the GPI target over the support, `envelope_target`) and
**Dyna**: a probabilistic ensemble (`agents.dynamics`) fitted to the real transitions every
``dynamics_train_freq`` steps, whose one-step rollouts from replayed states (filtered by the ensemble's
disagreement) fill a model buffer that supplies ``1 - real_ratio`` of each minibatch. Model transitions are not
env steps: only real transitions count towards ``total_timesteps``.

Linear support and the model's early-stopped fits run on the host between jitted chunks of env and gradient steps,
so seeds are trained one after the other (``vmappable = False``). Step by step, and where this differs from
MORL-Baselines: docs/algorithms/gpi.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agent import AgentSpec, Trainer, check_config, register_agent, require_discrete
from morl.agents import dynamics as dyn
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.linear_support import LinearSupport, unique_tol
from morl.agents.networks import observation_dim, orthogonal, preprocess_obs
from morl.evaluate import evaluate_returns
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution
from morl.spaces import Box

PyTree = Any


# =============================================================================================== config
@dataclass(frozen=True)
class GPILSConfig:
    """GPI-LS settings. Defaults: MORL-Baselines' ``GPIPD.__init__`` / ``GPILS`` and ``GPIPD.train``
    (docs/sources.md); fields marked "ours" have no counterpart there.

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the random warm-up
    (``learning_starts``) included. It is spent in whole iterations of ``timesteps_per_iter`` (the reference's
    ``total_timesteps // timesteps_per_iter``); a remainder below one iteration is not used. The policy evaluations
    linear support makes between iterations are evaluation episodes, not training transitions."""

    total_timesteps: int = 150_000  # budget in real env steps (MORL-Baselines' examples/gpi_pd_minecart.py: 15 x 10k)
    timesteps_per_iter: int = 10_000  # env steps per linear-support iteration (one new corner weight each)
    learning_rate: float = 3e-4  # Adam learning rate of the Q-networks
    initial_epsilon: float = 0.01  # epsilon-greedy: start value (after learning_starts)
    final_epsilon: float = 0.01  # epsilon-greedy: final value
    epsilon_decay_steps: int | None = None  # env steps of the linear decay; None = fixed epsilon
    tau: float = 1.0  # target update: 1 = hard copy every target_net_update_freq steps, < 1 = Polyak every step
    target_net_update_freq: int = 1000  # env steps between hard target copies (ignored when tau < 1)
    buffer_size: int = 1_000_000  # replay capacity (transitions)
    net_arch: tuple[int, ...] = (256, 256, 256, 256)  # widths: the observation and preference embeddings, then
    # the hidden layers of the MLP on their product
    num_nets: int = 2  # Q-networks in the ensemble (targets take the one with the smallest w . Q)
    batch_size: int = 128  # transitions per gradient step (each used twice: with the acting preference and with
    # a preference drawn from the support)
    learning_starts: int = 100  # random actions and no updates before this many env steps
    gradient_updates: int = 20  # gradient steps per env step once env_steps >= gradient_updates_starts
    gradient_updates_starts: int = 5000  # one gradient step per env step before this (MORL-Baselines ties it to
    # dynamics_rollout_starts, also for GPI-LS)
    gamma: float = 0.99  # discount (also of the policy evaluations that linear support makes)
    max_grad_norm: float | None = None  # per-network gradient-norm clip; None = no clip
    use_gpi: bool = True  # act with GPI over the support (False: greedy on min over the nets of Q(s, a, w));
    # linear support always evaluates the GPI policy
    per: bool = True  # prioritised replay (proportional, no importance weights)
    gpi_priority: bool = False  # priorities from the GPI target over the support (GPI-PD) instead of the TD error
    alpha_per: float = 0.6  # priority exponent
    min_priority: float = 0.01  # priorities are clipped below at this; also the Huber loss threshold
    drop_rate: float = 0.01  # dropout after each hidden layer of the Q-network (training passes only)
    layer_norm: bool = True  # layer normalisation after each hidden layer of the Q-network
    corner_top_k: int = 4  # next-best corner weights trained on beside the chosen one (MORL-Baselines: top_k=4)
    eval_episodes: int = 5  # episodes per policy evaluation of linear support (num_eval_episodes_for_front)
    max_support: int = 64  # ours: capacity of the weight support (the GPI policy set), a static shape
    steps_per_chunk: int = 250  # ours: env steps per jitted training chunk (one `update` call)

    name = "gpi-ls"

    def __post_init__(self):
        n = self.name
        check_config(
            n,
            self,
            at_least_one=(
                "total_timesteps",
                "timesteps_per_iter",
                "buffer_size",
                "batch_size",
                "num_nets",
                "gradient_updates",
                "target_net_update_freq",
                "eval_episodes",
                "steps_per_chunk",
            ),
            non_negative=("learning_starts", "gradient_updates_starts", "corner_top_k"),
            unit_interval=("tau",),
        )
        if len(self.net_arch) < 2:
            raise ValueError(f"{n} config: net_arch needs at least 2 widths (embedding, hidden), got {self.net_arch}")
        if self.total_timesteps < self.timesteps_per_iter:
            raise ValueError(
                f"{n} config: the budget total_timesteps {self.total_timesteps:,} is less than one iteration "
                f"(timesteps_per_iter {self.timesteps_per_iter:,}); lower --timesteps-per-iter or raise --steps"
            )
        for name in self._chunk_multiples():
            if getattr(self, name) % self.steps_per_chunk:
                raise ValueError(
                    f"{n} config: {name} ({getattr(self, name)}) must be a multiple of steps_per_chunk "
                    f"({self.steps_per_chunk}): linear support and the model work between chunks"
                )
        if self.max_support < self.corner_top_k + 3:
            raise ValueError(f"{n} config: max_support must be >= corner_top_k + 3, got {self.max_support}")

    def _chunk_multiples(self) -> tuple[str, ...]:
        return ("timesteps_per_iter", "gradient_updates_starts")


@dataclass(frozen=True)
class GPIPDConfig(GPILSConfig):
    """GPI-PD settings: GPI-LS plus GPI prioritisation and Dyna with a learned model. Defaults: MORL-Baselines'
    ``GPIPD.__init__`` (docs/sources.md)."""

    gpi_priority: bool = True  # priorities from the GPI target over the support (GPI prioritisation)
    dyna: bool = True  # Dyna: minibatches mix real and model transitions
    dynamics_net_arch: tuple[int, ...] = (256, 256, 256)  # hidden widths of each model member
    dynamics_ensemble_size: int = 5  # members of the probabilistic ensemble
    dynamics_num_elites: int = 2  # members with the lowest holdout error that imagined steps sample from
    dynamics_learning_rate: float = 1e-3  # Adam learning rate of the model (ProbabilisticEnsemble's default)
    dynamics_train_freq: int = 250  # env steps between model fits (each on every real transition so far)
    dynamics_rollout_starts: int = 5000  # env steps before the first Dyna rollout and model minibatches
    dynamics_rollout_freq: int = 250  # env steps between Dyna rollouts
    dynamics_rollout_batch_size: int = 25000  # start states per Dyna rollout (in batches of at most 10,000,
    # rounded up to whole batches as the reference does)
    dynamics_rollout_len: int = 1  # imagined steps per rollout
    dynamics_uncertainty_threshold: float = 1.5  # imagined transitions with a larger ensemble disagreement are
    # dropped
    dynamics_buffer_size: int = 100_000  # model buffer capacity (imagined transitions)
    real_ratio: float = 0.5  # share of real transitions in a minibatch once the model buffer is used

    name = "gpi-pd"

    def __post_init__(self):
        super().__post_init__()
        check_config(
            self.name,
            self,
            at_least_one=(
                "dynamics_ensemble_size",
                "dynamics_num_elites",
                "dynamics_train_freq",
                "dynamics_rollout_freq",
                "dynamics_rollout_batch_size",
                "dynamics_rollout_len",
                "dynamics_buffer_size",
            ),
            unit_interval=("real_ratio",),
        )
        if self.dynamics_num_elites > self.dynamics_ensemble_size:
            raise ValueError(
                f"gpi-pd config: dynamics_num_elites ({self.dynamics_num_elites}) must be <= dynamics_ensemble_size "
                f"({self.dynamics_ensemble_size})"
            )
        if int(self.batch_size * self.real_ratio) < 1 and self.dyna:
            raise ValueError("gpi-pd config: batch_size * real_ratio must be >= 1 (real transitions per minibatch)")

    def _chunk_multiples(self) -> tuple[str, ...]:
        return super()._chunk_multiples() + ("dynamics_train_freq", "dynamics_rollout_starts", "dynamics_rollout_freq")


# =============================================================================================== blocks
class GPIQNet(nn.Module):
    """MORL-Baselines' GPI-PD ``QNet``: ``Q(s, w) -> [A, m]``. The observation and the preference are each embedded
    by one ReLU layer of width ``hidden[0]``; their element-wise product goes through ReLU layers ``hidden[1:]``
    (each Dense, dropout, layer norm, ReLU) and a linear head. Orthogonal kernels (gain 1), zero biases."""

    num_actions: int
    reward_dim: int
    hidden: tuple[int, ...] = (256, 256, 256, 256)
    drop_rate: float = 0.01
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, deterministic: bool = True) -> jax.Array:
        dense = lambda n: nn.Dense(n, kernel_init=orthogonal(1.0), bias_init=nn.initializers.zeros)  # noqa: E731
        h = nn.relu(dense(self.hidden[0])(x)) * nn.relu(dense(self.hidden[0])(w))
        for width in self.hidden[1:]:
            h = dense(width)(h)
            if self.drop_rate > 0:
                h = nn.Dropout(self.drop_rate, deterministic=deterministic)(h)
            if self.layer_norm:
                h = nn.LayerNorm(epsilon=1e-5)(h)  # torch's default epsilon
            h = nn.relu(h)
        out = dense(self.num_actions * self.reward_dim)(h)
        return out.reshape(out.shape[:-1] + (self.num_actions, self.reward_dim))


def gpi_action(q: jax.Array, w: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Generalised policy improvement: ``a(s, w) = argmax_a max_i w . Q(s, a, w_i)``.

    ``q`` ``[..., S, A, m]``: the value vectors of the S support policies (row i: ``Q(s, ., w_i)``); ``w``
    ``[..., m]`` the preference acted for; ``mask`` ``[..., S]`` the rows in use. Returns the action and the index of
    the support policy it comes from (ties: the first, as torch's max/argmax).
    """
    scal = jnp.einsum("...sam,...m->...sa", q, w)
    scal = jnp.where(mask[..., None], scal, -jnp.inf)
    policy = jnp.argmax(jnp.max(scal, axis=-1), axis=-1)
    row = jnp.take_along_axis(scal, policy[..., None, None], axis=-2)[..., 0, :]
    return jnp.argmax(row, axis=-1).astype(jnp.int32), policy.astype(jnp.int32)


def min_over_nets(q: jax.Array, w: jax.Array) -> jax.Array:
    """``q`` ``[N, B, A, m]`` -> ``[B, A, m]``: per (row, action) the net with the smallest ``w . Q`` (``w`` ``[B, m]``;
    MORL-Baselines' pessimistic target over its Q ensemble)."""
    pick = jnp.argmin(jnp.einsum("nbam,bm->nba", q, w), axis=0)  # [B, A]
    return jnp.take_along_axis(q, pick[None, :, :, None], axis=0)[0]


def envelope_target(q_next: jax.Array, w: jax.Array, mask: jax.Array) -> jax.Array:
    """GPI target (MORL-Baselines' ``_envelope_target``): ``Q(s', a*, w_k*)`` with ``(k*, a*) = argmax_{k, a}
    w . Q(s', a, w_k)`` over the support preferences ``w_k`` in ``mask``. ``q_next`` ``[B, K, A, m]`` (already the
    minimum over the nets), ``w`` ``[B, m]``, ``mask`` ``[K]``; returns ``[B, m]``."""
    scal = jnp.einsum("bkam,bm->bka", q_next, w)
    scal = jnp.where(mask[None, :, None], scal, -jnp.inf)
    best_a = jnp.argmax(scal, axis=-1)  # [B, K]
    best_k = jnp.argmax(jnp.max(scal, axis=-1), axis=-1)  # [B]
    per_k = jnp.take_along_axis(q_next, best_a[:, :, None, None], axis=2)[:, :, 0]  # [B, K, m]
    return jnp.take_along_axis(per_k, best_k[:, None, None], axis=1)[:, 0]


def huber(x: jax.Array, threshold: float) -> jax.Array:
    """MORL-Baselines' ``huber(|td|, min_priority)``: ``0.5 x^2`` below the threshold, ``threshold * x`` above."""
    return jnp.mean(jnp.where(x < threshold, 0.5 * jnp.square(x), threshold * x))


def clip_per_net(grads: PyTree, max_norm: float) -> PyTree:
    """torch's ``clip_grad_norm_`` applied to each net of a stacked ensemble (leading axis N) separately."""
    sq = sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in jax.tree.leaves(grads))
    scale = jnp.minimum(1.0, max_norm / (jnp.sqrt(sq) + 1e-6))
    return jax.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), grads)


def _pow2(n: int, least: int = 8) -> int:
    """The next power of two >= n (at least ``least``): padded sizes that compile O(log n) programs."""
    return max(least, 1 << max(0, (n - 1).bit_length()))


# =============================================================================================== state
@struct.dataclass
class Learner:
    """What a jitted chunk reads and writes (device arrays)."""

    q_params: PyTree  # leaves [N, ...]: the Q ensemble
    target_params: PyTree
    opt_state: PyTree
    replay: rb.Replay
    model_replay: rb.Replay | None  # imagined transitions (GPI-PD with Dyna), else None
    rollout: RolloutState
    w: jax.Array  # [m] the preference of the current episode
    support: jax.Array  # [S_max, m] the weight support, rows in use first
    support_count: jax.Array  # int32
    key: jax.Array
    env_steps: jax.Array  # int32
    updates: jax.Array  # int32


@struct.dataclass
class GPIState:
    learner: Learner
    model: PyTree  # dynamics ensemble params (None without Dyna)
    elites: np.ndarray  # [num_elites] int32
    iteration: np.ndarray  # iterations begun
    ls: dict  # linear support as fixed-shape arrays (LinearSupport.arrays)
    seed: np.ndarray  # seeds the host's random choices (ties of linear support)
    eval_episodes: np.ndarray
    model_loss: np.ndarray  # the last fit's mean holdout MSE


# =============================================================================================== trainer
class GPITrainer(Trainer):
    """Chunked trainer (`morl.agent.Trainer`): ``update`` runs linear support on the host at iteration boundaries,
    the model fit and Dyna rollout every ``dynamics_*_freq`` steps, and one jitted chunk of env + gradient steps."""

    vmappable = False

    def __init__(self, config: GPILSConfig, env, env_params=None):
        c = config
        require_discrete(env, c.name)
        require_pure_jax(env, c.name)
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.num_actions = int(env.action_space.n)
        self.space = env.observation_space
        self.obs_dim = observation_dim(self.space)
        self.dyna = bool(getattr(c, "dyna", False))
        if self.dyna and not isinstance(self.space, Box):
            raise ValueError(f"gpi-pd's model needs Box observations; {env.name} has {type(self.space).__name__}")
        self.done_fn = dyn.termination_fn(env) if self.dyna else None
        self.iterations = c.total_timesteps // c.timesteps_per_iter
        self.budget = self.iterations * c.timesteps_per_iter
        self.ls_capacity = self.iterations * (c.max_support + c.corner_top_k + 1) + self.m
        self.net = GPIQNet(self.num_actions, self.m, tuple(c.net_arch), c.drop_rate, c.layer_norm)
        self.tx = optax.adam(c.learning_rate)
        self.rollout = make_rollout(env, self._behaviour_policy, 1, 1, gamma=c.gamma)
        self.capacity = min(c.buffer_size, self.budget + 1)
        if self.dyna:
            self.model = dyn.Ensemble(
                self.obs_dim + self.num_actions,
                self.obs_dim + self.m,
                tuple(c.dynamics_net_arch),
                c.dynamics_ensemble_size,
                c.dynamics_num_elites,
                c.dynamics_learning_rate,
            )
            self._fit = dyn.make_fit(self.model, self.capacity)
            self._fit_data = jax.jit(self._fit_data_fn)
            self._dyna_rollout = jax.jit(self._dyna_rollout_fn, static_argnums=3)
        self._init = jax.jit(self._init_fn)
        self._chunks = {
            (late, mix): jax.jit(lambda s, late=late, mix=mix: self._chunk(s, late, mix))
            for late in (False, True)
            for mix in ((False, True) if self.dyna else (False,))
        }
        self._reset_priorities = jax.jit(self._reset_priorities_fn, static_argnums=1)

        def act(params, w, obs, key):
            """Evaluation action: GPI over the support with net 0 (``use_gpi``), else greedy on the nets' minimum."""
            x = preprocess_obs(self.space, obs)
            w = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
            if c.use_gpi:
                return self._gpi_act(jax.tree.map(lambda p: p[0], params["q"]), params, x, w, None)
            q = jax.vmap(lambda p: self.net.apply(p, x, w))(params["q"])  # [N, B, A, m]
            return jnp.argmax(td.scalarize(w[:, None, :], jnp.min(q, axis=0)), axis=-1).astype(jnp.int32)

        self._act = act

    # ------------------------------------------------------------------ protocol
    def init(self, key: jax.Array) -> GPIState:
        k_model, k_seed, key = jax.random.split(key, 3)
        learner = self._init(key)
        model = self.model.init(k_model) if self.dyna else None
        elites = np.arange(self.config.dynamics_num_elites, dtype=np.int32) if self.dyna else np.zeros(0, np.int32)
        return GPIState(
            learner=learner,
            model=model,
            elites=elites,
            iteration=np.int64(0),
            ls=self._ls_arrays(LinearSupport(self.m, epsilon=None), []),
            seed=np.asarray(jax.random.randint(k_seed, (), 0, 2**31 - 1), np.int64),
            eval_episodes=np.int64(0),
            model_loss=np.float64(np.nan),
        )

    def done(self, state: GPIState) -> bool:
        return bool(state.ls["ended"]) or int(state.learner.env_steps) >= self.budget

    def env_steps(self, state: GPIState) -> int:
        return int(state.learner.env_steps)

    def update(self, state: GPIState) -> tuple[GPIState, dict]:
        c = self.config
        if self.done(state):
            return state, self._logs(state, {})
        steps = int(state.learner.env_steps)
        # the model's work of the step that ended the last chunk (the reference's order: model, then that step's
        # updates; here the updates came first, in the chunk)
        if self.dyna and steps >= max(c.learning_starts, 1):
            if steps % c.dynamics_train_freq == 0:
                state = self._fit_model(state)
            if steps >= c.dynamics_rollout_starts and steps % c.dynamics_rollout_freq == 0:
                state = self._rollout_model(state)
        if steps == int(state.iteration) * c.timesteps_per_iter:
            state = self._begin_iteration(state)
            if self.done(state):
                return state, self._logs(state, {})
        late = steps >= c.gradient_updates_starts
        mix = self.dyna and steps >= c.dynamics_rollout_starts
        learner, logs = self._chunks[(late, mix)](state.learner)
        state = state.replace(learner=learner)
        if int(learner.env_steps) == int(state.iteration) * c.timesteps_per_iter:
            state = self._end_iteration(state)
        return state, self._logs(state, logs)

    def solution(self, state: GPIState) -> Solution:
        return Solution(act=self._act, params=self._policy_params(state.learner), conditioned=True, greedy=True)

    # ------------------------------------------------------------------ linear support (host)
    def _support_rows(self, learner: Learner) -> int:
        return min(self.config.max_support, _pow2(int(learner.support_count)))

    def _policy_params(self, learner: Learner) -> dict:
        """The evaluation policy's params: the Q ensemble and the support, trimmed to a power of two of rows."""
        k = self._support_rows(learner)
        return {"q": learner.q_params, "support": learner.support[:k], "mask": jnp.arange(k) < learner.support_count}

    def _gpi_values(self, state: GPIState, weights: np.ndarray, key: jax.Array) -> np.ndarray:
        """The GPI policy's mean discounted return at each of ``weights`` ``[K, m]`` (eval_episodes episodes)."""
        sol = Solution(act=self._act_gpi, params=self._policy_params(state.learner), conditioned=True, greedy=True)
        weights = np.asarray(weights, np.float32)
        k = len(weights)
        padded = np.concatenate([weights, np.repeat(weights[-1:], _pow2(k) - k, axis=0)])
        disc, _, _ = evaluate_returns(
            sol,
            self.env,
            self.env_params,
            padded,
            episodes=self.config.eval_episodes,
            gamma=self.config.gamma,
            key=key,
        )
        return disc[:k]

    def _act_gpi(self, params, w, obs, key):
        x = preprocess_obs(self.space, obs)
        w = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
        return self._gpi_act(jax.tree.map(lambda p: p[0], params["q"]), params, x, w, None)

    def _set_support(self, learner: Learner, weights: list[np.ndarray]) -> Learner:
        c = self.config
        if len(weights) > c.max_support:
            raise RuntimeError(
                f"{c.name}: the weight support grew to {len(weights)} preferences, more than max_support "
                f"({c.max_support}); train with a larger --max-support"
            )
        rows = np.zeros((c.max_support, self.m), np.float32)
        rows[: len(weights)] = np.asarray(weights, np.float32)
        return learner.replace(support=jnp.asarray(rows), support_count=jnp.int32(len(weights)))

    def _begin_iteration(self, state: GPIState) -> GPIState:
        """Linear support picks the iteration's weight w; the support becomes CCS weights + top corners + w."""
        c = self.config
        it = int(state.iteration)
        ls = LinearSupport.from_arrays(state.ls, epsilon=None, seed=int(state.seed) + it)
        learner = self._set_support(state.learner, ls.support() or [np.full(self.m, 1.0 / self.m)])
        key, k_eval = jax.random.split(learner.key)
        evaluated = []

        def values(corners):
            evaluated.append(len(corners))
            return self._gpi_values(state.replace(learner=learner), corners, k_eval)

        w = ls.next_weight(gpi_values=values if ls.ccs else None)
        episodes = int(state.eval_episodes) + sum(evaluated) * c.eval_episodes
        if w is None:
            ls.ended = True
            return state.replace(ls=self._ls_arrays(ls, []), eval_episodes=np.int64(episodes))
        big_m = [np.asarray(x, np.float64) for x in ls.weight_support] + ls.corner_queue(c.corner_top_k) + [w]
        learner = self._set_support(learner, unique_tol(big_m))
        learner = learner.replace(w=jnp.asarray(w, jnp.float32), key=key)
        if c.per and int(learner.replay.size) > 0:
            learner = self._reset_priorities(learner, self._support_rows(learner))
        return state.replace(
            learner=learner, iteration=np.int64(it + 1), ls=self._ls_arrays(ls, big_m), eval_episodes=np.int64(episodes)
        )

    def _ls_arrays(self, ls: LinearSupport, big_m: list[np.ndarray]) -> dict:
        """Linear support as fixed-shape arrays, with the iteration's weights M (evaluated when it ends)."""
        out = ls.arrays(self.ls_capacity)
        out["m_weights"] = np.zeros((self.ls_capacity, self.m))
        out["m_weights"][: len(big_m)] = np.asarray(big_m).reshape(-1, self.m)
        out["m_count"] = np.int64(len(big_m))
        return out

    def _end_iteration(self, state: GPIState) -> GPIState:
        """The GPI policy's value at every weight of the iteration goes to the CCS."""
        ls = LinearSupport.from_arrays(state.ls, epsilon=None)
        big_m = np.asarray(state.ls["m_weights"])[: int(state.ls["m_count"])]
        key, k_eval = jax.random.split(state.learner.key)
        values = self._gpi_values(state, big_m, k_eval)
        for v, w in zip(values, big_m):
            ls.add_solution(v, w)
        arrays = self._ls_arrays(ls, list(big_m))
        return state.replace(
            learner=state.learner.replace(key=key),
            ls=arrays,
            eval_episodes=np.int64(int(state.eval_episodes) + len(big_m) * self.config.eval_episodes),
        )

    def _logs(self, state: GPIState, logs: dict) -> dict:
        out = {k: v for k, v in logs.items()}
        out["iteration"] = int(state.iteration)
        out["ccs_size"] = int(state.ls["ccs_count"])
        out["support_size"] = int(state.learner.support_count)
        out["eval_episodes"] = int(state.eval_episodes)
        if self.dyna:
            out["model_holdout_mse"] = float(state.model_loss)
            out["model_buffer"] = int(state.learner.model_replay.size)
        return out

    # ------------------------------------------------------------------ networks
    def _q(self, params: PyTree, x: jax.Array, w: jax.Array, key: jax.Array | None) -> jax.Array:
        """One net: ``[B, A, m]``; dropout on when ``key`` is given (MORL-Baselines' nets stay in train mode
        while training: acting, targets and priorities all see dropout)."""
        if key is None:
            return self.net.apply(params, x, w)
        return self.net.apply(params, x, w, deterministic=False, rngs={"dropout": key})

    def _q_all(self, params: PyTree, x: jax.Array, w: jax.Array, key: jax.Array | None) -> jax.Array:
        """Every net: ``[N, B, A, m]``."""
        if key is None:
            return jax.vmap(lambda p: self._q(p, x, w, None))(params)
        keys = jax.random.split(key, self.config.num_nets)
        return jax.vmap(lambda p, k: self._q(p, x, w, k))(params, keys)

    def _gpi_act(self, params0: PyTree, p: dict, x: jax.Array, w: jax.Array, key: jax.Array | None) -> jax.Array:
        """GPI actions for features ``x`` ``[B, d]`` and preferences ``w`` ``[B, m]`` over ``p["support"]``."""
        support, mask = p["support"], p["mask"]
        b, s = x.shape[0], support.shape[0]
        xs = jnp.repeat(x, s, axis=0)
        ws = jnp.tile(support, (b, 1))
        q = self._q(params0, xs, ws, key).reshape(b, s, self.num_actions, self.m)
        action, _ = gpi_action(q, w, jnp.broadcast_to(mask, (b, s)))
        return action

    def _behaviour_policy(self, p, obs, key):
        k_drop, k_eps, k_rand = jax.random.split(key, 3)
        x = preprocess_obs(self.space, obs)
        w = jnp.broadcast_to(p["w"], (x.shape[0], self.m))
        params0 = jax.tree.map(lambda q: q[0], p["q"])
        if self.config.use_gpi:
            greedy = self._gpi_act(params0, p, x, w, k_drop)
        else:
            q = jnp.min(self._q_all(p["q"], x, w, k_drop), axis=0)
            greedy = jnp.argmax(td.scalarize(w[:, None, :], q), axis=-1).astype(jnp.int32)
        action = td.epsilon_greedy(k_eps, greedy, self.num_actions, p["epsilon"])
        random_action = jax.random.randint(k_rand, action.shape, 0, self.num_actions, dtype=jnp.int32)
        return jnp.where(p["random"], random_action, action), ()

    # ------------------------------------------------------------------ jitted pieces
    def _init_fn(self, key: jax.Array) -> Learner:
        c = self.config
        k_net, k_env, key = jax.random.split(key, 3)
        x = jnp.zeros((1, self.obs_dim), jnp.float32)
        params = jax.vmap(lambda k: self.net.init(k, x, jnp.zeros((1, self.m), jnp.float32)))(
            jax.random.split(k_net, c.num_nets)
        )
        rstate = self.rollout.init.pure(k_env, self.env_params)
        example = rb.transition_example(rstate.obs[0], jnp.int32(0), self.m)
        replay = rb.init(example, self.capacity, prioritized=c.per)
        model_replay = rb.init(example, c.dynamics_buffer_size) if self.dyna else None
        support = jnp.zeros((c.max_support, self.m), jnp.float32).at[0].set(1.0 / self.m)
        return Learner(
            params,
            params,
            self.tx.init(params),
            replay,
            model_replay,
            rstate,
            jnp.full((self.m,), 1.0 / self.m, jnp.float32),
            support,
            jnp.int32(1),
            key,
            jnp.int32(0),
            jnp.int32(0),
        )

    def _sample_support(self, lr: Learner, key: jax.Array, n: int) -> jax.Array:
        """``n`` preferences drawn uniformly (with replacement) from the support, ``[n, m]``."""
        return lr.support[jax.random.randint(key, (n,), 0, lr.support_count)]

    def _gpi_weights(self, lr: Learner, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The preferences of the GPI target (MORL-Baselines' ``sampled_w``): the whole support when it has at most
        5 rows, else the acting preference and 4 distinct others. ``[5, m]`` and their mask."""
        order = jnp.argsort(
            jnp.where(
                jnp.arange(lr.support.shape[0]) < lr.support_count, jax.random.uniform(key, (lr.support.shape[0],)), 2.0
            )
        )
        small = lr.support_count <= 5
        picked = jnp.concatenate([lr.w[None], lr.support[order[:4]]])
        rows = jnp.where(small, lr.support[:5], picked)
        mask = jnp.where(small, jnp.arange(5) < lr.support_count, True)
        return rows, mask

    def _targets(self, lr: Learner, batch: dict, w_rows: jax.Array, key: jax.Array, sampled: tuple | None, n: int):
        """The TD target (min over the target nets, greedy in ``w . Q``), ``[R, m]``, and, for GPI prioritisation,
        the GPI target over ``sampled`` preferences for the first ``n`` rows only, ``[n, m]``: the rows whose
        priorities are updated (the real transitions with the acting preference); the reference computes it for
        every row and discards the rest."""
        c = self.config
        k1, k2 = jax.random.split(key)
        nx = preprocess_obs(self.space, batch["next_obs"])
        q_next = min_over_nets(self._q_all(lr.target_params, nx, w_rows, k1), w_rows)  # [R, A, m]
        a = jnp.argmax(td.scalarize(w_rows[:, None, :], q_next), axis=-1)
        target = td.bootstrap(batch["reward"], batch["terminated"], c.gamma, td.take_action(q_next, a))
        if sampled is None:
            return target, None
        rows, mask = sampled
        return target, td.bootstrap(
            batch["reward"][:n],
            batch["terminated"][:n],
            c.gamma,
            self._gpi_next_value(lr.target_params, nx[:n], w_rows[:n], rows, mask, k2),
        )

    def _gpi_next_value(self, params, nx, w_rows, rows, mask, key) -> jax.Array:
        """``envelope_target`` of the target ensemble at ``nx`` ``[R, d]`` over preferences ``rows`` ``[K, m]``."""
        r, k = nx.shape[0], rows.shape[0]
        xs = jnp.repeat(nx, k, axis=0)
        ws = jnp.tile(rows, (r, 1))
        q = self._q_all(params, xs, ws, key).reshape(self.config.num_nets, r, k, self.num_actions, self.m)
        # pessimistic net per (row, preference, action), scalarised with the row's own preference
        w_rk = jnp.repeat(w_rows, k, axis=0)
        q_min = min_over_nets(q.reshape(self.config.num_nets, r * k, self.num_actions, self.m), w_rk)
        return envelope_target(q_min.reshape(r, k, self.num_actions, self.m), w_rows, mask)

    def _sample_batch(self, lr: Learner, key: jax.Array, mix: bool) -> tuple[dict, jax.Array, int]:
        """A minibatch: ``batch_size`` real transitions, or (Dyna) ``batch_size * real_ratio`` real and the rest
        from the model buffer. Returns it, the real rows' slots and their count."""
        c = self.config
        k_real, k_model, k_extra = jax.random.split(key, 3)
        if not mix:
            batch, idx = rb.sample(lr.replay, k_real, c.batch_size)
            return batch, idx, c.batch_size
        n_real = int(c.batch_size * c.real_ratio)
        real, idx = rb.sample(lr.replay, k_real, n_real)
        model, _ = rb.sample(lr.model_replay, k_model, c.batch_size - n_real)
        extra, _ = rb.sample(lr.replay, k_extra, c.batch_size - n_real)  # used while the model buffer is empty
        use_model = lr.model_replay.size > 0
        model = jax.tree.map(lambda a, b: jnp.where(use_model, a, b.astype(a.dtype)), model, extra)
        batch = jax.tree.map(lambda a, b: jnp.concatenate([a, b.astype(a.dtype)]), real, model)
        return batch, idx, n_real

    def _gradient_step(self, lr: Learner, key: jax.Array, enabled: jax.Array, mix: bool) -> tuple[Learner, dict]:
        """One gradient step; with ``enabled`` False the state stays as it was (computed, then discarded)."""
        c = self.config
        k_batch, k_w, k_gw, k_t, k_drop = jax.random.split(key, 5)
        batch, idx, n_real = self._sample_batch(lr, k_batch, mix)
        b = c.batch_size
        # the batch twice: first half with the acting preference, second half with preferences from the support
        batch = jax.tree.map(lambda x: jnp.concatenate([x, x]), batch)
        w_rows = jnp.concatenate([jnp.broadcast_to(lr.w, (b, self.m)), self._sample_support(lr, k_w, b)])
        sampled = self._gpi_weights(lr, k_gw) if (c.gpi_priority and c.per) else None
        target, gpi_target = jax.lax.stop_gradient(self._targets(lr, batch, w_rows, k_t, sampled, n_real))
        x = preprocess_obs(self.space, batch["obs"])
        keys = jax.random.split(k_drop, c.num_nets)

        def loss_fn(params):
            q = jax.vmap(lambda p, k: td.take_action(self._q(p, x, w_rows, k), batch["action"]))(params, keys)
            losses = jax.vmap(lambda qn: huber(jnp.abs(qn - target), c.min_priority))(q)  # [N]
            return jnp.mean(losses), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(lr.q_params)
        if c.max_grad_norm is not None:
            grads = clip_per_net(grads, c.max_grad_norm)
        updates, opt_state = self.tx.update(grads, lr.opt_state, lr.q_params)
        params = optax.apply_updates(lr.q_params, updates)
        replay = lr.replay
        if c.per:
            err = jnp.max(jnp.abs(q[:, :n_real] - (target[:n_real] if gpi_target is None else gpi_target)), axis=0)
            prio = jnp.abs(td.scalarize(w_rows[:n_real], err))
            prio = jnp.maximum(prio, c.min_priority) ** c.alpha_per
            replay = rb.update_priorities(replay, idx, prio, enabled)
        lr = lr.replace(
            q_params=td.select_params(enabled, params, lr.q_params),
            opt_state=td.select_params(enabled, opt_state, lr.opt_state),
            replay=replay,
            updates=lr.updates + enabled.astype(jnp.int32),
        )
        return lr, {"loss": jnp.where(enabled, loss, 0.0)}

    def _step(self, lr: Learner, _, late: bool, mix: bool):
        c = self.config
        key, k_roll, k_w, k_upd = jax.random.split(lr.key, 4)
        epsilon = td.linear_schedule(
            c.initial_epsilon, c.final_epsilon, c.epsilon_decay_steps, lr.env_steps + 1, c.learning_starts
        )
        policy_params = {
            "q": lr.q_params,
            "support": lr.support,
            "mask": jnp.arange(c.max_support) < lr.support_count,
            "w": lr.w,
            "epsilon": epsilon,
            "random": lr.env_steps + 1 < c.learning_starts,
        }
        rstate, traj = self.rollout.run.pure(policy_params, lr.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)  # the one step: leaves [1, ...]
        items = {
            "obs": tr.obs,
            "action": tr.action.astype(jnp.int32),
            "reward": tr.reward,
            "next_obs": tr.next_obs,
            "terminated": tr.terminated.astype(jnp.float32),
        }
        done = (tr.terminated | tr.truncated)[0]
        new_w = jnp.where(done, self._sample_support(lr, k_w, 1)[0], lr.w)
        env_steps = lr.env_steps + 1
        learning = env_steps >= c.learning_starts
        # learn, then store the step's transition (see agents/envelope.py: a buffer written and then read in one
        # step is copied whole by XLA); the reference stores first, so each update here lacks the newest transition
        stepped = lr.replace(rollout=rstate, key=key, env_steps=env_steps)
        n_updates = c.gradient_updates if late else 1
        if n_updates == 1:
            stepped, logs = self._gradient_step(stepped, k_upd, learning, mix)
        else:
            stepped, logs = jax.lax.scan(
                lambda s, k: self._gradient_step(s, k, learning, mix), stepped, jax.random.split(k_upd, n_updates)
            )
            logs = jax.tree.map(jnp.mean, logs)
        stepped = stepped.replace(replay=rb.add(stepped.replay, items), w=new_w)
        if c.tau < 1.0:
            sync = td.polyak(stepped.q_params, stepped.target_params, c.tau)
            target = td.select_params(learning, sync, stepped.target_params)
        else:
            target = td.select_params(
                learning & (env_steps % c.target_net_update_freq == 0), stepped.q_params, stepped.target_params
            )
        stepped = stepped.replace(target_params=target)
        return stepped, (logs, epsilon, done, tr.episode_discounted_return[0])

    def _chunk(self, lr: Learner, late: bool, mix: bool) -> tuple[Learner, dict]:
        lr, (logs, epsilon, done, ret) = jax.lax.scan(
            lambda s, x: self._step(s, x, late, mix), lr, None, length=self.config.steps_per_chunk
        )
        episodes = jnp.sum(done)
        mean_ret = jnp.sum(jnp.where(done[:, None], ret, 0.0), axis=0) / jnp.maximum(episodes, 1)
        out = {"loss": jnp.mean(logs["loss"]), "epsilon": epsilon[-1], "episodes": episodes, "updates": lr.updates}
        for i in range(self.m):
            out[f"episode_discounted_return_{i}"] = mean_ret[i]
        return lr, out

    def _reset_priorities_fn(self, lr: Learner, rows: int) -> Learner:
        """Every stored transition's priority for the new iteration's preference (``_reset_priorities``): the TD
        error of net 0 with a double-DQN target (GPI-LS) or against the GPI target over the support (GPI-PD)."""
        c = self.config
        cap = lr.replay.capacity
        block = 1000
        n_blocks = -(-cap // block)
        pad = n_blocks * block - cap
        data = jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]), lr.replay.data)
        data = jax.tree.map(lambda a: a.reshape((n_blocks, block) + a.shape[1:]), data)
        params0 = jax.tree.map(lambda p: p[0], lr.q_params)
        target0 = jax.tree.map(lambda p: p[0], lr.target_params)
        keys = jax.random.split(lr.key, n_blocks)
        support = lr.support[:rows]
        mask = jnp.arange(rows) < lr.support_count

        def one(args):
            i, d, key = args
            return jax.lax.cond(i * block < lr.replay.size, block_priorities, lambda *_: jnp.zeros((block,)), d, key)

        def block_priorities(d, key):
            k1, k2, k3 = jax.random.split(key, 3)
            w = jnp.broadcast_to(lr.w, (block, self.m))
            x = preprocess_obs(self.space, d["obs"])
            nx = preprocess_obs(self.space, d["next_obs"])
            q_a = td.take_action(self._q(params0, x, w, k1), d["action"])
            if c.gpi_priority:
                nxt = self._gpi_next_value(lr.target_params, nx, w, support, mask, k2)
            else:
                online = self._q(params0, nx, w, k2)
                nxt = td.ddqn_next_value(online, self._q(target0, nx, w, k3), w)
            err = td.bootstrap(d["reward"], d["terminated"], c.gamma, nxt) - q_a
            return jnp.maximum(jnp.abs(td.scalarize(w, err)), c.min_priority) ** c.alpha_per

        prio = jax.lax.map(one, (jnp.arange(n_blocks), data, keys)).reshape(-1)[:cap]  # empty blocks: skipped
        prio = jnp.where(jnp.arange(cap) < lr.replay.size, prio, 0.0)
        replay = rb.update_priorities(lr.replay, jnp.arange(cap, dtype=jnp.int32), prio)
        return lr.replace(replay=replay)

    # ------------------------------------------------------------------ the model (GPI-PD)
    def _fit_data_fn(self, replay: rb.Replay) -> tuple[jax.Array, jax.Array]:
        d = replay.data
        obs = preprocess_obs(self.space, d["obs"])
        nobs = preprocess_obs(self.space, d["next_obs"])
        x = jnp.concatenate([obs, jax.nn.one_hot(d["action"], self.num_actions, dtype=jnp.float32)], axis=-1)
        return x, jnp.concatenate([d["reward"], nobs - obs], axis=-1)

    def _fit_model(self, state: GPIState) -> GPIState:
        lr = state.learner
        key, k_fit = jax.random.split(lr.key)
        x, y = self._fit_data(lr.replay)
        params, elites, loss = self._fit(state.model, x, y, int(lr.replay.size), k_fit)
        return state.replace(learner=lr.replace(key=key), model=params, elites=elites, model_loss=np.float64(loss))

    def _rollout_model(self, state: GPIState) -> GPIState:
        lr = state.learner
        key, k = jax.random.split(lr.key)
        model_replay = self._dyna_rollout(
            lr.replace(key=k), state.model, jnp.asarray(state.elites), self._support_rows(lr)
        )
        return state.replace(learner=lr.replace(key=key, model_replay=model_replay))

    def _dyna_rollout_fn(self, lr: Learner, model_params, elites, rows: int) -> rb.Replay:
        """Dyna: start states drawn from the replay (by priority under PER), GPI actions for the acting
        preference, imagined steps kept where the ensemble's disagreement is below the threshold."""
        c = self.config
        batch = min(c.dynamics_rollout_batch_size, 10_000)
        n_batches = -(-c.dynamics_rollout_batch_size // batch)
        params0 = jax.tree.map(lambda p: p[0], lr.q_params)
        p = {"support": lr.support[:rows], "mask": jnp.arange(rows) < lr.support_count}
        buffer = lr.model_replay
        key = lr.key
        for _ in range(n_batches):
            key, k_obs, k_steps = jax.random.split(key, 3)
            start, _ = rb.sample(lr.replay, k_obs, batch)
            obs = start["obs"]
            alive = jnp.ones((batch,), bool)
            for h in range(c.dynamics_rollout_len):
                k_act, k_model, k_steps = jax.random.split(jax.random.fold_in(k_steps, h), 3)
                x = preprocess_obs(self.space, obs)
                w = jnp.broadcast_to(lr.w, (batch, self.m))
                a = self._gpi_act(params0, p, x, w, k_act)
                nx, r, unc = dyn.model_step(
                    self.model, model_params, elites, x, jax.nn.one_hot(a, self.num_actions), k_model, self.m
                )
                done = self.done_fn(x, nx)
                next_obs = nx.reshape(obs.shape)
                if jnp.issubdtype(obs.dtype, jnp.integer):
                    next_obs = jnp.round(next_obs)
                items = {
                    "obs": obs,
                    "action": a,
                    "reward": r,
                    "next_obs": next_obs.astype(obs.dtype),
                    "terminated": done.astype(jnp.float32),
                }
                buffer = rb.add_masked(buffer, items, alive & (unc < c.dynamics_uncertainty_threshold))
                alive = alive & ~done
                obs = next_obs.astype(obs.dtype)
        return buffer


def make_trainer(config: GPILSConfig, env, env_params=None) -> GPITrainer:
    return GPITrainer(config, env, env_params)


#: MORL-Baselines' examples/gpi_pd_minecart.py (the settings of the GPI-PD paper's minecart runs)
MINECART = dict(
    gamma=0.98,
    buffer_size=200_000,
    initial_epsilon=1.0,
    final_epsilon=0.05,
    epsilon_decay_steps=50_000,
    target_net_update_freq=200,
)

SPEC_LS = register_agent(
    AgentSpec(
        name="gpi-ls",
        config_cls=GPILSConfig,
        make_trainer=make_trainer,
        summary="GPI-LS (Alegre et al. 2023): linear support picks corner weights, GPI acts over the weight support",
        action_kinds=("discrete",),
        env_defaults={"minecart-v0": MINECART},
    )
)
SPEC_PD = register_agent(
    AgentSpec(
        name="gpi-pd",
        config_cls=GPIPDConfig,
        make_trainer=make_trainer,
        summary="GPI-PD (Alegre et al. 2023): GPI-LS with GPI-prioritised replay and Dyna on a learned model ensemble",
        action_kinds=("discrete",),
        env_defaults={"minecart-v0": MINECART},
    )
)
