"""C-MORL: constrained multi-objective RL (Liu et al., ICLR 2025), in JAX.

The module reads top to bottom like the paper's Algorithm 1:

1. **Pareto initialisation**: M PPO policies (vector critic, scalarised advantage ``w_i . A``) on the
   deterministic preference grid `generate_weights_batch_dfs`, trained as ONE program vmapped over the
   population axis of the rollout engine. Every ``eval_interval`` updates each policy is evaluated
   (deterministic actions, ``eval_episodes`` episodes, returns discounted by ``eval_gamma``) and offered to
   the policy buffer, as the official code does with its intermediate policies.
2. **Policy buffer**: every evaluated policy's vector return; dominated points, duplicates and points below
   the reference point are dropped; above ``policy_buffer`` (200) points the ones with the largest crowding
   distance are kept (`buffer_insert`).
3. **Selection**: the ``num_select`` (N) buffer policies with the largest crowding distance, extremes first,
   never re-selecting an objective tuple selected before (`select_policies`).
4. **Pareto extension**: from each selected policy pi_r and for each objective l, ``update_iter`` (K)
   constrained updates of ``max G_l  s.t.  G_j >= beta * G_j(pi_r), j != l`` with the IPO log barrier
   ``G_l + (1/t) sum_j log(G_j - beta G_j(pi_r))`` (t = 20, beta = 0.9). All N*L (policy, objective) tasks
   are one vmapped program; each starts from pi_r. Every update is evaluated and offered to the buffer.
   Selection and extension alternate until the budget is spent.
5. **Assignment**: for a preference w, the buffer policy with the largest ``w . G`` (`morl.solution.Solution`).

Budget: ``total_steps`` and ``init_steps`` count **real** training transitions (each PPO update consumes
``num_envs * num_steps`` of them per policy); evaluation episodes come on top and are logged separately.
``total_steps`` bounds everything: ``init_steps`` is a share of it, and a share larger than the budget (or a
budget below one update of the initial policies) is refused with a one-line error (`check_budget`; the rule
for every agent is in docs/budgets.md). Updates are whole, so the run uses ``plan_budget(...)["used"] <=
total_steps`` transitions.

Where this follows the PAPER rather than the official code (``docs/sources.md``)
----------------------------------------------------------------------------------------------------------
- **Barrier threshold**: ``beta * G_j(pi_r)``, from the return of the policy being extended (the paper), not
  beta times the current minibatch's mean normalised return (the code).
- **Barrier objectives**: the barrier covers j != l (the paper); the code slices the wrong axis (a sample row),
  so its barrier also covers objective l.
- **Barrier as a function of the policy**: ``log(G_j(theta) - thr_j)`` with ``G_j(theta)`` followed by the
  importance-sampled advantage surrogate (IPO); the code's barrier depends on the policy only through the
  clipped ratio times a minibatch mean, carries no advantage signal for objective j, and has zero gradient
  whenever that mean is <= 0.
- **Independent extensions**: every (pi_r, l) task starts from pi_r (the paper); the code chains l = 0, 1, ...
  because it reassigns the sample it extends (and carries the env state and rollout storage over).
- **Extension learning rate**: ``extension_lr`` (default the PPO rate, 3e-4, constant); the code inherits the
  decayed rate (about 0) that the snapshot had at the end of stage 1, and the Adam state with it. Here every
  task starts with a fresh Adam state and fresh envs.
- **Step accounting**: budgets are real transitions; the code's ``num_init_steps // M // num_steps`` counts
  512-step rollouts of 8 envs as 512 steps (8x). The per-env defaults below are the code's real consumption
  (`plan_budget` gives back its update counts).
- The CPO path (never called by the official code) is not implemented; the final extension round never has
  zero updates (the code can hang there); every worker does not share one noise stream (``torch.manual_seed(j)``).

Other choices, with reasons
---------------------------
- **IPO inside PPO.** Each extension update maximises, per minibatch,
  ``PPO-clip surrogate of A_l + (1/t) sum_{j != l} log(slack_j + kappa E[(rho - 1) A_j])`` (`agents.ppo.Barrier`):
  ``slack_j = G_j(pi_k) - thr_j`` at the start of the update, the second term the importance-sampled change of
  ``G_j`` as the policy moves during the update's epochs (``kappa`` = discounted length of the rollout's
  episodes). Advantages are on the raw reward scale and the barrier is divided by the same scale as the
  standardised objective term, so ``t`` keeps the paper's units. At the start of an update the gradient is
  exactly ``grad G_l + sum_j grad G_j / (t * slack_j)``.
- **Which G.** The constraint acts on the policy being trained, a stochastic one. ``G_j(pi_k)`` is the mean
  return (discounted with ``eval_gamma``) of the episodes that ended in the task's latest rollout, and
  ``G_j(pi_r)`` is measured the same way on the task's first rollout (pi_r itself), so the two sides of the
  constraint are comparable. (pi_r's buffer return comes from deterministic evaluation; a stochastic pi_r
  usually scores lower, and measuring its threshold on the deterministic value would start many tasks
  infeasible.) The buffer records every iterate's deterministic evaluation, as in the paper and the code.
- **Negative returns.** ``beta * G_j(pi_r)`` is a *stricter* bound than ``G_j(pi_r)`` when ``G_j(pi_r) < 0``
  (e.g. DST's time), so pi_r itself would be infeasible and the barrier undefined. The threshold used is
  ``G_j(pi_r) - (1 - beta) * |G_j(pi_r)|``: identical to the paper's for ``G_j >= 0``, and the same relative
  slack below zero.
- **Infeasible iterates.** A stochastic update can step past the boundary, where the log barrier is undefined.
  Below ``slack_floor`` times the task's initial slack (itself at least 1e-3 of the objective's scale in the
  buffer) the log is continued by its tangent, so a violated constraint keeps a large, finite, restoring
  gradient.
- **Stage-1 observation statistics** are frozen during a rollout (see `agents.ppo`).
- **Deep-sea-treasure** has no official setting; its defaults are ours (see `ENV_DEFAULTS`).
- **Host (gym:) envs**: the vector envs live outside the train state, so a resumed run restarts their episodes.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from morl.agents.ppo import PPO, Barrier, PPOConfig, PPOState, linear_lr
from morl.agent import AgentSpec, Trainer, register_agent
from morl.rollout import make_rollout
from morl.solution import Solution

PyTree = Any

PHASE_INIT, PHASE_EXTEND, PHASE_DONE = 0, 1, 2


# =============================================================================================== config
@dataclass(frozen=True)
class CMORLConfig:
    """C-MORL settings. Defaults: the official code's (``RuohLiuq/C-MORL`` ``run.py`` + scripts, docs/sources.md; the 2-objective MuJoCo script for the budget and grid). Per-env settings: `ENV_DEFAULTS`.

    Budget rule (docs/budgets.md): ``total_steps`` (``--steps``) bounds every real training transition;
    ``init_steps`` is the Pareto initialisation's share of it and must be <= ``total_steps`` (else a one-line
    error). Evaluation episodes are not training transitions and are counted apart (``eval_episodes`` log)."""

    # ---- budget, in real training transitions (what the official 2-objective MuJoCo runs, "1.5M / 1.0M steps",
    #      consume: 325 PPO updates x 6 policies, then 97 constrained updates x 10 tasks, 4096 transitions each)
    total_steps: int = 11_960_320
    init_steps: int = 7_987_200          # Pareto initialisation's share
    # ---- 1. Pareto initialisation: preference grid of generate_weights_batch_dfs(min, max, delta)
    init_weight_min: float = 0.0
    init_weight_max: float = 1.0
    init_weight_delta: float = 0.2       # 2 objectives -> 6 preferences [0,1], [.2,.8], ..., [1,0]
    # ---- 2./3. policy buffer and selection
    policy_buffer: int = 200             # buffer cap (crowding-distance pruning above it)
    num_select: int = 5                  # N policies extended per round
    # ---- 4. Pareto extension (IPO)
    beta: float = 0.9                    # constraint G_j >= beta * G_j(pi_r)
    barrier_t: float = 20.0              # log-barrier parameter t
    update_iter: int = 20                # K: constrained updates per (policy, objective) and round
    extension_lr: float = 3e-4           # constant; see the module docstring
    slack_floor: float = 0.01            # below this fraction of the initial slack the barrier continues linearly
    # ---- evaluation of the policies offered to the buffer
    eval_interval: int = 10              # stage-1 updates between evaluations (official: 10; 1 for discrete envs)
    eval_episodes: int = 10
    eval_gamma: float = 0.99
    max_episode_steps: int | None = None  # episode cap for training and evaluation (None: the env's own)
    ref_point: tuple[float, ...] | None = None  # None: the env's reference point
    # ---- PPO (agents.ppo.PPOConfig)
    lr: float = 3e-4
    gamma: float = 0.995
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    epochs: int = 10
    num_minibatches: int = 32
    value_coef: float = 0.5
    entropy_coef: float = 0.0
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    num_envs: int = 8
    num_steps: int = 512
    normalize_obs: bool = True
    normalize_reward: bool = True
    hidden: tuple[int, ...] = (64, 64)

    def ppo_config(self) -> PPOConfig:
        names = {f.name for f in dataclasses.fields(PPOConfig)}
        return PPOConfig(**{k: getattr(self, k) for k in names if hasattr(self, k)})

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


# Official per-env settings (docs/sources.md). Budgets are the official code's REAL transitions:
# stage 1 = M * (nominal_init // M // 512) * 4096, extension = N * L * ((nominal_total - nominal_init) // N // 512 // L) * 4096,
# so `plan_budget` gives the official numbers of updates. Deep-sea-treasure has no official setting (see below).
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    # minecart script: 3 objectives, delta 0.5 -> 6 preferences, N 6, nominal 0.5M / 0.2M -> 65 init updates x 6
    # policies + 32 extension updates x 18 tasks; eval 10 episodes x gamma 0.98, 500-step cap
    "minecart-v0": dict(total_steps=3_956_736, init_steps=1_597_440, init_weight_delta=0.5, num_select=6,
                        eval_interval=1, eval_gamma=0.98, max_episode_steps=500, ref_point=(-1.0, -1.0, -200.0)),
    # fruit-tree script (depth 6 there): corners -> 6 preferences, N 6, nominal 0.5M / 0.1M -> 32 init updates
    # x 6 policies + 21 extension updates x 36 tasks; eval 10 episodes x gamma 0.99
    "fruit-tree-v0": dict(total_steps=3_883_008, init_steps=786_432, init_weight_delta=1.0, num_select=6,
                          eval_interval=1, eval_gamma=0.99, ref_point=(-1.0,) * 6),
    # lunar-lander script: corners -> 4 preferences, N 6, nominal 0.5M / 0.2M -> 97 x 4 + 24 x 24 updates
    "mo-lunar-lander-v2": dict(total_steps=3_948_544, init_steps=1_589_248, init_weight_delta=1.0, num_select=6,
                               eval_interval=1, eval_gamma=0.99, max_episode_steps=500,
                               ref_point=(-101.0, -1001.0, -101.0, -101.0)),
    # MuJoCo scripts, 2 objectives: delta 0.2 -> 6 preferences (ant: delta 0.5 -> 3), N 5, nominal 1.5M / 1.0M
    # -> 325 x 6 (ant: 651 x 3) + 97 x 10 updates; eval 5 (hopper) / 10 episodes x gamma 0.99, 500-step cap
    "mo-hopper-2d-v4": dict(total_steps=11_960_320, init_steps=7_987_200, init_weight_delta=0.2, num_select=5,
                            eval_episodes=5, max_episode_steps=500, ref_point=(-100.0, -100.0)),
    "mo-ant-2d-v4": dict(total_steps=11_972_608, init_steps=7_999_488, init_weight_delta=0.5, num_select=5,
                         max_episode_steps=500, ref_point=(-100.0, -100.0)),
    "mo-humanoid-v4": dict(total_steps=11_960_320, init_steps=7_987_200, init_weight_delta=0.2, num_select=5,
                           max_episode_steps=500, ref_point=(-100.0, -100.0)),
    # 3 objectives: [.2, .8] delta .3 -> 6 preferences, N 6, nominal 2.0M / 1.5M -> 488 x 6 + 54 x 18 updates
    "mo-hopper-v4": dict(total_steps=15_974_400, init_steps=11_993_088, init_weight_min=0.2, init_weight_max=0.8,
                         init_weight_delta=0.3, num_select=6, max_episode_steps=500, ref_point=(-100.0,) * 3),
    "mo-ant-v4": dict(total_steps=15_974_400, init_steps=11_993_088, init_weight_min=0.2, init_weight_max=0.8,
                      init_weight_delta=0.3, num_select=6, max_episode_steps=500, ref_point=(-100.0,) * 3),
    # deep-sea-treasure: NO official setting; ours. Its 10 front points are each optimal for a narrow band of
    # linear preferences (the 23.7 treasure for w_treasure > 0.70 only, 17.8 for 0.666-0.672), so 11 preferences
    # (delta 0.1); the intermediate policies of stage 1 (evaluated after every update) fill the bands between.
    # Discount 0.99 for training and evaluation (the front is defined for it); one evaluation episode (env and
    # policy are deterministic); rollouts of 32 envs x 64 steps and 4 minibatches: more updates per transition on
    # a tiny problem (10 epochs stay: with 4, PPO stalls before the far treasures). 30 updates x 11 policies,
    # then 20 extension updates x 10 tasks (N 5). Measured: 100% of the true HV for seeds 0-4.
    "deep-sea-treasure-v0": dict(total_steps=1_085_440, init_steps=675_840, init_weight_delta=0.1, num_select=5,
                                 eval_interval=1, eval_episodes=1, gamma=0.99, eval_gamma=0.99, num_envs=32,
                                 num_steps=64, num_minibatches=4, ref_point=(0.0, -25.0)),
}

# The official scripts name MO-Gymnasium's v4 robots; our MuJoCo port registers MO-Gymnasium 1.3.2's v5 ids
# (envs/mujoco.py), which keep the robots, objectives and reward formulas: same settings.
ENV_DEFAULTS.update({
    "mo-hopper-2obj-v5": ENV_DEFAULTS["mo-hopper-2d-v4"], "mo-ant-2obj-v5": ENV_DEFAULTS["mo-ant-2d-v4"],
    "mo-humanoid-v5": ENV_DEFAULTS["mo-humanoid-v4"], "mo-hopper-v5": ENV_DEFAULTS["mo-hopper-v4"],
    "mo-ant-v5": ENV_DEFAULTS["mo-ant-v4"],
})

# =============================================================================================== 1. preferences
def generate_weights_batch_dfs(m: int, min_weight: float = 0.0, max_weight: float = 1.0,
                               delta_weight: float = 0.5) -> np.ndarray:
    """The official deterministic preference grid (PGMORL / C-MORL ``utils.generate_weights_batch_dfs``).

    Depth-first over objectives 0..m-2: each coordinate runs ``min, min + delta, ...`` while it is below
    ``max + delta/2`` and the partial sum stays below ``1 + delta/2``; the last coordinate is ``1 - sum``, so
    it may fall outside [min, max] (e.g. 3 objectives, [.2, .8], delta .3 gives (.2, .8, 0)). Float steps are
    accumulated as the official code does; round-off below 1e-9 is cleaned so each row is a valid preference.
    """
    if m < 1 or delta_weight <= 0:
        raise ValueError(f"generate_weights_batch_dfs: need m >= 1 and delta_weight > 0, got m={m}, delta={delta_weight}")
    out: list[list[float]] = []

    def dfs(prefix: list[float]) -> None:
        if len(prefix) == m - 1:
            out.append(prefix + [1.0 - float(np.sum(prefix))])
            return
        w = min_weight
        while w < max_weight + 0.5 * delta_weight and float(np.sum(prefix)) + w < 1.0 + 0.5 * delta_weight:
            dfs(prefix + [w])
            w += delta_weight

    dfs([])
    grid = np.asarray(out, np.float64)
    grid[np.abs(grid) < 1e-9] = 0.0
    if (grid < 0).any():
        raise ValueError(f"generate_weights_batch_dfs(m={m}, min={min_weight}, max={max_weight}, delta={delta_weight}) "
                         "produced a negative last weight; use max_weight <= 1")
    return grid


def plan_budget(config: CMORLConfig, m: int) -> dict[str, int]:
    """How a config's budget (real transitions) is spent on an m-objective env.

    ``M`` initial policies each get ``init_updates = init_steps // (M * batch)`` PPO updates; the rest is split
    into ``ext_updates`` constrained updates per (policy, objective) task (N * m tasks), run in ``rounds``
    rounds of at most ``update_iter``. ``used`` is the transitions that plan consumes (<= total_steps).
    """
    M = len(generate_weights_batch_dfs(m, config.init_weight_min, config.init_weight_max, config.init_weight_delta))
    batch = config.batch_size
    init_updates = config.init_steps // (M * batch)
    tasks = config.num_select * m
    ext_updates = max(0, (config.total_steps - init_updates * M * batch) // (tasks * batch))
    rounds = math.ceil(ext_updates / config.update_iter) if ext_updates else 0
    return {"M": M, "init_updates": init_updates, "ext_updates": ext_updates, "rounds": rounds, "tasks": tasks,
            "used": (init_updates * M + ext_updates * tasks) * batch}


def check_budget(config: CMORLConfig, plan: dict[str, int]) -> None:
    """The budget rule (docs/budgets.md): the Pareto initialisation's share must fit in the budget, and the budget
    hold at least one PPO update of the M initial policies; otherwise a one-line error naming the fields and the fix."""
    one = plan["M"] * config.batch_size
    update = (f"one PPO update of the {plan['M']} initial policies ({plan['M']} x num_envs {config.num_envs} x "
              f"num_steps {config.num_steps} = {one:,} transitions)")
    if config.init_steps > config.total_steps:
        fix = (f"lower --init-steps to <= {config.total_steps:,} (e.g. --init-steps "
               f"{max(one, config.total_steps * 2 // 3)}, the default 2/3 share) or raise --steps"
               if config.total_steps >= one else
               f"raise --steps to >= {one:,} (the budget must hold {update}) and give --init-steps <= --steps")
        raise ValueError(f"C-MORL: init_steps {config.init_steps:,} (the Pareto initialisation's share) is more than "
                         f"the whole budget total_steps {config.total_steps:,}; {fix}")
    if config.total_steps < one:
        raise ValueError(f"C-MORL: total_steps {config.total_steps:,} is less than {update}; raise --steps to "
                         f">= {one:,} or lower --num-envs/--num-steps")


# =============================================================================================== 2. policy buffer
def _take(tree: PyTree, idx: np.ndarray) -> PyTree:
    return jax.tree.map(lambda x: np.asarray(x)[idx], tree)


def buffer_insert(buffer: dict, candidates: dict, ref_point: np.ndarray | None, cap: int) -> dict:
    """Offer candidate policies to the buffer; returns the new buffer (same capacity, host numpy arrays).

    ``buffer`` and ``candidates`` are dicts of ``policy`` (a pytree with a leading axis), ``returns`` [., m],
    ``weights`` [., m] and ``valid`` [.] (bool). Keeps the non-dominated points of the union (existing entries
    win ties with equal returns), drops points below ``ref_point``, and above ``cap`` points keeps the ``cap``
    largest crowding distances (extremes first, stable order).
    """
    from morl.pareto import crowding_distance, non_dominated

    capacity = buffer["valid"].shape[0]
    pool = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)], axis=0), buffer, candidates)
    ok = np.asarray(pool["valid"], bool) & np.isfinite(pool["returns"]).all(axis=1)
    if ref_point is not None:
        ok &= (pool["returns"] >= ref_point).all(axis=1)
    idx = np.flatnonzero(ok)
    if idx.size:
        idx = idx[non_dominated(pool["returns"][idx], return_mask=True)]
    if idx.size > cap:
        cd = crowding_distance(pool["returns"][idx])
        keep = np.sort(np.argsort(-cd, kind="stable")[:cap])
        idx = idx[keep]
    if idx.size > capacity:  # cannot happen when capacity >= cap
        raise RuntimeError(f"policy buffer overflow: {idx.size} > {capacity}")
    pad = np.full(capacity - idx.size, idx[0] if idx.size else 0, np.int64)
    new = _take(pool, np.concatenate([idx, pad]).astype(np.int64))
    new["valid"] = np.arange(capacity) < idx.size
    return new


# =============================================================================================== 3. selection
def select_policies(returns: np.ndarray, valid: np.ndarray, history: np.ndarray, num_select: int) -> np.ndarray:
    """Buffer indices of the ``num_select`` valid entries with the largest crowding distance (extremes, at
    infinity, first; ties in buffer order), skipping objective tuples in ``history`` [H, m]. May return fewer."""
    from morl.pareto import crowding_distance

    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return idx
    cd = crowding_distance(returns[idx])
    chosen = []
    for i in idx[np.argsort(-cd, kind="stable")]:
        if history.size and np.any(np.all(history == returns[i], axis=1)):
            continue
        chosen.append(i)
        if len(chosen) == num_select:
            break
    return np.asarray(chosen, np.int64)


# =============================================================================================== 4. extension (IPO)
def constraint_threshold(g_ref, beta: float):
    """``beta * G`` for ``G >= 0``, extended to negative returns as ``G - (1 - beta) |G|`` (module docstring)."""
    return g_ref - (1.0 - beta) * jnp.abs(g_ref)


def discounted_horizon(traj, gamma: float):
    """Per member [P]: the discounted length ``sum_{k < H} gamma^k`` of a mean-length episode of the rollout
    (``H`` = transitions / episode starts). It turns a per-transition mean of ``(rho - 1) A`` into a change of
    the discounted return in the barrier's surrogate (`morl.agents.ppo.Barrier`)."""
    T, _, N = traj.terminated.shape
    starts = jnp.sum(traj.episode_length == 1, axis=(0, 2))
    length = T * N / jnp.maximum(starts, 1).astype(jnp.float32)
    if gamma >= 1.0:
        return length
    return (1.0 - gamma**length) / (1.0 - gamma)


def episode_returns(traj, fallback):
    """Mean discounted vector return of the episodes that ended in a rollout, per member: [P, m].

    ``traj`` leaves are [T, P, N, ...]; members with no finished episode get ``fallback`` [P, m]."""
    done = traj.terminated | traj.truncated
    count = jnp.sum(done, axis=(0, 2))
    total = jnp.sum(jnp.where(done[..., None], traj.episode_discounted_return, 0.0), axis=(0, 2))
    return jnp.where(count[:, None] > 0, total / jnp.maximum(count, 1)[:, None], fallback), count


# =============================================================================================== trainer
class CMORLTrainer(Trainer):
    """The chunked trainer (`morl.agent.Trainer`): each `update` is one PPO (stage 1) or barrier-weighted PPO
    (extension) update of every policy of the current stage, as one vmapped, jitted program on pure-JAX envs,
    followed, when due, by an evaluation and a buffer insert; selection runs between extension rounds.

    Populations: stage 1 has M members, the extension N * L tasks. When the two sizes are within 25% of each
    other, the smaller is padded with inactive members (trained but never evaluated into the buffer nor counted
    in ``env_steps``) so that both stages share one compiled program.
    """

    def __init__(self, config: CMORLConfig, env, env_params=None):
        self.config = cfg = config
        self.env = env
        self.is_host = bool(getattr(env, "is_host", False))
        m = self.m = int(env.reward_dim)
        if m < 2:
            raise ValueError(f"C-MORL needs >= 2 objectives; {env.name} has {m}")
        self.ppo = PPO.for_env(env, cfg.ppo_config())
        ppo = self.ppo

        def act(p, w, obs, key):  # deterministic (mean / argmax) action of one stored policy; w is unused
            return ppo.act(p, obs)

        # built once: the evaluator caches its compiled rollout per act function
        self._act = act
        # episode cap
        if self.is_host:
            self.env_params = None
            if cfg.max_episode_steps is not None and cfg.max_episode_steps != env.max_steps:
                warnings.warn(f"C-MORL: max_episode_steps={cfg.max_episode_steps} cannot be applied to the host env "
                              f"{env.name} (its time limit is {env.max_steps}); make it with "
                              f"morl.make('gym:...', max_episode_steps=...) to change it", stacklevel=2)
            self.eval_steps = int(env.max_steps or 1000)
        else:
            params = env.default_params if env_params is None else env_params
            if cfg.max_episode_steps is not None:
                params = params.replace(max_steps=int(cfg.max_episode_steps))
            self.env_params = params
            self.eval_steps = int(params.max_steps)
        ref = cfg.ref_point if cfg.ref_point is not None else env.ref_point
        self.ref_point = None if ref is None else np.asarray(ref, np.float64)
        if self.ref_point is not None and self.ref_point.shape != (m,):
            raise ValueError(f"C-MORL: ref_point {tuple(self.ref_point)} has {self.ref_point.size} entries for "
                             f"{m} objectives")
        if cfg.policy_buffer < 1 or cfg.num_select < 1 or cfg.update_iter < 1 or cfg.eval_interval < 1:
            raise ValueError("C-MORL: policy_buffer, num_select, update_iter and eval_interval must be >= 1")
        if not 0.0 < cfg.beta <= 1.0 or cfg.barrier_t <= 0 or cfg.slack_floor <= 0:
            raise ValueError(f"C-MORL: need 0 < beta <= 1, barrier_t > 0 and slack_floor > 0, got beta={cfg.beta}, "
                             f"t={cfg.barrier_t}, slack_floor={cfg.slack_floor}")
        # 1. preference grid and budget (real transitions)
        self.init_weights = generate_weights_batch_dfs(m, cfg.init_weight_min, cfg.init_weight_max,
                                                       cfg.init_weight_delta)
        plan = plan_budget(cfg, m)
        check_budget(cfg, plan)
        self.M, self.N, self.L = plan["M"], int(cfg.num_select), m
        self.init_updates, self.ext_updates, self.rounds = plan["init_updates"], plan["ext_updates"], plan["rounds"]
        if self.init_updates < 1:
            raise ValueError(f"C-MORL: init_steps={cfg.init_steps} is less than one update of the {self.M} initial "
                             f"policies ({self.M} x {cfg.batch_size} transitions); raise init_steps or lower "
                             "num_envs/num_steps")
        # population sizes (padded to share one compiled program when close)
        lo, hi = sorted((self.M, self.N * self.L))
        shared = self.rounds > 0 and hi <= 1.25 * lo
        self.P_init = hi if shared else self.M
        self.P_ext = hi if shared else self.N * self.L
        self.capacity = cfg.policy_buffer + max(self.P_init, self.P_ext)
        # initialisation runs once: compile it without LLVM optimisations (seconds saved on a CPU)
        self._init_pop = jax.jit(jax.vmap(self.ppo.init), compiler_options={"xla_backend_optimization_level": 0})
        self._restart = jax.jit(jax.vmap(self.ppo.restart))
        self._fns: dict[int, dict] = {}
        for P in sorted({self.P_init, self.P_ext}):
            self._fns[P] = self._compile(P)

    # ------------------------------------------------------------------ compiled pieces (one set per population size)
    def _compile(self, P: int) -> dict:
        cfg, ppo, env, params = self.config, self.ppo, self.env, self.env_params

        def eval_policy(pp, obs, key):
            return ppo.act(pp, obs), ()

        # the training rollout's episode statistics are discounted with eval_gamma: the extension's constraint
        # values are measured on the same scale as the buffer's returns (PPO learns with its own gamma)
        train = make_rollout(env, ppo.policy, cfg.num_envs, cfg.num_steps, gamma=cfg.eval_gamma, population=P)
        evalr = make_rollout(env, eval_policy, cfg.eval_episodes, self.eval_steps, gamma=cfg.eval_gamma,
                             population=P, emit="summary")
        vupdate = jax.vmap(ppo.update, in_axes=(0, 0, 0, None, 0, 0))
        vpp = jax.vmap(ppo.policy_params)
        beta, t = cfg.beta, cfg.barrier_t

        def update(pop, traj, ctrl, lr, key):
            """PPO update of every member. Extension members (``ctrl["ipo"]``) maximise objective l with the log
            barrier on the others, its slack measured on this rollout's finished episodes."""
            g_hat, episodes = episode_returns(traj, ctrl["g_prev"])
            first, ipo, onehot = ctrl["first"], ctrl["ipo"], ctrl["onehot"]
            # the round's thresholds: beta * G_j(pi_r), pi_r's return measured on the task's first rollout
            threshold = jnp.where(first, constraint_threshold(g_hat, beta), ctrl["threshold"])
            floor = jnp.where(first, cfg.slack_floor * jnp.maximum((1.0 - beta) * jnp.abs(g_hat), ctrl["scale_eps"]),
                              ctrl["floor"])
            weights = jnp.where(ipo, onehot.astype(jnp.float32), ctrl["weights"])
            mask = jnp.where(ipo, 1.0 - onehot.astype(jnp.float32), 0.0)
            barrier = Barrier(mask=mask, slack=g_hat - threshold, floor=floor, t=jnp.full((P,), t, jnp.float32),
                              kappa=discounted_horizon(traj, cfg.eval_gamma))
            member_first = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)  # [T, P, N] -> [P, T, N]
            pop, stats = vupdate(pop, member_first, weights, lr, jax.random.split(key, P), barrier)
            info = {"g_hat": g_hat, "episodes": episodes, "threshold": threshold, "floor": floor, "weights": weights,
                    "kappa": barrier.kappa}
            return pop, stats, info

        def summarize(summary):
            finished = jnp.mean((summary.episodes > 0).astype(jnp.float32))
            return jnp.mean(summary.first_discounted_return, axis=1), finished

        if self.is_host:
            update_jit, vpp_jit, summarize_jit = jax.jit(update), jax.jit(vpp), jax.jit(summarize)

            def iterate(pop, rstate, ctrl, lr, key):
                k_roll, k_upd = jax.random.split(key)
                rstate, traj = train.run(vpp_jit(pop), rstate, k_roll)
                pop, stats, info = update_jit(pop, traj, ctrl, lr, k_upd)
                return pop, rstate, stats, info

            def evaluate(pop, key):
                state = evalr.init(key)
                _, summary = evalr.run(vpp_jit(pop), state, key)
                return summarize_jit(summary)

            reset = train.init
        else:
            @jax.jit
            def iterate(pop, rstate, ctrl, lr, key):
                k_roll, k_upd = jax.random.split(key)
                rstate, traj = train.run.pure(vpp(pop), rstate, k_roll, params)
                pop, stats, info = update(pop, traj, ctrl, lr, k_upd)
                return pop, rstate, stats, info

            @jax.jit
            def evaluate(pop, key):
                k_init, k_run = jax.random.split(key)
                state = evalr.init.pure(k_init, params)
                _, summary = evalr.run.pure(vpp(pop), state, k_run, params)
                return summarize(summary)

            reset = jax.jit(lambda key: train.init.pure(key, params))
        return {"iterate": iterate, "evaluate": evaluate, "reset": reset}

    # ------------------------------------------------------------------ state
    @staticmethod
    def _stored(ppo_state: PPOState) -> dict:
        """What the buffer keeps of a policy: its networks and normalisers (not the optimiser)."""
        return {"params": ppo_state.params, "obs_rms": ppo_state.obs_rms, "ret_rms": ppo_state.ret_rms}

    def _empty_buffer(self) -> dict:
        proto = jax.eval_shape(self.ppo.init, jax.random.PRNGKey(0))
        policy = jax.tree.map(lambda s: np.zeros((self.capacity,) + s.shape, s.dtype), self._stored(proto))
        return {"policy": policy, "returns": np.zeros((self.capacity, self.m)),
                "weights": np.zeros((self.capacity, self.m)), "valid": np.zeros(self.capacity, bool)}

    def _ctrl(self, P: int, weights=None, ipo: bool = False, first: bool = False, onehot=None, threshold=None,
              floor=None, g_prev=None, scale_eps=None) -> dict:
        m = self.m
        z = np.zeros((P, m), np.float32)
        return {"weights": z if weights is None else np.asarray(weights, np.float32),
                "ipo": np.bool_(ipo), "first": np.bool_(first),
                "onehot": np.zeros((P, m), bool) if onehot is None else onehot,
                "threshold": z if threshold is None else np.asarray(threshold, np.float32),
                "floor": np.ones((P, m), np.float32) if floor is None else np.asarray(floor, np.float32),
                "g_prev": z if g_prev is None else np.asarray(g_prev, np.float32),
                "scale_eps": np.zeros(m, np.float32) if scale_eps is None else np.asarray(scale_eps, np.float32)}

    def init(self, key: jax.Array) -> dict:
        k_pop, k_env, k_eval, k_run = jax.random.split(key, 4)
        P = self.P_init
        pop = self._init_pop(jax.random.split(k_pop, P))
        weights = np.concatenate([self.init_weights, np.repeat(self.init_weights[-1:], P - self.M, axis=0)])
        return {
            "key": k_run, "eval_key": k_eval,
            "phase": np.int32(PHASE_INIT), "iteration": np.int32(0), "round": np.int32(0),
            "env_steps": np.int64(0), "eval_episodes": np.int64(0),
            "pop": pop, "rollout": self._fns[P]["reset"](k_env), "ctrl": self._ctrl(P, weights=weights),
            "active": np.arange(P) < self.M,
            "buffer": self._empty_buffer(),
            "history": np.full((self.N * (self.rounds + 1), self.m), np.nan), "history_count": np.int32(0),
            "task": self._empty_tasks(pop),  # extension tasks, filled at the start of each round
        }

    def _empty_tasks(self, pop: PPOState) -> dict:
        """Placeholder extension tasks (copies of the first initial policy), so the state's structure is fixed."""
        P = self.P_ext
        return {"pop": jax.tree.map(lambda x: np.repeat(np.asarray(x)[:1], P, axis=0), pop),
                "rollout": self._fns[P]["reset"](jax.random.PRNGKey(0)), "ctrl": self._ctrl(P),
                "active": np.zeros(P, bool), "root": np.zeros(P, np.int64), "g_ref": np.zeros((P, self.m)),
                "returns": np.zeros((P, self.m)), "updates": np.int32(0)}

    # ------------------------------------------------------------------ protocol
    def done(self, state: dict) -> bool:
        return int(state["phase"]) == PHASE_DONE

    def env_steps(self, state: dict) -> int:
        return int(state["env_steps"])

    def update(self, state: dict) -> tuple[dict, dict[str, float]]:
        phase = int(state["phase"])
        if phase == PHASE_INIT:
            return self._init_update(state)
        if phase == PHASE_EXTEND:
            return self._extension_update(state)
        return state, self._logs(state)

    # ---- 1. Pareto initialisation: one PPO update of all M policies (+ evaluation when due)
    def _init_update(self, state: dict) -> tuple[dict, dict]:
        cfg, fns = self.config, self._fns[self.P_init]
        j = int(state["iteration"])
        key, k_it = jax.random.split(state["key"])
        lr = linear_lr(cfg.lr, j, self.init_updates)
        pop, rollout, stats, info = fns["iterate"](state["pop"], state["rollout"], state["ctrl"], lr, k_it)
        state = dict(state, key=key, pop=pop, rollout=rollout, iteration=np.int32(j + 1),
                     env_steps=np.int64(state["env_steps"] + self.M * cfg.batch_size))
        last = j + 1 == self.init_updates
        if (j + 1) % cfg.eval_interval == 0 or last:
            returns = self._evaluate(fns, pop, state)
            state["eval_episodes"] = np.int64(state["eval_episodes"] + self.M * cfg.eval_episodes)
            state["buffer"] = self._offer(state["buffer"], pop, returns, state["ctrl"]["weights"], state["active"])
        if last:
            state = self._start_round(state)
        return state, self._logs(state, stats, info, state["active"])

    # ---- 2. buffer
    def _evaluate(self, fns, pop, state) -> np.ndarray:
        returns, finished = fns["evaluate"](pop, state["eval_key"])
        if float(finished) < 1.0:
            raise RuntimeError(f"C-MORL: evaluation episodes on {self.env.name} did not end within {self.eval_steps} "
                               "steps; set max_episode_steps (a time limit)")
        return np.asarray(returns, np.float64)

    def _offer(self, buffer, pop, returns, weights, active) -> dict:
        cand = {"policy": _take(self._stored(pop), np.arange(len(active))), "returns": returns,
                "weights": np.asarray(weights, np.float64), "valid": np.asarray(active, bool)}
        return buffer_insert(buffer, cand, self.ref_point, self.config.policy_buffer)

    # ---- 3. selection, and the start of an extension round
    def _start_round(self, state: dict) -> dict:
        if int(state["round"]) >= self.rounds:
            return dict(state, phase=np.int32(PHASE_DONE))
        buf = state["buffer"]
        count = int(state["history_count"])
        chosen = select_policies(buf["returns"], buf["valid"], state["history"][:count], self.N)
        if chosen.size == 0:  # nothing left to extend: the rest of the budget cannot be used
            return dict(state, phase=np.int32(PHASE_DONE))
        history = state["history"].copy()
        history[count:count + chosen.size] = buf["returns"][chosen]
        m, P = self.m, self.P_ext
        n_tasks = chosen.size * m
        roots = np.concatenate([np.repeat(chosen, m), np.full(P - n_tasks, chosen[0])])
        objective = np.concatenate([np.tile(np.arange(m), chosen.size), np.zeros(P - n_tasks, np.int64)])
        active = np.arange(P) < n_tasks
        g_ref = buf["returns"][roots]
        # an objective's scale in the buffer bounds the slack floor away from 0 when G_j(pi_r) = 0
        scale = np.max(np.abs(buf["returns"][buf["valid"]]), axis=0)
        stored = _take(buf["policy"], roots)
        key, k_env = jax.random.split(state["key"])
        pop = state["task"]["pop"].replace(params=stored["params"], obs_rms=stored["obs_rms"],
                                           ret_rms=stored["ret_rms"])
        pop = self._restart(jax.tree.map(jnp.asarray, pop))
        # until the first rollout measures pi_r's return, use its evaluated return
        ctrl = self._ctrl(P, ipo=True, first=True, onehot=np.eye(m, dtype=bool)[objective],
                          threshold=constraint_threshold(g_ref, self.config.beta), g_prev=g_ref,
                          scale_eps=1e-3 * scale)
        task = {"pop": pop, "rollout": self._fns[P]["reset"](k_env), "ctrl": ctrl, "active": active,
                "root": roots.astype(np.int64), "g_ref": g_ref, "returns": g_ref, "updates": np.int32(0)}
        return dict(state, key=key, phase=np.int32(PHASE_EXTEND), task=task, history=history,
                    history_count=np.int32(count + chosen.size))

    # ---- 4. Pareto extension: one barrier-weighted update of all N*L tasks, evaluated, offered to the buffer
    def _extension_update(self, state: dict) -> tuple[dict, dict]:
        cfg, task = self.config, state["task"]
        fns = self._fns[self.P_ext]
        key, k_it = jax.random.split(state["key"])
        pop, rollout, stats, info = fns["iterate"](task["pop"], task["rollout"], task["ctrl"],
                                                   jnp.float32(cfg.extension_lr), k_it)
        returns = self._evaluate(fns, pop, state)
        active = task["active"]
        n_active = int(active.sum())
        weights = np.asarray(info["weights"], np.float64)
        buffer = self._offer(state["buffer"], pop, returns, weights / weights.sum(axis=1, keepdims=True), active)
        ctrl = dict(task["ctrl"], first=np.bool_(False), g_prev=np.asarray(info["g_hat"]),
                    threshold=np.asarray(info["threshold"]), floor=np.asarray(info["floor"]))
        k = int(task["updates"]) + 1
        task = dict(task, pop=pop, rollout=rollout, ctrl=ctrl, returns=returns, updates=np.int32(k))
        state = dict(state, key=key, task=task, buffer=buffer,
                     env_steps=np.int64(state["env_steps"] + n_active * cfg.batch_size),
                     eval_episodes=np.int64(state["eval_episodes"] + n_active * cfg.eval_episodes))
        r = int(state["round"])
        if k == min(cfg.update_iter, self.ext_updates - r * cfg.update_iter):
            state = self._start_round(dict(state, round=np.int32(r + 1)))
        return state, self._logs(state, stats, info, active)

    # ------------------------------------------------------------------ 5. assignment / solution
    def solution(self, state: dict) -> Solution:
        buf = state["buffer"]
        idx = np.flatnonzero(buf["valid"])
        if idx.size == 0:
            raise RuntimeError("C-MORL: the policy buffer is empty (no policy evaluated yet, or every return is "
                               "below the reference point)")
        stored = _take(buf["policy"], idx)
        params = jax.tree.map(jnp.asarray, {"actor": stored["params"]["actor"], "obs_rms": stored["obs_rms"]})
        return Solution(act=self._act, params=params, candidate_weights=buf["weights"][idx],
                        candidate_returns=buf["returns"][idx])

    def front(self, state: dict) -> np.ndarray:
        """The buffer's vector returns (the current front estimate), [F, m]."""
        return state["buffer"]["returns"][state["buffer"]["valid"]]

    def _logs(self, state: dict, stats: dict | None = None, info: dict | None = None, active=None) -> dict[str, float]:
        logs: dict[str, float] = {"env_steps": float(state["env_steps"]), "phase": float(state["phase"]),
                                  "round": float(state["round"]), "eval_episodes": float(state["eval_episodes"]),
                                  "buffer_size": float(state["buffer"]["valid"].sum())}
        front = self.front(state)
        if self.ref_point is not None and len(front):
            from morl.metrics import hypervolume

            logs["buffer_hv"] = float(hypervolume(front, self.ref_point, strict=False))
        if stats is not None:
            sel = np.asarray(active, bool)
            logs.update({k: float(np.mean(np.asarray(v)[sel])) for k, v in stats.items()})
        return logs


def make_trainer(config: CMORLConfig, env, env_params=None) -> CMORLTrainer:
    return CMORLTrainer(config, env, env_params)


SPEC = register_agent(AgentSpec(
    name="c-morl",
    config_cls=CMORLConfig,
    make_trainer=make_trainer,
    summary="C-MORL (Liu et al., ICLR 2025): vmapped PPO Pareto initialisation + IPO-constrained Pareto extension",
    action_kinds=("discrete", "continuous"),
    env_defaults=ENV_DEFAULTS,
    budget_field="total_steps",
))
