"""Pareto Q-learning (Van Moffaert & Nowé, JMLR 2014) as MORL-Baselines implements it, in JAX.

Tabular. For every state-action pair the agent keeps the average immediate reward ``R(s, a)`` and the set
``ND(s, a)`` of non-dominated vector returns of the next state; the Q-set is ``R(s, a) + gamma * ND(s, a)``. After
a transition ``(s, a, r, s')`` the set becomes the non-dominated union of the Q-sets of ``s'`` (MORL-Baselines
keeps the last next state's set: PQL assumes a deterministic env), then ``R(s, a)`` takes ``r`` into its mean.
Actions are epsilon-greedy on the hypervolume (or Pareto cardinality) of each action's Q-set, epsilon decaying
linearly per episode. The front is the non-dominated Q-vectors of the start state; each point becomes a policy
by track-and-follow: at each state take the action whose ``R(s, a) + gamma * q`` is closest to the target and
make ``q`` the next target.

Static shapes: every ND set has a fixed capacity (``set_capacity`` rows and a validity mask), so a training
chunk is one jitted scan over env steps, vmappable over seeds. The algorithm, and where it differs from
MORL-Baselines: docs/algorithms/pql.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.agent import AgentSpec, JitTrainer, check_config, episode_return_logs, register_agent, require_discrete
from morl.agents import td
from morl.envs.deep_sea_treasure import DST_IDS
from morl.pareto import crowding_distance_jax, non_dominated_mask_jax
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution
from morl.spaces import Box, Discrete

PyTree = Any

#: cells x points x objectives the exact grid hypervolume may compare per Q-set before it is refused
_HV_GRID_LIMIT = 1 << 24


# =============================================================================================== tables
def tabular_states(space, who: str) -> tuple[int, Callable[[jax.Array], jax.Array]]:
    """The number of states of a discrete observation space and ``index(obs[N, ...]) -> [N]`` int32.

    Discrete spaces index by value; bounded integer boxes by ``ravel_multi_index`` over ``high - low + 1`` values per
    dimension (MORL-Baselines' ``env_shape``)."""
    if isinstance(space, Discrete):
        return int(space.n), lambda obs: jnp.asarray(obs, jnp.int32).reshape(-1) - space.start
    if isinstance(space, Box) and space.is_integer and np.all(np.isfinite(space.low) & np.isfinite(space.high)):
        low = space.low.reshape(-1).astype(np.int64)
        dims = (space.high.reshape(-1).astype(np.int64) - low + 1).astype(np.int64)
        if np.prod(dims) > 1 << 22:
            raise ValueError(f"{who}: the observation space has {int(np.prod(dims)):,} states, too many for a table")
        strides = np.concatenate([np.cumprod(dims[::-1])[::-1][1:], [1]]).astype(np.int32)

        def index(obs):
            flat = jnp.asarray(obs, jnp.int32).reshape(obs.shape[0], -1) - jnp.asarray(low, jnp.int32)
            return flat @ jnp.asarray(strides)

        return int(np.prod(dims)), index
    raise ValueError(
        f"{who} is tabular and needs a discrete observation space (Discrete, or a bounded integer Box), got "
        f"{space!r}; use a deep agent (envelope, morld) for this env"
    )


# =============================================================================================== sets
def hypervolume_jax(points: jax.Array, valid: jax.Array, ref: jax.Array) -> jax.Array:
    """Exact hypervolume of the valid rows of ``points [n, m]`` above ``ref [m]`` (maximisation), jit-compatible.

    The sorted coordinates cut the box into ``n^m`` cells; a cell counts when a point weakly dominates its upper
    corner. Points at or below the reference in some objective add nothing (as pymoo's, which MORL-Baselines uses)."""
    n, m = points.shape
    p = jnp.where(valid[:, None], jnp.maximum(points, ref), ref)
    coords = jnp.sort(p, axis=0)
    widths = coords - jnp.concatenate([ref[None], coords[:-1]], axis=0)
    upper = jnp.stack(jnp.meshgrid(*[coords[:, j] for j in range(m)], indexing="ij"), -1).reshape(-1, m)
    volume = jnp.prod(jnp.stack(jnp.meshgrid(*[widths[:, j] for j in range(m)], indexing="ij"), -1), -1).reshape(-1)
    covered = jnp.any(jnp.all(p[None, :, :] >= upper[:, None, :], axis=-1), axis=1)
    return jnp.sum(jnp.where(covered, volume, 0.0))


def nd_compact(points: jax.Array, valid: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The non-dominated, de-duplicated valid rows of ``points [n, m]`` packed into ``capacity`` rows (input order).

    Returns ``(rows [capacity, m], valid [capacity], overflow)``: with more non-dominated points than rows, the ones
    with the largest crowding distance stay (the extremes first) and ``overflow`` is True."""
    keep = non_dominated_mask_jax(points, valid)
    over = jnp.sum(keep) > capacity
    if points.shape[0] > capacity:
        order = jnp.argsort(-crowding_distance_jax(points, keep), stable=True)
        top = jnp.zeros_like(keep).at[order[:capacity]].set(True)
        keep = jnp.where(over, keep & top, keep)
    idx = jnp.argsort(~keep, stable=True)[:capacity]
    rows = points[idx]
    ok = jnp.arange(capacity) < jnp.sum(keep)
    if rows.shape[0] < capacity:  # fewer candidates than rows: pad
        pad = capacity - rows.shape[0]
        rows = jnp.concatenate([rows, jnp.zeros((pad, points.shape[1]), points.dtype)])
        ok = jnp.concatenate([ok[: points.shape[0]], jnp.zeros((pad,), bool)])
    return jnp.where(ok[:, None], rows, 0.0), ok, over


def pareto_cardinality(q: jax.Array, valid: jax.Array) -> jax.Array:
    """Per action, how many of the non-dominated vectors of the union of Q-sets ``q [A, C, m]`` its Q-set holds."""
    a, c, m = q.shape
    flat, fvalid = q.reshape(a * c, m), valid.reshape(a * c)
    nd = non_dominated_mask_jax(flat, fvalid)  # [A*C]
    member = jnp.all(flat[:, None, None, :] == q[None], axis=-1) & valid[None]  # [A*C, A, C]
    return jnp.sum(jnp.any(member, axis=-1) & nd[:, None], axis=0).astype(jnp.float32)


# =============================================================================================== config
@dataclass(frozen=True)
class PQLConfig:
    """Pareto Q-learning settings. Defaults: MORL-Baselines ``PQL.__init__`` (docs/sources.md); on deep-sea-treasure
    the env defaults are MORL-Baselines' ``examples/pql_dst.py`` (gamma 0.99, epsilon 1 -> 0.2 over 50k steps).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition; one env, one
    transition per step, so a run uses exactly the budget (the rest of the last chunk is computed and discarded)."""

    total_timesteps: int = 10_000  # training budget in env steps (MORL-Baselines' examples/pql_dst.py)
    gamma: float = 0.8  # discount of the Q-sets (the learned front is at this gamma)
    initial_epsilon: float = 1.0  # epsilon-greedy: start value
    epsilon_decay_steps: int = 100_000  # env steps of the linear decay (epsilon is updated at each episode's end)
    final_epsilon: float = 0.1  # epsilon-greedy: final value
    action_eval: str = "hypervolume"  # action score: hypervolume of the Q-set, or pareto_cardinality
    ref_point: tuple[float, ...] | None = None  # reference point of the action scores; None = the env's
    set_capacity: int = 16  # rows of every non-dominated set (ours: static shapes; overflow is logged)
    track_tolerance: float = 1e-3  # track-and-follow: L1 distance that counts as the target (MORL-Baselines' tol)
    steps_per_chunk: int = 1000  # env steps per jitted training chunk (one `update` call)

    def __post_init__(self):
        check_config(
            "pql",
            self,
            at_least_one=("total_timesteps", "epsilon_decay_steps", "set_capacity", "steps_per_chunk"),
            non_negative=("track_tolerance",),
            choices={"action_eval": ("hypervolume", "pareto_cardinality")},
        )
        for name in ("gamma", "initial_epsilon", "final_epsilon"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"pql config: {name} must be in [0, 1], got {getattr(self, name)!r}")


# =============================================================================================== state
@struct.dataclass
class PQLState:
    counts: jax.Array  # [S, A] visits
    avg_reward: jax.Array  # [S, A, m] mean immediate reward
    nd: jax.Array  # [S, A, C, m] non-dominated returns of the (last) next state
    nd_valid: jax.Array  # [S, A, C] bool
    next_state: jax.Array  # [S, A] int32 last next state (the model track-and-follow walks)
    terminal: jax.Array  # [S, A] bool: the last transition ended the episode
    rollout: RolloutState
    epsilon: jax.Array  # float32, updated at each episode's end
    key: jax.Array
    env_steps: jax.Array  # int32
    episodes: jax.Array  # int32
    overflow: jax.Array  # int32 set updates that had more non-dominated points than set_capacity


class PQLTrainer(JitTrainer):
    """Chunked trainer (`morl.agent.Trainer`); ``update`` is one jitted chunk, pure, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: PQLConfig, env, env_params=None):
        require_discrete(env, "PQL")
        require_pure_jax(env, "PQL")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.num_actions = int(env.action_space.n)
        self.num_states, self.index = tabular_states(env.observation_space, "PQL")
        ref = config.ref_point if config.ref_point is not None else env.ref_point
        if ref is None or len(ref) != self.m:
            raise ValueError(
                f"pql config: ref_point needs {self.m} values for {env.name}, got {ref!r}; give --ref-point"
            )
        self.ref = jnp.asarray(ref, jnp.float32)
        cells = config.set_capacity ** (self.m + 1) * self.m
        if config.action_eval == "hypervolume" and cells > _HV_GRID_LIMIT:
            raise ValueError(
                f"pql config: the exact hypervolume of a {config.set_capacity}-row set with {self.m} objectives "
                f"compares {cells:,} values per action; lower set_capacity or use action_eval='pareto_cardinality'"
            )
        self.max_steps = int(self.env_params.max_steps)
        self.rollout = make_rollout(env, self._behaviour_policy, 1, 1, gamma=config.gamma)
        obs0, _ = env.reset(jax.random.PRNGKey(0), self.env_params)
        #: the state whose Q-sets are the front (MORL-Baselines: state 0); the start state of a fixed-start env
        self.start_state = int(self.index(jnp.asarray(obs0)[None])[0])
        index = self.index

        def act(params, w, obs, key):
            return params["table"][index(obs)]

        self._act = act
        self._compile()
        self._extract = jax.jit(self._extract_fn)

    # ------------------------------------------------------------------ protocol
    def solution(self, state: PQLState) -> Solution:
        """One track-and-follow policy per point of the start state's front (its Q-vector: ``candidate_returns``)."""
        front, valid, tables, _ = self._extract(state)
        k = max(int(np.sum(np.asarray(valid))), 1)  # an empty front (untrained) still hands back one policy
        return Solution(
            act=self._act,
            params={"table": tables[:k]},
            candidate_returns=np.asarray(front[:k], np.float64),
            greedy=True,
        )

    def front(self, state: PQLState) -> np.ndarray:
        """The start state's non-dominated Q-vectors (PQL's own estimate of the front, at ``gamma``)."""
        front, valid, _, _ = self._extract(state)
        return np.asarray(front)[np.asarray(valid)]

    # ------------------------------------------------------------------ pieces
    def q_sets(self, state: PQLState, s: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``R(s, a) + gamma * ND(s, a)`` for every action: ``[A, C, m]`` and its validity ``[A, C]``."""
        q = state.avg_reward[s][:, None, :] + self.config.gamma * state.nd[s]
        return q, state.nd_valid[s]

    def scores(self, state: PQLState, s: jax.Array) -> jax.Array:
        """Each action's score in state ``s`` (``[A]``): the hypervolume of its Q-set, or its Pareto cardinality."""
        q, valid = self.q_sets(state, s)
        if self.config.action_eval == "hypervolume":
            return jax.vmap(hypervolume_jax, in_axes=(0, 0, None))(q, valid, self.ref)
        return pareto_cardinality(q, valid)

    def state_front(self, state: PQLState, s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The non-dominated union of the Q-sets of ``s``, packed into ``set_capacity`` rows."""
        q, valid = self.q_sets(state, s)
        return nd_compact(q.reshape(-1, self.m), valid.reshape(-1), self.config.set_capacity)

    def _greedy(self, state: PQLState, s: jax.Array, key: jax.Array) -> jax.Array:
        """The best-scored action, ties broken uniformly (MORL-Baselines: ``np_random.choice`` among the argmax)."""
        sc = self.scores(state, s)
        return jax.random.categorical(key, jnp.where(sc == jnp.max(sc), 0.0, -jnp.inf)).astype(jnp.int32)

    def _behaviour_policy(self, p, obs, key):
        k_eps, k_rand, k_tie = jax.random.split(key, 3)
        s = self.index(obs)[0]
        greedy = self._greedy(p["tables"], s, k_tie)
        explore = jax.random.uniform(k_eps) < p["epsilon"]
        action = jnp.where(explore, jax.random.randint(k_rand, (), 0, self.num_actions, dtype=jnp.int32), greedy)
        return action[None], ()

    def _init_fn(self, key: jax.Array) -> PQLState:
        c = self.config
        k_env, key = jax.random.split(key)
        s, a, m, cap = self.num_states, self.num_actions, self.m, c.set_capacity
        # every set starts as {0} (MORL-Baselines: {tuple(zeros)})
        valid = jnp.zeros((s, a, cap), bool).at[:, :, 0].set(True)
        return PQLState(
            counts=jnp.zeros((s, a), jnp.int32),
            avg_reward=jnp.zeros((s, a, m), jnp.float32),
            nd=jnp.zeros((s, a, cap, m), jnp.float32),
            nd_valid=valid,
            next_state=jnp.zeros((s, a), jnp.int32),
            terminal=jnp.zeros((s, a), bool),
            rollout=self.rollout.init.pure(k_env, self.env_params),
            epsilon=jnp.float32(c.initial_epsilon),
            key=key,
            env_steps=jnp.int32(0),
            episodes=jnp.int32(0),
            overflow=jnp.int32(0),
        )

    def _iteration(self, state: PQLState, _):
        c = self.config
        key, k_roll = jax.random.split(state.key)
        active = state.env_steps < c.total_timesteps
        rstate, traj = self.rollout.run.pure(
            {"tables": state, "epsilon": state.epsilon}, state.rollout, k_roll, self.env_params
        )
        tr = jax.tree.map(lambda x: x[0, 0], traj)  # the one step of the one env
        s, s2 = self.index(tr.obs[None])[0], self.index(tr.next_obs[None])[0]
        a = tr.action.astype(jnp.int32)
        # ND(s, a) <- ND(union of the Q-sets of s'), before R(s, a) moves (MORL-Baselines' order). Past the budget
        # (the last chunk's tail) the entries are written back unchanged: a `where` on the (s, a) entries only
        rows, ok, over = self.state_front(state, s2)
        count = state.counts[s, a] + 1
        mean = state.avg_reward[s, a] + (tr.reward - state.avg_reward[s, a]) / count.astype(jnp.float32)
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        done = tr.terminated | tr.truncated
        finished = done & active
        env_steps = state.env_steps + active.astype(jnp.int32)
        epsilon = td.linear_schedule(c.initial_epsilon, c.final_epsilon, c.epsilon_decay_steps, env_steps)
        new_state = state.replace(
            counts=state.counts.at[s, a].set(keep(count, state.counts[s, a])),
            avg_reward=state.avg_reward.at[s, a].set(keep(mean, state.avg_reward[s, a])),
            nd=state.nd.at[s, a].set(keep(rows, state.nd[s, a])),
            nd_valid=state.nd_valid.at[s, a].set(keep(ok, state.nd_valid[s, a])),
            next_state=state.next_state.at[s, a].set(keep(s2, state.next_state[s, a])),
            terminal=state.terminal.at[s, a].set(keep(tr.terminated, state.terminal[s, a])),
            rollout=jax.tree.map(keep, rstate, state.rollout),
            epsilon=jnp.where(finished, epsilon, state.epsilon),
            key=key,
            env_steps=env_steps,
            episodes=state.episodes + finished.astype(jnp.int32),
            overflow=state.overflow + (over & active).astype(jnp.int32),
        )
        return new_state, (finished, jnp.where(finished, tr.episode_return, 0.0))

    def _chunk(self, state: PQLState) -> tuple[PQLState, dict]:
        state, (finished, ep_return) = jax.lax.scan(self._iteration, state, None, length=self.config.steps_per_chunk)
        episodes = jnp.sum(finished)
        front, valid, _, revisits = self._extract_fn(state)
        out = {
            "epsilon": state.epsilon,
            "episodes": episodes,
            "front_size": jnp.sum(valid),
            "front_hypervolume": hypervolume_jax(front, valid, self.ref),
            "set_overflow": state.overflow,
            "track_revisits": revisits,
            **episode_return_logs(ep_return, episodes),
        }
        return state, out

    def _extract_fn(self, state: PQLState):
        """The start state's front and one stationary policy table per point, by track-and-follow in the learned
        model (``next_state``, ``terminal``): ``(front [C, m], valid [C], tables [C, S], revisits)``.

        A table holds the tracked action on the states the tracked path visits and PQL's greedy action elsewhere;
        ``revisits`` counts tracked paths that came back to a state wanting another action (0 on DST, whose
        Pareto-optimal paths never revisit a state), where a stationary table cannot follow the plan."""
        c = self.config
        front, valid, _ = self.state_front(state, jnp.int32(self.start_state))
        all_states = jnp.arange(self.num_states)
        fallback = jax.vmap(lambda s: jnp.argmax(self.scores(state, s)).astype(jnp.int32))(all_states)
        cap = c.set_capacity

        def follow(target):
            def step(carry, _):
                s, target, alive, table, seen, clash = carry
                im = state.avg_reward[s][:, None, :]  # [A, 1, m]
                dist = jnp.sum(jnp.abs(c.gamma * state.nd[s] + im - target), axis=-1)  # [A, C]
                dist = jnp.where(state.nd_valid[s], dist, jnp.inf).reshape(-1)
                close = dist < c.track_tolerance
                idx = jnp.where(jnp.any(close), jnp.argmax(close), jnp.argmin(dist))
                a, j = idx // cap, idx % cap
                clash = clash | (alive & seen[s] & (table[s] != a))
                table = table.at[s].set(jnp.where(alive & ~seen[s], a, table[s]))
                seen = seen.at[s].set(seen[s] | alive)
                stop = state.terminal[s, a] | (state.counts[s, a] == 0)
                nxt = (state.next_state[s, a], state.nd[s, a, j], alive & ~stop, table, seen, clash)
                return nxt, None

            init = (jnp.int32(self.start_state), target, jnp.bool_(True), fallback, jnp.zeros_like(fallback, bool))
            (_, _, _, table, _, clash), _ = jax.lax.scan(step, init + (jnp.bool_(False),), None, length=self.max_steps)
            return table, clash

        tables, clashes = jax.vmap(follow)(front)
        return front, valid, tables, jnp.sum(clashes & valid)


def make_trainer(config: PQLConfig, env, env_params=None) -> PQLTrainer:
    return PQLTrainer(config, env, env_params)


_DST_EXAMPLE = {"gamma": 0.99, "epsilon_decay_steps": 50_000, "final_epsilon": 0.2}

SPEC = register_agent(
    AgentSpec(
        name="pql",
        config_cls=PQLConfig,
        make_trainer=make_trainer,
        summary="Pareto Q-learning (Van Moffaert & Nowé 2014): tabular non-dominated Q-sets, track-and-follow policies",
        action_kinds=("discrete",),
        env_defaults=dict.fromkeys(DST_IDS, _DST_EXAMPLE),
    )
)
