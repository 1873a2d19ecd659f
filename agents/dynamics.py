"""A learned dynamics model: a probabilistic ensemble of MLPs (PETS / MBPO style), as MORL-Baselines'
``ProbabilisticEnsemble`` and ``ModelEnv``, in JAX.

Each of ``E`` members maps ``(obs, one_hot(action))`` to a diagonal Gaussian over ``(reward, next_obs - obs)``; the
log-variance is soft-clamped between two learned bounds. `fit` trains every member on its own bootstrap of the
data with Gaussian negative log-likelihood (plus the per-layer L2 decays and the bound penalty of the reference),
early-stops on a holdout's MSE and picks the ``num_elites`` best members. `model_step` samples one elite per row
and returns the ensemble's disagreement (summed standard deviation of the mixture) as the uncertainty that Dyna
uses to reject rollouts. Where an episode ends in the model is env knowledge, as in the reference: `termination_fn`
knows the envs GPI-PD is benchmarked on.

Static shapes throughout: `fit` takes the whole replay storage and its valid count, so one compiled epoch serves
every data size (a ``while_loop`` runs the batches that exist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from morl.agents.networks import orthogonal

PyTree = Any

#: per-layer L2 decays of the reference (``ProbabilisticEnsemble.fit``'s ``decays``), input layer first
LAYER_DECAYS = (0.000025, 0.00005, 0.000075, 0.000075, 0.0001)


@dataclass(frozen=True)
class Ensemble:
    """``ensemble_size`` MLPs ``in_dim -> 2 * out_dim`` (mean and log-variance), ReLU hidden layers."""

    in_dim: int
    out_dim: int
    hidden: tuple[int, ...] = (256, 256, 256)
    ensemble_size: int = 5
    num_elites: int = 2
    learning_rate: float = 1e-3

    def __post_init__(self):
        if not 1 <= self.num_elites <= self.ensemble_size:
            raise ValueError(
                f"dynamics model: num_elites must be in [1, ensemble_size={self.ensemble_size}], got {self.num_elites}"
            )
        if len(self.hidden) + 1 > len(LAYER_DECAYS):
            raise ValueError(f"dynamics model: at most {len(LAYER_DECAYS) - 1} hidden layers, got {len(self.hidden)}")

    def init(self, key: jax.Array) -> PyTree:
        """Weights ``[E, in, out]`` (orthogonal per member, ReLU gain sqrt 2), zero biases, log-variance bounds
        ``max = 0.5``, ``min = -10`` (the reference's)."""
        sizes = (self.in_dim, *self.hidden, 2 * self.out_dim)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            keys = jax.random.split(jax.random.fold_in(key, i), self.ensemble_size)
            w = jax.vmap(lambda k: orthogonal(float(np.sqrt(2.0)))(k, (a, b)))(keys)  # noqa: B023
            layers.append({"w": w, "b": jnp.zeros((self.ensemble_size, 1, b), jnp.float32)})
        return {
            "layers": layers,
            "max_logvar": jnp.full((1, self.out_dim), 0.5, jnp.float32),
            "min_logvar": jnp.full((1, self.out_dim), -10.0, jnp.float32),
        }

    def apply(self, params: PyTree, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x`` ``[B, in]`` (every member sees it) or ``[E, B, in]`` -> mean, log-variance ``[E, B, out]``."""
        h = x if x.ndim == 3 else jnp.broadcast_to(x, (self.ensemble_size, *x.shape))
        layers = params["layers"]
        for layer in layers[:-1]:
            h = jax.nn.relu(h @ layer["w"] + layer["b"])
        out = h @ layers[-1]["w"] + layers[-1]["b"]
        mean, logvar = out[..., : self.out_dim], out[..., self.out_dim :]
        hi, lo = params["max_logvar"], params["min_logvar"]
        logvar = hi - jax.nn.softplus(hi - logvar)
        logvar = lo + jax.nn.softplus(logvar - lo)
        return mean, logvar

    # ------------------------------------------------------------------ training
    def loss(self, params: PyTree, x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
        """Gaussian NLL (torch's ``gaussian_nll_loss``, the mean over the rows where ``mask`` [B] is set) +
        0.01 (sum max_logvar - sum min_logvar) + the per-layer L2 decays (torch Adam's ``weight_decay``)."""
        mean, logvar = self.apply(params, x)
        var = jnp.maximum(jnp.exp(logvar), 1e-6)
        per = 0.5 * (jnp.log(var) + jnp.square(mean - y) / var)  # [E, B, out]
        nll = jnp.sum(per * mask[None, :, None]) / (self.ensemble_size * jnp.maximum(jnp.sum(mask), 1) * self.out_dim)
        bounds = 0.01 * jnp.sum(params["max_logvar"]) - 0.01 * jnp.sum(params["min_logvar"])
        l2 = sum(
            0.5 * d * (jnp.sum(jnp.square(layer["w"])) + jnp.sum(jnp.square(layer["b"])))
            for d, layer in zip(LAYER_DECAYS, params["layers"])
        )
        return nll + bounds + l2

    def holdout_mse(self, params: PyTree, x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
        """Per member MSE ``[E]`` over the rows where ``mask`` is set."""
        mean, _ = self.apply(params, x)
        err = jnp.mean(jnp.square(mean - y), axis=-1)  # [E, B]
        return jnp.sum(err * mask, axis=-1) / jnp.maximum(jnp.sum(mask), 1.0)

    @property
    def tx(self) -> optax.GradientTransformation:
        return optax.adam(self.learning_rate)


@dataclass(frozen=True)
class FitSettings:
    """The reference's ``fit`` arguments."""

    batch_size: int = 256
    holdout_ratio: float = 0.1
    max_holdout_size: int = 5000
    max_epochs_no_improvement: int = 5
    max_epochs: int = 200


def make_fit(model: Ensemble, capacity: int, settings: FitSettings = FitSettings()):
    """``fit(params, x [C, in], y [C, out], count, key) -> (params, elites [num_elites], holdout mse)``.

    ``x, y`` hold ``count`` valid rows first (a replay buffer's storage, ``C = capacity``). The holdout is a random
    ``min(int(count * holdout_ratio), max_holdout_size)`` of them; each member trains on a bootstrap of the rest,
    reshuffled every epoch; a fresh Adam per fit (as the reference). One epoch is one compiled call; the host loop
    stops after ``max_epochs_no_improvement`` epochs in which no member improved its holdout MSE by 1%.
    """
    e, bs = model.ensemble_size, settings.batch_size
    hold_cap = min(settings.max_holdout_size, capacity)

    def split(key, count):
        k_perm, k_boot = jax.random.split(key)
        valid = jnp.arange(capacity) < count
        perm = jnp.argsort(jnp.where(valid, jax.random.uniform(k_perm, (capacity,)), 2.0))
        n_hold = jnp.minimum((count.astype(jnp.float32) * settings.holdout_ratio).astype(jnp.int32), hold_cap)
        n_train = count - n_hold
        boot = jax.random.randint(k_boot, (e, capacity), 0, jnp.maximum(n_train, 1))  # index into the train part
        return perm, n_hold, n_train, boot

    def epoch(params, opt_state, x, y, perm, n_hold, n_train, order, key):
        """One pass: ``order`` ``[E, C]`` a per-member shuffle of bootstrap rows (first ``n_train`` valid)."""
        n_batches = (n_train + bs - 1) // bs

        def body(carry):
            b, params, opt_state = carry
            cols = jax.lax.dynamic_slice_in_dim(order, b * bs, bs, axis=1)  # [E, bs] bootstrap positions
            ok = (b * bs + jnp.arange(bs)) < n_train
            rows = perm[n_hold + cols]  # [E, bs] storage rows
            bx, by = x[rows], y[rows]

            grads = jax.grad(model.loss)(params, bx, by, ok.astype(jnp.float32))
            updates, opt_state = model.tx.update(grads, opt_state, params)
            return b + 1, optax.apply_updates(params, updates), opt_state

        _, params, opt_state = jax.lax.while_loop(lambda c: c[0] < n_batches, body, (jnp.int32(0), params, opt_state))
        hold_rows = perm[jnp.arange(hold_cap)]
        mask = (jnp.arange(hold_cap) < n_hold).astype(jnp.float32)
        mse = model.holdout_mse(params, x[hold_rows], y[hold_rows], mask)
        order = _shuffle_rows(key, order, n_train)
        return params, opt_state, order, mse

    split_j = jax.jit(split)
    epoch_j = jax.jit(epoch)

    def fit(params, x, y, count, key):
        count = jnp.int32(count)
        k_split, key = jax.random.split(key)
        perm, n_hold, n_train, boot = split_j(k_split, count)
        opt_state = model.tx.init(params)
        best = np.full(e, np.inf)
        stale, n_epoch, mse = 0, 0, np.zeros(e)
        order = boot
        while stale < settings.max_epochs_no_improvement and n_epoch < settings.max_epochs:
            key, k = jax.random.split(key)
            params, opt_state, order, mse_j = epoch_j(params, opt_state, x, y, perm, n_hold, n_train, order, k)
            mse = np.asarray(mse_j, np.float64)
            improved = np.ones(e, bool) if n_epoch == 0 else (best - mse) / best > 0.01
            best = np.where(improved, mse, best)
            stale = 0 if improved.any() else stale + 1
            n_epoch += 1
        elites = np.argsort(mse, kind="stable")[: model.num_elites].astype(np.int32)
        return params, elites, float(np.mean(mse))

    return fit


def _shuffle_rows(key: jax.Array, order: jax.Array, n: jax.Array) -> jax.Array:
    """Permute each row's first ``n`` entries (the reference's ``shuffle_rows``); the padding stays behind."""
    valid = jnp.arange(order.shape[1]) < n
    u = jnp.where(valid[None, :], jax.random.uniform(key, order.shape), 2.0)
    return jnp.take_along_axis(order, jnp.argsort(u, axis=1), axis=1)


def model_step(
    model: Ensemble,
    params: PyTree,
    elites: jax.Array,
    obs: jax.Array,
    action_one_hot: jax.Array,
    key: jax.Array,
    reward_dim: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One imagined step (``ModelEnv.step``, stochastic): ``(next_obs, reward, uncertainty)``, rows ``[B]``.

    Each row samples from one elite drawn uniformly; the uncertainty is ``sum_j std_j`` of the ensemble mixture
    (all members, mean and variance: Lakshminarayanan et al. 2017).
    """
    k_noise, k_member = jax.random.split(key)
    x = jnp.concatenate([obs, action_one_hot], axis=-1)
    mean, logvar = model.apply(params, x)  # [E, B, out]
    var = jnp.exp(logvar)
    samples = mean + jnp.sqrt(var) * jax.random.normal(k_noise, mean.shape)
    member = elites[jax.random.randint(k_member, (obs.shape[0],), 0, elites.shape[0])]
    pick = samples[member, jnp.arange(obs.shape[0])]  # [B, out]
    mix_mean = jnp.mean(mean, axis=0)
    mix_var = jnp.mean(jnp.square(mean) + var, axis=0) - jnp.square(mix_mean)
    uncertainty = jnp.sum(jnp.sqrt(mix_var + 1e-12), axis=-1)
    return obs + pick[:, reward_dim:], pick[:, :reward_dim], uncertainty


# --------------------------------------------------------------------------- where imagined episodes end
TerminationFn = Callable[[jax.Array, jax.Array], jax.Array]


def termination_fn(env) -> TerminationFn:
    """``done(obs [B, d], next_obs [B, d]) -> bool [B]`` for an env the model imagines (the reference's
    ``termination_fn_*``). Raises for an env without one."""
    name = type(env).__name__
    if name == "Minecart":  # back in the base (|pos| < 0.15) after being out of it
        from morl.envs.minecart import BASE_RADIUS

        def minecart(obs, next_obs):
            was_out = jnp.linalg.norm(obs[:, :2], axis=-1) >= BASE_RADIUS
            return was_out & (jnp.linalg.norm(next_obs[:, :2], axis=-1) < BASE_RADIUS)

        return minecart
    if name == "DeepSeaTreasure":  # on a treasure cell
        sea = np.asarray(env._map_np, np.float32)
        scale = 10.0 if env.float_state else 1.0

        def dst(obs, next_obs):
            cell = jnp.round(next_obs * scale).astype(jnp.int32)
            hi = jnp.array(sea.shape) - 1
            inside = jnp.all((cell >= 0) & (cell <= hi), axis=-1)
            clipped = jnp.clip(cell, 0, hi)
            return inside & (jnp.asarray(sea)[clipped[:, 0], clipped[:, 1]] > 0.1)

        return dst
    raise ValueError(
        f"the dynamics model does not know where episodes of {env.name} end (known: minecart, deep-sea-treasure); "
        "train without Dyna (--dyna false) or add a termination function to agents/dynamics.py"
    )
