"""The evaluator: any `Solution` -> a `Front` of vector returns and its metrics.

Protocol (written down once, recorded with every result): each candidate policy (or, for a
preference-conditioned policy, each evaluation preference) runs ``episodes`` episodes with deterministic
actions; its point is the mean **discounted** vector return with discount ``gamma`` (MORL-Baselines'
convention, MORL-Baselines #194), and the mean undiscounted return is kept too. Where every episode is the same (a
``deterministic`` env and a ``greedy`` solution) one episode is run and stands for all of them. Candidates and
episodes run as one vmapped program on pure-JAX envs, on the host for ``gym:`` envs.
"""

from __future__ import annotations

import math
import numbers
import threading
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from morl import metrics
from morl.pareto import non_dominated
from morl.rollout import make_rollout
from morl.solution import Solution
from morl.weights import equally_spaced_weights, uniform_grid


@dataclass(frozen=True)
class EvalProtocol:
    """Evaluation settings. Defaults follow MORL-Baselines (`common/evaluation.py`)."""

    gamma: float = 0.99  # discount of the reported returns (MORL-Baselines: the agent's gamma)
    episodes: int = 5  # episodes per candidate / preference (num_eval_episodes_for_front)
    front_weights: int = 100  # preferences a conditioned policy is evaluated at (num_eval_weights_for_front)
    eu_weights: int = 50  # preferences of expected utility (num_eval_weights_for_eval)
    max_steps: int | None = None  # episode cap; None = the env's own time limit (C-MORL's protocol uses 500)
    ref_point: tuple[float, ...] | None = None  # None = the env's default reference point
    front_grid: float | None = None  # a conditioned policy's front preferences: the simplex grid of this step
    # (PD-MORL's evaluation: 0.1, every coordinate a multiple of it); None = front_weights equally spaced ones

    def __post_init__(self):
        if not (isinstance(self.gamma, numbers.Real) and 0.0 <= self.gamma <= 1.0):
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        for name in ("episodes", "front_weights", "eu_weights"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, numbers.Integral) or self.max_steps < 1
        ):
            raise ValueError(f"max_steps must be a positive integer or none, got {self.max_steps!r}")
        if self.ref_point is not None:
            try:
                ok = len(self.ref_point) > 0 and all(math.isfinite(float(x)) for x in self.ref_point)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"ref_point must be finite numbers, one per objective, got {self.ref_point!r}")
        if self.front_grid is not None:
            step = self.front_grid
            ok = isinstance(step, numbers.Real) and not isinstance(step, bool) and 0.0 < step <= 1.0
            if not ok or abs(round(1.0 / step) * step - 1.0) > 1e-6:
                raise ValueError(f"front_grid must be a step in (0, 1] that divides 1 (e.g. 0.1), got {step!r}")

    def check_env(self, env) -> None:
        """Raise ValueError if these settings cannot evaluate ``env`` (e.g. a reference point of the wrong length),
        so a bad option fails before training, not after it."""
        m = env.reward_dim
        if self.ref_point is not None and len(self.ref_point) != m:
            raise ValueError(
                f"ref_point has {len(self.ref_point)} value(s) but {getattr(env, 'name', 'the env')} has "
                f"{m} objectives; give {m} comma-separated values"
            )
        if self.ref_point is None and env.ref_point is None:
            raise ValueError(
                f"{getattr(env, 'name', 'the env')} has no default reference point; give ref_point "
                f"({m} comma-separated values)"
            )

    def front_preferences(self, m: int) -> np.ndarray:
        """The preferences a conditioned policy's front is evaluated at, ``[K, m]``."""
        if self.front_grid is None:
            return equally_spaced_weights(m, self.front_weights)
        return uniform_grid(m, int(round(1.0 / self.front_grid)) + 1)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["front_grid"] is None:  # unset: the recorded protocol (and its hash) is the one without the option
            del d["front_grid"]
        return d


@dataclass
class Front:
    """Evaluated candidates and the non-dominated front they form."""

    returns: np.ndarray  # [K, m] mean discounted vector return per candidate
    undiscounted_returns: np.ndarray  # [K, m]
    weights: np.ndarray | None  # [K, m] the preference of each candidate (if any)
    front: np.ndarray  # [F, m] non-dominated, de-duplicated points of `returns`
    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)


_ROLLOUTS: dict[tuple, Any] = {}


def _weak_policy(act):
    """``act``'s identity for the rollout cache, and a policy that calls it without keeping its owner alive.

    Agents hand out ``act`` as a bound method (``trainer._act``): a new object each time, so the cache keys on its
    instance and function, which stay the same. The cached rollout holds the instance only weakly and its entry is
    dropped when the instance goes, so a process that trains many runs (a suite, a sweep) does not keep every
    trainer and its compiled programs alive. Objects that cannot be weakly referenced are held as before."""
    owner, func = getattr(act, "__self__", None), getattr(act, "__func__", None)
    if owner is None or func is None:  # a plain function (or another callable): it is its own owner
        owner, func, ident = act, None, id(act)
    else:
        ident = (id(owner), id(func))
    try:
        ref = weakref.ref(owner)
    except TypeError:
        return ident, None, lambda p, obs, k, *context: (act(p["params"], p["w"], obs, k, *context), ())

    def policy(p, obs, k, *context):
        target = ref() if func is None else func.__get__(ref())
        return target(p["params"], p["w"], obs, k, *context), ()

    return ident, owner, policy


def _cached_rollout(env, act, population, episodes, steps, gamma, episode_context=False, conditioned=False):
    """Evaluation rollouts are built once per (env, policy, shape) and live as long as the policy's owner. A host
    env's rollout steps vector envs in place, so threads (training lanes) that evaluate at the same time each get
    their own. A conditioned policy's one network serves every preference (``policy_axes``): no copy of it per
    preference."""
    thread = threading.get_ident() if getattr(env, "is_host", False) else None
    ident, owner, policy = _weak_policy(act)
    key = (id(env), ident, population, episodes, steps, float(gamma), episode_context, conditioned, thread)
    if key not in _ROLLOUTS:
        _ROLLOUTS[key] = (
            env,
            make_rollout(
                env,
                policy,
                episodes,
                steps,
                gamma=gamma,
                population=population,
                emit="summary",
                episode_context=episode_context,
                policy_axes={"params": None, "w": 0} if conditioned else 0,
            ),
        )
        if owner is not None:
            weakref.finalize(owner, _ROLLOUTS.pop, key, None)
    return _ROLLOUTS[key][1]


def evaluate_returns(
    solution: Solution,
    env,
    params=None,
    weights=None,
    *,
    episodes: int = 5,
    gamma: float = 0.99,
    max_steps: int | None = None,
    key: jax.Array | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mean (discounted, undiscounted) vector returns [K, m] of every candidate, and their preferences."""
    m = env.reward_dim
    if solution.conditioned:
        if weights is None:
            raise ValueError("a preference-conditioned solution needs evaluation `weights` [K, m]")
        w = np.asarray(weights, np.float32)
        k = w.shape[0]
        p = solution.params  # one network for every preference: the rollout does not copy it per member
    else:
        k = solution.num_candidates
        w = (
            np.asarray(solution.candidate_weights, np.float32)
            if solution.candidate_weights is not None
            else np.full((k, m), 1.0 / m, np.float32)
        )
        p = solution.params
    if w.ndim != 2 or w.shape[1] != m:
        raise ValueError(f"evaluation weights must have shape [K, {m}] for {env.name}, got {w.shape}")
    # pure-JAX envs: pad the candidate axis to a power of two (repeating the last row) so a policy set that grows
    # during training compiles the evaluation rollout O(log K) times, not once per size. Host envs are not
    # padded: there every padded candidate would cost real simulator episodes, far more than a recompile.
    k_real = k
    if not getattr(env, "is_host", False):
        k = 1 << max(0, (k - 1).bit_length())
    if k != k_real:
        pad = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], k - k_real, axis=0)])  # noqa: E731
        w = np.concatenate([w, np.repeat(w[-1:], k - k_real, axis=0)])
        p = p if solution.conditioned else jax.tree.map(pad, p)
    if getattr(env, "is_host", False):
        steps = max_steps or env.max_steps or 1000
    else:
        params = env.default_params if params is None else params
        if max_steps is not None:
            params = params.replace(max_steps=max_steps)
        steps = int(params.max_steps)
    # a greedy policy on a deterministic env repeats one episode: run it once; the mean of ``episodes`` copies of a
    # float32 return is that return exactly in float64, so the result is the same
    if solution.greedy and getattr(env, "deterministic", False) and not getattr(env, "is_host", False):
        episodes = 1
    rollout = _cached_rollout(
        env, solution.act, k, episodes, steps, gamma, solution.episode_context, solution.conditioned
    )
    key = jax.random.PRNGKey(0) if key is None else key
    k_init, k_run = jax.random.split(key)
    state = rollout.init(k_init, params) if not rollout.is_host else rollout.init(k_init)
    _, summary = rollout.run({"params": p, "w": jnp.asarray(w)}, state, k_run, params)
    finished = np.asarray(summary.episodes) > 0
    if not finished.all():
        raise RuntimeError(
            f"{(~finished).sum()} evaluation episodes on {env.name} did not end within {steps} steps; "
            "pass max_steps= (a time limit) to evaluate"
        )
    disc = np.asarray(summary.first_discounted_return, np.float64).mean(axis=1)[:k_real]
    undisc = np.asarray(summary.first_return, np.float64).mean(axis=1)[:k_real]
    return disc, undisc, w[:k_real]


def evaluate(
    solution: Solution,
    env,
    params=None,
    protocol: EvalProtocol = EvalProtocol(),
    known_front: np.ndarray | None = None,
    key: jax.Array | None = None,
) -> Front:
    """Evaluate a solution and compute every metric (HV, EU, sparsity, cardinality; IGD and MUL with a known front)."""
    m = env.reward_dim
    weights = protocol.front_preferences(m) if solution.conditioned else None
    disc, undisc, w = evaluate_returns(
        solution,
        env,
        params,
        weights,
        episodes=protocol.episodes,
        gamma=protocol.gamma,
        max_steps=protocol.max_steps,
        key=key,
    )
    if not np.all(np.isfinite(disc)):
        raise FloatingPointError(
            f"evaluation on {env.name} produced non-finite returns; the policy or env emits NaN/inf"
        )
    ref = protocol.ref_point if protocol.ref_point is not None else env.ref_point
    if known_front is None and env.has_known_front:
        known_front = env.pareto_front(protocol.gamma)
    front = non_dominated(disc)
    # strict=False: a front below the reference point (an untrained agent) has hypervolume 0, as in
    # MORL-Baselines, instead of stopping a training run at its first periodic evaluation
    values = metrics.all_metrics(
        front,
        ref_point=ref,
        known_front=known_front,
        weights=equally_spaced_weights(m, protocol.eu_weights),
        strict=False,
    )
    proto = protocol.as_dict() | {"ref_point": None if ref is None else [float(x) for x in ref]}
    return Front(disc, undisc, w, front, values, proto)
