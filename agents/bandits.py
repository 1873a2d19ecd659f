"""Multi-objective bandit algorithms as pure functions of (key, instance, horizon), vmapped over runs.

Every algorithm is a frozen (hashable, so jit-static) dataclass with three pure methods: ``init(params)`` builds
its own statistics, ``select(key, state, params, t, horizon)`` picks an arm (and an auxiliary value the update
needs), ``observe(extra, arm, aux, reward, params, horizon)`` folds in the reward. `simulate` runs one run as a
``lax.scan`` over checkpoint segments (a ``fori_loop`` of pulls inside each) and returns the pull counts and
reward sums at every checkpoint: sufficient statistics for every metric of `morl.bandits`, so no per-pull arrays
are kept. `simulate_runs` vmaps it over runs, `simulate_instances` over a stack of instances as well.

The key of pull ``t`` is ``fold_in(run_key, t)``: results do not depend on how the horizon is cut into chunks
(`advance` runs any segment; the command line calls it chunk by chunk under a progress bar). Algorithms and
their sources: docs/bandits.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.envs.bandits import BanditParams, pareto_mask_jax, sample_reward
from morl.weights import uniform_grid

PyTree = Any


@struct.dataclass
class RunState:
    """One run: pulls per arm [K], reward sums [K, m], the algorithm's own statistics."""

    counts: jax.Array
    sums: jax.Array
    extra: PyTree


def _random_member(key: jax.Array, mask: jax.Array) -> jax.Array:
    """A uniformly random index among the True entries of ``mask`` (one exists)."""
    return jnp.argmax(jnp.where(mask, jax.random.uniform(key, mask.shape), -1.0))


def _argmax_random_ties(key: jax.Array, values: jax.Array) -> jax.Array:
    return _random_member(key, values >= values.max())


def _means(counts: jax.Array, sums: jax.Array) -> jax.Array:
    return sums / jnp.maximum(counts, 1)[..., None].astype(sums.dtype)


def _weight_set(m: int, num_weights: int) -> np.ndarray:
    """The scalarisations' weights: the Das-Dennis grid with at most ``num_weights`` points (corners included)."""
    return uniform_grid(m, total=max(num_weights, m)).astype(np.float32)


@dataclass(frozen=True)
class ParetoUCB1:
    """Pareto UCB1 (Drugan & Nowe 2013): every arm's UCB vector, a uniform pick among their Pareto set."""

    summary = "UCB vectors, a uniform pick in their Pareto set (Drugan & Nowe 2013)"
    name = "pareto-ucb1"

    def init(self, params: BanditParams) -> PyTree:
        return ()

    def select(self, key, state: RunState, params: BanditParams, t, horizon):
        m = params.means.shape[-1]
        n = jnp.maximum(t, 1).astype(jnp.float32)
        explore = jnp.log(n * (m * params.num_pareto.astype(jnp.float32)) ** 0.25)
        bonus = jnp.sqrt(2.0 * explore / jnp.maximum(state.counts, 1))
        index = jnp.where((state.counts == 0)[:, None], jnp.inf, _means(state.counts, state.sums) + bonus[:, None])
        return _random_member(key, pareto_mask_jax(index)), ()

    def observe(self, extra, arm, aux, reward, params, horizon):
        return extra


@dataclass(frozen=True)
class ScalarizedUCB1:
    """Scalarised UCB1 (Drugan & Nowe 2013): each pull draws one of S scalarisations uniformly and runs that
    scalarisation's own UCB1 (own counts and means) on it; ``kind`` "linear" (w . mu) or "chebyshev"
    (min_d w_d (mu_d - z_d), z = the instance's lower reward bound), each rescaled to [0, 1] on the reward box."""

    @property
    def summary(self) -> str:
        return f"UCB1 per {self.kind} scalarisation, one of {self.num_weights} weights per pull (Drugan & Nowe 2013)"

    kind: str = "linear"
    num_weights: int = 11

    @property
    def name(self) -> str:
        return f"scalarized-ucb1-{'lin' if self.kind == 'linear' else 'cheb'}"

    def weights(self, m: int) -> np.ndarray:
        """The grid; for Chebyshev pulled 5% towards the centre, since a zero weight makes min_d w_d (.) zero for
        every arm (a tie that UCB1 would break at random forever)."""
        w = _weight_set(m, self.num_weights)
        return w if self.kind == "linear" else (0.95 * w + 0.05 / m).astype(np.float32)

    def scalarize(self, w: jax.Array, mu: jax.Array, params: BanditParams) -> jax.Array:
        """The scalarised value, rescaled so that the reward box [low, high] maps onto [0, 1]: UCB1's bonus
        assumes values in [0, 1], and an unscaled Chebyshev value with a small weight would shrink every gap."""
        span = params.high - params.low
        if self.kind == "linear":
            return (mu - params.low) @ w / (span @ w)
        return jnp.min(w * (mu - params.low), axis=-1) / jnp.min(w * span)

    def init(self, params: BanditParams) -> PyTree:
        k, m = params.means.shape[-2:]
        s = len(self.weights(m))
        return (jnp.zeros((s, k), jnp.int32), jnp.zeros((s, k, m), jnp.float32))

    def select(self, key, state: RunState, params: BanditParams, t, horizon):
        counts_s, sums_s = state.extra
        w_all = jnp.asarray(self.weights(params.means.shape[-1]))
        k_s, k_a = jax.random.split(key)
        s = jax.random.randint(k_s, (), 0, w_all.shape[0])
        c = counts_s[s]
        n = jnp.maximum(c.sum(), 1).astype(jnp.float32)
        f = self.scalarize(w_all[s], _means(c, sums_s[s]), params)
        index = jnp.where(c == 0, jnp.inf, f + jnp.sqrt(2.0 * jnp.log(n) / jnp.maximum(c, 1)))
        return _argmax_random_ties(k_a, index), s

    def observe(self, extra, arm, s, reward, params, horizon):
        counts_s, sums_s = extra
        return counts_s.at[s, arm].add(1), sums_s.at[s, arm].add(reward)


@dataclass(frozen=True)
class ParetoThompson:
    """Pareto Thompson sampling (Yahyaa & Manderick 2015): one posterior draw per arm and objective (Beta(1+s,
    1+n-s) for Bernoulli; N(sum/(n+1), sigma^2/(n+1)) for Gaussian), a uniform pick among the draws' Pareto set."""

    summary = "posterior draws, a uniform pick in their Pareto set (Yahyaa & Manderick 2015)"
    name = "pareto-ts"

    def init(self, params: BanditParams) -> PyTree:
        return ()

    def select(self, key, state: RunState, params: BanditParams, t, horizon):
        k_d, k_a = jax.random.split(key)
        n = state.counts.astype(jnp.float32)[:, None]
        if params.gaussian:
            draw = state.sums / (n + 1) + params.sigma / jnp.sqrt(n + 1) * jax.random.normal(k_d, state.sums.shape)
        else:
            draw = jax.random.beta(k_d, 1.0 + state.sums, 1.0 + n - state.sums)
        return _random_member(k_a, pareto_mask_jax(draw)), ()

    def observe(self, extra, arm, aux, reward, params, horizon):
        return extra


@dataclass(frozen=True)
class ScalarizedEXP3:
    """EXP3 (Auer et al. 2002) on the linear scalarisation ``w . r`` rescaled into [0, 1]: for any w in the simplex
    the Pareto regret is at most the w-scalarised regret, so EXP3's O(sqrt(T K log K)) bound, which holds for
    adversarial rewards, carries over (the reduction behind the adversarial Pareto-regret results, docs/bandits.md).
    ``weight`` None = equal weights."""

    summary = "EXP3 on the equal-weight scalarisation: adversarial-setting Pareto regret"

    weight: tuple[float, ...] | None = None
    name = "exp3-pareto"

    def _w(self, m: int) -> jax.Array:
        w = np.full(m, 1.0 / m) if self.weight is None else np.asarray(self.weight, np.float64)
        return jnp.asarray(w / w.sum(), jnp.float32)

    def init(self, params: BanditParams) -> PyTree:
        return jnp.zeros(params.means.shape[-2], jnp.float32)

    def _gamma(self, k: int, horizon) -> jax.Array:
        return jnp.minimum(1.0, jnp.sqrt(k * math.log(k) / ((math.e - 1.0) * jnp.maximum(horizon, 1))))

    def select(self, key, state: RunState, params: BanditParams, t, horizon):
        k = params.means.shape[-2]
        gamma = self._gamma(k, horizon)
        p = (1.0 - gamma) * jax.nn.softmax(state.extra) + gamma / k
        arm = jax.random.choice(key, k, p=p)
        return arm, p[arm]

    def observe(self, log_w, arm, p_arm, reward, params, horizon):
        w = self._w(reward.shape[-1])
        lo, hi = params.low @ w, params.high @ w
        x = jnp.clip((reward @ w - lo) / (hi - lo), 0.0, 1.0)
        k = log_w.shape[-1]
        log_w = log_w.at[arm].add(self._gamma(k, horizon) * x / (p_arm * k))
        return log_w - log_w.max()


@dataclass(frozen=True)
class Uniform:
    """A uniformly random arm every pull: linear Pareto regret, the baseline the tests contrast with."""

    summary = "a uniformly random arm (baseline: linear regret)"
    name = "uniform"

    def init(self, params: BanditParams) -> PyTree:
        return ()

    def select(self, key, state: RunState, params: BanditParams, t, horizon):
        return jax.random.randint(key, (), 0, params.means.shape[-2]), ()

    def observe(self, extra, arm, aux, reward, params, horizon):
        return extra


ALGORITHMS: dict[str, Any] = {
    "pareto-ucb1": ParetoUCB1(),
    "scalarized-ucb1-lin": ScalarizedUCB1("linear"),
    "scalarized-ucb1-cheb": ScalarizedUCB1("chebyshev"),
    "pareto-ts": ParetoThompson(),
    "exp3-pareto": ScalarizedEXP3(),
    "uniform": Uniform(),
}


def get_algorithm(name: str):
    if name not in ALGORITHMS:
        raise ValueError(f"unknown bandit algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


# ---------------------------------------------------------------------------------------- the simulation
def init_state(algo, params: BanditParams) -> RunState:
    k, m = params.means.shape[-2:]
    return RunState(jnp.zeros(k, jnp.int32), jnp.zeros((k, m), jnp.float32), algo.init(params))


def _pull(algo, params: BanditParams, horizon, run_key: jax.Array, t, state: RunState) -> RunState:
    k_sel, k_rew = jax.random.split(jax.random.fold_in(run_key, t))
    arm, aux = algo.select(k_sel, state, params, t, horizon)
    reward = sample_reward(k_rew, params, arm)
    extra = algo.observe(state.extra, arm, aux, reward, params, horizon)
    hit = jnp.arange(state.counts.shape[0]) == arm  # a one-hot add: under vmap it fuses, a scatter does not
    return RunState(state.counts + hit, state.sums + jnp.where(hit[:, None], reward, 0.0), extra)


def advance(algo, params: BanditParams, horizon, run_key: jax.Array, state: RunState, t0, t1) -> RunState:
    """Pulls ``t0 .. t1 - 1`` of one run (``t`` counts pulls made so far)."""
    return jax.lax.fori_loop(t0, t1, lambda t, s: _pull(algo, params, horizon, run_key, t, s), state)


def simulate(algo, key: jax.Array, params: BanditParams, horizon, checkpoints: jax.Array):
    """One run of ``horizon`` pulls; returns (counts [J, K], sums [J, K, m]) after ``checkpoints[j]`` pulls.

    ``checkpoints`` are increasing pull counts ending at ``horizon``."""
    starts = jnp.concatenate([jnp.zeros(1, checkpoints.dtype), checkpoints[:-1]])

    def segment(state, bounds):
        state = advance(algo, params, horizon, key, state, bounds[0], bounds[1])
        return state, (state.counts, state.sums)

    _, (counts, sums) = jax.lax.scan(segment, init_state(algo, params), (starts, checkpoints))
    return counts, sums


def run_keys(key: jax.Array, runs: int) -> jax.Array:
    return jax.random.split(key, runs)


def simulate_runs(algo, key: jax.Array, params: BanditParams, horizon, checkpoints: jax.Array, runs: int):
    """``runs`` independent runs as one vmapped program: counts [R, J, K], sums [R, J, K, m]."""
    return jax.vmap(simulate, in_axes=(None, 0, None, None, None))(
        algo, run_keys(key, runs), params, horizon, checkpoints
    )


def simulate_instances(algo, key: jax.Array, params: BanditParams, horizon, checkpoints: jax.Array, runs: int):
    """Runs x instances: ``params`` stacked (envs.bandits.stack_params); counts [I, R, J, K], sums [I, R, J, K, m].
    Instance i uses ``fold_in(key, i)``."""
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(params.means.shape[0]))
    return jax.vmap(simulate_runs, in_axes=(None, 0, 0, None, None, None))(
        algo, keys, params, horizon, checkpoints, runs
    )


def log_checkpoints(horizon: int, points: int) -> np.ndarray:
    """Increasing pull counts from 1 to ``horizon``, about evenly spaced in log t (fewer when T is small)."""
    cps = np.unique(np.round(np.geomspace(1, horizon, max(points, 2))).astype(np.int64))
    return cps.astype(np.int32)
