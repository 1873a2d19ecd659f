"""The rollout engine: one call runs T steps of N environments (optionally for P population members).

Pure-JAX envs: a jitted ``lax.scan`` over time with ``vmap`` over envs, auto-reset on episode end, and
per-episode vector statistics. Host (gymnasium) envs: the same call steps MO-Gymnasium's
``MOSyncVectorEnv`` on the host and runs the jitted policy between steps. Both return the same
``Transition`` type, so agents and the evaluator never ask which kind of env they got: an agent that learns from
the rollout builds its step with `Rollout.then` (rollout + its own function, one jitted program on pure-JAX envs),
evaluates with `Rollout.fresh_then`, starts the envs with `Rollout.starter` and caps episodes with `episode_limit`.

A policy is ``policy(policy_params, obs[N, ...], key) -> (action[N, ...], extras)``; ``extras`` is any
pytree with a leading N axis (log-probs, values, ...) and is stored in the trajectory. With
``population=P`` every leaf of ``policy_params`` and of the rollout state has a leading P axis and
members run in lockstep (one vmapped program), as C-MORL and MORL/D need.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.env import select_tree

PyTree = Any
Policy = Callable[[PyTree, jax.Array, jax.Array], tuple[jax.Array, PyTree]]


@struct.dataclass
class RolloutState:
    """What the engine carries between calls (leading axes: [P,] N)."""

    env_state: PyTree
    obs: jax.Array
    episode_return: jax.Array  # running undiscounted vector return, [N, m]
    episode_discounted_return: jax.Array  # running sum of gamma^t r_t, [N, m]
    episode_length: jax.Array  # [N] int32
    discount: jax.Array  # gamma^t of the next reward, [N]


@struct.dataclass
class Transition:
    """A trajectory, leaves shaped [T, [P,] N, ...].

    ``next_obs`` is the true next observation: on the last step of an episode it is the final observation
    (before auto-reset), which bootstrapping on truncation needs. ``episode_*`` hold the finished
    episode's statistics where ``done`` is true (and the running values elsewhere).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array
    extras: PyTree
    episode_return: jax.Array
    episode_discounted_return: jax.Array
    episode_length: jax.Array

    @property
    def done(self) -> jax.Array:
        return self.terminated | self.truncated


def _zero_stats(num_envs: int, reward_dim: int):
    return (
        jnp.zeros((num_envs, reward_dim), jnp.float32),
        jnp.zeros((num_envs, reward_dim), jnp.float32),
        jnp.zeros((num_envs,), jnp.int32),
        jnp.ones((num_envs,), jnp.float32),
    )


def _update_stats(state: RolloutState, reward, done, gamma):
    ret = state.episode_return + reward
    dret = state.episode_discounted_return + state.discount[:, None] * reward
    length = state.episode_length + 1
    finished = (ret, dret, length)
    keep = done[:, None]
    running = (
        jnp.where(keep, 0.0, ret),
        jnp.where(keep, 0.0, dret),
        jnp.where(done, 0, length),
        jnp.where(done, 1.0, state.discount * gamma),
    )
    return finished, running


@struct.dataclass
class EpisodeSummary:
    """What ``emit="summary"`` returns instead of a trajectory: episodes finished during the call, per env.

    Accumulated in the scan carry (nothing is stored per step), so evaluation and benchmarks run at full
    speed. ``first_*`` is the first episode finished in the call (what evaluation reads); ``*_sum`` add up
    every finished episode. Leaves are shaped [[P,] N, ...].
    """

    episodes: jax.Array
    return_sum: jax.Array
    discounted_return_sum: jax.Array
    length_sum: jax.Array
    first_return: jax.Array
    first_discounted_return: jax.Array
    first_length: jax.Array

    @staticmethod
    def zeros(num_envs: int, reward_dim: int) -> EpisodeSummary:
        vec = jnp.zeros((num_envs, reward_dim), jnp.float32)
        cnt = jnp.zeros((num_envs,), jnp.int32)
        return EpisodeSummary(cnt, vec, vec, cnt, vec, vec, cnt)

    def add(self, done, ret, dret, length) -> EpisodeSummary:
        first = done & (self.episodes == 0)
        d, f = done[:, None], first[:, None]
        return EpisodeSummary(
            self.episodes + done,
            self.return_sum + jnp.where(d, ret, 0.0),
            self.discounted_return_sum + jnp.where(d, dret, 0.0),
            self.length_sum + jnp.where(done, length, 0),
            jnp.where(f, ret, self.first_return),
            jnp.where(f, dret, self.first_discounted_return),
            jnp.where(first, length, self.first_length),
        )


@dataclass(frozen=True)
class Rollout:
    """A compiled rollout for one (env, policy, num_envs, num_steps) combination. Build with `make_rollout`.

    ``init`` and ``run`` answer the same way for both kinds of env (host envs ignore ``params``). Agents that
    act on the rollout's output build their step with `then` (or `fresh_then` for evaluation), which fuses the
    rollout and the agent's function into one jitted program where the env allows it.
    """

    init: Callable[..., RolloutState]
    run: Callable[..., tuple[RolloutState, Transition]]
    num_envs: int
    num_steps: int
    population: int | None
    is_host: bool
    default_params: PyTree = None

    def starter(self, env_params: PyTree = None) -> Callable[[jax.Array], RolloutState]:
        """``key -> RolloutState``: `init`'s values for a state that lives in the agent's own programs (`then`).

        On pure-JAX envs it is jitted and left where jit puts it, not spread over the devices as `init` does, so
        the agent's programs compile for one device as they always did."""
        if self.is_host:
            return self.init
        params = self.default_params if env_params is None else env_params
        return jax.jit(lambda key: self.init.pure(key, params))

    def then(self, policy_params: Callable, after: Callable, env_params: PyTree = None) -> Callable:
        """``step(x, state, key, *args) -> (state, after(x, out, *args))``.

        Runs the rollout with the policy parameters ``policy_params(x)`` from ``state``, then ``after`` on its
        output (a `Transition`, or an `EpisodeSummary` with ``emit="summary"``). On pure-JAX envs the whole is one
        jitted program; on host envs the envs step on the host between the jitted ``policy_params`` and ``after``.
        The values are the same either way.
        """
        if self.is_host:
            pp_jit, after_jit = jax.jit(policy_params), jax.jit(after)

            def host_step(x, state, key, *args):
                state, out = self.run(pp_jit(x), state, key)
                return state, after_jit(x, out, *args)

            return host_step
        params = self.default_params if env_params is None else env_params

        @jax.jit
        def step(x, state, key, *args):
            state, out = self.run.pure(policy_params(x), state, key, params)
            return state, after(x, out, *args)

        return step

    def fresh_then(self, policy_params: Callable, after: Callable, env_params: PyTree = None) -> Callable:
        """``fn(x, key, *args) -> after(x, out, *args)`` on freshly reset envs (evaluation).

        The key is split in two: the first half resets the envs, the second runs them. One jitted program on
        pure-JAX envs, host stepping between jitted pieces on host envs (see `then`).
        """
        if self.is_host:
            pp_jit, after_jit = jax.jit(policy_params), jax.jit(after)

            def host_fn(x, key, *args):
                k_init, k_run = jax.random.split(key)
                _, out = self.run(pp_jit(x), self.init(k_init), k_run)
                return after_jit(x, out, *args)

            return host_fn
        params = self.default_params if env_params is None else env_params

        @jax.jit
        def fn(x, key, *args):
            k_init, k_run = jax.random.split(key)
            state = self.init.pure(k_init, params)
            _, out = self.run.pure(policy_params(x), state, k_run, params)
            return after(x, out, *args)

        return fn


def require_pure_jax(env, who: str) -> None:
    """For agents that step the env inside their own jitted loop (``Rollout.run.pure`` in a scan): they cannot
    take a host env, whose steps run in Python between jitted pieces. A clear error instead of a trace failure."""
    if getattr(env, "is_host", False):
        raise ValueError(
            f"{who} trains inside one jitted program and needs a pure-JAX env; {env.name} is a host env "
            "(gym: ids and native MuJoCo): use a pure-JAX id (for MuJoCo: backend='mjx'), or an agent "
            "that takes host envs (c-morl, pgmorl)"
        )


def episode_limit(env, params: PyTree = None, max_steps: int | None = None, who: str = "") -> tuple[PyTree, int]:
    """The env parameters with an episode cap of ``max_steps`` (None: the env's own), and the cap in force.

    Pure-JAX envs take the cap in their parameters. Host envs carry their time limit in the vector env, fixed
    when the env is made: their parameters are None and a different ``max_steps`` is not applied (a warning
    says how to make the env with it); their cap is the env's own (1000 when it has none).
    """
    if getattr(env, "is_host", False):
        if max_steps is not None and max_steps != env.max_steps:
            warnings.warn(
                f"{who}max_episode_steps={max_steps} cannot be applied to the host env {env.name} (its "
                f"time limit is {env.max_steps}); make it with morl.make('gym:...', max_episode_steps=...) "
                "to change it",
                stacklevel=3,
            )
        return None, int(env.max_steps or 1000)
    params = env.default_params if params is None else params
    if max_steps is not None:
        params = params.replace(max_steps=int(max_steps))
    return params, int(params.max_steps)


def make_rollout(
    env,
    policy: Policy,
    num_envs: int,
    num_steps: int,
    gamma: float = 1.0,
    population: int | None = None,
    seed: int | None = None,
    emit: str = "transitions",
    episode_context: bool = False,
    policy_axes: Any = 0,
) -> Rollout:
    """Build ``init(key[, params]) -> RolloutState`` and ``run(policy_params, state, key[, params])``.

    ``population``: number of members P (leading axis of ``policy_params``), or None for a single policy.
    ``policy_axes``: with a population, which leaves of ``policy_params`` have the member axis, as a ``jax.vmap``
    ``in_axes`` prefix: 0 (all of them), or e.g. ``{"params": None, "w": 0}`` for one network that every member
    runs with its own preference (no per-member copies of the network).
    ``seed``: host envs only, seeds the vector env (pure-JAX envs are seeded by the key).
    ``emit``: ``"transitions"`` (a `Transition` per step, for learning) or ``"summary"`` (one
    `EpisodeSummary` per call, for evaluation and benchmarks: nothing stored per step).
    ``episode_context``: the policy also gets each env's running episode statistics,
    ``policy(params, obs, key, episode_return[N, m], episode_length[N])`` (undiscounted return and steps of the
    current episode so far; zeros right after a reset), for policies conditioned on what the episode has earned
    (PCN follows a return-to-go).
    """
    if emit not in ("transitions", "summary"):
        raise ValueError(f"emit must be 'transitions' or 'summary', got {emit!r}")
    if num_envs < 1 or num_steps < 1:
        raise ValueError(f"num_envs and num_steps must be >= 1 (got {num_envs}, {num_steps})")
    if getattr(env, "is_host", False):
        return _make_host_rollout(
            env, policy, num_envs, num_steps, gamma, population, seed, emit, episode_context, policy_axes
        )
    return _make_jax_rollout(env, policy, num_envs, num_steps, gamma, population, emit, episode_context, policy_axes)


def _check_action_shape(env, action, num_envs):
    expected = (num_envs, *env.action_space.shape)
    if tuple(action.shape) != expected:
        raise ValueError(
            f"policy returned actions of shape {tuple(action.shape)} for {env.name}, expected {expected} "
            f"(num_envs x action_space {env.action_space.describe()}); return one action per env"
        )


def _make_jax_rollout(env, policy, num_envs, num_steps, gamma, population, emit, episode_context=False, policy_axes=0):
    m = env.reward_dim

    def init_single(key, params):
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)
        return RolloutState(env_state, obs, *_zero_stats(num_envs, m))

    def run_single(policy_params, state: RolloutState, key, params):
        def one_step(carry, key):
            state, summary = carry
            k_act, k_step, k_reset = jax.random.split(key, 3)
            context = (state.episode_return, state.episode_length) if episode_context else ()
            action, extras = policy(policy_params, state.obs, k_act, *context)
            _check_action_shape(env, action, num_envs)
            step_keys = jax.random.split(k_step, num_envs)
            next_obs, env_state, reward, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                step_keys, state.env_state, action, params
            )
            done = term | trunc
            reset_obs, reset_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), params)
            env_state = jax.vmap(select_tree)(done, reset_state, env_state)
            obs = jnp.where(done.reshape(done.shape + (1,) * (next_obs.ndim - 1)), reset_obs, next_obs)
            (ret, dret, length), running = _update_stats(state, reward, done, gamma)
            new_state = RolloutState(env_state, obs, *running)
            if emit == "summary":
                return (new_state, summary.add(done, ret, dret, length)), None
            transition = Transition(state.obs, action, reward, term, trunc, next_obs, extras, ret, dret, length)
            return (new_state, summary), transition

        (state, summary), traj = jax.lax.scan(
            one_step, (state, EpisodeSummary.zeros(num_envs, m)), jax.random.split(key, num_steps)
        )
        return state, (summary if emit == "summary" else traj)

    if population is None:
        init_fn, run_fn = init_single, run_single
    else:

        def init_fn(key, params):
            return jax.vmap(init_single, in_axes=(0, None))(jax.random.split(key, population), params)

        def run_fn(policy_params, state, key, params):
            state, traj = jax.vmap(run_single, in_axes=(policy_axes, 0, 0, None))(
                policy_params, state, jax.random.split(key, population), params
            )
            if emit == "summary":
                return state, traj
            # put time first, as in the single-policy case: [T, P, N, ...]
            return state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)

    init_jit, run_jit = jax.jit(init_fn), jax.jit(run_fn)
    default = env.default_params
    sharding = _env_axis_sharding(num_envs, population is not None)

    def init(key, params=None):
        state = init_jit(key, default if params is None else params)
        # spread the env axis over every device (GPUs, or CPU cores exposed as devices): the jitted scan
        # then runs SPMD-partitioned, one shard per device
        return state if sharding is None else jax.device_put(state, sharding)

    def run(policy_params, state, key, params=None):
        return run_jit(policy_params, state, key, default if params is None else params)

    # expose the traceable functions too, for agents that call the engine inside their own jit
    init.pure, run.pure = init_fn, run_fn  # type: ignore[attr-defined]
    return Rollout(init, run, num_envs, num_steps, population, is_host=False, default_params=default)


def _env_axis_sharding(num_envs: int, has_population: bool):
    devices = jax.devices()
    if len(devices) < 2 or num_envs % len(devices):
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(devices), ("envs",))
    return NamedSharding(mesh, PartitionSpec(None, "envs") if has_population else PartitionSpec("envs"))


def _make_host_rollout(
    env, policy, num_envs, num_steps, gamma, population, seed, emit, episode_context=False, policy_axes=0
):
    """Host path: MOSyncVectorEnv steps on the host, the jitted policy runs between steps."""
    members = population or 1
    total = members * num_envs
    m = env.reward_dim
    vec = env.make_vector_env(total, seed=seed)
    if population is None:
        act = jax.jit(policy)
    else:
        act = jax.jit(
            lambda p, o, k, *c: jax.vmap(policy, in_axes=(policy_axes,) + (0,) * (2 + len(c)))(
                p, o, jax.random.split(k, population), *c
            )
        )

    def to_member_axes(x):
        x = np.asarray(x)
        return x if population is None else x.reshape((population, num_envs) + x.shape[1:])

    def flat(x):
        x = np.asarray(x)
        return x if population is None else x.reshape((total,) + x.shape[2:])

    def init(key, params=None):
        obs, _ = vec.reset(seed=int(jax.random.randint(key, (), 0, 2**31 - 1)))
        stats = [np.asarray(s) for s in _zero_stats(total, m)]
        return RolloutState(
            None, jnp.asarray(to_member_axes(obs)), *map(lambda s: jnp.asarray(to_member_axes(s)), stats)
        )

    def run(policy_params, state: RolloutState, key, params=None):
        obs = flat(state.obs)
        ret, dret = flat(state.episode_return).copy(), flat(state.episode_discounted_return).copy()
        length, discount = flat(state.episode_length).copy(), flat(state.discount).copy()
        steps = []
        summary = EpisodeSummary.zeros(total, m)
        for k in jax.random.split(key, num_steps):
            context = (jnp.asarray(to_member_axes(ret)), jnp.asarray(to_member_axes(length))) if episode_context else ()
            action, extras = act(policy_params, jnp.asarray(to_member_axes(obs)), k, *context)
            action_np = flat(action)
            expected = (total, *env.action_space.shape)
            if action_np.shape != expected:
                raise ValueError(
                    f"policy returned actions of shape {action_np.shape} for {env.name}, "
                    f"expected {expected}; return one action per env"
                )
            next_obs, reward, term, trunc, _ = vec.step(action_np)
            reward = np.asarray(reward, np.float32)
            if not np.all(np.isfinite(reward)):
                bad = np.argwhere(~np.isfinite(reward))[0]
                raise FloatingPointError(
                    f"{env.name} returned a non-finite reward {reward[bad[0]]} in env {bad[0]}; "
                    "check the environment (or wrap it to clip/repair rewards)"
                )
            term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
            done = term | trunc
            ret += reward
            dret += discount[:, None] * reward
            length += 1
            fin = (ret.copy(), dret.copy(), length.copy())
            if emit == "summary":
                summary = summary.add(jnp.asarray(done), *map(jnp.asarray, fin))
            obs_after = np.array(next_obs, copy=True)
            if done.any():
                obs_after[done] = _reset_finished(vec, done)
            ret[done] = 0.0
            dret[done] = 0.0
            length[done] = 0
            discount = np.where(done, 1.0, discount * gamma).astype(np.float32)
            if emit == "transitions":
                steps.append((obs, action_np, reward, term, trunc, np.asarray(next_obs), extras, *fin))
            obs = obs_after
        new_state = RolloutState(
            None,
            jnp.asarray(to_member_axes(obs)),
            *(jnp.asarray(to_member_axes(x)) for x in (ret, dret, length, discount)),
        )
        if emit == "summary":
            return new_state, jax.tree.map(lambda x: jnp.asarray(to_member_axes(np.asarray(x))), summary)
        cols = list(zip(*steps))
        arrays = [jnp.asarray(np.stack([to_member_axes(x) for x in c])) for i, c in enumerate(cols) if i != 6]
        extras = jax.tree.map(lambda *xs: jnp.stack(xs), *cols[6])
        return new_state, Transition(*arrays[:6], extras, *arrays[6:])

    return Rollout(init, run, num_envs, num_steps, population, is_host=True)


def _reset_finished(vec, done: np.ndarray) -> np.ndarray:
    """Reset the host copies whose episode ended now; returns their first observations. Vector envs with a
    ``reset_done(mask)`` (the native MuJoCo backend) do it themselves; ``MOSyncVectorEnv`` would reset them on
    the NEXT call (gymnasium's NEXT_STEP mode), so each copy is reset here and the pending autoreset cleared."""
    if hasattr(vec, "reset_done"):
        return vec.reset_done(done)
    first = []
    for i in np.flatnonzero(done):
        obs, _ = vec.envs[i].reset()
        vec._autoreset_envs[i] = False
        first.append(obs)
    return np.stack(first)


def finished_episode_returns(traj: Transition, fallback: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean discounted vector return of the episodes that ended in a population rollout, per member: ``[P, m]``,
    and their number ``[P]``. ``traj`` leaves are [T, P, N, ...]; members with no finished episode get ``fallback``."""
    done = traj.terminated | traj.truncated
    count = jnp.sum(done, axis=(0, 2))
    total = jnp.sum(jnp.where(done[..., None], traj.episode_discounted_return, 0.0), axis=(0, 2))
    return jnp.where(count[:, None] > 0, total / jnp.maximum(count, 1)[:, None], fallback), count


def random_policy(env) -> Policy:
    """A uniform random policy over ``env.action_space`` (policy params are ignored)."""
    space = env.action_space

    def policy(_params, obs, key):
        return space.sample(key, (obs.shape[0],)), ()

    return policy
