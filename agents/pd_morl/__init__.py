"""PD-MORL (Basaklar, Gumussoy, Ogras, ICLR 2023) in JAX: one preference-conditioned network for all preferences.

Two agents, as in the official code (``tbasaklar/PDMORL-...``, docs/sources.md):

- ``pd-morl`` (continuous actions): **MO-TD3-HER**. Actor ``pi(s, w)`` and twin vector critics ``Q_i(s, w, a)``.
  Target ``y = r + gamma (1 - terminated) Q'_k(s', w, a')`` where ``k`` is the twin whose ``w . Q'`` is smaller and
  its **whole vector** is used (`agents.td.td3_min_vector`); critic loss ``SmoothL1(Q_i, y)`` plus the angle
  ``g(w_p, Q_i)`` in degrees between the interpolated preference ``w_p = I(w)`` and ``Q_i`` (no coefficient);
  actor loss ``-w . Q_1 + 10 g(w_p, Q_1)`` every ``policy_freq`` steps, followed by Polyak updates of both targets.
- ``pd-morl-discrete``: **MO-DDQN-HER**. ``Q(s, w) -> [A, m]``; target action of the paper's Eq. 5,
  ``argmax_a clip(cos(w_p, Q'(s', a, w)), 0, 0.9999) * w . Q'(s', a, w)`` on the target network; SmoothL1 loss.

Shared pieces:

- **Key-preference runs** (phase 1). One single-preference agent per key preference (the m corners and the
  uniform preference), trained without HER and without angle terms, as ONE program vmapped over the keys. Each
  key policy is evaluated (greedy, discounted returns) after every chunk and its best scalarised return kept.
- **Interpolator** ``I``: a linear-kernel RBF interpolator (scipy's ``RBFInterpolator(kernel='linear')``, degree-1
  polynomial, solved in JAX by least squares) from the key preferences to their **L2**-normalised key returns.
  During the main run the conditioned policy is re-evaluated at the key preferences after every chunk; a key
  return is replaced when its scalarised value improved, and ``I`` is refitted on **L1**-normalised returns
  (the official code's L2/L1 mismatch, kept: ``refit_norm``).
- **Parallel scheme** (phase 2): the preference grid (step ``w_step``) is split into ``num_subspaces`` contiguous
  sub-spaces (the official 10 processes); env ``i`` draws its episode preferences from sub-space
  ``i mod num_subspaces``, rounded to 3 decimals. All envs step in one vmapped program.
- **HER**: every stored transition also gets ``weight_num`` copies with preferences ``|N(0, I)| / L1`` rounded to
  3 decimals, once the buffer holds more than ``her_start`` entries (official: ``start_timesteps x processes``).
- One gradient step per env transition (``updates_per_step``), as the official main loop (10 ``learn`` calls per
  10 transitions), all inside the jitted chunk.

Deviations from the official code, and why
------------------------------------------
- **Discrete interpolator from key runs, never from the true front.** The official DST/FTN scripts build ``I`` from
  the known Pareto front (``x_new = argmax_{front} w_key . x``) and pick the checkpoint with the best CR-F1 against
  the true front. Here ``I`` comes from key-preference runs as in the continuous case, the final network is the
  one returned, and nothing reads ``env.pareto_front``.
- **Cosine shift.** The official DST code adds 19 to the time objective inside the cosine (and to the key returns):
  cosines of vectors with negative parts are meaningless against non-negative preferences. Here the shift is
  ``cosine_shift`` or, by default (None), computed from the key runs: ``max(0, -min_k G_k)`` per objective (about
  17.4 on DST at gamma 0.99; 0 for fruit tree, as the official code).
- **Continuous key runs inside the same run.** The official code trains keys with separate scripts (2M steps each,
  returns committed as ``interp_objs_*.txt``); here they are phase 1 of the same run (``key_timesteps`` each),
  inside its budget: ``total_timesteps`` covers the key runs and the main run together (docs/budgets.md).
- **Preference grid**: the full Das-Dennis grid (`agents.preferences.grid`); the official float-equality filter
  drops simplex points for m >= 3.
- **Bootstrapping**: targets bootstrap on ``terminated`` only, truncated transitions from their true final
  observation (the official code treats time-limit ends as terminal).
- **Replay**: a device-array ring with the same capacity and the same eviction order (the official list with
  ``pop(0)`` is a performance bug, not a semantic choice).
- **Refit timing**: after every chunk (official: whenever every child finished one more episode).
- **Exploration epsilon** (discrete): ``max(final, start - t / T)`` with ``t`` and ``T`` the per-env step count and
  per-env budget, the official ``EpsilonTracker`` (updated per step here, per episode there). The official start
  0.8 suits the official 1M-step budget; at a few tens of thousands of steps the run is mostly random walks, which
  on DST end at the shallow treasures, so the deepest two are never found (93-95% of the HV at 20-40k steps): short
  runs should start lower (the CI test: 0.3, 99.4%).
- **Key-run exploration**: continuous and discrete key runs jitter the key preference per step (official
  continuous: per call of the agent, i.e. per step too; the official discrete code has no key runs). On DST the
  exact ``w = [1, 0]`` gives time no weight and a Q-network easily settles on wall-bumping loops.
- **Degenerate keys**: a key whose shifted return is the zero vector (a looping key policy: no treasure, the
  largest time cost, which the ``-min`` shift maps to 0) is replaced by its own preference in the fit; a zero
  ``w_p`` would zero every Eq. 5 score around that key, and the main run could never improve on it.
- **Observation scaling** (continuous, ``normalize_obs``, default on): observation dims with finite Box bounds are
  mapped to [-1, 1] before the networks (the official code feeds raw observations). MuJoCo observation spaces are
  unbounded, so nothing changes there; on mountain car it puts the velocity (|v| <= 0.07) on the position's scale.
- **Correlated exploration** (continuous, ``noise_correlation``, default 0 = official i.i.d. Gaussian noise and
  uniform random warm-up): the exploration noise is AR(1) across steps with unit variance, and the warm-up acts
  ``clip(center + half z)``. Sparse-goal tasks where momentum must be built (mountain car) need it, the standard
  DDPG/TD3 practice there: i.i.d. uniform actions reach the goal in ~2% of 999-step episodes, rho = 0.9 in ~96%.
- **Critic angle coefficient** (``critic_angle_coeff``, default 1 = official, no coefficient). The angle terms are
  in degrees whatever the return scale, and their gradient w.r.t. Q shrinks like 1 / |Q + shift|, so the official
  weights (1 in the critic, ``actor_loss_coeff`` 10 in the actor) were set for MuJoCo returns in the thousands. On
  returns of ~100 (mountain car, gamma 0.99) they dominate the TD loss: the critic is pulled toward ``w_p`` instead
  of the TD target and no preference learns to reach the goal (measured: 1-point front with the official weights,
  4-6 points with 0.1 / 1, same budget and seed; with both angle terms off, 3 points).
- **Episode cap** (``max_episode_steps``): training and key-evaluation episodes end at the official cap (DST: 30,
  the env default for DST); the env's own limit (100) stays for the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agent import AgentSpec, Trainer, register_agent
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.networks import ConditionedQ, ReluMLP, observation_dim, preprocess_obs
from morl.agents.preferences import SubspaceGrid, gaussian_preferences, jitter_preference
from morl.rollout import RolloutState, make_rollout
from morl.solution import Solution
from morl.spaces import Box, Discrete

PyTree = Any


# =============================================================================================== interpolator
@struct.dataclass
class Interpolator:
    """Linear-kernel RBF interpolator from key preferences to normalised key returns (scipy's RBFInterpolator,
    ``kernel='linear'``, ``degree=1``, ``smoothing=0``), plus the key returns it was fitted on."""

    points: jax.Array    # [K, m] key preferences
    returns: jax.Array   # [K, m] best key returns so far (discounted, unshifted)
    shift: jax.Array     # [m] added to returns and Q-values before cosines
    coeffs: jax.Array    # [K + m + 1, m]
    center: jax.Array    # [m] polynomial domain shift (scipy's)
    scale: jax.Array     # [m] polynomial domain scale


def _poly(x: jax.Array, center: jax.Array, scale: jax.Array) -> jax.Array:
    xhat = (x - center) / scale
    return jnp.concatenate([jnp.ones(x.shape[:-1] + (1,), x.dtype), xhat], axis=-1)


def _dist(a: jax.Array, b: jax.Array) -> jax.Array:
    d = a[:, None, :] - b[None, :, :]
    return jnp.sqrt(jnp.maximum(jnp.sum(d * d, axis=-1), 0.0))


def fit_rbf(points: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Coefficients of the linear-kernel RBF interpolant with a degree-1 polynomial through ``(points, values)``.

    Solved by least squares: the key preferences lie on the simplex, so the polynomial block is rank-deficient
    (scipy's LU happens to go through); every least-squares solution gives the same values on the simplex.
    """
    points = points.astype(jnp.float32)
    lo, hi = jnp.min(points, axis=0), jnp.max(points, axis=0)
    center = (hi + lo) / 2
    scale = jnp.where(hi - lo == 0, 1.0, (hi - lo) / 2)
    kernel = -_dist(points, points)
    p = _poly(points, center, scale)
    q = p.shape[1]
    lhs = jnp.block([[kernel, p], [p.T, jnp.zeros((q, q), jnp.float32)]])
    rhs = jnp.concatenate([values.astype(jnp.float32), jnp.zeros((q, values.shape[1]), jnp.float32)])
    coeffs = jnp.linalg.pinv(lhs, rtol=1e-5) @ rhs
    return coeffs, center, scale


def eval_rbf(points: jax.Array, coeffs: jax.Array, center: jax.Array, scale: jax.Array, x: jax.Array) -> jax.Array:
    k = points.shape[0]
    return -_dist(x, points) @ coeffs[:k] + _poly(x, center, scale) @ coeffs[k:]


def make_interpolator(points: jax.Array, returns: jax.Array, shift: jax.Array, norm: str) -> Interpolator:
    shifted = returns + shift
    order = 1 if norm == "l1" else 2
    size = jnp.linalg.norm(shifted, ord=order, axis=1, keepdims=True)
    key_unit = points / jnp.linalg.norm(points, ord=order, axis=1, keepdims=True)
    # a key run that earned nothing (zero shifted return, e.g. a looping policy) says nothing about the direction
    # of its part of the front: the key preference itself stands in (a zero w_p would zero every Eq. 5 score)
    unit = jnp.where(size > 1e-6, shifted / jnp.maximum(size, 1e-6), key_unit)
    coeffs, center, scale = fit_rbf(points, unit)
    return Interpolator(points, returns, shift, coeffs, center, scale)


def interpolate(interp: Interpolator, w: jax.Array) -> jax.Array:
    """``w_p = I(w)`` for preferences ``[N, m]``."""
    return eval_rbf(interp.points, interp.coeffs, interp.center, interp.scale, w)


def key_preferences(m: int) -> np.ndarray:
    """The m corners and the uniform preference (the official discrete interpolator's points; for m = 2 the same
    three points as the continuous scripts' ``linspace`` over the grid)."""
    return np.concatenate([np.eye(m), np.full((1, m), 1.0 / m)]).astype(np.float32)


def _refit(interp: Interpolator, new_returns: jax.Array, norm: str) -> Interpolator:
    """Replace key returns whose scalarised value improved, refit (official ``train_*_MO_TD3_HER.py``)."""
    better = jnp.sum(interp.points * new_returns, -1) > jnp.sum(interp.points * interp.returns, -1)
    returns = jnp.where(better[:, None], new_returns, interp.returns)
    return make_interpolator(interp.points, returns, interp.shift, norm)


# =============================================================================================== configs
@dataclass(frozen=True)
class PDMORLDiscreteConfig:
    """MO-DDQN-HER settings. Defaults: the official ``DeepSeaTreasure_MO_DDQN_HER`` settings (docs/sources.md);
    fruit tree overrides (hidden 512, w_step 0.05) come with the agent's env defaults.

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the key
    runs included: the ``m + 1`` key runs take ``(m + 1) * key_timesteps`` and the main run the rest, which must
    be positive (else a one-line error). The default is the paper's main run (1M) plus the 3 key runs of a
    2-objective env (3 x 20k); fruit tree's env default adds its 7 key runs (7 x 20k) the same way."""

    total_timesteps: int = 1_060_000     # the whole budget, key runs included: official main run 1M (100k per
                                         # process x 10 processes) + 3 key runs x 20k (two objectives)
    key_timesteps: int = 20_000          # env steps of each key-preference run (ours: the official discrete code has none)
    learning_rate: float = 3e-4          # Adam learning rate
    gamma: float = 0.99                  # discount
    batch_size: int = 32                 # transitions per gradient step
    hidden: int = 256                    # width of the Q-network's layers
    num_layers: int = 4                  # hidden ReLU layers (official: input layer + layer_N=3 hidden layers)
    buffer_size: int = 10_000            # replay capacity in entries (HER copies included)
    weight_num: int = 3                  # HER: relabelled copies per transition
    her_start: int = 640                 # HER starts once the buffer holds more entries (start_timesteps 64 x 10)
    tau: float = 0.005                   # Polyak coefficient of the target network, every gradient step
    epsilon_start: float = 0.8           # epsilon-greedy: max(final, start - t / T), t per-env steps, T per-env budget
    epsilon_final: float = 0.05
    w_step: float = 0.01                 # spacing of the preference grid
    num_subspaces: int = 10              # contiguous sub-spaces of the grid (official: process_count)
    envs_per_subspace: int = 1           # envs drawing from each sub-space
    updates_per_step: float = 1.0        # gradient steps per env transition (official: 1)
    cosine_shift: tuple[float, ...] | None = None  # added to Q and key returns inside cosines; None = from the key runs
    refit_interpolator: bool = True      # refit I from the conditioned policy at the key preferences after each chunk
    refit_norm: Literal["l1", "l2"] = "l1"  # normalisation of refitted key returns (official: L1 on refit, L2 at first)
    eval_episodes: int = 1               # episodes per key preference when evaluating keys (deterministic envs: 1)
    steps_per_chunk: int = 500           # vector env steps per jitted chunk
    max_episode_steps: int | None = None  # training episode cap (official DST: 30); None = the env's max_steps
    key_jitter: float = 0.05             # key runs act on key preferences jittered by clip(N(0, s^2), +-s) per step

    def __post_init__(self):
        for name in ("total_timesteps", "key_timesteps", "batch_size", "hidden", "num_layers", "buffer_size",
                     "num_subspaces", "envs_per_subspace", "steps_per_chunk", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"pd-morl-discrete config: {name} must be >= 1, got {getattr(self, name)}")
        if self.updates_per_step <= 0:
            raise ValueError(f"pd-morl-discrete config: updates_per_step must be > 0, got {self.updates_per_step}")

    @property
    def num_envs(self) -> int:
        return self.num_subspaces * self.envs_per_subspace


# =============================================================================================== shared machinery
@struct.dataclass
class Lane:
    """One learner: networks, optimiser, replay, its envs and their episode preferences."""

    params: PyTree
    target: PyTree
    opt_state: PyTree
    replay: rb.Replay
    rollout: RolloutState
    w: jax.Array          # [N, m]
    steps: jax.Array      # int32 env steps of this lane
    updates: jax.Array    # int32
    noise: jax.Array | None = None  # [N, A] correlated exploration noise state (continuous only)


@struct.dataclass
class PDState:
    phase: jax.Array          # int32: 0 key runs, 1 main run
    keys: Lane                # leaves with a leading K axis (one lane per key preference)
    key_returns: jax.Array    # [K, m] best evaluated return of each key run
    main: Lane
    interp: Interpolator
    key: jax.Array


def _round3(w: jax.Array) -> jax.Array:
    return jnp.round(w * 1000.0) / 1000.0


class _PDBase(Trainer):
    """Phase control, key evaluation and interpolator refits shared by both variants (host dispatch by phase)."""

    vmappable = False  # two phases with different programs: `update` dispatches on the host

    def _setup_common(self, config, env, env_params):
        if getattr(env, "is_host", False):
            raise ValueError(f"PD-MORL trains inside jitted loops and needs a pure-JAX env; {env.name} is a host env")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        cap = getattr(config, "max_episode_steps", None)
        if cap is not None:  # training (and key-evaluation) episodes end at the official cap
            if cap < 1:
                raise ValueError(f"max_episode_steps must be >= 1 (or None for the env's), got {cap}")
            self.env_params = self.env_params.replace(max_steps=min(int(cap), int(self.env_params.max_steps)))
        self.m = env.reward_dim
        if config.cosine_shift is not None and len(config.cosine_shift) != self.m:
            raise ValueError(f"cosine_shift needs {self.m} values (one per objective of {env.name}), "
                             f"got {config.cosine_shift}")
        self.key_w = jnp.asarray(key_preferences(self.m))
        self.num_keys = int(self.key_w.shape[0])
        # the budget covers the key runs: the main run gets what they leave (docs/budgets.md)
        key_total = self.num_keys * config.key_timesteps
        self.main_budget = int(config.total_timesteps) - key_total
        if self.main_budget <= 0:
            share = max(1, config.total_timesteps // 50)
            raise ValueError(f"{self.agent_name}: the {self.num_keys} key-preference runs ({self.num_keys} x "
                             f"key_timesteps {config.key_timesteps:,} = {key_total:,} transitions) leave nothing of the "
                             f"budget total_timesteps {config.total_timesteps:,} for the main run; raise --steps above "
                             f"{key_total:,} or lower --key-timesteps (e.g. --key-timesteps {share}, 2% of the budget each)")
        self.grid = SubspaceGrid.make(self.m, config.w_step, config.num_subspaces)
        self.num_envs = config.num_envs
        self.subspace_of_env = jnp.arange(self.num_envs, dtype=jnp.int32) % config.num_subspaces
        self.upd_per_vec = max(1, int(round(config.updates_per_step * self.num_envs)))
        steps = int(self.env_params.max_steps)

        def eval_policy(p, obs, key):
            return self._greedy(p["params"], p["w"], obs), ()

        self.eval_rollout = make_rollout(env, eval_policy, config.eval_episodes, steps, gamma=config.gamma,
                                         population=self.num_keys, emit="summary")

    # -------------------------------------------------------------- protocol
    def init(self, key: jax.Array) -> PDState:
        return self._init(key)

    def update(self, state: PDState) -> tuple[PDState, dict]:
        return self._key_chunk(state) if int(state.phase) == 0 else self._main_chunk(state)

    def done(self, state: PDState) -> bool:
        return int(state.phase) == 1 and int(state.main.steps) >= self.main_budget

    def env_steps(self, state: PDState) -> int:
        return int(jnp.sum(state.keys.steps)) + int(state.main.steps)

    def solution(self, state: PDState) -> Solution:
        return Solution(act=self._act, params=state.main.params, conditioned=True)

    # -------------------------------------------------------------- evaluation at the key preferences
    def _evaluate_keys(self, params_per_key: PyTree, key: jax.Array) -> jax.Array:
        """Mean discounted returns ``[K, m]`` of policies (one per key, leading K axis) at the key preferences."""
        k_init, k_run = jax.random.split(key)
        state = self.eval_rollout.init.pure(k_init, self.env_params)
        _, summary = self.eval_rollout.run.pure({"params": params_per_key, "w": self.key_w}, state, k_run,
                                                self.env_params)
        done = summary.episodes > 0  # [K, E]
        ret = jnp.where(done[..., None], summary.first_discounted_return, 0.0)
        return jnp.sum(ret, axis=1) / jnp.maximum(jnp.sum(done, axis=1), 1)[:, None]

    def _finish_keys(self, state: PDState) -> PDState:
        """Fit the interpolator from the key runs and switch to the main run."""
        c = self.config
        if c.cosine_shift is None:
            shift = jnp.maximum(0.0, -jnp.min(state.key_returns, axis=0))
        else:
            shift = jnp.asarray(c.cosine_shift, jnp.float32)
        interp = make_interpolator(self.key_w, state.key_returns, shift, "l2")
        return state.replace(interp=interp, phase=jnp.int32(1))

    def _key_chunk_fn(self, state: PDState):
        c = self.config
        key, k_lanes, k_eval = jax.random.split(state.key, 3)

        def lane_chunk(lane, w_key, k):
            def body(lane, k):
                return self._iteration(lane, k, main=False, w_key=w_key, interp=state.interp,
                                       budget=c.key_timesteps)
            return jax.lax.scan(body, lane, jax.random.split(k, c.steps_per_chunk))

        lanes, logs = jax.vmap(lane_chunk)(state.keys, self.key_w, jax.random.split(k_lanes, self.num_keys))
        returns = self._evaluate_keys(self._policy_params(lanes.params), k_eval)
        better = jnp.sum(self.key_w * returns, -1) > jnp.sum(self.key_w * state.key_returns, -1)
        key_returns = jnp.where(better[:, None], returns, state.key_returns)
        state = state.replace(keys=lanes, key_returns=key_returns, key=key)
        out = {"loss": jnp.mean(logs["loss"]), "phase": jnp.int32(0)}
        for i in range(self.num_keys):
            out[f"key{i}_utility"] = jnp.sum(self.key_w[i] * key_returns[i])
        return state, out

    def _key_chunk(self, state: PDState):
        state, logs = self._key_chunk_jit(state)
        if int(jnp.min(state.keys.steps)) >= self.config.key_timesteps:
            state = self._finish_keys_jit(state)
        return state, logs

    def _main_chunk_fn(self, state: PDState):
        c = self.config
        key, k_chunk, k_eval = jax.random.split(state.key, 3)

        def body(lane, k):
            return self._iteration(lane, k, main=True, w_key=None, interp=state.interp, budget=self.main_budget)

        lane, logs = jax.lax.scan(body, state.main, jax.random.split(k_chunk, c.steps_per_chunk))
        interp = state.interp
        if c.refit_interpolator:
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.num_keys,) + x.shape),
                                  self._policy_params(lane.params))
            interp = _refit(interp, self._evaluate_keys(params, k_eval), c.refit_norm)
        state = state.replace(main=lane, interp=interp, key=key)
        out = {"loss": jnp.mean(logs["loss"]), "phase": jnp.int32(1), "updates": lane.updates}
        out.update({k: jnp.mean(v) for k, v in logs.items() if k != "loss"})
        return state, out

    def _compile(self):
        self._init = jax.jit(self._init_fn)
        self._key_chunk_jit = jax.jit(self._key_chunk_fn)
        self._finish_keys_jit = jax.jit(self._finish_keys)
        self._main_chunk = jax.jit(self._main_chunk_fn)

    def _episode_preferences(self, key: jax.Array, main: bool, w_key: jax.Array | None) -> jax.Array:
        if main:
            return _round3(self.grid.sample(key, self.subspace_of_env))
        return jnp.broadcast_to(w_key, (self.num_envs, self.m))

    def _store(self, replay: rb.Replay, items: dict, key: jax.Array, main: bool, her_start: int) -> rb.Replay:
        """Store transitions; in the main run with ``weight_num`` HER copies each, once past ``her_start``."""
        c = self.config
        if not main or c.weight_num == 0:
            return rb.add(replay, items)
        n = self.num_envs
        her_w = gaussian_preferences(key, n * c.weight_num, self.m, decimals=3).reshape(n, c.weight_num, self.m)
        copies = jax.tree.map(lambda x: jnp.repeat(x[:, None], c.weight_num + 1, axis=1), items)
        copies["w"] = jnp.concatenate([items["w"][:, None], her_w], axis=1)
        flat = jax.tree.map(lambda x: x.reshape((n * (c.weight_num + 1),) + x.shape[2:]), copies)
        her_on = replay.size > her_start
        per_transition = jnp.concatenate([jnp.ones((1,), bool), jnp.broadcast_to(her_on, (c.weight_num,))])
        return rb.add_masked(replay, flat, jnp.tile(per_transition, n))


# =============================================================================================== discrete
class PDMORLDiscreteTrainer(_PDBase):
    """MO-DDQN-HER (chunked `morl.agent.Trainer`)."""

    agent_name = "pd-morl-discrete"

    def __init__(self, config: PDMORLDiscreteConfig, env, env_params=None):
        if not isinstance(env.action_space, Discrete):
            raise ValueError(f"pd-morl-discrete needs discrete actions; {env.name} has "
                             f"{type(env.action_space).__name__} (use pd-morl)")
        self.num_actions = int(env.action_space.n)
        self.net = ConditionedQ(self.num_actions, env.reward_dim, (config.hidden,) * config.num_layers,
                                "xavier_normal")
        self.tx = optax.adam(config.learning_rate)
        self._setup_common(config, env, env_params)
        self.rollout = make_rollout(env, self._behaviour_policy, self.num_envs, 1, gamma=config.gamma)
        space = env.observation_space

        def act(params, w, obs, key):
            x = preprocess_obs(space, obs)
            wb = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
            return jnp.argmax(td.scalarize(wb[:, None, :], self.net.apply(params, x, wb)), -1).astype(jnp.int32)

        self._act = act
        self._compile()

    def _greedy(self, params, w, obs):
        return self._act(params, w, obs, None)

    def _policy_params(self, params):
        return params

    def _q(self, params, obs, w):
        return self.net.apply(params, preprocess_obs(self.env.observation_space, obs), w)

    def _behaviour_policy(self, p, obs, key):
        greedy = jnp.argmax(td.scalarize(p["w"][:, None, :], self._q(p["q"], obs, p["w"])), -1).astype(jnp.int32)
        return td.epsilon_greedy(key, greedy, self.num_actions, p["epsilon"]), ()

    def _lane_init(self, key: jax.Array, w: jax.Array) -> Lane:
        k_net, k_env = jax.random.split(key)
        x = jnp.zeros((1, observation_dim(self.env.observation_space)), jnp.float32)
        params = self.net.init(k_net, x, jnp.zeros((1, self.m), jnp.float32))
        rstate = self.rollout.init.pure(k_env, self.env_params)
        obs0 = rstate.obs[0]
        example = {"obs": obs0, "action": jnp.int32(0), "reward": jnp.zeros((self.m,), jnp.float32),
                   "next_obs": obs0, "terminated": jnp.float32(0.0), "w": jnp.zeros((self.m,), jnp.float32)}
        replay = rb.init(example, self.config.buffer_size)
        return Lane(params, params, self.tx.init(params), replay, rstate, w, jnp.int32(0), jnp.int32(0))

    def _init_fn(self, key: jax.Array) -> PDState:
        k_keys, k_main, k_w, key = jax.random.split(key, 4)
        keys = jax.vmap(lambda k, w: self._lane_init(k, jnp.broadcast_to(w, (self.num_envs, self.m))))(
            jax.random.split(k_keys, self.num_keys), self.key_w)
        main = self._lane_init(k_main, self._episode_preferences(k_w, True, None))
        zeros = jnp.zeros((self.num_keys, self.m), jnp.float32)
        interp = make_interpolator(self.key_w, zeros, jnp.zeros((self.m,)), "l2")
        key_returns = jnp.full((self.num_keys, self.m), -1e9, jnp.float32)
        return PDState(jnp.int32(0), keys, key_returns, main, interp, key)

    def _iteration(self, lane: Lane, key: jax.Array, *, main: bool, w_key, interp: Interpolator, budget: int):
        c = self.config
        k_roll, k_w, k_her, k_upd, k_jit = jax.random.split(key, 5)
        active = lane.steps < budget
        epsilon = jnp.maximum(c.epsilon_final, c.epsilon_start - lane.steps.astype(jnp.float32) / budget)
        w_act = lane.w if main or c.key_jitter == 0 else jitter_preference(k_jit, lane.w, c.key_jitter)
        policy_params = {"q": lane.params, "w": w_act, "epsilon": epsilon}
        rstate, traj = self.rollout.run.pure(policy_params, lane.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)
        items = {"obs": tr.obs, "action": tr.action.astype(jnp.int32), "reward": tr.reward, "next_obs": tr.next_obs,
                 "terminated": tr.terminated.astype(jnp.float32), "w": w_act}
        done = (tr.terminated | tr.truncated) & active
        w = jnp.where(done[:, None], self._episode_preferences(k_w, main, w_key), lane.w)
        replay = self._store(lane.replay, items, k_her, main, her_start=c.her_start)
        replay = replay.replace(pos=jnp.where(active, replay.pos, lane.replay.pos),
                                size=jnp.where(active, replay.size, lane.replay.size))
        lane = lane.replace(rollout=rstate, w=w, replay=replay,
                            steps=jnp.where(active, lane.steps + self.num_envs, lane.steps))
        learning = active & (replay.size >= 2 * c.batch_size * max(c.weight_num, 1))

        def grad_step(lane, k):
            return self._gradient_step(lane, k, learning, main, interp)

        lane, logs = jax.lax.scan(grad_step, lane, jax.random.split(k_upd, self.upd_per_vec))
        return lane, {"loss": jnp.mean(logs["loss"]), "epsilon": epsilon}

    def _gradient_step(self, lane: Lane, key: jax.Array, enabled, main: bool, interp: Interpolator):
        c = self.config
        batch, _ = rb.sample(lane.replay, key, c.batch_size)
        w = batch["w"]
        q_next = self._q(lane.target, batch["next_obs"], w)
        if main:  # the paper's Eq. 5 with the interpolated preference
            action = td.preference_driven_action(q_next, w, interpolate(interp, w), interp.shift)
        else:     # key runs: plain w . Q' (no interpolator yet)
            action = jnp.argmax(td.scalarize(w[:, None, :], q_next), axis=-1)
        target = td.bootstrap(batch["reward"], batch["terminated"], c.gamma, td.take_action(q_next, action))

        def loss_fn(params):
            q = td.take_action(self._q(params, batch["obs"], w), batch["action"])
            return td.smooth_l1(q, jax.lax.stop_gradient(target))

        loss, grads = jax.value_and_grad(loss_fn)(lane.params)
        updates, opt_state = self.tx.update(grads, lane.opt_state, lane.params)
        params = optax.apply_updates(lane.params, updates)
        target_params = td.polyak(params, lane.target, c.tau)
        lane = lane.replace(params=td.select_params(enabled, params, lane.params),
                            target=td.select_params(enabled, target_params, lane.target),
                            opt_state=td.select_params(enabled, opt_state, lane.opt_state),
                            updates=lane.updates + enabled.astype(jnp.int32))
        return lane, {"loss": jnp.where(enabled, loss, 0.0)}


def make_discrete_trainer(config: PDMORLDiscreteConfig, env, env_params=None) -> PDMORLDiscreteTrainer:
    return PDMORLDiscreteTrainer(config, env, env_params)


DISCRETE_ENV_DEFAULTS = {
    # official DeepSeaTreasure_MO_DDQN_HER / FruitTreeNavigation_MO_DDQN_HER settings
    "deep-sea-treasure-v0": {"max_episode_steps": 30},
    "fruit-tree-v0": {"hidden": 512, "w_step": 0.05, "total_timesteps": 1_140_000},  # 1M main + 7 keys x 20k
}

DISCRETE_SPEC = register_agent(AgentSpec(
    name="pd-morl-discrete",
    config_cls=PDMORLDiscreteConfig,
    make_trainer=make_discrete_trainer,
    summary="PD-MORL MO-DDQN-HER (Basaklar et al. 2023): preference-driven target (Eq. 5), HER, sub-space envs",
    action_kinds=("discrete",),
    env_defaults=DISCRETE_ENV_DEFAULTS,
))


# =============================================================================================== continuous
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

    total_timesteps: int = 16_000_000    # the whole budget, key runs included: official main run 10M (1M
                                         # iterations x 10 processes) + 3 key runs x 2M (two objectives)
    key_timesteps: int = 2_000_000       # env steps of each key-preference run (official key scripts: 2M)
    lr_actor: float = 3e-4               # Adam learning rate of the actor
    lr_critic: float = 3e-4              # Adam learning rate of the twin critics
    gamma: float = 0.995                 # discount of the main run (and of evaluated key returns)
    key_gamma: float = 0.99              # discount of the key runs
    batch_size: int = 256                # main-run minibatch
    key_batch_size: int = 100            # key-run minibatch
    hidden: int = 400                    # layer width of actor and critics
    num_layers: int = 2                  # hidden ReLU layers (official: input layer + layer_N=1 hidden layer)
    buffer_size: int = 2_000_000         # main-run replay capacity in entries (HER copies included)
    key_buffer_size: int = 500_000       # key-run replay capacity
    start_timesteps: int = 10_000        # per-env random-action steps at the start of the main run
    key_start_timesteps: int = 25_000    # ... of each key run (counted over the lane's envs)
    expl_noise: float = 0.1              # Gaussian exploration noise, times the action half-range
    policy_noise: float = 0.2            # target policy smoothing noise, times the action half-range
    noise_clip: float = 0.5              # ... clipped at this, times the action half-range
    policy_freq: int = 10                # critic updates per actor update, main run (Hopper: 20)
    key_policy_freq: int = 2             # ... key runs (Swimmer 5, Hopper 10)
    tau: float = 0.005                   # Polyak coefficient of both targets (applied on actor-update steps)
    actor_loss_coeff: float = 10.0       # weight of the angle term in the actor loss
    max_grad_norm: float = 100.0         # gradient-norm clip of actor and critics
    weight_num: int = 3                  # HER: relabelled copies per transition
    her_start: int | None = None         # HER starts past this many buffer entries; None = start_timesteps x num_subspaces
    w_step: float = 0.001                # spacing of the preference grid
    num_subspaces: int = 10              # contiguous sub-spaces of the grid (official: process_count)
    envs_per_subspace: int = 1           # envs drawing from each sub-space
    updates_per_step: float = 1.0        # critic updates per env transition (official: 1)
    cosine_shift: tuple[float, ...] | None = None  # added to Q and key returns inside cosines; None = from the key runs
    refit_interpolator: bool = True      # refit I from the conditioned policy at the key preferences after each chunk
    refit_norm: Literal["l1", "l2"] = "l1"  # normalisation of refitted key returns (official: L1 on refit, L2 at first)
    eval_episodes: int = 3               # episodes per key preference when evaluating (official eval_episodes 3)
    steps_per_chunk: int = 1000          # vector env steps per jitted chunk
    critic_angle_coeff: float = 1.0      # weight of the angle terms in the critic loss (official: 1, none)
    normalize_obs: bool = True           # scale observation dims with finite Box bounds to [-1, 1] (none on MuJoCo)
    noise_correlation: float = 0.0       # AR(1) coefficient of the exploration noise per env step (0: i.i.d.,
                                         # official); > 0 also makes the random warm-up correlated (see module doc)

    def __post_init__(self):
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(f"pd-morl config: noise_correlation must be in [0, 1), got {self.noise_correlation}")
        for name in ("total_timesteps", "key_timesteps", "batch_size", "key_batch_size", "hidden", "num_layers",
                     "buffer_size", "key_buffer_size", "policy_freq", "key_policy_freq", "num_subspaces",
                     "envs_per_subspace", "steps_per_chunk", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"pd-morl config: {name} must be >= 1, got {getattr(self, name)}")
        if self.updates_per_step <= 0:
            raise ValueError(f"pd-morl config: updates_per_step must be > 0, got {self.updates_per_step}")

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
        return (ReluMLP(self.reward_dim, self.hidden, "xavier_normal", name="q1")(inp),
                ReluMLP(self.reward_dim, self.hidden, "xavier_normal", name="q2")(inp))


class PDMORLTrainer(_PDBase):
    """MO-TD3-HER (chunked `morl.agent.Trainer`). Lane params are ``{"actor", "critic"}``, likewise targets and
    optimiser states."""

    agent_name = "pd-morl"

    def __init__(self, config: PDMORLConfig, env, env_params=None):
        space = env.action_space
        if not isinstance(space, Box) or len(space.shape) != 1:
            raise ValueError(f"pd-morl needs a 1-D Box action space; {env.name} has {space!r} "
                             "(use pd-morl-discrete for discrete actions)")
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"pd-morl needs a bounded action space (tanh actor); {env.name}'s is unbounded")
        self.low, self.high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
        self.half = (self.high - self.low) / 2
        self.action_dim = int(space.shape[0])
        hidden = (config.hidden,) * config.num_layers
        self.actor = Actor(self.action_dim, hidden, tuple(((high + low) / 2).tolist()), tuple(((high - low) / 2).tolist()))
        self.critic = TwinCritic(env.reward_dim, hidden)
        self.tx_actor = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr_actor))
        self.tx_critic = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr_critic))
        self._setup_common(config, env, env_params)
        self.rollout = make_rollout(env, self._behaviour_policy, self.num_envs, 1, gamma=config.gamma)
        self.her_start = config.her_start if config.her_start is not None else config.start_timesteps * config.num_subspaces
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
        return Solution(act=self._act, params=state.main.params["actor"], conditioned=True)

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
        obs0 = rstate.obs[0]
        example = {"obs": obs0, "action": jnp.zeros((self.action_dim,), jnp.float32),
                   "reward": jnp.zeros((self.m,), jnp.float32), "next_obs": obs0, "terminated": jnp.float32(0.0),
                   "w": jnp.zeros((self.m,), jnp.float32)}
        replay = rb.init(example, capacity)
        noise = jnp.zeros((self.num_envs, self.action_dim), jnp.float32)
        return Lane(params, params, opt, replay, rstate, w, jnp.int32(0), jnp.int32(0), noise)

    def _init_fn(self, key: jax.Array) -> PDState:
        c = self.config
        k_keys, k_main, k_w, key = jax.random.split(key, 4)
        keys = jax.vmap(lambda k, w: self._lane_init(k, jnp.broadcast_to(w, (self.num_envs, self.m)),
                                                     c.key_buffer_size))(
            jax.random.split(k_keys, self.num_keys), self.key_w)
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
        policy_params = {"actor": lane.params["actor"], "w": w_act, "expl_noise": c.expl_noise,
                         "random": lane.steps < start, "noise": lane.noise}
        rstate, traj = self.rollout.run.pure(policy_params, lane.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)
        lane = lane.replace(noise=jnp.where(active, tr.extras, lane.noise))
        items = {"obs": tr.obs, "action": tr.action.astype(jnp.float32), "reward": tr.reward,
                 "next_obs": tr.next_obs, "terminated": tr.terminated.astype(jnp.float32), "w": w_act}
        done = (tr.terminated | tr.truncated) & active
        w = jnp.where(done[:, None], self._episode_preferences(k_w, main, w_key), lane.w)
        replay = self._store(lane.replay, items, k_her, main, her_start=self.her_start)
        replay = replay.replace(pos=jnp.where(active, replay.pos, lane.replay.pos),
                                size=jnp.where(active, replay.size, lane.replay.size))
        lane = lane.replace(rollout=rstate, w=w, replay=replay,
                            steps=jnp.where(active, lane.steps + self.num_envs, lane.steps))
        batch = c.batch_size if main else c.key_batch_size
        learning = active & (replay.size >= 2 * batch * max(c.weight_num, 1))

        def grad_step(lane, k):
            return self._gradient_step(lane, k, learning, main, interp)

        lane, logs = jax.lax.scan(grad_step, lane, jax.random.split(k_upd, self.upd_per_vec))
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
        next_a = td.td3_target_action(k_noise, self.actor.apply(lane.target["actor"], nx, w),
                                      c.policy_noise * self.half, c.noise_clip * self.half, self.low, self.high)
        q1n, q2n = self.critic.apply(lane.target["critic"], nx, w, next_a)
        y = jax.lax.stop_gradient(td.bootstrap(batch["reward"], batch["terminated"], gamma,
                                               td.td3_min_vector(q1n, q2n, w)))

        def critic_loss(cp):
            q1, q2 = self.critic.apply(cp, x, w, a)
            loss = td.td3_critic_loss(q1, q2, y)
            if main:  # angles between w_p and the (shifted) Q vectors; official: no coefficient
                loss = loss + c.critic_angle_coeff * (jnp.mean(td.angle_deg(w_p, q1 + shift)) +
                                                      jnp.mean(td.angle_deg(w_p, q2 + shift)))
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
            target = {"actor": td.polyak(actor, target["actor"], c.tau),
                      "critic": td.polyak(critic, target["critic"], c.tau)}
            return (actor, opt_a, target), loss_a

        do_actor = enabled & (updates % policy_freq == 0)
        (actor, opt_a, target), loss_a = jax.lax.cond(
            do_actor, actor_step, lambda op: (op, jnp.float32(0.0)),
            (lane.params["actor"], lane.opt_state["actor"], lane.target))
        lane = lane.replace(params={"actor": actor, "critic": critic}, opt_state={"actor": opt_a, "critic": opt_c},
                            target=target, updates=updates)
        return lane, {"loss": jnp.where(enabled, loss_c, 0.0), "actor_loss": loss_a}


def make_continuous_trainer(config: PDMORLConfig, env, env_params=None) -> PDMORLTrainer:
    return PDMORLTrainer(config, env, env_params)


CONTINUOUS_ENV_DEFAULTS: dict[str, dict[str, Any]] = {}

CONTINUOUS_SPEC = register_agent(AgentSpec(
    name="pd-morl",
    config_cls=PDMORLConfig,
    make_trainer=make_continuous_trainer,
    summary="PD-MORL MO-TD3-HER (Basaklar et al. 2023): one preference-conditioned actor, angle-guided twin "
            "vector critics, key-preference interpolator, HER, sub-space envs",
    action_kinds=("continuous",),
    env_defaults=CONTINUOUS_ENV_DEFAULTS,
))
