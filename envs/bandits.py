"""Multi-objective multi-armed bandits: arms with vector rewards, judged against the Pareto set of the true means.

An instance is data: the arms' mean vectors, the reward law (independent Bernoulli per objective, or a
multivariate Gaussian with a per-arm Cholesky factor), and, computed once in numpy, the exact Pareto set of the
means and each arm's Pareto gap: the smallest ``eps >= 0`` such that ``mu_i + eps * 1`` is not dominated by any
arm's mean (Drugan & Nowe 2013). Pulling arm ``i`` costs ``gap_i`` of Pareto regret; Pareto arms cost nothing.

Each instance is also a one-step `Environment` (observation: a constant; action: the arm; the episode ends after
one pull), registered as ``bandit-<name>-v0``, so `morl envs` lists it and any MORL agent can be pointed at it.
The bandit algorithms (agents/bandits.py) read the same `BanditParams` and draw rewards with `sample_reward`.
Where each instance comes from: docs/bandits.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import Environment, EnvParams
from morl.registry import register
from morl.spaces import Box, Discrete

KINDS = ("bernoulli", "gaussian")


# ---------------------------------------------------------------------------------------- exact Pareto quantities
def pareto_mask(means: np.ndarray) -> np.ndarray:
    """bool [K]: arm i is Pareto optimal (no arm is >= in every objective and > in one)."""
    mu = np.asarray(means, np.float64)
    ge = (mu[None, :, :] >= mu[:, None, :]).all(-1)  # ge[i, j]: arm j >= arm i everywhere
    gt = (mu[None, :, :] > mu[:, None, :]).any(-1)
    return ~(ge & gt).any(1)


def pareto_gaps(means: np.ndarray) -> np.ndarray:
    """float64 [K]: ``inf{eps >= 0 : mu_i + eps is dominated by no arm} = max(0, max_j min_d (mu_jd - mu_id))``.

    ``mu_i + eps`` stays dominated by arm j exactly while eps is below j's smallest lead over i, so the infimum
    is the largest such lead over all arms; it is 0 for every Pareto arm."""
    mu = np.asarray(means, np.float64)
    lead = (mu[None, :, :] - mu[:, None, :]).min(-1)  # lead[i, j] = min_d (mu_jd - mu_id)
    return np.maximum(0.0, lead.max(1))


def pareto_mask_jax(values: jax.Array) -> jax.Array:
    """`pareto_mask` for a [K, m] array inside jit (infinite entries allowed: an unpulled arm's +inf index)."""
    ge = jnp.all(values[None, :, :] >= values[:, None, :], axis=-1)
    gt = jnp.any(values[None, :, :] > values[:, None, :], axis=-1)
    return ~jnp.any(ge & gt, axis=1)


# ---------------------------------------------------------------------------------------- instances
@dataclass(frozen=True, eq=False)
class BanditInstance:
    """An MO bandit in numpy: ``means`` [K, m]; ``scale_tril`` [K, m, m] (Gaussian noise factor; zeros if Bernoulli)."""

    name: str
    kind: str
    means: np.ndarray
    scale_tril: np.ndarray
    source: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"bandit kind must be one of {KINDS}, got {self.kind!r}")
        means = np.asarray(self.means, np.float64)
        if means.ndim != 2 or means.shape[0] < 2 or means.shape[1] < 1:
            raise ValueError(f"bandit means are [arms >= 2, objectives], got shape {means.shape}")
        if self.kind == "bernoulli" and not ((means >= 0) & (means <= 1)).all():
            raise ValueError("Bernoulli means must lie in [0, 1]")
        object.__setattr__(self, "means", means)
        object.__setattr__(
            self,
            "scale_tril",
            np.broadcast_to(np.asarray(self.scale_tril, np.float64), means.shape + means.shape[1:]).copy(),
        )

    @property
    def num_arms(self) -> int:
        return int(self.means.shape[0])

    @property
    def num_objectives(self) -> int:
        return int(self.means.shape[1])

    @property
    def pareto(self) -> np.ndarray:
        return pareto_mask(self.means)

    @property
    def gaps(self) -> np.ndarray:
        return pareto_gaps(self.means)

    @property
    def sigma(self) -> np.ndarray:
        """Per-arm, per-objective noise scale [K, m] (Bernoulli: sqrt(p (1 - p)))."""
        if self.kind == "bernoulli":
            return np.sqrt(self.means * (1.0 - self.means))
        return np.sqrt(np.einsum("kij,kij->ki", self.scale_tril, self.scale_tril))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """A box holding the rewards (Bernoulli: [0, 1]; Gaussian: the means +- 4 noise scales): used to rescale
        rewards into [0, 1] (EXP3) and as the Chebyshev reference point."""
        if self.kind == "bernoulli":
            return np.zeros(self.num_objectives), np.ones(self.num_objectives)
        return (self.means - 4 * self.sigma).min(0), (self.means + 4 * self.sigma).max(0)

    def params(self) -> BanditParams:
        low, high = self.bounds

        def f32(x):
            return jnp.asarray(x, jnp.float32)

        return BanditParams(
            means=f32(self.means),
            scale_tril=f32(self.scale_tril),
            sigma=f32(self.sigma),
            gaps=f32(self.gaps),
            pareto=jnp.asarray(self.pareto),
            num_pareto=jnp.int32(self.pareto.sum()),
            low=f32(low),
            high=f32(high),
            gaussian=self.kind == "gaussian",
        )


@struct.dataclass
class BanditParams(EnvParams):
    """The instance as JAX data: vmap over a stack of these (same K, m and kind) runs many instances at once."""

    means: jax.Array = None  # [K, m]
    scale_tril: jax.Array = None  # [K, m, m]
    sigma: jax.Array = None  # [K, m]
    gaps: jax.Array = None  # [K] Pareto gaps
    pareto: jax.Array = None  # [K] bool
    num_pareto: jax.Array = None  # scalar int32
    low: jax.Array = None  # [m]
    high: jax.Array = None  # [m]
    gaussian: bool = struct.field(pytree_node=False, default=False)
    max_steps: int = 1


def sample_reward(key: jax.Array, params: BanditParams, arm: jax.Array) -> jax.Array:
    """One pull of ``arm``: float32 [m]."""
    mu = params.means[arm]
    if params.gaussian:
        return mu + params.scale_tril[arm] @ jax.random.normal(key, mu.shape)
    return (jax.random.uniform(key, mu.shape) < mu).astype(jnp.float32)


def stack_params(params: list[BanditParams]) -> BanditParams:
    """Stack instances of one shape and kind along a new leading axis (for vmap over instances)."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)


def random_instance(seed: int, num_arms: int, num_objectives: int, kind: str = "bernoulli") -> BanditInstance:
    """Means uniform in [0.1, 0.9]; Gaussian noise with a random correlation and scale 0.2 (tests, examples)."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(0.1, 0.9, (num_arms, num_objectives))
    tril = np.zeros((num_arms, num_objectives, num_objectives))
    if kind == "gaussian":
        a = rng.normal(size=(num_objectives, num_objectives))
        cov = a @ a.T + num_objectives * np.eye(num_objectives)
        d = np.sqrt(np.diag(cov))
        tril[:] = 0.2 * np.linalg.cholesky(cov / np.outer(d, d))
    return BanditInstance(f"random-{seed}", kind, means, tril, source="random_instance")


# The four Pareto-optimal arms of Drugan & Nowe's bi-objective Bernoulli example.
_DN_PARETO = np.array([[0.55, 0.5], [0.53, 0.51], [0.52, 0.54], [0.5, 0.57]])
# 16 dominated arms: each Pareto arm moved down by d * (1, 1), d in {0.01, 0.02, 0.04, 0.08} (gaps 0.01 .. 0.08+).
_DN_DOMINATED_16 = np.concatenate([_DN_PARETO - d for d in (0.01, 0.02, 0.04, 0.08)])
_GAUSS3_MEANS = np.array(
    [
        [0.25, 0.34, 0.68],
        [0.55, 0.26, 0.46],
        [0.49, 0.30, 0.64],
        [0.27, 0.43, 0.51],
        [0.46, 0.55, 0.64],
        [0.77, 0.37, 0.59],
        [0.62, 0.38, 0.20],
        [0.78, 0.38, 0.39],
        [0.74, 0.55, 0.48],
        [0.66, 0.22, 0.62],
    ]
)
_GAUSS3_COV = 0.25**2 * np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]])


def _bernoulli(name: str, means, source: str) -> BanditInstance:
    means = np.asarray(means, np.float64)
    return BanditInstance(name, "bernoulli", means, np.zeros(means.shape + means.shape[1:]), source)


INSTANCES: dict[str, BanditInstance] = {
    i.name: i
    for i in (
        _bernoulli(
            "two-arm",
            [[0.7, 0.6], [0.5, 0.45]],
            "a 2-arm check instance: arm 1 is dominated by arm 0 with Pareto gap 0.15",
        ),
        _bernoulli(
            "drugan-nowe-6",
            np.concatenate([_DN_PARETO, [[0.51, 0.51], [0.5, 0.5]]]),
            "Drugan & Nowe (2013): 4 Pareto arms, 2 dominated arms close to the front (gaps 0.01, 0.02)",
        ),
        _bernoulli(
            "drugan-nowe-20",
            np.concatenate([_DN_PARETO, _DN_DOMINATED_16]),
            "the 4 Pareto arms of Drugan & Nowe (2013) and 16 dominated arms placed here: each Pareto arm "
            "shifted by -d (1, 1), d in {0.01, 0.02, 0.04, 0.08}",
        ),
        BanditInstance(
            "gaussian-3obj",
            "gaussian",
            _GAUSS3_MEANS,
            np.broadcast_to(np.linalg.cholesky(_GAUSS3_COV), (10, 3, 3)),
            "10 arms, 3 correlated Gaussian objectives (sd 0.25); means drawn once and written down",
        ),
    )
}


def get_instance(name: str) -> BanditInstance:
    """An instance by name (``drugan-nowe-20``) or env id (``bandit-drugan-nowe-20-v0``)."""
    key = name[len("bandit-") : -len("-v0")] if name.startswith("bandit-") and name.endswith("-v0") else name
    if key not in INSTANCES:
        raise KeyError(f"unknown bandit instance {name!r}; known: {', '.join(env_id(n) for n in INSTANCES)}")
    return INSTANCES[key]


def env_id(name: str) -> str:
    return f"bandit-{name}-v0"


# ---------------------------------------------------------------------------------------- the one-step env view
@struct.dataclass
class BanditEnvState:
    time: jax.Array


class MOBandit(Environment):
    """A bandit instance as a one-step episode: every action pulls an arm and ends the episode."""

    def __init__(self, instance: str = "drugan-nowe-6"):
        self.instance = get_instance(instance)
        self.reward_names = tuple(f"objective {d}" for d in range(self.instance.num_objectives))
        low, _ = self.instance.bounds
        self.ref_point = tuple(float(x) for x in low)

    @property
    def default_params(self) -> BanditParams:
        return self.instance.params()

    @property
    def observation_space(self) -> Box:
        return Box(0.0, 0.0, (1,), jnp.float32)

    @property
    def action_space(self) -> Discrete:
        return Discrete(self.instance.num_arms)

    @property
    def reward_space(self) -> Box:
        m = self.instance.num_objectives
        if self.instance.kind == "bernoulli":
            return Box(0.0, 1.0, (m,), jnp.float32)
        return Box(-np.inf, np.inf, (m,), jnp.float32)

    def reset(self, key, params):
        return jnp.zeros((1,), jnp.float32), BanditEnvState(time=jnp.int32(0))

    def step(self, key, state, action, params):
        reward = sample_reward(key, params, action)
        time = state.time + 1
        return (
            jnp.zeros((1,), jnp.float32),
            BanditEnvState(time=time),
            reward,
            jnp.bool_(True),
            time >= params.max_steps,
            {},
        )

    def pareto_front(self, gamma: float = 1.0) -> np.ndarray:
        """The Pareto-optimal mean vectors (one step: the discount does not enter)."""
        return self.instance.means[self.instance.pareto]


for _name in INSTANCES:
    register(env_id(_name), MOBandit, instance=_name)
