"""PPO-clip with a vector critic: the shared policy-gradient block of C-MORL, PGMORL and MORL/D.

Follows the official C-MORL / PGMORL code (``a2c_ppo_acktr`` + baselines' ``VecNormalize`` with the
``obj_rms`` extension; ``docs/sources.md``):

- a separate actor and **vector critic** (one value per objective), 64-64 tanh (`agents.networks`);
- **per-objective GAE** (lambda 0.95) on normalised rewards. Truncated episodes are bootstrapped from the true
  final observation (``Transition.next_obs``); terminated ones are not (the official code gets the same
  effect from ``bad_masks``);
- a **scalarised advantage** ``w . A`` formed on the raw reward scale (each objective's advantage multiplied
  back by the running std its rewards were divided by), then standardised per batch;
- **observation normalisation** (running mean/std, clip +-10) and **per-objective reward normalisation**: each
  objective's reward is divided by the running std of that objective's discounted return (clip +-10), exactly
  VecNormalize's ``obj_rms`` recursion ``ret = ret * gamma + r; rms.update(ret); r / sqrt(var + 1e-8);
  ret[done] = 0``;
- clipped surrogate (0.2), clipped vector value loss ``0.5 * mean(max(...))`` with coefficient 0.5, entropy
  coefficient 0, 10 epochs x 32 minibatches, global grad-norm clip 0.5, Adam (eps 1e-5) with a learning rate
  passed in per update (linear decay is the caller's schedule, `linear_lr`). Each epoch's minibatches come from
  `shuffled_minibatches`, a shuffle that costs one sort of one array on a CPU (`jax.random.permutation` sorts
  key-value pairs twice, a quarter of a small update's time).

Everything is a pure function over a `PPOState` pytree, for **one** policy; an optional `Penalty` adds a term to
the update's objective (C-MORL's log barrier). The rollout itself is the engine's (`morl.rollout`): `PPO.policy` is
the engine policy and `PPO.policy_params` what it takes. `PPOPopulation` trains P policies in lockstep (every leaf
with a leading P axis), one compiled program per chunk: C-MORL's and PGMORL's populations.

Deviation from VecNormalize, for purity: the observation statistics are frozen during a rollout (the policy
normalises with the statistics from before it) and updated from the rollout's observations after the
update; VecNormalize updates them step by step. The reward recursion is step by step, as in VecNormalize.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agents.networks import ActorCritic, preprocess_obs
from morl.rollout import RolloutState, make_rollout

PyTree = Any

NORM_EPS = 1e-8  # VecNormalize's epsilon


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; defaults are the official C-MORL ones (docs/sources.md)."""

    lr: float = 3e-4  # Adam learning rate (stage 1 decays it linearly to 0: `linear_lr`)
    gamma: float = 0.995  # training discount (C-MORL never overrides it)
    gae_lambda: float = 0.95
    clip_eps: float = 0.2  # ratio clip, also the value-clip range
    epochs: int = 10
    num_minibatches: int = 32
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    clip_value_loss: bool = True
    normalize_obs: bool = True
    normalize_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    num_envs: int = 8  # parallel envs per policy
    num_steps: int = 512  # steps per env per rollout: a batch is num_envs * num_steps transitions
    hidden: tuple[int, ...] = (64, 64)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @staticmethod
    def of(config: Any, **overrides: Any) -> PPOConfig:
        """The PPO settings of an agent config that carries PPOConfig's fields under the same names."""
        names = {f.name for f in dataclasses.fields(PPOConfig)}
        return PPOConfig(**{k: getattr(config, k) for k in names if hasattr(config, k)} | overrides)

    def check(self) -> None:
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"PPO: num_envs * num_steps = {self.batch_size} is not divisible by num_minibatches="
                f"{self.num_minibatches}; pick sizes so every minibatch has the same length"
            )
        for name in ("lr", "gamma", "clip_eps", "epochs", "num_minibatches", "num_envs", "num_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PPO: {name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"PPO: gamma must be in (0, 1] and gae_lambda in [0, 1], got {self.gamma}, {self.gae_lambda}"
            )


# ---------------------------------------------------------------------------------------------- normalisers
@struct.dataclass
class RunningMeanStd:
    """baselines' ``RunningMeanStd``: parallel (Chan et al.) mean/variance over every batch seen."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @staticmethod
    def create(shape: tuple[int, ...]) -> RunningMeanStd:
        # baselines starts at mean 0, var 1 and a tiny count (1e-4), so the first batch dominates
        return RunningMeanStd(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.float32(1e-4))

    def update(self, x: jax.Array) -> RunningMeanStd:
        """Merge a batch ``x`` of shape ``[B, *shape]``."""
        batch_mean = jnp.mean(x, axis=0)
        batch_var = jnp.var(x, axis=0)
        batch_count = jnp.float32(x.shape[0])
        delta = batch_mean - self.mean
        total = self.count + batch_count
        mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        return RunningMeanStd(mean, m2 / total, total)


def normalize_obs(rms: RunningMeanStd, x: jax.Array, clip: float) -> jax.Array:
    return jnp.clip((x - rms.mean) / jnp.sqrt(rms.var + NORM_EPS), -clip, clip)


def normalize_rewards(
    rms: RunningMeanStd, ret: jax.Array, rewards: jax.Array, done: jax.Array, gamma: float, clip: float
) -> tuple[RunningMeanStd, jax.Array, jax.Array]:
    """VecNormalize's per-objective reward scaling over a trajectory, step by step.

    ``rewards`` [T, N, m], ``done`` [T, N], ``ret`` [N, m] the running discounted returns carried between
    rollouts. Returns the updated statistics, the carried returns and the scaled rewards [T, N, m].
    """

    def step(carry, inp):
        rms, ret = carry
        r, d = inp
        ret = ret * gamma + r
        rms = rms.update(ret)
        scaled = jnp.clip(r / jnp.sqrt(rms.var + NORM_EPS), -clip, clip)
        ret = jnp.where(d[:, None], 0.0, ret)
        return (rms, ret), scaled

    (rms, ret), scaled = jax.lax.scan(step, (rms, ret), (rewards, done))
    return rms, ret, scaled


# ---------------------------------------------------------------------------------------------- GAE
def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Per-objective generalised advantage estimates and value targets.

    ``rewards``, ``values``, ``next_values``: [T, N, m] (``next_values`` = V(next_obs), the true next
    observation, so a truncated episode bootstraps from its final state); ``terminated``, ``done``: [T, N].
    ``delta_t = r_t + gamma V(s'_t) (1 - terminated_t) - V(s_t)``; the recursion stops at every episode end
    (terminated or truncated) and after the last step. Returns ``(advantages, advantages + values)``.
    """
    not_term = 1.0 - terminated.astype(jnp.float32)[..., None]
    not_done = 1.0 - done.astype(jnp.float32)[..., None]
    deltas = rewards + gamma * next_values * not_term - values

    def step(next_adv, inp):
        delta, nd = inp
        adv = delta + gamma * lam * nd * next_adv
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return adv, adv + values


def shuffled_minibatches(key: jax.Array, n: int, num_minibatches: int) -> jax.Array:
    """A random permutation of ``range(n)`` split into ``num_minibatches`` rows (PPO's epoch shuffle).

    On a CPU, XLA sorts a key-value pair far slower than one array, and ``jax.random.permutation`` sorts pairs in
    two rounds: for PPO's small batches that costs a quarter of an update. Here each round sorts one uint32 array
    whose high bits are random and whose low ``b = ceil(log2 n)`` bits are the index (unpacked after the sort):
    one round up to 2,048 rows, two up to 65,536, ``jax.random.permutation`` above. The result is a uniform
    permutation except that two rows whose ``32 - b`` random bits tie keep their order (about one pair per
    round at 2,048 rows), which a minibatch shuffle does not notice.
    """
    bits = max(1, (n - 1).bit_length())
    if bits > 16:
        idx = jax.random.permutation(key, n)
    else:
        low = jnp.uint32((1 << bits) - 1)
        idx = jnp.arange(n, dtype=jnp.uint32)
        for k in jax.random.split(key, 1 if bits <= 11 else 2):
            order = jnp.sort((jax.random.bits(k, (n,), jnp.uint32) & ~low) | jnp.arange(n, dtype=jnp.uint32)) & low
            idx = idx[order]
        idx = idx.astype(jnp.int32)
    return idx.reshape(num_minibatches, n // num_minibatches)


def linear_lr(lr: float, iteration: int, total: int) -> np.float32:
    """a2c_ppo_acktr's ``update_linear_schedule``: ``lr * (1 - iteration / total)`` (iteration counts from 0).

    Computed on the host in float32 (the same correctly rounded operations XLA would run), so a training loop
    compiles no eager program for its schedule."""
    return np.float32(lr) * (np.float32(1.0) - np.float32(iteration) / np.float32(total))


# ---------------------------------------------------------------------------------------------- PPO
class Penalty(Protocol):
    """A term subtracted from the PPO loss, given the minibatch's probability ratios ``[B]``, raw-scale
    per-objective advantages ``[B, m]`` and the scalar advantage's standardisation scale (a pytree, so it can
    carry per-member arrays through ``vmap``)."""

    def __call__(self, ratio: jax.Array, adv_raw: jax.Array, adv_scale: jax.Array) -> jax.Array: ...


@struct.dataclass
class PPOState:
    """Everything one PPO policy carries between updates (add a leading axis for a population)."""

    params: PyTree  # {"actor": ..., "critic": ...}
    opt_state: PyTree
    obs_rms: RunningMeanStd  # over the flat observation features
    ret_rms: RunningMeanStd  # per objective, over the discounted returns
    ret: jax.Array  # [num_envs, m] running discounted returns of the reward normaliser


@dataclass(frozen=True)
class PPO:
    """PPO for one env's spaces; every method is pure and ``vmap``-able over a population axis."""

    net: ActorCritic
    config: PPOConfig

    def __post_init__(self):
        self.config.check()

    @staticmethod
    def for_env(env, config: PPOConfig) -> PPO:
        return PPO(ActorCritic(env.observation_space, env.action_space, env.reward_dim, tuple(config.hidden)), config)

    @property
    def optimizer(self) -> optax.GradientTransformation:
        # the learning rate is applied by hand in `update`, so the caller can schedule it per update
        return optax.chain(
            optax.clip_by_global_norm(self.config.max_grad_norm), optax.scale_by_adam(eps=self.config.adam_eps)
        )

    def init(self, key: jax.Array) -> PPOState:
        params = self.net.init(key)
        m = self.net.reward_dim
        return PPOState(
            params=params,
            opt_state=self.optimizer.init(params),
            obs_rms=RunningMeanStd.create((self.net.obs_dim,)),
            ret_rms=RunningMeanStd.create((m,)),
            ret=jnp.zeros((self.config.num_envs, m), jnp.float32),
        )

    def restart(self, state: PPOState) -> PPOState:
        """A fresh Adam state and zeroed return accumulators (new envs), keeping the policy and its statistics."""
        return state.replace(opt_state=self.optimizer.init(state.params), ret=jnp.zeros_like(state.ret))

    # ------------------------------------------------------------------ acting
    def features(self, obs_rms: RunningMeanStd, obs: jax.Array) -> jax.Array:
        x = preprocess_obs(self.net.observation_space, obs)
        return normalize_obs(obs_rms, x, self.config.clip_obs) if self.config.normalize_obs else x

    @staticmethod
    def policy_params(state: PPOState) -> PyTree:
        """What `policy` and `act` take: the actor and the observation statistics."""
        return {"actor": state.params["actor"], "obs_rms": state.obs_rms}

    def policy(self, pp: PyTree, obs: jax.Array, key: jax.Array) -> tuple[jax.Array, PyTree]:
        """The rollout-engine policy (stochastic): ``(action[N], {"raw", "logp"})``."""
        action, raw, logp = self.net.sample(pp["actor"], self.features(pp["obs_rms"], obs), key)
        return action, {"raw": raw, "logp": logp}

    def act(self, pp: PyTree, obs: jax.Array) -> jax.Array:
        """Deterministic actions (evaluation)."""
        return self.net.mode(pp["actor"], self.features(pp["obs_rms"], obs))

    # ------------------------------------------------------------------ learning
    def advantages(self, state: PPOState, traj) -> tuple[PPOState, dict[str, jax.Array]]:
        """Normalise the trajectory's rewards, compute per-objective GAE; returns the batch (flat [T*N, ...])."""
        cfg = self.config
        T, N, m = traj.reward.shape

        def flat(x):
            return x.reshape((T * N,) + x.shape[2:])

        x = self.features(state.obs_rms, flat(traj.obs))
        x_next = self.features(state.obs_rms, flat(traj.next_obs))
        done = traj.terminated | traj.truncated
        if cfg.normalize_reward:
            ret_rms, ret, rewards = normalize_rewards(
                state.ret_rms, state.ret, traj.reward, done, cfg.gamma, cfg.clip_reward
            )
            scale = jnp.sqrt(ret_rms.var + NORM_EPS)
        else:
            ret_rms, ret, rewards, scale = state.ret_rms, state.ret, traj.reward, jnp.ones((m,), jnp.float32)
        critic = state.params["critic"]
        values = self.net.value(critic, x).reshape(T, N, m)
        next_values = self.net.value(critic, x_next).reshape(T, N, m)
        adv, targets = gae(rewards, values, next_values, traj.terminated, done, cfg.gamma, cfg.gae_lambda)
        state = state.replace(ret_rms=ret_rms, ret=ret)
        batch = {
            "x": x,
            "raw": flat(traj.extras["raw"]),
            "logp": flat(traj.extras["logp"]),
            "values": flat(values),
            "targets": flat(targets),
            "adv_raw": flat(adv) * scale,
        }
        return state, batch

    def loss(
        self, params: PyTree, mb: dict[str, jax.Array], penalty: Penalty | None, adv_scale: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        cfg = self.config
        logp, entropy = self.net.log_prob_entropy(params["actor"], mb["x"], mb["raw"])
        log_ratio = logp - mb["logp"]
        ratio = jnp.exp(log_ratio)
        a = mb["scalar_adv"]
        pg_loss = -jnp.mean(jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * a))
        v = self.net.value(params["critic"], mb["x"])
        v_loss = (v - mb["targets"]) ** 2
        if cfg.clip_value_loss:
            v_clipped = mb["values"] + jnp.clip(v - mb["values"], -cfg.clip_eps, cfg.clip_eps)
            v_loss = jnp.maximum(v_loss, (v_clipped - mb["targets"]) ** 2)
        v_loss = 0.5 * jnp.mean(v_loss)
        ent = jnp.mean(entropy)
        total = pg_loss + cfg.value_coef * v_loss - cfg.entropy_coef * ent
        stats = {"pg_loss": pg_loss, "value_loss": v_loss, "entropy": ent}
        if penalty is not None:
            bonus = penalty(ratio, mb["adv_raw"], adv_scale)
            total = total - bonus
            stats["penalty"] = bonus
        stats.update(
            approx_kl=jnp.mean((ratio - 1.0) - log_ratio), clip_frac=jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_eps)
        )
        return total, stats

    def update(
        self, state: PPOState, traj, weights: jax.Array, lr: jax.Array, key: jax.Array, penalty: Penalty | None = None
    ) -> tuple[PPOState, dict[str, jax.Array]]:
        """One PPO update from a trajectory ([T, N, ...] leaves) with preference ``weights`` [m].

        The scalarised advantage is ``weights . A_raw``, standardised over the batch (torch's unbiased std,
        + 1e-5). ``penalty``: an optional term added to the objective (`Penalty`), e.g. C-MORL's log barrier.
        """
        cfg = self.config
        state, batch = self.advantages(state, traj)
        scalar = batch["adv_raw"] @ weights
        n = scalar.shape[0]
        adv_scale = jnp.std(scalar) * jnp.sqrt(n / (n - 1.0)) + 1e-5
        batch["scalar_adv"] = (scalar - jnp.mean(scalar)) / adv_scale
        optimizer = self.optimizer
        grad_fn = jax.grad(self.loss, has_aux=True)

        def minibatch_step(carry, idx):
            params, opt_state = carry
            mb = jax.tree.map(lambda v: v[idx], batch)
            grads, stats = grad_fn(params, mb, penalty, adv_scale)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
            return (params, opt_state), stats

        def epoch(carry, k):
            return jax.lax.scan(minibatch_step, carry, shuffled_minibatches(k, n, cfg.num_minibatches))

        (params, opt_state), stats = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(key, cfg.epochs)
        )
        obs_rms = state.obs_rms
        if cfg.normalize_obs:
            obs_rms = obs_rms.update(
                preprocess_obs(self.net.observation_space, traj.obs.reshape((n,) + traj.obs.shape[2:]))
            )
        state = state.replace(params=params, opt_state=opt_state, obs_rms=obs_rms)
        return state, jax.tree.map(jnp.mean, stats)


def wide_batch(
    num_envs_field: str = "num_envs", num_steps_field: str = "num_steps", envs: int = 512, min_rollout: int = 256
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Accelerator settings (`morl.agent.AgentSpec.accelerator_defaults`) of a PPO population: ``envs`` envs per
    policy and ``num_steps`` shortened so each update keeps its number of transitions. Budgets, update counts and
    minibatch sizes stay as on a CPU; a GPU then steps ``policies x envs`` envs per rollout step, with
    ``envs / num_envs`` times fewer sequential steps. Unchanged when the batch has fewer than ``envs``
    transitions or does not split into whole rollouts of ``envs`` envs, and for rollouts shorter than
    ``min_rollout`` steps: those are short already, and shortening them costs results (C-MORL on
    deep-sea-treasure, 64-step rollouts: 512 x 4 reached the whole front on 0 of 5 seeds, 128 x 16 and 64 x 32 on
    4, 32 x 64 on 5; docs/algorithms/c-morl.md)."""

    def defaults(values: dict[str, Any]) -> dict[str, Any]:
        batch = values[num_envs_field] * values[num_steps_field]
        if values[num_envs_field] >= envs or batch % envs or values[num_steps_field] < min_rollout:
            return {}
        return {num_envs_field: envs, num_steps_field: batch // envs}

    return defaults


# ---------------------------------------------------------------------------------------------- population
Prepare = Callable[..., tuple[jax.Array, Any, dict]]


def _weights_only(traj, weights):
    return weights, None, {}


@dataclass(frozen=True)
class PPOPopulation:
    """``size`` PPO members trained in lockstep (C-MORL's and PGMORL's populations).

    Every leaf of the population's `PPOState` has a leading P axis. ``iterate`` is one rollout of every member
    followed by its GAE and PPO update, and ``evaluate`` runs every member's deterministic policy on fresh envs:
    each is one compiled program on pure-JAX envs (`morl.rollout.Rollout.then`), whatever the population size.
    Build with `make_population`.
    """

    ppo: PPO
    size: int
    init: Callable[[jax.Array], PPOState]  # keys [P] -> a fresh population
    restart: Callable[[PPOState], PPOState]  # `PPO.restart` of every member
    reset: Callable[[jax.Array], RolloutState]  # key -> fresh training envs
    iterate: Callable[..., tuple[PPOState, RolloutState, dict, dict]]
    evaluate: Callable[[PPOState, jax.Array], tuple[jax.Array, jax.Array]]


def make_population(
    ppo: PPO,
    env,
    size: int,
    *,
    stats_gamma: float,
    eval_episodes: int,
    eval_steps: int,
    eval_gamma: float,
    env_params: PyTree = None,
    prepare: Prepare = _weights_only,
    cheap_init: bool = False,
) -> PPOPopulation:
    """Compile the population's programs.

    ``iterate(pop, rollout_state, lr, key, *args) -> (pop, rollout_state, stats, info)``: the key is split into a
    rollout key and an update key (split again into one key per member). ``prepare(traj, *args) -> (weights [P, m],
    penalty or None, info)`` turns the trajectory (leaves ``[T, P, N, ...]``) and ``args`` into each member's
    preference and optional `Penalty`; the default takes ``args = (weights,)``. ``stats`` are per member ``[P]``.
    ``stats_gamma`` discounts the training rollout's episode statistics (``traj.episode_discounted_return``).

    ``evaluate(pop, key) -> (returns [P, m], finished)``: ``eval_episodes`` episodes of at most ``eval_steps``
    steps per member, the first finished episode's return discounted by ``eval_gamma``, averaged over the envs;
    ``finished`` is whether every env finished one.

    ``cheap_init`` compiles the one-off initialisation without LLVM optimisations (seconds saved on a CPU). The
    initial weights then differ in their last bits, so the choice is part of an agent's seeded behaviour.
    """
    cfg = ppo.config

    def eval_policy(pp, obs, key):
        return ppo.act(pp, obs), ()

    train = make_rollout(env, ppo.policy, cfg.num_envs, cfg.num_steps, gamma=stats_gamma, population=size)
    evalr = make_rollout(env, eval_policy, eval_episodes, eval_steps, gamma=eval_gamma, population=size, emit="summary")
    vupdate = jax.vmap(ppo.update, in_axes=(0, 0, 0, None, 0, 0))
    vpp = jax.vmap(ppo.policy_params)

    def update(pop, traj, lr, key, *args):
        weights, penalty, info = prepare(traj, *args)
        member_first = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)  # [T, P, N] -> [P, T, N]
        pop, stats = vupdate(pop, member_first, weights, lr, jax.random.split(key, size), penalty)
        return pop, stats, info

    def summarize(pop, summary):
        return jnp.mean(summary.first_discounted_return, axis=1), jnp.all(summary.episodes > 0)

    step = train.then(vpp, update, env_params)

    def iterate(pop, rstate, lr, key, *args):
        k_roll, k_upd = jax.random.split(key)
        rstate, (pop, stats, info) = step(pop, rstate, k_roll, lr, k_upd, *args)
        return pop, rstate, stats, info

    def restart(pop: PPOState) -> PPOState:
        """`PPO.restart` of every member, on the host: Adam's fresh state (and the return accumulators) are all
        zeros, so no program is compiled for it."""
        return pop.replace(opt_state=jax.tree.map(np.zeros_like, pop.opt_state), ret=np.zeros_like(pop.ret))

    init = jax.jit(jax.vmap(ppo.init), compiler_options={"xla_backend_optimization_level": 0} if cheap_init else None)
    return PPOPopulation(
        ppo=ppo,
        size=size,
        init=init,
        restart=restart,
        reset=train.starter(env_params),
        iterate=iterate,
        evaluate=evalr.fresh_then(vpp, summarize, env_params),
    )
