"""Hypernetwork PPO (MORLAX; Janwani et al. 2026): one network for the whole Pareto set, trained on many envs at once.

A hypernetwork maps a preference ``w`` (on the simplex) to the weights of a small policy MLP, a second one to the
weights of a scalar value MLP (MORLAX's "dual" hypernetwork); only the hypernetworks are trained. Each iteration:

1. **Preferences**, drawn once per iteration and held for its rollout. ``sparse`` (MORLAX's default): ``K - m``
   Dirichlet(alpha) draws plus the ``m`` simplex corners, each given to a block of ``num_envs / K`` envs; ``dense``:
   one Dirichlet draw per env.
2. **Rollout** of every env with the network its preference generates (one jitted scan, `morl.rollout`).
3. **PPO** on the ``w``-scalarised reward ``w . r`` with the ``w``-conditioned scalar critic: GAE (lambda 0.95),
   per-minibatch advantage normalisation, clipped surrogate, ``0.25 * MSE`` value loss (Brax's), entropy bonus.
   Since GAE is linear, the advantage equals ``w . A`` of per-objective GAE whenever ``V_w = w . V``.

``network="concat"`` is the AMOR-style ablation: the same PPO with ordinary MLPs that read ``[features, w]``.
The trained hypernetwork is the solution: a preference-conditioned policy (`morl.solution.Solution`). Defaults are
MORLAX's MOCheetah settings (appendix Table I); per-env ones below. Deviations: ``docs/algorithms/hyper-ppo.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from morl.agent import AgentSpec, JitTrainer, check_config, register_agent
from morl.agents.networks import (
    MLP,
    CategoricalActor,
    GaussianActor,
    head_log_prob_entropy,
    head_mode,
    head_sample,
    observation_dim,
    preprocess_obs,
)
from morl.agents.ppo import RunningMeanStd, gae, normalize_obs
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution
from morl.spaces import Discrete

PyTree = Any


# =============================================================================================== config
@dataclass(frozen=True)
class HyperPPOConfig:
    """Hyper-PPO settings. Defaults: MORLAX's MOCheetah column (appendix Table I); Brax PPO's semantics mapped to
    ours: a batch of ``batch_size * num_minibatches`` unrolls of ``unroll_length`` steps is ``num_envs`` envs x
    ``num_steps`` steps here (MOCheetah: 64 x 2 unrolls of 20 = 128 envs x 20 steps).

    Budget rule: ``total_timesteps`` bounds every real transition; training runs ``total_timesteps // (num_envs *
    num_steps)`` whole iterations (the rest of the budget is left unspent)."""

    total_timesteps: int = 50_000_000  # training budget in env steps (MOCheetah: 5e7)
    num_envs: int = 128  # parallel envs; each iteration steps all of them ``num_steps`` times
    num_steps: int = 20  # steps per env per iteration (Brax's unroll length)
    num_minibatches: int = 2  # minibatches per epoch
    epochs: int = 4  # passes over each batch (Brax's num_updates_per_batch)
    learning_rate: float = 5e-4  # Adam, constant
    max_grad_norm: float = 1.0  # global gradient-norm clip
    gamma: float = 0.98  # discount
    gae_lambda: float = 0.95
    clip_eps: float = 0.1  # PPO ratio clip
    entropy_coef: float = 0.01  # entropy bonus (Brax's entropy_cost)
    value_coef: float = 0.5  # value loss = value_coef * 0.5 * MSE (Brax: 0.25 * MSE)
    normalize_obs: bool = True  # running mean/std of the observation features (clip +-10)
    network: str = "hyper"  # "hyper": hypernetwork-generated MLPs (MORLAX); "concat": MLPs of [obs, w] (AMOR-style)
    hyper_hidden: tuple[int, ...] = (128, 128)  # the hypernetworks' hidden layers (swish)
    num_features: int = 16  # width of the hypernetworks' feature layer: generated weights = features @ W + b
    hidden: tuple[int, ...] = (64, 64)  # the generated policy and value MLPs' hidden layers (tanh)
    sampling: str = "sparse"  # "sparse": K - m Dirichlet draws + the m corners, in blocks; "dense": one draw per env
    num_clusters: int = 8  # K: preferences per iteration with "sparse" (each over num_envs / K envs)
    dirichlet_alpha: float = 1.0  # concentration of the preference draws
    iterations_per_chunk: int = 10  # iterations per jitted chunk (progress, evaluation and checkpoints between)

    def __post_init__(self):
        check_config(
            "hyper-ppo",
            self,
            at_least_one=(
                "total_timesteps",
                "num_envs",
                "num_steps",
                "num_minibatches",
                "epochs",
                "num_features",
                "num_clusters",
                "iterations_per_chunk",
            ),
            choices={"network": ("hyper", "concat"), "sampling": ("sparse", "dense")},
            unit_interval=("gamma", "gae_lambda"),
        )
        for name in ("learning_rate", "clip_eps", "dirichlet_alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"hyper-ppo config: {name} must be > 0, got {getattr(self, name)!r}")
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"hyper-ppo config: num_envs * num_steps = {batch} is not divisible by num_minibatches="
                f"{self.num_minibatches}; pick sizes so every minibatch has the same length"
            )
        if self.total_timesteps < batch:
            raise ValueError(
                f"hyper-ppo config: total_timesteps={self.total_timesteps} is less than one iteration "
                f"(num_envs * num_steps = {batch}); raise the budget or shrink num_envs / num_steps"
            )
        if self.sampling == "sparse" and self.num_envs % self.num_clusters:
            raise ValueError(
                f"hyper-ppo config: num_envs={self.num_envs} is not a multiple of num_clusters={self.num_clusters} "
                "(each sparse preference drives a block of num_envs / num_clusters envs)"
            )

    @property
    def iterations(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)


# =============================================================================================== preferences
def sample_preferences(
    key: jax.Array, num_envs: int, m: int, sampling: str, num_clusters: int, alpha: float
) -> jax.Array:
    """One preference per env, ``[num_envs, m]``. ``sparse``: ``K - m`` Dirichlet draws then the ``m`` corners, each
    repeated over a block of ``num_envs / K`` consecutive envs (MORLAX's sparse-heavytail); with ``K < m`` only the
    first ``K`` corners. ``dense``: an independent draw per env."""
    if sampling == "dense":
        return jax.random.dirichlet(key, jnp.full((m,), alpha, jnp.float32), (num_envs,))
    draws = jax.random.dirichlet(key, jnp.full((m,), alpha, jnp.float32), (max(num_clusters - m, 0),))
    clusters = jnp.concatenate([draws, jnp.eye(m, dtype=jnp.float32)])[:num_clusters]
    return jnp.repeat(clusters, num_envs // num_clusters, axis=0)


# =============================================================================================== networks
class HyperNetwork(nn.Module):
    """``w -> theta(w) = MLP(w / sum(w)) @ W + b``: the flat weights of a target network. ``W`` starts at zero and
    ``b`` at a fresh target network (`init_from`), so every preference starts from the same network."""

    num_params: int
    hidden: Sequence[int]
    num_features: int

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        f = w / jnp.sum(w, axis=-1, keepdims=True)
        for width in self.hidden:
            f = nn.swish(nn.Dense(width)(f))
        f = nn.Dense(self.num_features)(f)
        W = self.param("W", nn.initializers.zeros, (self.num_features, self.num_params))
        b = self.param("b", nn.initializers.zeros, (self.num_params,))
        return f @ W + b


@dataclass(frozen=True)
class PreferenceActorCritic:
    """An actor and a scalar critic of (features ``x [B, d]``, preferences ``w [B, m]``), as pure functions over
    ``{"actor": ..., "critic": ...}``: generated from ``w`` by two hypernetworks, or reading ``[x, w]``."""

    observation_space: Any
    action_space: Any
    reward_dim: int
    network: str
    hidden: tuple[int, ...]
    hyper_hidden: tuple[int, ...]
    num_features: int

    @property
    def obs_dim(self) -> int:
        return observation_dim(self.observation_space)

    def _targets(self) -> dict[str, nn.Module]:
        if isinstance(self.action_space, Discrete):
            actor = CategoricalActor(int(self.action_space.n), self.hidden)
        else:
            actor = GaussianActor(int(self.action_space.shape[0]), self.hidden)
        return {"actor": actor, "critic": MLP(1, self.hidden)}

    def _in_dim(self) -> int:
        return self.obs_dim + (self.reward_dim if self.network == "concat" else 0)

    def _unravel(self, name: str) -> Callable[[jax.Array], PyTree]:
        return ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self._shapes(name)))[1]

    def _hyper(self, name: str) -> HyperNetwork:
        size = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(self._shapes(name)))
        return HyperNetwork(size, self.hyper_hidden, self.num_features)

    def _shapes(self, name: str) -> PyTree:
        return jax.eval_shape(self._targets()[name].init, jax.random.PRNGKey(0), jnp.zeros((1, self._in_dim())))

    def init(self, key: jax.Array) -> PyTree:
        params = {}
        for (name, module), k in zip(self._targets().items(), jax.random.split(key)):
            k_target, k_hyper = jax.random.split(k)
            target = module.init(k_target, jnp.zeros((1, self._in_dim()), jnp.float32))
            if self.network == "concat":
                params[name] = target
                continue
            hyper = self._hyper(name).init(k_hyper, jnp.zeros((1, self.reward_dim), jnp.float32))
            hyper["params"]["b"] = ravel_pytree(target)[0]
            params[name] = hyper
        return params

    def generate(self, params: PyTree, name: str, w: jax.Array) -> jax.Array:
        """The flat target-network weights of each preference, ``[B, num_params]`` (hypernetwork mode)."""
        return self._hyper(name).apply(params[name], w)

    def _apply(self, params: PyTree, name: str, x: jax.Array, w: jax.Array):
        module = self._targets()[name]
        if self.network == "concat":
            return module.apply(params[name], jnp.concatenate([x, w], axis=-1))
        unravel = self._unravel(name)
        theta = self.generate(params, name, w)
        out = jax.vmap(lambda th, xi: module.apply(unravel(th), xi[None]))(theta, x)
        return jax.tree.map(lambda o: o[:, 0], out)

    def actor_out(self, params: PyTree, x: jax.Array, w: jax.Array):
        """Logits ``[B, A]`` or ``(mean, log_std)`` ``[B, a]``: what `agents.networks`' policy heads read."""
        return self._apply(params, "actor", x, w)

    def value(self, params: PyTree, x: jax.Array, w: jax.Array) -> jax.Array:
        """Scalar values of the ``w``-scalarised return, ``[B]``."""
        return self._apply(params, "critic", x, w)[:, 0]


# =============================================================================================== trainer
@struct.dataclass
class HyperPPOState:
    params: PyTree  # {"actor": ..., "critic": ...}: hypernetworks (or concat MLPs)
    opt_state: PyTree
    obs_rms: RunningMeanStd
    rollout: RolloutState
    key: jax.Array
    iteration: jax.Array  # int32 iterations done
    env_steps: jax.Array  # int32 real transitions consumed


class HyperPPOTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`): ``update`` is ``iterations_per_chunk`` iterations in one jitted scan
    (the iterations past the budget are computed and discarded); pure, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: HyperPPOConfig, env, env_params=None):
        require_pure_jax(env, "hyper-ppo")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.net = PreferenceActorCritic(
            env.observation_space,
            env.action_space,
            self.m,
            config.network,
            tuple(config.hidden),
            tuple(config.hyper_hidden),
            config.num_features,
        )
        self.tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate))
        self.rollout = make_rollout(env, self._behaviour_policy, config.num_envs, config.num_steps, gamma=config.gamma)
        self._rollout_step = self.rollout.then(lambda p: p, lambda p, traj: traj, self.env_params)

        def act(params, w, obs, key):
            x = self.features(params["obs_rms"], obs)
            wb = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (x.shape[0], self.m))
            return head_mode(env.action_space, self.net.actor_out(params["net"], x, wb))

        self._act = act
        self._compile()

    # ------------------------------------------------------------------ protocol
    @property
    def budget(self) -> int:
        return self.config.iterations * self.config.num_envs * self.config.num_steps

    def solution(self, state: HyperPPOState) -> Solution:
        return Solution(
            act=self._act, params={"net": state.params, "obs_rms": state.obs_rms}, conditioned=True, greedy=True
        )

    # ------------------------------------------------------------------ pieces
    def features(self, obs_rms: RunningMeanStd, obs: jax.Array) -> jax.Array:
        x = preprocess_obs(self.env.observation_space, obs)
        return normalize_obs(obs_rms, x, 10.0) if self.config.normalize_obs else x

    def _behaviour_policy(self, p, obs, key):
        x = self.features(p["obs_rms"], obs)
        action, raw, logp = head_sample(self.env.action_space, self.net.actor_out(p["net"], x, p["w"]), key)
        return action, {"raw": raw, "logp": logp}

    def _init_fn(self, key: jax.Array) -> HyperPPOState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = self.net.init(k_net)
        return HyperPPOState(
            params=params,
            opt_state=self.tx.init(params),
            obs_rms=RunningMeanStd.create((self.net.obs_dim,)),
            rollout=self.rollout.init.pure(k_env, self.env_params),
            key=k_run,
            iteration=jnp.int32(0),
            env_steps=jnp.int32(0),
        )

    def _loss(self, params, mb):
        cfg = self.config
        out = self.net.actor_out(params, mb["x"], mb["w"])
        logp, entropy = head_log_prob_entropy(self.env.action_space, out, mb["raw"])
        log_ratio = logp - mb["logp"]
        ratio = jnp.exp(log_ratio)
        adv = (mb["adv"] - jnp.mean(mb["adv"])) / (jnp.std(mb["adv"]) + 1e-8)
        pg_loss = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * adv))
        v_loss = cfg.value_coef * 0.5 * jnp.mean((self.net.value(params, mb["x"], mb["w"]) - mb["targets"]) ** 2)
        ent = jnp.mean(entropy)
        total = pg_loss + v_loss - cfg.entropy_coef * ent
        return total, {"pg_loss": pg_loss, "value_loss": v_loss, "entropy": ent, "approx_kl": jnp.mean(-log_ratio)}

    def _iteration(self, state: HyperPPOState, _):
        cfg = self.config
        key, k_w, k_roll, k_upd = jax.random.split(state.key, 4)
        w = sample_preferences(k_w, cfg.num_envs, self.m, cfg.sampling, cfg.num_clusters, cfg.dirichlet_alpha)
        pp = {"net": state.params, "obs_rms": state.obs_rms, "w": w}
        rollout, traj = self._rollout_step(pp, state.rollout, k_roll)
        T, N = traj.reward.shape[:2]
        n = T * N

        def flat(x):
            return x.reshape((n,) + x.shape[2:])

        x, x_next = self.features(state.obs_rms, flat(traj.obs)), self.features(state.obs_rms, flat(traj.next_obs))
        wf = jnp.broadcast_to(w, (T, N, self.m)).reshape(n, self.m)
        values = self.net.value(state.params, x, wf).reshape(T, N, 1)
        next_values = self.net.value(state.params, x_next, wf).reshape(T, N, 1)
        reward = jnp.sum(traj.reward * w[None], axis=-1, keepdims=True)
        done = traj.terminated | traj.truncated
        adv, targets = gae(reward, values, next_values, traj.terminated, done, cfg.gamma, cfg.gae_lambda)
        batch = {
            "x": x,
            "w": wf,
            "raw": flat(traj.extras["raw"]),
            "logp": flat(traj.extras["logp"]),
            "adv": flat(adv)[:, 0],
            "targets": flat(targets)[:, 0],
        }
        grad_fn = jax.grad(self._loss, has_aux=True)
        mb_size = n // cfg.num_minibatches

        def minibatch_step(carry, idx):
            params, opt_state = carry
            grads, stats = grad_fn(params, jax.tree.map(lambda v: v[idx], batch))
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), stats

        def epoch(carry, k):
            idx = jax.random.permutation(k, n).reshape(cfg.num_minibatches, mb_size)
            return jax.lax.scan(minibatch_step, carry, idx)

        (params, opt_state), stats = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(k_upd, cfg.epochs)
        )
        obs_rms = state.obs_rms.update(preprocess_obs(self.env.observation_space, flat(traj.obs)))
        new = HyperPPOState(params, opt_state, obs_rms, rollout, key, state.iteration + 1, state.env_steps + n)
        active = state.iteration < cfg.iterations
        new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state.replace(key=key))
        logs = jax.tree.map(jnp.mean, stats)
        finished = done & active
        logs["episodes"] = jnp.sum(finished)
        logs["scalarized_return"] = jnp.sum(
            jnp.where(finished, jnp.sum(traj.episode_return * w[None], axis=-1), 0.0)
        ) / jnp.maximum(jnp.sum(finished), 1)
        return new, logs

    def _chunk(self, state: HyperPPOState) -> tuple[HyperPPOState, dict]:
        state, logs = jax.lax.scan(self._iteration, state, None, length=self.config.iterations_per_chunk)
        episodes = jnp.sum(logs["episodes"])
        out = {k: jnp.mean(v) for k, v in logs.items() if k not in ("episodes", "scalarized_return")}
        out["episodes"] = episodes
        out["scalarized_return"] = jnp.sum(logs["scalarized_return"] * logs["episodes"]) / jnp.maximum(episodes, 1)
        return state, out


def make_trainer(config: HyperPPOConfig, env, env_params=None) -> HyperPPOTrainer:
    return HyperPPOTrainer(config, env, env_params)


#: MORLAX's appendix Table I per robot (MOHopper's column for both hopper ids), and a classic-env recipe
ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "mo-halfcheetah-v5": {},
    **{
        hopper: dict(
            total_timesteps=600_000_000,
            num_envs=1024,
            num_steps=30,
            num_minibatches=32,
            learning_rate=5e-6,
            clip_eps=0.2,
            gamma=0.99,
        )
        for hopper in ("mo-hopper-v5", "mo-hopper-2obj-v5")
    },
    **{
        ant: dict(
            total_timesteps=200_000_000, num_envs=1024, num_minibatches=16, learning_rate=2e-5, clip_eps=0.2, gamma=0.99
        )
        for ant in ("mo-ant-v5", "mo-ant-2obj-v5")
    },
    "mo-walker2d-v5": dict(
        total_timesteps=150_000_000,
        num_envs=1024,
        num_steps=30,
        num_minibatches=16,
        learning_rate=6e-6,
        clip_eps=0.15,
        gamma=0.995,
    ),
    "mo-humanoid-v5": dict(
        total_timesteps=400_000_000,
        num_envs=1024,
        num_steps=30,
        num_minibatches=16,
        learning_rate=2e-6,
        gamma=0.995,
        hyper_hidden=(512, 512),
        num_features=32,
        hidden=(128, 128),
    ),
}

SPEC = register_agent(
    AgentSpec(
        name="hyper-ppo",
        config_cls=HyperPPOConfig,
        make_trainer=make_trainer,
        summary="Hypernetwork PPO (MORLAX, Janwani et al. 2026): preference -> policy and value weights, many envs",
        env_defaults=ENV_DEFAULTS,
    )
)
