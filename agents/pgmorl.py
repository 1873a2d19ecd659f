"""PGMORL: prediction-guided multi-objective RL (Xu et al., ICML 2020), with every task's PPO run vmapped.

A warm-up trains ``n`` PPO tasks on a weight grid; then, generation after generation, a prediction model fitted to
the optimisation history graph picks the ``n`` (policy, weight) tasks expected to improve the external Pareto
archive most (hypervolume minus sparsity), and every task trains as one PPO population. The archive is the
solution.

How this follows the official code and MORL-Baselines, and where and why it departs from them:
docs/algorithms/pgmorl.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import struct

from morl.agent import AgentSpec, Trainer, check_config, register_agent
from morl.agents.ppo import PPO, PPOConfig, PPOState, linear_lr, make_population, wide_batch
from morl.agents.preferences import generate_weights_batch_dfs
from morl.pareto import Archive, archive_insert
from morl.rollout import RolloutState, episode_limit
from morl.solution import Solution

PyTree = Any


# =============================================================================================== config
@dataclass(frozen=True)
class PGMORLConfig:
    """PGMORL settings. Defaults: MORL-Baselines' ``PGMORL.__init__`` and the official code (docs/sources.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition, the warm-up
    included: it is spent in whole PPO iterations of all n tasks (``n * num_envs * steps_per_iteration``
    transitions each), and the warm-up plus one generation (``warmup_iterations + evolutionary_iterations``
    iterations) must fit (else a one-line error). The defaults (80 + 20 iterations x 6 tasks x 8,192) need
    4,915,200 of the default 5M."""

    total_timesteps: int = 5_000_000  # real transitions of all tasks together
    pop_size: int | None = None  # number of tasks n; None = the warm-up grid's size (must equal it)
    warmup_iterations: int = 80  # PPO iterations of the warm-up stage
    evolutionary_iterations: int = 20  # PPO iterations per generation (the official update_iter)
    num_weight_candidates: int = 7  # candidate weights per population policy
    num_performance_buffer: int = 100  # performance buffers (directions)
    performance_buffer_size: int = 2  # points kept per buffer
    min_weight: float = 0.0  # warm-up weight grid: generate_weights_batch_dfs(m, min, max, delta)
    max_weight: float = 1.0
    delta_weight: float = 0.2
    sparsity_coef: float = 1.0  # alpha in HV - alpha * SP (MORL-Baselines writes it as -1.0 with a +)
    ep_capacity: int = 1_000  # external Pareto archive capacity (crowding-distance pruning above it)
    eval_episodes: int = 1  # evaluation episodes per task and iteration (official eval_num)
    eval_gamma: float = 1.0  # the official evaluation is undiscounted (--raw)
    max_episode_steps: int | None = None  # episode cap for training and evaluation; None = the env's own
    ref_point: tuple[float, ...] | None = None  # performance-buffer origin and selection HV; None = the env's
    anneal_lr: bool = True  # linear LR decay over the run (official scripts)
    # ---- PPO (agents.ppo.PPOConfig); num_envs x steps_per_iteration transitions per task and iteration
    num_envs: int = 4
    steps_per_iteration: int = 2048
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
    normalize_obs: bool = True
    normalize_reward: bool = True
    hidden: tuple[int, ...] = (64, 64)

    def __post_init__(self):
        check_config(
            "PGMORL",
            self,
            unit_interval=("eval_gamma",),
            at_least_one=(
                "total_timesteps",
                "warmup_iterations",
                "evolutionary_iterations",
                "num_weight_candidates",
                "num_performance_buffer",
                "performance_buffer_size",
                "ep_capacity",
                "eval_episodes",
            ),
        )
        if self.num_weight_candidates < 2:
            raise ValueError("PGMORL: num_weight_candidates must be >= 2 (they span +-45 degrees)")

    def ppo_config(self) -> PPOConfig:
        return PPOConfig.of(self, num_steps=self.steps_per_iteration)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.steps_per_iteration


# =============================================================================================== performance buffers
def buffer_directions(m: int, num: int) -> np.ndarray:
    """Unit directions of the performance buffers for ``m >= 3`` objectives (Riesz s-energy, L2-normalised)."""
    from morl.weights import equally_spaced_weights

    d = equally_spaced_weights(m, max(num, m))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def buffer_ids(objs: np.ndarray, origin: np.ndarray, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Performance buffer of each point (``-1``: rejected, not strictly above ``origin``) and its distance."""
    f = np.asarray(objs, np.float64) - origin
    dist = np.linalg.norm(f, axis=1)
    ok = np.min(f, axis=1) >= 1e-7
    m = f.shape[1]
    if m == 2:
        theta = np.arccos(np.clip(f[:, 1] / np.maximum(dist, 1e-300), -1.0, 1.0))
        ids = np.floor(theta / (np.pi / 2.0 / num)).astype(np.int64)
        ok &= (ids >= 0) & (ids < num)
    else:
        ids = np.argmax(f @ buffer_directions(m, num).T, axis=1)
    return np.where(ok, ids, -1), dist


def select_population(objs: np.ndarray, valid: np.ndarray, origin: np.ndarray, num: int, size: int) -> np.ndarray:
    """Indices kept by the performance buffers, in buffer order and, within a buffer, farthest first (ties: the
    earlier index first, as the official insertion order)."""
    ids, dist = buffer_ids(objs, origin, num)
    ids = np.where(valid, ids, -1)
    keep = []
    for b in np.unique(ids[ids >= 0]):
        members = np.flatnonzero(ids == b)
        order = members[np.lexsort((members, -dist[members]))]
        keep.extend(order[:size].tolist())
    return np.asarray(keep, np.int64)


# =============================================================================================== state
@struct.dataclass
class Graph:
    """The optimisation history graph (host numpy, fixed capacity): node i is an evaluated policy."""

    weights: np.ndarray  # [C, m] the weight it was trained with (L2-normalised)
    objs: np.ndarray  # [C, m] its evaluated returns
    prev: np.ndarray  # [C] its predecessor's node, -1 for a root
    count: np.ndarray  # nodes in use


@struct.dataclass
class Population:
    """The policies the performance buffers keep (host numpy, fixed capacity; ``valid`` False is padding)."""

    policy: PPOState  # leaves [C, ...]
    objs: np.ndarray  # [C, m]
    node: np.ndarray  # [C] graph node
    valid: np.ndarray  # [C] bool


@struct.dataclass
class PGMORLState:
    key: jax.Array
    iteration: np.ndarray  # PPO iterations done (of every task)
    generation: np.ndarray  # 0 = the warm-up
    gen_iter: np.ndarray  # iterations done in this generation
    env_steps: np.ndarray
    eval_episodes: np.ndarray
    tasks: PPOState  # the n tasks' PPO states, leading axis n
    rollout: RolloutState
    task_weights: np.ndarray  # [n, m]
    task_node: np.ndarray  # [n] graph node each task started from
    graph: Graph
    ep: Archive  # the external Pareto archive (the solution)
    population: Population
    seed: np.ndarray  # seeds the selection's random candidates (three or more objectives)
    last_selected: np.ndarray  # tasks the last selection chose


# =============================================================================================== prediction model
def hyperbolic(x, A, a, b, c):
    """``A (e^{a(x-b)} - 1) / (e^{a(x-b)} + 1) + c`` (= ``A tanh(a (x - b) / 2) + c``)."""
    return A * np.tanh(0.5 * a * (np.asarray(x, np.float64) - b)) + c


def fit_hyperbolic(x: np.ndarray, y: np.ndarray, w: np.ndarray, f_scale: float = 20.0) -> np.ndarray:
    """Robust weighted least-squares fit of `hyperbolic` (the official bounds and start); returns ``(A, a, b, c)``."""
    from scipy.optimize import least_squares

    x, y, w = (np.asarray(v, np.float64) for v in (x, y, w))

    def residual(p):
        return (hyperbolic(x, *p) - y) * w

    def jac(p):
        A, a, b, _ = p
        t = np.tanh(0.5 * a * (x - b))
        dt = 0.5 * (1.0 - t * t)
        return np.stack([t * w, A * (x - b) * dt * w, -A * a * dt * w, w], axis=1)

    upper_A = float(np.clip(np.max(y) - np.min(y), 1.0, 500.0)) if y.size else 1.0
    res = least_squares(
        residual,
        np.ones(4),
        jac=jac,
        loss="soft_l1",
        f_scale=f_scale,
        bounds=([0.0, 0.1, -5.0, -500.0], [upper_A, 20.0, 5.0, 500.0]),
    )
    return res.x


def _nearest_edges(graph: Graph, node: int, threshold: float):
    """Edges (predecessor near ``node`` -> successor): predecessor returns, successor weight (sum 1), delta."""
    count = int(graph.count)
    objs, prev = graph.objs[:count], graph.prev[:count]
    ref = objs[node]
    near = np.all(np.abs(objs - ref) < np.abs(ref) * threshold, axis=1)
    succ = np.flatnonzero((prev >= 0) & near[np.maximum(prev, 0)])
    w = graph.weights[succ]
    w = w / np.sum(w, axis=1, keepdims=True)
    return objs[prev[succ]], w, objs[succ] - objs[prev[succ]]


def predict_improvement(graph: Graph, node: int, test_weights: np.ndarray) -> np.ndarray:
    """Predicted returns ``[K, m]`` after training policy ``node`` with each of ``test_weights`` (official
    ``predict_hyperbolic``); no usable history predicts no change."""
    test = np.asarray(test_weights, np.float64)
    test = test / np.sum(test, axis=1, keepdims=True)
    threshold, sigma = 0.1, 0.03
    while True:
        objs_d, w_d, delta_d = _nearest_edges(graph, node, threshold)
        distinct = len(np.unique(np.round(w_d, 5), axis=0)) if len(w_d) else 0
        if distinct > 3 or threshold >= 1.0:
            break
        threshold *= 2.0
        sigma *= 2.0
    ref = graph.objs[node]
    if len(w_d) == 0:
        return np.broadcast_to(ref, test.shape).copy()
    dist = np.linalg.norm(np.abs(objs_d - ref) / np.maximum(np.abs(ref), 1e-12), axis=1)
    coef = np.exp(-((dist / sigma) ** 2) / 2.0)
    out = np.empty_like(test)
    for i in range(test.shape[1]):
        params = fit_hyperbolic(w_d[:, i], delta_d[:, i], coef)
        out[:, i] = ref[i] + hyperbolic(test[:, i], *params)
    return out


# =============================================================================================== task selection
def candidate_weights(
    center: np.ndarray, tried: np.ndarray, num: int, delta: float, rng: np.random.Generator
) -> np.ndarray:
    """Candidate optimisation directions around a policy's last weight ``center``, minus the directions in ``tried``
    (L2-normalised, within 1e-3); returned as sum-1 weights. Two objectives: ``num`` directions evenly within +-45
    degrees; more: ``center`` plus random ``delta / 2`` grid weights within 45 degrees of it."""
    m = center.shape[0]
    tried_unit = tried / np.linalg.norm(tried, axis=1, keepdims=True) if len(tried) else np.zeros((0, m))
    out = []
    if m == 2:
        angle = np.arctan2(center[1], center[0])
        for a in np.linspace(angle - np.pi / 4.0, angle + np.pi / 4.0, num):
            w = np.array([np.cos(a), np.sin(a)])
            if w.min() >= -1e-7 and not np.any(np.linalg.norm(tried_unit - w, axis=1) < 1e-3):
                out.append(np.clip(w, 0.0, None))
    else:
        c = center / np.sum(center)
        grid = generate_weights_batch_dfs(m, 0.0, 1.0, delta / 2.0)
        pool = [c] + [grid[i] for i in rng.permutation(len(grid))]
        tried_sum = tried / np.sum(tried, axis=1, keepdims=True) if len(tried) else np.zeros((0, m))
        for k, w in enumerate(pool):
            if len(out) >= num:
                break
            if k > 0:
                if np.linalg.norm(w - c) < 1e-3:
                    continue
                cos = np.dot(c, w) / (np.linalg.norm(c) * np.linalg.norm(w))
                if np.arccos(np.clip(cos, -1.0, 1.0)) >= np.pi / 4.0:
                    continue
            if not np.any(np.linalg.norm(tried_sum - w, axis=1) < 1e-3):
                out.append(w)
    if not out:
        return np.zeros((0, m))
    out = np.asarray(out, np.float64)
    return out / np.sum(out, axis=1, keepdims=True)


def select_tasks(
    ep_objs: np.ndarray,
    candidates: list[tuple[int, np.ndarray, np.ndarray]],
    n: int,
    ref_point: np.ndarray,
    sparsity_coef: float,
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Greedy prediction-guided selection: ``candidates`` are (population index, weight, predicted returns);
    returns up to ``n`` of them maximising ``HV - sparsity_coef * SP`` of the virtual EP."""
    from morl.metrics import hypervolume, sparsity
    from morl.pareto import non_dominated

    virtual = non_dominated(ep_objs) if len(ep_objs) else np.zeros((0, len(ref_point)))
    mask = np.ones(len(candidates), bool)
    chosen = []
    for _ in range(n):
        best, best_score = -1, -np.inf
        for i, (_, _, pred) in enumerate(candidates):
            if not mask[i] or not np.all(np.isfinite(pred)):
                continue
            front = non_dominated(np.vstack([virtual, pred[None]]))
            score = hypervolume(front, ref_point, strict=False) - sparsity_coef * sparsity(front)
            if score > best_score:
                best, best_score = i, score
        if best < 0:
            break
        mask[best] = False
        chosen.append(candidates[best])
        virtual = non_dominated(np.vstack([virtual, candidates[best][2][None]]))
    return chosen


# =============================================================================================== trainer
def _take(tree: PyTree, idx) -> PyTree:
    return jax.tree.map(lambda x: np.asarray(x)[np.asarray(idx)], tree)


class PGMORLTrainer(Trainer):
    """Chunked trainer: each ``update`` is one PPO iteration of every task (one vmapped, jitted program) and its
    evaluation; the host adds the EP, graph and population bookkeeping and, between generations, task selection."""

    def __init__(self, config: PGMORLConfig, env, env_params=None):
        self.config = cfg = config
        self.env = env
        self.m = m = int(env.reward_dim)
        if m < 2:
            raise ValueError(f"PGMORL needs >= 2 objectives; {env.name} has {m}")
        self.ppo = PPO.for_env(env, cfg.ppo_config())
        self.env_params, self.eval_steps = episode_limit(env, env_params, cfg.max_episode_steps, "PGMORL: ")
        ref = cfg.ref_point if cfg.ref_point is not None else env.ref_point
        if ref is None:
            raise ValueError(
                f"PGMORL needs a reference point for {env.name} (its performance buffers and task "
                "selection measure from it); pass ref_point=(...)"
            )
        self.ref_point = np.asarray(ref, np.float64)
        if self.ref_point.shape != (m,):
            raise ValueError(f"PGMORL: ref_point has {self.ref_point.size} entries for {m} objectives")
        self.warmup_weights = generate_weights_batch_dfs(m, cfg.min_weight, cfg.max_weight, cfg.delta_weight)
        self.n = n = len(self.warmup_weights)
        if cfg.pop_size is not None and cfg.pop_size != n:
            raise ValueError(
                f"PGMORL: pop_size={cfg.pop_size} but the warm-up grid (m={m}, delta_weight="
                f"{cfg.delta_weight}, weights in [{cfg.min_weight}, {cfg.max_weight}]) has {n} weights; "
                "the tasks are the grid's weights: change delta_weight or leave pop_size unset"
            )
        # the budget rule (docs/budgets.md): whole iterations of all n tasks, never more than total_timesteps; the
        # warm-up and one generation must fit
        per_iteration = cfg.batch_size * n
        self.total_iterations = cfg.total_timesteps // per_iteration
        least = (cfg.warmup_iterations + cfg.evolutionary_iterations) * per_iteration
        if self.total_iterations < cfg.warmup_iterations + cfg.evolutionary_iterations:
            raise ValueError(
                f"PGMORL: total_timesteps {cfg.total_timesteps:,} does not cover the warm-up and one "
                f"generation ((warmup_iterations {cfg.warmup_iterations} + evolutionary_iterations "
                f"{cfg.evolutionary_iterations}) x {n} tasks x num_envs {cfg.num_envs} x "
                f"steps_per_iteration {cfg.steps_per_iteration} = {least:,} transitions); raise "
                f"--steps to >= {least:,} or lower --warmup-iterations, --evolutionary-iterations, "
                "--steps-per-iteration or --num-envs"
            )
        self.pop_capacity = cfg.num_performance_buffer * cfg.performance_buffer_size
        self.graph_capacity = n * (2 + self.total_iterations // cfg.evolutionary_iterations)
        self._build()

    # ------------------------------------------------------------------ compiled pieces
    def _build(self) -> None:
        cfg, ppo = self.config, self.ppo
        self._pop = population = make_population(
            ppo,
            self.env,
            self.n,
            stats_gamma=cfg.gamma,
            eval_episodes=cfg.eval_episodes,
            eval_steps=self.eval_steps,
            eval_gamma=cfg.eval_gamma,
            env_params=self.env_params,
        )
        self._insert = jax.jit(archive_insert)
        self._init_pop, self._reset, self._evaluate = population.init, population.reset, population.evaluate

        def act(p, w, obs, key):
            return ppo.act(p, obs)

        self._act = act

    def _iterate(self, pop, rstate, weights, lr, key):
        """One PPO iteration of every task, then its evaluation (two compiled programs, each compiled once)."""
        k_train, k_eval = jax.random.split(key)
        pop, rstate, stats, _ = self._pop.iterate(pop, rstate, lr, k_train, weights)
        returns, finished = self._evaluate(pop, k_eval)
        return pop, rstate, stats, returns, finished

    @staticmethod
    def _stored(pop: PPOState) -> dict:
        """What the EP keeps of a policy: its actor and observation statistics."""
        return {"actor": pop.params["actor"], "obs_rms": pop.obs_rms}

    # ------------------------------------------------------------------ state
    def init(self, key: jax.Array) -> PGMORLState:
        cfg, n, m = self.config, self.n, self.m
        k_pop, k_env, k_eval, key = jax.random.split(key, 4)
        tasks = self._init_pop(jax.random.split(k_pop, n))
        returns, finished = self._evaluate(tasks, k_eval)
        self._check_finished(finished)
        graph = Graph(
            weights=np.zeros((self.graph_capacity, m)),
            objs=np.zeros((self.graph_capacity, m)),
            prev=np.full(self.graph_capacity, -1, np.int64),
            count=np.int64(0),
        )
        nodes = np.zeros(n, np.int64)
        for i in range(n):  # the warm-up tasks' roots: random policies with their weights
            graph, nodes[i] = self._graph_insert(graph, self.warmup_weights[i], np.asarray(returns[i]), -1)
        proto = jax.tree.map(lambda x: np.zeros((self.pop_capacity,) + x.shape[1:], x.dtype), tasks)
        ep = Archive.empty(cfg.ep_capacity, m, jax.tree.map(lambda x: x[0], self._stored(tasks)))
        return PGMORLState(
            key=key,
            iteration=np.int64(0),
            generation=np.int64(0),
            gen_iter=np.int64(0),
            env_steps=np.int64(0),
            eval_episodes=np.int64(n * cfg.eval_episodes),
            tasks=tasks,
            rollout=self._reset(k_env),
            task_weights=np.asarray(self.warmup_weights, np.float32),
            task_node=nodes,
            graph=graph,
            ep=ep,
            population=Population(
                policy=proto,
                objs=np.zeros((self.pop_capacity, m)),
                node=np.zeros(self.pop_capacity, np.int64),
                valid=np.zeros(self.pop_capacity, bool),
            ),
            seed=np.asarray(jax.random.randint(k_eval, (), 0, 2**31 - 1), np.int64),
            last_selected=np.int64(0),
        )

    @staticmethod
    def _graph_insert(graph: Graph, weight, objs, prev: int) -> tuple[Graph, int]:
        i = int(graph.count)
        if i >= graph.objs.shape[0]:
            raise RuntimeError("PGMORL: optimisation graph capacity exceeded (internal sizing error)")
        graph = jax.tree.map(lambda v: np.array(v, copy=True), graph)
        w = np.asarray(weight, np.float64)
        graph.weights[i] = w / np.linalg.norm(w)
        graph.objs[i] = objs
        graph.prev[i] = prev
        return graph.replace(count=np.int64(i + 1)), i

    def _check_finished(self, finished) -> None:
        if not bool(finished):
            raise RuntimeError(
                f"PGMORL: evaluation episodes on {self.env.name} did not end within {self.eval_steps} "
                "steps; set max_episode_steps (a time limit)"
            )

    # ------------------------------------------------------------------ protocol
    def done(self, state: PGMORLState) -> bool:
        return int(state.iteration) >= self.total_iterations

    def env_steps(self, state: PGMORLState) -> int:
        return int(state.env_steps)

    def update(self, state: PGMORLState) -> tuple[PGMORLState, dict[str, float]]:
        cfg, n = self.config, self.n
        if self.done(state):
            return state, self._logs(state)
        it = int(state.iteration)
        key, k_it = jax.random.split(state.key)
        # host values (numpy) into the compiled programs: no eager op is compiled for them
        lr = linear_lr(cfg.lr, it, self.total_iterations) if cfg.anneal_lr else np.float32(cfg.lr)
        weights = np.asarray(state.task_weights, np.float32)
        tasks, rollout, stats, returns, finished = self._iterate(state.tasks, state.rollout, weights, lr, k_it)
        self._check_finished(finished)
        returns_np = np.asarray(returns, np.float64)
        ep = self._insert(state.ep, returns, weights, self._stored(tasks), np.all(np.isfinite(returns_np), axis=1))
        gen_iter = int(state.gen_iter) + 1
        state = state.replace(
            key=key,
            tasks=tasks,
            rollout=rollout,
            ep=ep,
            iteration=np.int64(it + 1),
            gen_iter=np.int64(gen_iter),
            env_steps=np.int64(state.env_steps + n * cfg.batch_size),
            eval_episodes=np.int64(state.eval_episodes + n * cfg.eval_episodes),
        )
        if gen_iter % cfg.evolutionary_iterations == 0:  # offspring: graph + population
            state = self._offspring(state, returns_np)
        length = cfg.warmup_iterations if int(state.generation) == 0 else cfg.evolutionary_iterations
        if gen_iter >= length and not self.done(state):
            state = self._next_generation(state)
        return state, self._logs(state, stats)

    def _offspring(self, state: PGMORLState, returns: np.ndarray) -> PGMORLState:
        cfg, n = self.config, self.n
        graph, nodes = state.graph, np.array(state.task_node, copy=True)
        for i in range(n):
            graph, nodes[i] = self._graph_insert(graph, state.task_weights[i], returns[i], int(nodes[i]))
        pop = state.population
        pool_policy = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)]), pop.policy, state.tasks)
        pool_objs = np.concatenate([pop.objs, returns])
        pool_node = np.concatenate([pop.node, nodes])
        pool_valid = np.concatenate([pop.valid, np.all(np.isfinite(returns), axis=1)])
        keep = select_population(
            pool_objs, pool_valid, self.ref_point, cfg.num_performance_buffer, cfg.performance_buffer_size
        )
        pad = np.concatenate([keep, np.zeros(self.pop_capacity - keep.size, np.int64)])
        new_pop = Population(
            policy=_take(pool_policy, pad),
            objs=pool_objs[pad],
            node=pool_node[pad],
            valid=np.arange(self.pop_capacity) < keep.size,
        )
        return state.replace(graph=graph, task_node=nodes, population=new_pop)

    def _next_generation(self, state: PGMORLState) -> PGMORLState:
        """Prediction-guided task selection; the chosen policies restart on new envs with their weights."""
        cfg, n = self.config, self.n
        pop, graph = state.population, state.graph
        rng = np.random.default_rng(int(state.seed) + int(state.generation))
        count = int(graph.count)
        candidates = []
        for j in np.flatnonzero(pop.valid):
            node = int(pop.node[j])
            tried = graph.weights[:count][graph.prev[:count] == node]
            weights = candidate_weights(graph.weights[node], tried, cfg.num_weight_candidates, cfg.delta_weight, rng)
            if len(weights) == 0:
                continue
            preds = predict_improvement(graph, node, weights)
            candidates.extend((int(j), w, p) for w, p in zip(weights, preds))
        ep_objs = np.asarray(state.ep.returns, np.float64)[np.asarray(state.ep.valid)]
        chosen = select_tasks(ep_objs, candidates, n, self.ref_point, cfg.sparsity_coef)
        tasks = jax.tree.map(np.asarray, state.tasks)
        weights = np.array(state.task_weights, copy=True)
        nodes = np.array(state.task_node, copy=True)
        for i, (j, w, _) in enumerate(chosen):  # fewer picks than tasks: the rest keep training as they are
            tasks = jax.tree.map(lambda t, p, i=i, j=j: _set_row(t, i, p[j]), tasks, pop.policy)
            weights[i] = w
            nodes[i] = pop.node[j]
        tasks = tasks.replace(ret=np.zeros_like(tasks.ret))  # new envs: the normaliser's running returns restart
        key, k_env = jax.random.split(state.key)
        return state.replace(
            key=key,
            tasks=tasks,
            rollout=self._reset(k_env),
            task_weights=weights.astype(np.float32),
            task_node=nodes,
            gen_iter=np.int64(0),
            generation=np.int64(int(state.generation) + 1),
            last_selected=np.int64(len(chosen)),
        )

    # ------------------------------------------------------------------ solution
    def solution(self, state: PGMORLState) -> Solution:
        ep = state.ep
        valid = np.asarray(ep.valid)
        if not valid.any():  # nothing evaluated yet: the current tasks
            return Solution(
                act=self._act,
                greedy=True,
                params=self._stored(state.tasks),
                candidate_weights=np.asarray(state.task_weights, np.float64),
            )
        idx = np.flatnonzero(valid)
        return Solution(
            act=self._act,
            greedy=True,
            params=jax.tree.map(lambda x: x[idx], ep.policy),
            candidate_weights=np.asarray(ep.weights, np.float64)[idx],
            candidate_returns=np.asarray(ep.returns, np.float64)[idx],
        )

    def front(self, state: PGMORLState) -> np.ndarray:
        """The EP's returns, ``[F, m]``."""
        return np.asarray(state.ep.returns, np.float64)[np.asarray(state.ep.valid)]

    def _logs(self, state: PGMORLState, stats: dict | None = None) -> dict[str, float]:
        from morl.metrics import hypervolume

        front = self.front(state)
        logs = {
            "env_steps": float(state.env_steps),
            "iteration": float(state.iteration),
            "generation": float(state.generation),
            "ep_size": float(len(front)),
            "population_size": float(np.sum(state.population.valid)),
            "eval_episodes": float(state.eval_episodes),
            "ep_hv": float(hypervolume(front, self.ref_point, strict=False)) if len(front) else 0.0,
        }
        if stats is not None:
            logs.update({k: float(np.mean(v)) for k, v in stats.items()})
        return logs


def _set_row(table: np.ndarray, i: int, row) -> np.ndarray:
    table = np.array(table, copy=True)
    table[i] = row
    return table


def make_trainer(config: PGMORLConfig, env, env_params=None) -> PGMORLTrainer:
    return PGMORLTrainer(config, env, env_params)


SPEC = register_agent(
    AgentSpec(
        name="pgmorl",
        config_cls=PGMORLConfig,
        make_trainer=make_trainer,
        summary="PGMORL (Xu et al. 2020): prediction-guided task selection over a vmapped population of PPO tasks",
        action_kinds=("discrete", "continuous"),
        # GPU/TPU: 512 envs per task, the same transitions per iteration (default 512 x 16 instead of 4 x 2048)
        accelerator_defaults=wide_batch("num_envs", "steps_per_iteration", 512),
    )
)
