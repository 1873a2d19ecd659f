"""Pareto Conditioned Networks (Reymond, Bargiacchi, Nowé, AAMAS 2022) as MORL-Baselines implements it, in JAX.

One network ``pi(a | s, desired return, desired horizon)`` is trained by supervised learning on the agent's best
episodes: every step of a stored episode is a sample ``(obs, return-to-go, steps-to-go) -> action taken``
(cross-entropy). Each iteration trains on the episode buffer, picks a command from the buffer's non-dominated
episodes (one of them, one objective raised by a random fraction of the front's spread), runs new episodes that
follow it (the command shrinks by each reward received and each step taken) and offers them to the buffer, which
keeps a fixed number of episodes ranked by their distance to the buffer's front (crowded and duplicate points
ranked lower). The solution is the set of commands of the non-dominated episodes: each candidate is the same
network following one command. Discrete actions (MORL-Baselines' PCN also has a continuous head).

The whole iteration is one jitted program with static shapes (a fixed-capacity episode buffer, padded episodes),
so seeds vmap. The algorithm step by step and where it differs from MORL-Baselines: docs/algorithms/pcn.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from morl.agent import AgentSpec, JitTrainer, check_config, register_agent, require_discrete
from morl.agents.networks import ObsEncoder
from morl.envs.deep_sea_treasure import DST_IDS
from morl.pareto import non_dominated_mask_jax
from morl.rollout import RolloutState, episode_limit, make_rollout, require_pure_jax
from morl.solution import Solution

PyTree = Any

#: MORL-Baselines' ``_nlargest``: the rank penalty of a duplicate or dominated episode
DUPLICATE_PENALTY = 1e-5


# =============================================================================================== config
@dataclass(frozen=True)
class PCNConfig:
    """PCN settings. Defaults: MORL-Baselines ``PCN.__init__`` and ``PCN.train`` (docs/sources.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the random
    episodes that first fill the buffer included. Episodes run as one vector env; collection stops at the first
    vector step that reaches the budget (a run uses at most ``total_timesteps + num_step_episodes - 1``
    transitions), and episodes cut there are not stored."""

    total_timesteps: int = 100_000  # training budget in env steps (MORL-Baselines' train(total_timesteps); it
    # has no default: its DST anchor ran 95k)
    learning_rate: float = 1e-3  # Adam learning rate
    gamma: float = 1.0  # discount of the returns-to-go the network is conditioned on (PCN: undiscounted)
    batch_size: int = 256  # (step, command) samples per gradient step
    hidden_dim: int = 64  # width of the observation and command embeddings and of the hidden layer
    scaling_factor: tuple[float, ...] | None = None  # multiplies (desired return [m], desired horizon) before the
    # command embedding; None = all ones (MORL-Baselines' DST example: [1, 1, 1]; it has no default)
    max_return: tuple[float, ...] | None = None  # upper bound of a desired return while it shrinks; None = 100 for
    # every objective (MORL-Baselines' default)
    num_er_episodes: int = 20  # random episodes that first fill the buffer; also how many top-ranked episodes
    # the command is chosen among
    num_step_episodes: int = 10  # episodes run with each new command
    num_model_updates: int = 50  # gradient steps per iteration
    max_buffer_size: int = 100  # episodes the buffer keeps
    crowding_threshold: float = 0.2  # episodes with a crowding distance <= this get their rank penalty doubled
    num_points_pf: int = 100  # at most this many non-dominated commands form the solution (MORL-Baselines: the
    # commands it evaluates)
    obs_encoding: str = "raw"  # "raw" | "onehot": integer Box coordinates one-hot encoded (ours; PCN's DST model
    # one-hot encodes the cell)
    max_episode_steps: int | None = None  # episode cap (the buffer's episode length); None = the env's own
    iterations_per_chunk: int = 20  # iterations per jitted training chunk (one `update` call; ours)

    def __post_init__(self):
        check_config(
            "pcn",
            self,
            at_least_one=(
                "total_timesteps",
                "batch_size",
                "hidden_dim",
                "num_er_episodes",
                "num_step_episodes",
                "num_model_updates",
                "max_buffer_size",
                "num_points_pf",
                "iterations_per_chunk",
            ),
            non_negative=("crowding_threshold",),
            unit_interval=("gamma",),
            choices={"obs_encoding": ("raw", "onehot")},
        )
        if self.learning_rate <= 0:
            raise ValueError(f"pcn config: learning_rate must be > 0, got {self.learning_rate!r}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"pcn config: max_episode_steps must be >= 1 or None, got {self.max_episode_steps!r}")
        if self.num_er_episodes > self.max_buffer_size:
            raise ValueError(
                f"pcn config: the buffer (max_buffer_size={self.max_buffer_size}) must hold the num_er_episodes="
                f"{self.num_er_episodes} random episodes; raise max_buffer_size or lower num_er_episodes"
            )


# =============================================================================================== network
def _torch_linear_init(key, shape, dtype=jnp.float32):
    """PyTorch's ``nn.Linear`` default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (MORL-Baselines' PCN keeps it)."""
    bound = 1.0 / np.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class PCNNet(nn.Module):
    """MORL-Baselines' discrete PCN model: ``log pi(. | s, c) = log_softmax(fc(sigmoid(W_s s) * sigmoid(W_c c)))``
    with ``c = (desired return, desired horizon) * scaling_factor``."""

    num_actions: int
    hidden: int
    scaling: tuple[float, ...]

    @nn.compact
    def __call__(self, x: jax.Array, desired_return: jax.Array, horizon: jax.Array) -> jax.Array:
        def dense(width, fan_in):
            bias = lambda k, s, d=jnp.float32: jax.random.uniform(k, s, d, -1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in))  # noqa: E731
            return nn.Dense(width, kernel_init=_torch_linear_init, bias_init=bias)

        c = jnp.concatenate([desired_return, horizon[:, None]], -1) * jnp.asarray(self.scaling, jnp.float32)
        s_emb = nn.sigmoid(dense(self.hidden, x.shape[-1])(x))
        c_emb = nn.sigmoid(dense(self.hidden, c.shape[-1])(c))
        h = nn.relu(dense(self.hidden, self.hidden)(s_emb * c_emb))
        return jax.nn.log_softmax(dense(self.num_actions, self.hidden)(h))


# =============================================================================================== buffer
@struct.dataclass
class EpisodeBuffer:
    """The best episodes, padded to the episode cap L; slots ``[0, size)`` are filled (a slot is overwritten in
    place once the buffer is full). ``priority`` and ``step`` are MORL-Baselines' heap key: the lowest
    ``(priority, step)`` is evicted, new episodes enter with priority 1 (kept until the next ranking)."""

    obs: jax.Array  # [C, L, d] preprocessed observations
    action: jax.Array  # [C, L] int32
    rtg: jax.Array  # [C, L, m] return-to-go (discounted with the config's gamma) from each step
    length: jax.Array  # [C] int32
    priority: jax.Array  # [C] float32
    step: jax.Array  # [C] int32 global env step when the episode was stored
    size: jax.Array  # int32


def crowding_distance_mb(points: jax.Array, valid: jax.Array) -> jax.Array:
    """MORL-Baselines' PCN crowding distance of the valid rows: each objective min-max normalised (span + 1e-8),
    per objective the gap between a point's two sorted neighbours, 1 at the two ends, summed over objectives.
    (`morl.pareto.crowding_distance` is NSGA-II's: inf at the ends, no 1e-8.) Padding gets +inf."""
    n, m = points.shape
    count = jnp.sum(valid)
    lo = jnp.min(jnp.where(valid[:, None], points, jnp.inf), axis=0)
    hi = jnp.max(jnp.where(valid[:, None], points, -jnp.inf), axis=0)
    norm = (points - lo) / (hi - lo + 1e-8)
    rank = jnp.arange(n)
    dist = jnp.zeros((n,), jnp.float32)
    for j in range(m):
        col_all = jnp.where(valid, norm[:, j], jnp.inf)
        order = jnp.argsort(col_all, stable=True)
        col = col_all[order]
        prev = jnp.concatenate([col[:1], col[:-1]])
        nxt = jnp.concatenate([col[1:], col[-1:]])
        contrib = jnp.where((rank == 0) | (rank == count - 1), 1.0, nxt - prev)
        dist = dist.at[order].add(jnp.where(rank < count, contrib, 0.0))
    return jnp.where(valid, dist, jnp.inf)


def rank_episodes(returns: jax.Array, valid: jax.Array, threshold: float) -> jax.Array:
    """MORL-Baselines' ``_nlargest`` priorities (larger = better): minus the distance to the closest non-dominated
    return, ``DUPLICATE_PENALTY`` less for every episode but the first copy of each non-dominated return, doubled
    where the crowding distance is <= ``threshold``. Padding gets -inf."""
    nd = non_dominated_mask_jax(returns, valid)
    dist = jnp.linalg.norm(returns[:, None, :] - returns[None, :, :], axis=-1)
    l2 = -jnp.min(jnp.where(nd[None, :], dist, jnp.inf), axis=1)
    l2 = jnp.where(nd, l2, l2 - DUPLICATE_PENALTY)
    crowded = crowding_distance_mb(returns, valid) <= threshold
    l2 = jnp.where(crowded, 2.0 * l2, l2)
    return jnp.where(valid, l2, -jnp.inf)


def choose_command(
    key: jax.Array, returns: jax.Array, horizons: jax.Array, priority: jax.Array, valid: jax.Array, n: int
) -> tuple[jax.Array, jax.Array]:
    """MORL-Baselines' ``_choose_commands``: among the ``n`` top-ranked episodes keep the non-dominated ones, pick
    one uniformly, ask for its horizon - 2 and its return with one uniformly chosen objective raised by U(0, std of
    that objective over those returns)."""
    top = jnp.zeros_like(valid).at[jnp.argsort(-priority, stable=True)[:n]].set(True) & valid
    nd = non_dominated_mask_jax(returns, top)
    k_ep, k_obj, k_up = jax.random.split(key, 3)
    pick = jax.random.choice(k_ep, returns.shape[0], p=nd / jnp.sum(nd))
    count = jnp.sum(nd)
    mean = jnp.sum(jnp.where(nd[:, None], returns, 0.0), axis=0) / count
    std = jnp.sqrt(jnp.sum(jnp.where(nd[:, None], (returns - mean) ** 2, 0.0), axis=0) / count)
    obj = jax.random.randint(k_obj, (), 0, returns.shape[1])
    raise_by = jax.random.uniform(k_up) * std[obj]
    desired = returns[pick].at[obj].add(raise_by)
    return desired, (horizons[pick] - 2).astype(jnp.float32)


def add_episodes(buf: EpisodeBuffer, eps: dict, stored: jax.Array, steps: jax.Array) -> EpisodeBuffer:
    """Store the episodes with ``stored`` true one after another (``eps`` leaves [N, ...]) as MORL-Baselines'
    ``heappush`` / ``heappushpop``: into the next free slot, or over the lowest ``(priority, step)`` once full."""
    cap = buf.length.shape[0]

    def one(i, b: EpisodeBuffer):
        full = b.size >= cap
        order = jnp.lexsort((b.step, b.priority))
        slot = jnp.where(full, order[0], b.size)
        slot = jnp.where(stored[i], slot, cap)  # out of range: dropped by the scatter below
        put = lambda arr, x: arr.at[slot].set(x, mode="drop")  # noqa: E731
        return EpisodeBuffer(
            put(b.obs, eps["obs"][i]),
            put(b.action, eps["action"][i]),
            put(b.rtg, eps["rtg"][i]),
            put(b.length, eps["length"][i]),
            put(b.priority, jnp.float32(1.0)),
            put(b.step, steps[i]),
            jnp.where(stored[i] & ~full, b.size + 1, b.size),
        )

    return jax.lax.fori_loop(0, stored.shape[0], one, buf)


# =============================================================================================== state
@struct.dataclass
class PCNState:
    params: PyTree
    opt_state: PyTree
    buffer: EpisodeBuffer
    key: jax.Array
    env_steps: jax.Array  # int32
    iterations: jax.Array  # int32


class PCNTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`); ``update`` is one jitted chunk of iterations, pure, vmappable."""

    vmappable = True

    def __init__(self, config: PCNConfig, env, env_params=None):
        require_discrete(env, "PCN", " (this PCN has the discrete head only)")
        require_pure_jax(env, "PCN")
        self.config = c = config
        self.env = env
        self.m = m = env.reward_dim
        self.env_params, self.max_steps = episode_limit(env, env_params, c.max_episode_steps, "pcn: ")
        scaling = (1.0,) * (m + 1) if c.scaling_factor is None else tuple(float(x) for x in c.scaling_factor)
        if len(scaling) != m + 1:
            raise ValueError(
                f"pcn config: scaling_factor needs {m + 1} values ({m} objectives of {env.name} and the horizon), "
                f"got {len(scaling)}"
            )
        max_return = (100.0,) * m if c.max_return is None else tuple(float(x) for x in c.max_return)
        if len(max_return) != m:
            raise ValueError(f"pcn config: max_return needs {m} values (one per objective of {env.name})")
        self.max_return = jnp.asarray(max_return, jnp.float32)
        self.num_actions = int(env.action_space.n)
        self.encode = ObsEncoder(env.observation_space, c.obs_encoding)
        self.obs_dim = self.encode.dim
        self.net = PCNNet(self.num_actions, c.hidden_dim, scaling)
        self.tx = optax.adam(c.learning_rate)
        # episodes run as one vector env of one step per call, the command of each env tracked between calls
        self.fill_rollout = make_rollout(env, self._behaviour, c.num_er_episodes, 1)
        self.step_rollout = make_rollout(env, self._behaviour, c.num_step_episodes, 1)
        self.eval_rollout = make_rollout(env, self._behaviour, c.max_buffer_size, 1)
        self._compile()
        self._commands = jax.jit(self._command_returns, static_argnums=1)

    # ------------------------------------------------------------------ protocol
    def solution(self, state: PCNState) -> Solution:
        """The non-dominated episodes' commands (their return and length), at most ``num_points_pf``."""
        buf = state.buffer
        idx = self._front_slots(state)
        k = len(idx)
        if k == 0:
            raise RuntimeError("pcn: no episode has ended yet, so there is no command to follow; train longer")
        params = {
            "net": jax.tree.map(lambda x: jnp.broadcast_to(x, (k,) + x.shape), state.params),
            "ret": buf.rtg[idx, 0],
            "hor": buf.length[idx].astype(jnp.float32),
        }
        return Solution(
            act=self._act,
            params=params,
            candidate_returns=np.asarray(buf.rtg[idx, 0], np.float64),
            episode_context=True,
            greedy=True,
        )

    # ------------------------------------------------------------------ pieces
    def log_probs(self, params: PyTree, obs: jax.Array, desired_return: jax.Array, horizon: jax.Array) -> jax.Array:
        """``log pi(. | s, command)`` for raw observations ``[B, ...]`` -> ``[B, A]``."""
        x = self.encode(obs)
        return self.net.apply(params, x, desired_return, horizon)

    def _act(self, p, w, obs, key, episode_return=None, episode_length=None):
        """Greedy action for the command ``(p["ret"], p["hor"])``, followed as it shrinks: the evaluator passes each
        episode's running return and length (``Solution.episode_context``), the command is then return - earned,
        capped at max_return, and horizon - steps, at least 1 (MORL-Baselines caps after every step: the same
        unless the cap binds and rewards come after it). Called without them it keeps the initial command."""
        n = obs.shape[0]
        ret = jnp.broadcast_to(p["ret"], (n, self.m))
        hor = jnp.broadcast_to(p["hor"], (n,))
        if episode_return is not None:
            ret = jnp.minimum(ret - episode_return, self.max_return)
            hor = jnp.maximum(hor - episode_length.astype(jnp.float32), 1.0)
        return jnp.argmax(self.log_probs(p["net"], obs, ret, hor), axis=-1).astype(jnp.int32)

    def _behaviour(self, p, obs, key):
        """``p["mode"]``: 0 uniform random (the buffer's first episodes), 1 sample from pi, 2 greedy (evaluation)."""
        logp = self.log_probs(p["net"], obs, p["ret"], p["hor"])
        k_rand, k_pi = jax.random.split(key)
        rand = jax.random.randint(k_rand, (obs.shape[0],), 0, self.num_actions)
        sampled = jax.random.categorical(k_pi, logp)
        greedy = jnp.argmax(logp, axis=-1)
        action = jnp.where(p["mode"] == 0, rand, jnp.where(p["mode"] == 1, sampled, greedy))
        return action.astype(jnp.int32), ()

    def _run_episodes(self, rollout, params, desired, horizon, mode, key, steps_left):
        """One episode per env of ``rollout``, each following its command; returns the padded episodes, which ones
        ended (terminated or truncated) and the transitions taken. Stops early at the first vector step that uses
        up ``steps_left``: episodes still running then are not ended."""
        n, cap = rollout.num_envs, self.max_steps
        k_init, key = jax.random.split(key)
        rstate: RolloutState = rollout.init.pure(k_init, self.env_params)
        eps = {
            "obs": jnp.zeros((n, cap, self.obs_dim), jnp.float32),
            "action": jnp.zeros((n, cap), jnp.int32),
            "reward": jnp.zeros((n, cap, self.m), jnp.float32),
        }
        carry = (rstate, eps, desired, horizon, jnp.ones((n,), bool), jnp.zeros((n,), jnp.int32), jnp.int32(0), key)

        def cond(carry):
            _, _, _, _, alive, _, t, _ = carry
            return (t < cap) & jnp.any(alive) & (jnp.sum(carry[5]) < steps_left)

        def body(carry):
            rstate, eps, desired, horizon, alive, length, t, key = carry
            key, k_step = jax.random.split(key)
            pp = {"net": params, "ret": desired, "hor": horizon, "mode": mode}
            rstate, traj = rollout.run.pure(pp, rstate, k_step, self.env_params)
            tr = jax.tree.map(lambda x: x[0], traj)
            keep = alive[:, None]
            eps = {
                "obs": eps["obs"].at[:, t].set(self.encode(tr.obs)),
                "action": eps["action"].at[:, t].set(tr.action.astype(jnp.int32)),
                "reward": eps["reward"].at[:, t].set(jnp.where(keep, tr.reward, 0.0)),
            }
            desired = jnp.where(keep, jnp.minimum(desired - tr.reward, self.max_return), desired)
            horizon = jnp.where(alive, jnp.maximum(horizon - 1.0, 1.0), horizon)
            length = length + alive.astype(jnp.int32)
            return rstate, eps, desired, horizon, alive & ~tr.done, length, t + 1, key

        _, eps, _, _, alive, length, _, _ = jax.lax.while_loop(cond, body, carry)
        return eps, ~alive, length

    def _episodes(self, eps):
        """Padded episodes with their returns-to-go ``G_t = r_t + gamma G_{t+1}`` (zero past each episode's end)."""
        rtg = jax.lax.scan(
            lambda g, r: (r + self.config.gamma * g,) * 2,
            jnp.zeros((eps["reward"].shape[0], self.m), jnp.float32),
            jnp.swapaxes(eps["reward"], 0, 1),
            reverse=True,
        )[1]
        return {"obs": eps["obs"], "action": eps["action"], "rtg": jnp.swapaxes(rtg, 0, 1)}

    def _store(self, buf: EpisodeBuffer, eps, ended, length, env_steps):
        """Offer the ended episodes in env order; each is stamped with the global step after its own transitions."""
        steps = env_steps + jnp.cumsum(length)
        eps = self._episodes(eps) | {"length": length}
        return add_episodes(buf, eps, ended, steps), env_steps + jnp.sum(length)

    def _init_fn(self, key: jax.Array) -> PCNState:
        c = self.config
        k_net, k_fill, key = jax.random.split(key, 3)
        params = self.net.init(
            k_net,
            jnp.zeros((1, self.obs_dim)),
            jnp.zeros((1, self.m)),
            jnp.zeros((1,)),
        )
        cap = c.max_buffer_size
        buf = EpisodeBuffer(
            jnp.zeros((cap, self.max_steps, self.obs_dim), jnp.float32),
            jnp.zeros((cap, self.max_steps), jnp.int32),
            jnp.zeros((cap, self.max_steps, self.m), jnp.float32),
            jnp.zeros((cap,), jnp.int32),
            jnp.zeros((cap,), jnp.float32),
            jnp.zeros((cap,), jnp.int32),
            jnp.int32(0),
        )
        n = c.num_er_episodes
        eps, ended, length = self._run_episodes(
            self.fill_rollout,
            params,
            jnp.zeros((n, self.m)),
            jnp.ones((n,)),
            jnp.int32(0),
            k_fill,
            jnp.int32(c.total_timesteps),
        )
        buf, env_steps = self._store(buf, eps, ended, length, jnp.int32(0))
        return PCNState(params, self.tx.init(params), buf, key, env_steps, jnp.int32(0))

    def _loss(self, params, buf: EpisodeBuffer, key):
        c = self.config
        k_ep, k_t = jax.random.split(key)
        i = jax.random.randint(k_ep, (c.batch_size,), 0, jnp.maximum(buf.size, 1))
        length = buf.length[i]
        t = jnp.floor(jax.random.uniform(k_t, (c.batch_size,)) * length).astype(jnp.int32)
        logp = self.net.apply(params, buf.obs[i, t], buf.rtg[i, t], (length - t).astype(jnp.float32))
        return -jnp.mean(jnp.take_along_axis(logp, buf.action[i, t][:, None], axis=1))

    def _iteration(self, state: PCNState) -> tuple[PCNState, dict]:
        c = self.config
        key, k_upd, k_cmd, k_run = jax.random.split(state.key, 4)

        def grad_step(carry, k):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(self._loss)(params, state.buffer, k)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            grad_step, (state.params, state.opt_state), jax.random.split(k_upd, c.num_model_updates)
        )
        buf = state.buffer
        valid = jnp.arange(c.max_buffer_size) < buf.size
        returns = buf.rtg[:, 0]
        buf = buf.replace(priority=jnp.where(valid, rank_episodes(returns, valid, c.crowding_threshold), 0.0))
        desired, horizon = choose_command(k_cmd, returns, buf.length, buf.priority, valid, c.num_er_episodes)
        n = c.num_step_episodes
        eps, ended, length = self._run_episodes(
            self.step_rollout,
            params,
            jnp.broadcast_to(desired, (n, self.m)),
            jnp.broadcast_to(horizon, (n,)),
            jnp.int32(1),
            k_run,
            c.total_timesteps - state.env_steps,
        )
        undiscounted = jnp.sum(eps["reward"], axis=1)
        buf, env_steps = self._store(buf, eps, ended, length, state.env_steps)
        logs = {
            "loss": jnp.mean(losses),
            "episodes": jnp.sum(ended),
            "horizon_desired": horizon,
            "horizon_mean": jnp.sum(jnp.where(ended, length, 0)) / jnp.maximum(jnp.sum(ended), 1),
        }
        for j in range(self.m):
            logs[f"desired_return_{j}"] = desired[j]
            logs[f"episode_return_{j}"] = jnp.sum(jnp.where(ended, undiscounted[:, j], 0.0)) / jnp.maximum(
                jnp.sum(ended), 1
            )
        new = PCNState(params, opt_state, buf, key, env_steps, state.iterations + 1)
        return new, logs

    def _chunk(self, state: PCNState) -> tuple[PCNState, dict]:
        def step(s, _):
            active = s.env_steps < self.config.total_timesteps
            new, logs = self._iteration(s)
            s = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, s)
            return s, (logs, active)

        state, (logs, active) = jax.lax.scan(step, state, None, length=self.config.iterations_per_chunk)
        count = jnp.maximum(jnp.sum(active), 1)
        out = {k: jnp.sum(jnp.where(active, v, 0.0)) / count for k, v in logs.items()}
        out["episodes"] = jnp.sum(jnp.where(active, logs["episodes"], 0))
        out["buffer_size"] = state.buffer.size
        out["iterations"] = state.iterations
        return state, out

    # ------------------------------------------------------------------ evaluation helpers
    def _front_slots(self, state: PCNState) -> np.ndarray:
        """Buffer slots of the non-dominated episodes (first copy of each return) in slot order, at most
        ``num_points_pf``."""
        buf = state.buffer
        size = int(buf.size)
        returns = np.asarray(buf.rtg[:size, 0], np.float64)
        nd = np.asarray(non_dominated_mask_jax(jnp.asarray(returns)))
        idx = np.flatnonzero(nd)
        return idx[: self.config.num_points_pf]

    def _command_returns(self, state: PCNState, gamma: float) -> tuple[jax.Array, jax.Array]:
        """Every buffer slot's command run greedily once, as MORL-Baselines' ``evaluate`` (return and length of the
        episode, no "- 2"): discounted returns [C, m] with ``gamma`` and whether each episode ended."""
        buf = state.buffer
        eps, ended, _ = self._run_episodes(
            self.eval_rollout,
            state.params,
            buf.rtg[:, 0],
            buf.length.astype(jnp.float32),
            jnp.int32(2),
            jax.random.PRNGKey(0),
            jnp.int32(2**30),
        )
        discount = gamma ** jnp.arange(self.max_steps, dtype=jnp.float32)
        return jnp.einsum("nts,t->ns", eps["reward"], discount), ended

    def front(self, state: PCNState, gamma: float = 0.99) -> np.ndarray:
        """Discounted returns [K, m] of the solution's commands (`solution`'s candidates, in order), each followed
        greedily once by PCN's own collection loop (its command updated step by step, as MORL-Baselines'
        ``_run_episode``): on a deterministic env, the evaluator's returns for `solution`."""
        returns, ended = self._commands(state, float(gamma))
        idx = self._front_slots(state)
        if not np.asarray(ended)[idx].all():
            raise RuntimeError(f"pcn: a command's episode did not end within {self.max_steps} steps")
        return np.asarray(returns, np.float64)[idx]


def make_trainer(config: PCNConfig, env, env_params=None) -> PCNTrainer:
    return PCNTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="pcn",
        config_cls=PCNConfig,
        make_trainer=make_trainer,
        summary="Pareto Conditioned Networks (Reymond et al. 2022), MORL-Baselines' variant: one return-conditioned "
        "policy, commands from a buffer of non-dominated episodes",
        action_kinds=("discrete",),
        # DST's (row, col) as two raw numbers: the greedy commands reach 5 of 10 treasures (81% of the HV at 20k
        # steps, seed 0; MORL-Baselines: 77% at 95k); one-hot coordinates, as PCN's own DST model one-hot encodes
        # the cell, reach 98-100% within 10k (docs/algorithms/pcn.md)
        # minecart: MORL-Baselines' example (examples/pcn_minecart.py, the authors' minecart settings)
        env_defaults={
            **{name: {"obs_encoding": "onehot"} for name in DST_IDS},
            **{
                name: {"scaling_factor": (1.0, 1.0, 0.1, 0.1), "max_return": (1.5, 1.5, 0.0), "max_buffer_size": 50}
                for name in ("minecart-v0", "minecart-deterministic-v0")
            },
        },
    )
)
