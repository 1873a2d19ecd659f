"""C-MORL: constrained multi-objective RL (Liu et al., ICLR 2025), in JAX.

The module reads top to bottom like the paper's Algorithm 1: a PPO population trained on a preference grid
(Pareto initialisation), a policy buffer of every evaluated policy, selection by crowding distance, and Pareto
extension by IPO-constrained PPO updates (`Barrier`); a preference is served by the buffer policy with the best
``w . G``. Budgets count real training transitions (docs/budgets.md).

How this follows the paper and the official code, and where and why it departs from them:
docs/algorithms/c-morl.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.agent import AgentSpec, Trainer, check_config, register_agent
from morl.agents.ppo import PPO, PPOConfig, PPOPopulation, PPOState, linear_lr, make_population, wide_batch
from morl.agents.preferences import generate_weights_batch_dfs
from morl.rollout import RolloutState, episode_limit, finished_episode_returns
from morl.solution import Solution

PyTree = Any

PHASE_INIT, PHASE_EXTEND, PHASE_DONE = 0, 1, 2


# =============================================================================================== config
@dataclass(frozen=True)
class CMORLConfig:
    """C-MORL settings. Defaults: the official code's (``RuohLiuq/C-MORL`` ``run.py``, docs/sources.md), its 2-objective
    MuJoCo script for the budget and grid; per-env settings: `ENV_DEFAULTS`. Budget rule (docs/budgets.md):
    ``total_steps`` (``--steps``) bounds every real training transition, ``init_steps`` (<= ``total_steps``) is the
    Pareto initialisation's share. Evaluation episodes are counted apart (``eval_episodes`` log)."""

    # ---- budget, in real training transitions (what the official 2-objective MuJoCo runs, "1.5M / 1.0M steps",
    #      consume: 325 PPO updates x 6 policies, then 97 constrained updates x 10 tasks, 4096 transitions each)
    total_steps: int = 11_960_320
    init_steps: int = 7_987_200  # Pareto initialisation's share
    # ---- 1. Pareto initialisation: preference grid of generate_weights_batch_dfs(min, max, delta)
    init_weight_min: float = 0.0
    init_weight_max: float = 1.0
    init_weight_delta: float = 0.2  # 2 objectives -> 6 preferences [0,1], [.2,.8], ..., [1,0]
    # ---- 2./3. policy buffer and selection
    policy_buffer: int = 200  # buffer cap (crowding-distance pruning above it)
    num_select: int = 5  # N policies extended per round
    # ---- 4. Pareto extension (IPO)
    beta: float = 0.9  # constraint G_j >= beta * G_j(pi_r)
    barrier_t: float = 20.0  # log-barrier parameter t
    update_iter: int = 20  # K: constrained updates per (policy, objective) and round
    extension_lr: float = 3e-4  # constant (docs/algorithms/c-morl.md)
    slack_floor: float = 0.01  # below this fraction of the initial slack the barrier continues linearly
    # ---- evaluation of the policies offered to the buffer
    eval_interval: int = 10  # stage-1 updates between evaluations (official: 10; 1 for discrete envs)
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

    def __post_init__(self):
        check_config(
            "C-MORL",
            self,
            at_least_one=("policy_buffer", "num_select", "update_iter", "eval_interval"),
            unit_interval=("beta",),
        )
        if self.barrier_t <= 0 or self.slack_floor <= 0:
            raise ValueError(
                f"C-MORL config: barrier_t and slack_floor must be > 0, got {self.barrier_t!r}, {self.slack_floor!r}"
            )

    def ppo_config(self) -> PPOConfig:
        return PPOConfig.of(self)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


# Official per-env settings (docs/sources.md), budgets in the official code's real transitions (`plan_budget`):
# stage 1: M * (nominal_init // M // 512) * 4096,
# extension: N * L * ((nominal_total - nominal_init) // N // 512 // L) * 4096.
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    # minecart: 3 objectives, 6 preferences, N 6, nominal 0.5M / 0.2M -> 65 x 6 init + 32 x 18 extension updates
    "minecart-v0": dict(
        total_steps=3_956_736,
        init_steps=1_597_440,
        init_weight_delta=0.5,
        num_select=6,
        eval_interval=1,
        eval_gamma=0.98,
        max_episode_steps=500,
        ref_point=(-1.0, -1.0, -200.0),
    ),
    # fruit-tree (depth 6 there): corners -> 6 preferences, N 6, nominal 0.5M / 0.1M -> 32 x 6 + 21 x 36 updates
    "fruit-tree-v0": dict(
        total_steps=3_883_008,
        init_steps=786_432,
        init_weight_delta=1.0,
        num_select=6,
        eval_interval=1,
        eval_gamma=0.99,
        ref_point=(-1.0,) * 6,
    ),
    # lunar-lander script: corners -> 4 preferences, N 6, nominal 0.5M / 0.2M -> 97 x 4 + 24 x 24 updates
    "mo-lunar-lander-v2": dict(
        total_steps=3_948_544,
        init_steps=1_589_248,
        init_weight_delta=1.0,
        num_select=6,
        eval_interval=1,
        eval_gamma=0.99,
        max_episode_steps=500,
        ref_point=(-101.0, -1001.0, -101.0, -101.0),
    ),
    # MuJoCo, 2 objectives: 6 preferences (ant 3), N 5, nominal 1.5M / 1.0M -> 325 x 6 (ant 651 x 3) + 97 x 10 updates
    "mo-hopper-2d-v4": dict(
        total_steps=11_960_320,
        init_steps=7_987_200,
        init_weight_delta=0.2,
        num_select=5,
        eval_episodes=5,
        max_episode_steps=500,
        ref_point=(-100.0, -100.0),
    ),
    "mo-ant-2d-v4": dict(
        total_steps=11_972_608,
        init_steps=7_999_488,
        init_weight_delta=0.5,
        num_select=5,
        max_episode_steps=500,
        ref_point=(-100.0, -100.0),
    ),
    "mo-humanoid-v4": dict(
        total_steps=11_960_320,
        init_steps=7_987_200,
        init_weight_delta=0.2,
        num_select=5,
        max_episode_steps=500,
        ref_point=(-100.0, -100.0),
    ),
    # 3 objectives: [.2, .8] delta .3 -> 6 preferences, N 6, nominal 2.0M / 1.5M -> 488 x 6 + 54 x 18 updates
    "mo-hopper-v4": dict(
        total_steps=15_974_400,
        init_steps=11_993_088,
        init_weight_min=0.2,
        init_weight_max=0.8,
        init_weight_delta=0.3,
        num_select=6,
        max_episode_steps=500,
        ref_point=(-100.0,) * 3,
    ),
    "mo-ant-v4": dict(
        total_steps=15_974_400,
        init_steps=11_993_088,
        init_weight_min=0.2,
        init_weight_max=0.8,
        init_weight_delta=0.3,
        num_select=6,
        max_episode_steps=500,
        ref_point=(-100.0,) * 3,
    ),
    # deep-sea-treasure: no official setting; ours, with reasons, in docs/algorithms/c-morl.md (measured: 100% of
    # the true HV for seeds 0-4)
    "deep-sea-treasure-v0": dict(
        total_steps=1_085_440,
        init_steps=675_840,
        init_weight_delta=0.1,
        num_select=5,
        eval_interval=1,
        eval_episodes=1,
        gamma=0.99,
        eval_gamma=0.99,
        num_envs=32,
        num_steps=64,
        num_minibatches=4,
        ref_point=(0.0, -25.0),
    ),
}

# MO-Gymnasium 1.3.2's v5 ids (the MuJoCo port's) keep the v4 robots, objectives and rewards: same settings
ENV_DEFAULTS.update(
    {
        "mo-hopper-2obj-v5": ENV_DEFAULTS["mo-hopper-2d-v4"],
        "mo-ant-2obj-v5": ENV_DEFAULTS["mo-ant-2d-v4"],
        "mo-humanoid-v5": ENV_DEFAULTS["mo-humanoid-v4"],
        "mo-hopper-v5": ENV_DEFAULTS["mo-hopper-v4"],
        "mo-ant-v5": ENV_DEFAULTS["mo-ant-v4"],
    }
)


# =============================================================================================== 1. budget
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
    return {
        "M": M,
        "init_updates": init_updates,
        "ext_updates": ext_updates,
        "rounds": rounds,
        "tasks": tasks,
        "used": (init_updates * M + ext_updates * tasks) * batch,
    }


def check_budget(config: CMORLConfig, plan: dict[str, int]) -> None:
    """The budget rule (docs/budgets.md): the Pareto initialisation's share must fit in the budget, and the budget
    hold at least one PPO update of the M initial policies; otherwise a one-line error naming the fields and the fix."""
    one = plan["M"] * config.batch_size
    update = (
        f"one PPO update of the {plan['M']} initial policies ({plan['M']} x num_envs {config.num_envs} x "
        f"num_steps {config.num_steps} = {one:,} transitions)"
    )
    if config.init_steps > config.total_steps:
        fix = (
            f"lower --init-steps to <= {config.total_steps:,} (e.g. --init-steps "
            f"{max(one, config.total_steps * 2 // 3)}, the default 2/3 share) or raise --steps"
            if config.total_steps >= one
            else f"raise --steps to >= {one:,} (the budget must hold {update}) and give --init-steps <= --steps"
        )
        raise ValueError(
            f"C-MORL: init_steps {config.init_steps:,} (the Pareto initialisation's share) is more than "
            f"the whole budget total_steps {config.total_steps:,}; {fix}"
        )
    if config.total_steps < one:
        raise ValueError(
            f"C-MORL: total_steps {config.total_steps:,} is less than {update}; raise --steps to "
            f">= {one:,} or lower --num-envs/--num-steps"
        )


# =============================================================================================== 2. policy buffer
def _take(tree: PyTree, idx: np.ndarray) -> PyTree:
    return jax.tree.map(lambda x: np.asarray(x)[idx], tree)


@struct.dataclass
class PolicyBuffer:
    """Evaluated policies (host numpy arrays, a leading capacity axis); rows with ``valid`` False are padding."""

    policy: PyTree  # what the buffer keeps of a policy (`CMORLTrainer._stored`)
    returns: np.ndarray  # [C, m] deterministic evaluation returns
    weights: np.ndarray  # [C, m] the preference the policy was trained with
    valid: np.ndarray  # [C] bool


def buffer_insert(
    buffer: PolicyBuffer, candidates: PolicyBuffer, ref_point: np.ndarray | None, cap: int
) -> PolicyBuffer:
    """Offer candidate policies to the buffer; returns the new buffer (same capacity, host numpy arrays).

    Keeps the non-dominated points of the union (existing entries
    win ties with equal returns), drops points below ``ref_point``, and above ``cap`` points keeps the ``cap``
    largest crowding distances (extremes first, stable order).
    """
    from morl.pareto import crowding_distance, non_dominated

    capacity = buffer.valid.shape[0]
    pool = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)], axis=0), buffer, candidates)
    ok = np.asarray(pool.valid, bool) & np.isfinite(pool.returns).all(axis=1)
    if ref_point is not None:
        ok &= (pool.returns >= ref_point).all(axis=1)
    idx = np.flatnonzero(ok)
    if idx.size:
        idx = idx[non_dominated(pool.returns[idx], return_mask=True)]
    if idx.size > cap:
        cd = crowding_distance(pool.returns[idx])
        keep = np.sort(np.argsort(-cd, kind="stable")[:cap])
        idx = idx[keep]
    if idx.size > capacity:  # cannot happen when capacity >= cap
        raise RuntimeError(f"policy buffer overflow: {idx.size} > {capacity}")
    pad = np.full(capacity - idx.size, idx[0] if idx.size else 0, np.int64)
    new = _take(pool, np.concatenate([idx, pad]).astype(np.int64))
    return new.replace(valid=np.arange(capacity) < idx.size)


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
@struct.dataclass
class Barrier:
    """Log-barrier constraints ``G_j >= thr_j`` added to a PPO update (IPO), a `morl.agents.ppo.Penalty`.

    The objective becomes ``PPO surrogate + (1/t) sum_j mask_j * log(slack_j(theta))`` with the slack followed
    through the update by the importance-sampled surrogate ``slack_j(theta) = slack_j + kappa * E[(rho - 1) A_j]``
    (``A_j`` on the raw reward scale, ``kappa`` the discounted episode length that turns a per-step mean into a
    change of return). Below ``floor_j`` the log is continued linearly, so a violated constraint keeps a finite,
    restoring gradient. The barrier is divided by ``kappa`` and by the scale of the standardised advantage so it
    keeps the paper's units relative to the objective term. All fields are [m] except the scalars ``t``, ``kappa``.
    """

    mask: jax.Array  # 1.0 for constrained objectives
    slack: jax.Array  # G_j(pi_old) - thr_j, measured on the rollout
    floor: jax.Array  # > 0
    t: jax.Array
    kappa: jax.Array

    @staticmethod
    def none(m: int) -> Barrier:
        """No constraint (every mask 0): the barrier term is 0."""
        return Barrier(
            jnp.zeros((m,), jnp.float32),
            jnp.zeros((m,), jnp.float32),
            jnp.ones((m,), jnp.float32),
            jnp.float32(1.0),
            jnp.float32(1.0),
        )

    def __call__(self, ratio: jax.Array, adv_raw: jax.Array, adv_scale: jax.Array) -> jax.Array:
        slack = self.slack + self.kappa * jnp.mean((ratio - 1.0)[:, None] * adv_raw, axis=0)
        return jnp.sum(self.mask * extended_log(slack, self.floor)) / (self.t * self.kappa * adv_scale)


def extended_log(s: jax.Array, floor: jax.Array) -> jax.Array:
    """``log(s)`` above ``floor``, its tangent line below (finite everywhere, C1)."""
    return jnp.where(s >= floor, jnp.log(jnp.maximum(s, floor)), jnp.log(floor) + (s - floor) / floor)


def constraint_threshold(g_ref, beta: float):
    """``beta * G`` for ``G >= 0``, extended to negative returns as ``G - (1 - beta) |G|`` (same relative slack).
    Jax or float32 numpy arrays (the same float32 operations; numpy compiles nothing)."""
    return g_ref - (1.0 - beta) * abs(g_ref)


def discounted_horizon(traj, gamma: float):
    """Per member [P]: the discounted length ``sum_{k < H} gamma^k`` of a mean-length episode of the rollout
    (``H`` = transitions / episode starts). It turns a per-transition mean of ``(rho - 1) A`` into a change of
    the discounted return in the barrier's surrogate (`Barrier`)."""
    T, _, N = traj.terminated.shape
    starts = jnp.sum(traj.episode_length == 1, axis=(0, 2))
    length = T * N / jnp.maximum(starts, 1).astype(jnp.float32)
    if gamma >= 1.0:
        return length
    return (1.0 - gamma**length) / (1.0 - gamma)


# =============================================================================================== state
@struct.dataclass
class Control:
    """What each member's update needs besides its policy, leaves [P, ...] (host numpy between updates)."""

    weights: np.ndarray  # [P, m] preference (stage 1)
    ipo: np.ndarray  # scalar bool: extension members (objective ``onehot``, barrier on the others)
    first: np.ndarray  # scalar bool: the task's first update (measures pi_r's return, sets the thresholds)
    onehot: np.ndarray  # [P, m] bool: the objective each extension task maximises
    threshold: np.ndarray  # [P, m] constraint thresholds
    floor: np.ndarray  # [P, m] where the barrier's log turns linear
    g_prev: np.ndarray  # [P, m] last measured returns (used when a rollout finished no episode)
    scale_eps: np.ndarray  # [m] lower bound of the slack floor (1e-3 of each objective's scale in the buffer)


@struct.dataclass
class ExtensionTasks:
    """The N * L extension tasks of the current round (placeholders before the first)."""

    pop: PPOState
    rollout: RolloutState
    ctrl: Control
    active: np.ndarray  # [P] bool: real tasks (the rest pads the population)
    root: np.ndarray  # [P] buffer index of the policy each task extends
    g_ref: np.ndarray  # [P, m] the root's buffer return
    returns: np.ndarray  # [P, m] the latest evaluation
    updates: np.ndarray  # constrained updates done this round


@struct.dataclass
class CMORLState:
    key: jax.Array
    eval_key: jax.Array
    phase: np.ndarray  # PHASE_INIT, PHASE_EXTEND or PHASE_DONE
    iteration: np.ndarray  # stage-1 updates done
    round: np.ndarray  # extension rounds done
    env_steps: np.ndarray  # real training transitions
    eval_episodes: np.ndarray
    pop: PPOState  # stage-1 population
    rollout: RolloutState
    ctrl: Control
    active: np.ndarray  # [P_init] bool: real stage-1 members
    buffer: PolicyBuffer
    history: np.ndarray  # [H, m] returns of every policy selected so far (never re-selected)
    history_count: np.ndarray
    task: ExtensionTasks


# =============================================================================================== trainer
_PROGRAMS: dict[tuple, PPOPopulation] = {}  # compiled populations by `_program_key`, oldest first
_PROGRAMS_KEPT = 4


def _program_key(env, env_params, config: CMORLConfig, P: int) -> tuple | None:
    """What a population's programs depend on: the env (class and pickled content), its parameters, the config and
    the size; None (no sharing) for host envs, whose vector env is not a value."""
    if getattr(env, "is_host", False):
        return None
    import pickle

    try:
        return type(env), pickle.dumps(env), pickle.dumps(env_params), config, P
    except Exception:  # an env that does not pickle gets its own programs
        return None


class CMORLTrainer(Trainer):
    """Each `update` is one PPO (stage 1) or barrier-weighted PPO (extension) update of every policy of the
    current stage (`PPOPopulation`), then, when due, an evaluation and a buffer insert; selection runs between
    extension rounds. Populations within 25% of each other in size are padded to share one compiled program."""

    def __init__(self, config: CMORLConfig, env, env_params=None):
        self.config = cfg = config
        self.env = env
        m = self.m = int(env.reward_dim)
        if m < 2:
            raise ValueError(f"C-MORL needs >= 2 objectives; {env.name} has {m}")
        self.ppo = ppo = PPO.for_env(env, cfg.ppo_config())

        def act(p, w, obs, key):  # deterministic action of one stored policy; built once (the evaluator caches per act)
            return ppo.act(p, obs)

        self._act = act
        self.env_params, self.eval_steps = episode_limit(env, env_params, cfg.max_episode_steps, "C-MORL: ")
        ref = cfg.ref_point if cfg.ref_point is not None else env.ref_point
        self.ref_point = None if ref is None else np.asarray(ref, np.float64)
        if self.ref_point is not None and self.ref_point.shape != (m,):
            raise ValueError(
                f"C-MORL: ref_point {tuple(self.ref_point)} has {self.ref_point.size} entries for {m} objectives"
            )
        # 1. preference grid and budget (real transitions)
        self.init_weights = generate_weights_batch_dfs(
            m, cfg.init_weight_min, cfg.init_weight_max, cfg.init_weight_delta
        )
        plan = plan_budget(cfg, m)
        check_budget(cfg, plan)
        self.M, self.N, self.L = plan["M"], int(cfg.num_select), m
        self.init_updates, self.ext_updates, self.rounds = plan["init_updates"], plan["ext_updates"], plan["rounds"]
        if self.init_updates < 1:
            raise ValueError(
                f"C-MORL: init_steps={cfg.init_steps} is less than one update of the {self.M} initial "
                f"policies ({self.M} x {cfg.batch_size} transitions); raise init_steps or lower "
                "num_envs/num_steps"
            )
        # population sizes (padded to share one compiled program when close)
        lo, hi = sorted((self.M, self.N * self.L))
        shared = self.rounds > 0 and hi <= 1.25 * lo
        self.P_init = hi if shared else self.M
        self.P_ext = hi if shared else self.N * self.L
        self.capacity = cfg.policy_buffer + max(self.P_init, self.P_ext)
        self._pops = {P: self._population(P) for P in sorted({self.P_init, self.P_ext})}

    def _population(self, P: int) -> PPOPopulation:
        """The compiled population of size P, shared by every trainer with the same env, env parameters and config
        (several seeds in one process compile once)."""
        key = _program_key(self.env, self.env_params, self.config, P)
        if key is None:
            return self._compile(P)
        if key not in _PROGRAMS:
            while len(_PROGRAMS) >= _PROGRAMS_KEPT:
                _PROGRAMS.pop(next(iter(_PROGRAMS)))
            _PROGRAMS[key] = self._compile(P)
        return _PROGRAMS[key]

    # ------------------------------------------------------------------ compiled pieces (one set per population size)
    def _compile(self, P: int) -> PPOPopulation:
        cfg = self.config
        beta, t = cfg.beta, cfg.barrier_t

        def prepare(traj, ctrl):
            """Each member's preference and barrier. Extension members (``ctrl.ipo``) maximise objective l with
            the log barrier on the others, its slack measured on this rollout's finished episodes."""
            g_hat, episodes = finished_episode_returns(traj, ctrl.g_prev)
            first, ipo, onehot = ctrl.first, ctrl.ipo, ctrl.onehot
            # the round's thresholds: beta * G_j(pi_r), pi_r's return measured on the task's first rollout
            threshold = jnp.where(first, constraint_threshold(g_hat, beta), ctrl.threshold)
            floor = jnp.where(
                first, cfg.slack_floor * jnp.maximum((1.0 - beta) * jnp.abs(g_hat), ctrl.scale_eps), ctrl.floor
            )
            weights = jnp.where(ipo, onehot.astype(jnp.float32), ctrl.weights)
            mask = jnp.where(ipo, 1.0 - onehot.astype(jnp.float32), 0.0)
            barrier = Barrier(
                mask=mask,
                slack=g_hat - threshold,
                floor=floor,
                t=jnp.full((P,), t, jnp.float32),
                kappa=discounted_horizon(traj, cfg.eval_gamma),
            )
            info = {
                "g_hat": g_hat,
                "episodes": episodes,
                "threshold": threshold,
                "floor": floor,
                "weights": weights,
                "kappa": barrier.kappa,
            }
            return weights, barrier, info

        # the training rollout's episode statistics are discounted with eval_gamma: the extension's constraint
        # values are measured on the same scale as the buffer's returns (PPO learns with its own gamma)
        return make_population(
            self.ppo,
            self.env,
            P,
            stats_gamma=cfg.eval_gamma,
            eval_episodes=cfg.eval_episodes,
            eval_steps=self.eval_steps,
            eval_gamma=cfg.eval_gamma,
            env_params=self.env_params,
            prepare=prepare,
            cheap_init=True,
        )

    # ------------------------------------------------------------------ state
    @staticmethod
    def _stored(ppo_state: PPOState) -> dict:
        """What the buffer keeps of a policy: its networks and normalisers (not the optimiser)."""
        return {"params": ppo_state.params, "obs_rms": ppo_state.obs_rms, "ret_rms": ppo_state.ret_rms}

    def _empty_buffer(self) -> PolicyBuffer:
        proto = jax.eval_shape(self.ppo.init, jax.random.PRNGKey(0))
        policy = jax.tree.map(lambda s: np.zeros((self.capacity,) + s.shape, s.dtype), self._stored(proto))
        return PolicyBuffer(
            policy=policy,
            returns=np.zeros((self.capacity, self.m)),
            weights=np.zeros((self.capacity, self.m)),
            valid=np.zeros(self.capacity, bool),
        )

    def _ctrl(
        self,
        P: int,
        weights=None,
        ipo: bool = False,
        first: bool = False,
        onehot=None,
        threshold=None,
        floor=None,
        g_prev=None,
        scale_eps=None,
    ) -> Control:
        m, z = self.m, np.zeros((P, self.m), np.float32)
        f32 = lambda x, default: default if x is None else np.asarray(x, np.float32)  # noqa: E731
        return Control(
            weights=f32(weights, z),
            ipo=np.bool_(ipo),
            first=np.bool_(first),
            onehot=np.zeros((P, m), bool) if onehot is None else onehot,
            threshold=f32(threshold, z),
            floor=f32(floor, np.ones((P, m), np.float32)),
            g_prev=f32(g_prev, z),
            scale_eps=f32(scale_eps, np.zeros(m, np.float32)),
        )

    def init(self, key: jax.Array) -> CMORLState:
        k_pop, k_env, k_eval, k_run = jax.random.split(key, 4)
        P = self.P_init
        pop = self._pops[P].init(jax.random.split(k_pop, P))
        weights = np.concatenate([self.init_weights, np.repeat(self.init_weights[-1:], P - self.M, axis=0)])
        return CMORLState(
            key=k_run,
            eval_key=k_eval,
            phase=np.int32(PHASE_INIT),
            iteration=np.int32(0),
            round=np.int32(0),
            env_steps=np.int64(0),
            eval_episodes=np.int64(0),
            pop=pop,
            rollout=self._pops[P].reset(k_env),
            ctrl=self._ctrl(P, weights=weights),
            active=np.arange(P) < self.M,
            buffer=self._empty_buffer(),
            history=np.full((self.N * (self.rounds + 1), self.m), np.nan),
            history_count=np.int32(0),
            task=self._empty_tasks(pop),  # extension tasks, filled at the start of each round
        )

    def _empty_tasks(self, pop: PPOState) -> ExtensionTasks:
        """Placeholder extension tasks (copies of the first initial policy), so the state's structure is fixed."""
        P = self.P_ext
        return ExtensionTasks(
            pop=jax.tree.map(lambda x: np.repeat(np.asarray(x)[:1], P, axis=0), pop),
            rollout=self._pops[P].reset(jax.random.PRNGKey(0)),
            ctrl=self._ctrl(P),
            active=np.zeros(P, bool),
            root=np.zeros(P, np.int64),
            g_ref=np.zeros((P, self.m)),
            returns=np.zeros((P, self.m)),
            updates=np.int32(0),
        )

    # ------------------------------------------------------------------ protocol
    def done(self, state: CMORLState) -> bool:
        return int(state.phase) == PHASE_DONE

    def env_steps(self, state: CMORLState) -> int:
        return int(state.env_steps)

    def update(self, state: CMORLState) -> tuple[CMORLState, dict[str, float]]:
        phase = int(state.phase)
        if phase == PHASE_INIT:
            return self._init_update(state)
        if phase == PHASE_EXTEND:
            return self._extension_update(state)
        return state, self._logs(state)

    # ---- 1. Pareto initialisation: one PPO update of all M policies (+ evaluation when due)
    def _init_update(self, state: CMORLState) -> tuple[CMORLState, dict]:
        cfg, population = self.config, self._pops[self.P_init]
        j = int(state.iteration)
        key, k_it = jax.random.split(state.key)
        lr = linear_lr(cfg.lr, j, self.init_updates)
        pop, rollout, stats, info = population.iterate(state.pop, state.rollout, lr, k_it, state.ctrl)
        state = state.replace(
            key=key,
            pop=pop,
            rollout=rollout,
            iteration=np.int32(j + 1),
            env_steps=np.int64(state.env_steps + self.M * cfg.batch_size),
        )
        last = j + 1 == self.init_updates
        if (j + 1) % cfg.eval_interval == 0 or last:
            returns = self._evaluate(population, pop, state)
            state = state.replace(
                eval_episodes=np.int64(state.eval_episodes + self.M * cfg.eval_episodes),
                buffer=self._offer(state.buffer, pop, returns, state.ctrl.weights, state.active),
            )
        if last:
            state = self._start_round(state)
        return state, self._logs(state, stats, info, state.active)

    # ---- 2. buffer
    def _evaluate(self, population: PPOPopulation, pop: PPOState, state: CMORLState) -> np.ndarray:
        returns, finished = population.evaluate(pop, state.eval_key)
        if not bool(finished):
            raise RuntimeError(
                f"C-MORL: evaluation episodes on {self.env.name} did not end within {self.eval_steps} "
                "steps; set max_episode_steps (a time limit)"
            )
        return np.asarray(returns, np.float64)

    def _offer(self, buffer: PolicyBuffer, pop: PPOState, returns, weights, active) -> PolicyBuffer:
        cand = PolicyBuffer(
            policy=_take(self._stored(pop), np.arange(len(active))),
            returns=returns,
            weights=np.asarray(weights, np.float64),
            valid=np.asarray(active, bool),
        )
        return buffer_insert(buffer, cand, self.ref_point, self.config.policy_buffer)

    # ---- 3. selection, and the start of an extension round
    def _start_round(self, state: CMORLState) -> CMORLState:
        if int(state.round) >= self.rounds:
            return state.replace(phase=np.int32(PHASE_DONE))
        buf = state.buffer
        count = int(state.history_count)
        chosen = select_policies(buf.returns, buf.valid, state.history[:count], self.N)
        if chosen.size == 0:  # nothing left to extend: the rest of the budget cannot be used
            return state.replace(phase=np.int32(PHASE_DONE))
        history = state.history.copy()
        history[count : count + chosen.size] = buf.returns[chosen]
        m, P = self.m, self.P_ext
        n_tasks = chosen.size * m
        roots = np.concatenate([np.repeat(chosen, m), np.full(P - n_tasks, chosen[0])])
        objective = np.concatenate([np.tile(np.arange(m), chosen.size), np.zeros(P - n_tasks, np.int64)])
        active = np.arange(P) < n_tasks
        g_ref = buf.returns[roots]
        # an objective's scale in the buffer bounds the slack floor away from 0 when G_j(pi_r) = 0
        scale = np.max(np.abs(buf.returns[buf.valid]), axis=0)
        stored = _take(buf.policy, roots)
        key, k_env = jax.random.split(state.key)
        pop = state.task.pop.replace(params=stored["params"], obs_rms=stored["obs_rms"], ret_rms=stored["ret_rms"])
        pop = self._pops[P].restart(pop)
        # until the first rollout measures pi_r's return, use its evaluated return
        ctrl = self._ctrl(
            P,
            ipo=True,
            first=True,
            onehot=np.eye(m, dtype=bool)[objective],
            threshold=constraint_threshold(g_ref.astype(np.float32), self.config.beta),
            g_prev=g_ref,
            scale_eps=1e-3 * scale,
        )
        task = ExtensionTasks(
            pop=pop,
            rollout=self._pops[P].reset(k_env),
            ctrl=ctrl,
            active=active,
            root=roots.astype(np.int64),
            g_ref=g_ref,
            returns=g_ref,
            updates=np.int32(0),
        )
        return state.replace(
            key=key,
            phase=np.int32(PHASE_EXTEND),
            task=task,
            history=history,
            history_count=np.int32(count + chosen.size),
        )

    # ---- 4. Pareto extension: one barrier-weighted update of all N*L tasks, evaluated, offered to the buffer
    def _extension_update(self, state: CMORLState) -> tuple[CMORLState, dict]:
        cfg, task = self.config, state.task
        population = self._pops[self.P_ext]
        key, k_it = jax.random.split(state.key)
        pop, rollout, stats, info = population.iterate(
            task.pop, task.rollout, np.float32(cfg.extension_lr), k_it, task.ctrl
        )
        returns = self._evaluate(population, pop, state)
        active = task.active
        n_active = int(active.sum())
        weights = np.asarray(info["weights"], np.float64)
        buffer = self._offer(state.buffer, pop, returns, weights / weights.sum(axis=1, keepdims=True), active)
        ctrl = task.ctrl.replace(
            first=np.bool_(False),
            g_prev=np.asarray(info["g_hat"]),
            threshold=np.asarray(info["threshold"]),
            floor=np.asarray(info["floor"]),
        )
        k = int(task.updates) + 1
        task = task.replace(pop=pop, rollout=rollout, ctrl=ctrl, returns=returns, updates=np.int32(k))
        state = state.replace(
            key=key,
            task=task,
            buffer=buffer,
            env_steps=np.int64(state.env_steps + n_active * cfg.batch_size),
            eval_episodes=np.int64(state.eval_episodes + n_active * cfg.eval_episodes),
        )
        r = int(state.round)
        if k == min(cfg.update_iter, self.ext_updates - r * cfg.update_iter):
            state = self._start_round(state.replace(round=np.int32(r + 1)))
        return state, self._logs(state, stats, info, active)

    # ------------------------------------------------------------------ 5. assignment / solution
    def solution(self, state: CMORLState) -> Solution:
        buf = state.buffer
        idx = np.flatnonzero(buf.valid)
        if idx.size == 0:
            raise RuntimeError(
                "C-MORL: the policy buffer is empty (no policy evaluated yet, or every return is "
                "below the reference point)"
            )
        stored = _take(buf.policy, idx)
        params = jax.tree.map(jnp.asarray, {"actor": stored["params"]["actor"], "obs_rms": stored["obs_rms"]})
        return Solution(
            act=self._act,
            params=params,
            candidate_weights=buf.weights[idx],
            candidate_returns=buf.returns[idx],
            greedy=True,
        )

    def front(self, state: CMORLState) -> np.ndarray:
        """The buffer's vector returns (the current front estimate), [F, m]."""
        return state.buffer.returns[state.buffer.valid]

    def _logs(
        self, state: CMORLState, stats: dict | None = None, info: dict | None = None, active=None
    ) -> dict[str, float]:
        logs: dict[str, float] = {
            "env_steps": float(state.env_steps),
            "phase": float(state.phase),
            "round": float(state.round),
            "eval_episodes": float(state.eval_episodes),
            "buffer_size": float(state.buffer.valid.sum()),
        }
        front = self.front(state)
        if self.ref_point is not None and len(front):
            from morl.metrics import hypervolume

            logs["buffer_hv"] = float(hypervolume(front, self.ref_point, strict=False))
        if stats is not None:
            sel = np.asarray(active, bool)
            logs.update(
                {("barrier" if k == "penalty" else k): float(np.mean(np.asarray(v)[sel])) for k, v in stats.items()}
            )
        return logs


def make_trainer(config: CMORLConfig, env, env_params=None) -> CMORLTrainer:
    return CMORLTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="c-morl",
        config_cls=CMORLConfig,
        make_trainer=make_trainer,
        summary="C-MORL (Liu et al., ICLR 2025): vmapped PPO Pareto initialisation + IPO-constrained Pareto extension",
        action_kinds=("discrete", "continuous"),
        env_defaults=ENV_DEFAULTS,
        budget_field="total_steps",
        # GPU/TPU: 512 envs per policy with the same transitions per update where rollouts are long (MuJoCo 512 x 8)
        accelerator_defaults=wide_batch("num_envs", "num_steps", 512),
    )
)
