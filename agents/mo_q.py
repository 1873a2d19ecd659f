"""Scalarised multi-objective Q-learning (Van Moffaert, Drugan & Nowé 2013) and Optimistic Linear Support on top of
it (Roijers' thesis section 3.3), as MORL-Baselines implements them (``MOQLearning``, ``MPMOQLearning`` with
``weight_selection_algo="ols"``), in JAX.

``mo-q``: one vector Q-table ``Q[s, a] in R^m`` learned for one preference ``w``: epsilon-greedy on ``w . Q``, target
``r + gamma Q[s', argmax_a' w . Q[s', a']]``. A state never seen yet acts at random (MORL-Baselines' dictionary table).
A training chunk is one jitted scan over env steps, vmappable over seeds.

``ols``: iterations of ``mo-q``. Each trains a fresh policy (its table copied from the CCS policy best for the new
weight) at the corner weight with the largest optimistic improvement, evaluates it there and adds its value to the
linear support, which drops the policies no longer optimal anywhere (agents/linear_support.py). The corner weights
and the linear program run on the host between iterations; the Q-learning inside an iteration is the jitted chunk.
Deviations from MORL-Baselines: docs/algorithms/mo-q.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from morl.agent import AgentSpec, Trainer, check_config, episode_return_logs, register_agent, require_discrete
from morl.agents import td
from morl.agents.linear_support import LinearSupport
from morl.agents.pql import tabular_states
from morl.envs.deep_sea_treasure import DST_IDS
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution

PyTree = Any


# =============================================================================================== configs
@dataclass(frozen=True)
class MOQConfig:
    """MO Q-learning settings. Defaults: MORL-Baselines ``MOQLearning.__init__`` and ``train`` (docs/sources.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) bounds every real transition; one env, so a run
    uses exactly the budget (the rest of the last chunk is computed and discarded)."""

    total_timesteps: int = 500_000  # training budget in env steps (MORL-Baselines' train(total_timesteps))
    weights: tuple[float, ...] | None = None  # the preference w of the weighted sum; None = uniform (MORL-Baselines:
    # [0.5, 0.5])
    learning_rate: float = 0.1  # step size of the tabular TD update
    gamma: float = 0.9  # discount
    initial_epsilon: float = 0.1  # epsilon-greedy: start value
    final_epsilon: float = 0.1  # epsilon-greedy: final value
    epsilon_decay_steps: int | None = None  # env steps of the linear decay; None = fixed epsilon
    learning_starts: int = 0  # env steps before the decay starts
    steps_per_chunk: int = 10_000  # env steps per jitted training chunk (one `update` call)

    def __post_init__(self):
        _check_q("mo-q", self)


@dataclass(frozen=True)
class OLSConfig:
    """OLS over MO Q-learning. Defaults: MORL-Baselines ``MPMOQLearning.__init__``/``train`` with
    ``weight_selection_algo="ols"``, ``epsilon_ols=0.0`` (docs/sources.md); on deep-sea-treasure the env defaults
    are its examples/ols_dst.py (without Dyna and the GPI policy: docs/algorithms/mo-q.md).

    Budget rule (docs/budgets.md): ``total_timesteps`` (``--steps``) is spent in whole iterations of
    ``timesteps_per_iteration`` env steps (``total_timesteps // timesteps_per_iteration`` iterations, at least one);
    the remainder is unused. Policy evaluations are not training transitions."""

    total_timesteps: int = 3_000_000  # training budget in env steps (examples/ols_dst.py: 15 iterations)
    timesteps_per_iteration: int = 200_000  # env steps of Q-learning per OLS iteration (one policy)
    learning_rate: float = 0.1  # step size of the tabular TD update
    gamma: float = 0.9  # discount (also of the policy evaluations that build the CCS)
    initial_epsilon: float = 0.1  # epsilon-greedy: start value
    final_epsilon: float = 0.1  # epsilon-greedy: final value
    epsilon_decay_steps: int | None = None  # env steps of the linear decay, counted over the whole run (as
    # MORL-Baselines' global step); None = fixed epsilon
    learning_starts: int = 0  # env steps before the decay starts
    epsilon_ols: float = 0.0  # corner weights with an optimistic improvement below this are not tried
    transfer_q_table: bool = True  # start each policy from the table of the CCS policy best for its weight
    restart_epsilon: bool = False  # each iteration's policy restarts the epsilon schedule (ours; MORL-Baselines:
    # one schedule over the run, so later policies explore at final_epsilon)
    eval_episodes: int = 5  # episodes of each policy's evaluation (num_eval_episodes_for_front)
    steps_per_chunk: int = 10_000  # env steps per jitted training chunk (one `update` call)

    def __post_init__(self):
        _check_q("ols", self)
        check_config(
            "ols", self, at_least_one=("timesteps_per_iteration", "eval_episodes"), non_negative=("epsilon_ols",)
        )
        if self.timesteps_per_iteration > self.total_timesteps:
            raise ValueError(
                f"ols config: one iteration (timesteps_per_iteration {self.timesteps_per_iteration:,}) is more than "
                f"the whole budget total_timesteps {self.total_timesteps:,}; lower --timesteps-per-iteration or raise "
                "--steps"
            )


def _check_q(agent: str, c) -> None:
    check_config(agent, c, at_least_one=("total_timesteps", "steps_per_chunk"), non_negative=("learning_starts",))
    for name in ("learning_rate", "gamma", "initial_epsilon", "final_epsilon"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise ValueError(f"{agent} config: {name} must be in [0, 1], got {getattr(c, name)!r}")
    if c.epsilon_decay_steps is not None and c.epsilon_decay_steps < 1:
        raise ValueError(f"{agent} config: epsilon_decay_steps must be >= 1 or none, got {c.epsilon_decay_steps!r}")


# =============================================================================================== Q-learning
@struct.dataclass
class MOQState:
    q: jax.Array  # [S, A, m]
    seen: jax.Array  # [S] bool: the state has a table row (MORL-Baselines creates rows for s and s')
    w: jax.Array  # [m] the preference being learned
    rollout: RolloutState
    key: jax.Array
    env_steps: jax.Array  # int32, the whole run's
    stop_at: jax.Array  # int32: steps at and past this are computed and discarded
    clock_start: jax.Array  # int32: the epsilon schedule counts env steps from here


class MOQLearner:
    """The tabular learner both agents share: a jitted chunk of ``steps_per_chunk`` env steps, and the greedy act."""

    def __init__(self, config, env, env_params, who: str):
        require_discrete(env, who)
        require_pure_jax(env, who)
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        self.m = env.reward_dim
        self.num_actions = int(env.action_space.n)
        self.num_states, self.index = tabular_states(env.observation_space, who)
        self.rollout = make_rollout(env, self._behaviour_policy, 1, 1, gamma=config.gamma)
        index, num_actions = self.index, self.num_actions

        def act(params, w, obs, key):
            """Greedy on the candidate's own preference; a state without a row acts at random (MORL-Baselines)."""
            s = index(obs)
            greedy = jnp.argmax(jnp.einsum("nam,m->na", params["q"][s], params["w"]), axis=-1).astype(jnp.int32)
            random = jax.random.randint(key, greedy.shape, 0, num_actions, dtype=jnp.int32)
            return jnp.where(params["seen"][s], greedy, random)

        self.act = act
        self.chunk = jax.jit(self._chunk)

    def init(self, key: jax.Array, w: jax.Array, env_steps, stop_at, clock_start=0) -> MOQState:
        k_env, key = jax.random.split(key)
        return MOQState(
            q=jnp.zeros((self.num_states, self.num_actions, self.m), jnp.float32),
            seen=jnp.zeros((self.num_states,), bool),
            w=jnp.asarray(w, jnp.float32),
            rollout=self.rollout.init.pure(k_env, self.env_params),
            key=key,
            env_steps=jnp.asarray(env_steps, jnp.int32),
            stop_at=jnp.asarray(stop_at, jnp.int32),
            clock_start=jnp.asarray(clock_start, jnp.int32),
        )

    def _behaviour_policy(self, p, obs, key):
        k_eps, k_act = jax.random.split(key)
        greedy = self.act({"q": p["q"], "w": p["w"], "seen": p["seen"]}, p["w"], obs, k_act)
        return td.epsilon_greedy(k_eps, greedy, self.num_actions, p["epsilon"]), ()

    def _iteration(self, state: MOQState, _):
        c = self.config
        key, k_roll = jax.random.split(state.key)
        active = state.env_steps < state.stop_at
        clock = state.env_steps - state.clock_start
        epsilon = td.linear_schedule(
            c.initial_epsilon, c.final_epsilon, c.epsilon_decay_steps, clock, c.learning_starts
        )
        pp = {"q": state.q, "seen": state.seen, "w": state.w, "epsilon": epsilon}
        rstate, traj = self.rollout.run.pure(pp, state.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0, 0], traj)
        s, s2 = self.index(tr.obs[None])[0], self.index(tr.next_obs[None])[0]
        a = tr.action.astype(jnp.int32)
        q_next = state.q[s2][jnp.argmax(state.q[s2] @ state.w)]  # a fresh row is zeros: argmax 0, as the reference
        target = tr.reward + (1.0 - tr.terminated.astype(jnp.float32)) * c.gamma * q_next
        new = state.q[s, a] + c.learning_rate * (target - state.q[s, a])
        keep = lambda x, y: jnp.where(active, x, y)  # noqa: E731
        seen = state.seen.at[s].set(state.seen[s] | active)
        seen = seen.at[s2].set(seen[s2] | active)
        done = (tr.terminated | tr.truncated) & active
        new_state = state.replace(
            q=state.q.at[s, a].set(keep(new, state.q[s, a])),
            seen=seen,
            rollout=jax.tree.map(keep, rstate, state.rollout),
            key=key,
            env_steps=state.env_steps + active.astype(jnp.int32),
        )
        return new_state, (done, jnp.where(done, tr.episode_return, 0.0), epsilon)

    def _chunk(self, state: MOQState) -> tuple[MOQState, dict]:
        state, (done, ret, epsilon) = jax.lax.scan(self._iteration, state, None, length=self.config.steps_per_chunk)
        n = jnp.sum(done)
        return state, {"episodes": n, "epsilon": epsilon[-1], **episode_return_logs(ret, n)}


def _preference(weights, m: int, who: str) -> np.ndarray:
    if weights is None:
        return np.full(m, 1.0 / m)
    w = np.asarray(weights, np.float64)
    if w.shape != (m,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"{who} config: weights must be {m} non-negative values, not all 0; got {weights!r}")
    return w


class MOQTrainer(Trainer):
    """``mo-q``: one policy for one preference; pure chunks, vmappable over seeds."""

    vmappable = True

    def __init__(self, config: MOQConfig, env, env_params=None):
        self.config = config
        self.learner = MOQLearner(config, env, env_params, "mo-q")
        self.w = _preference(config.weights, self.learner.m, "mo-q")

    def init(self, key: jax.Array) -> MOQState:
        return self.learner.init(key, self.w, 0, self.config.total_timesteps)

    def update(self, state: MOQState) -> tuple[MOQState, dict]:
        return self.learner.chunk(state)

    def done(self, state: MOQState) -> bool:
        return int(state.env_steps) >= self.config.total_timesteps

    def env_steps(self, state: MOQState) -> int:
        return int(state.env_steps)

    def solution(self, state: MOQState) -> Solution:
        params = {"q": state.q[None], "w": state.w[None], "seen": state.seen[None]}
        return Solution(act=self.learner.act, params=params, candidate_weights=self.w[None])


# =============================================================================================== OLS
class OLSTrainer(Trainer):
    """``ols``: one `update` is one chunk of the current iteration's Q-learning; an iteration's last chunk also
    evaluates its policy and asks the linear support for the next weight (host numpy: not vmappable)."""

    def __init__(self, config: OLSConfig, env, env_params=None):
        self.config = config
        self.learner = MOQLearner(config, env, env_params, "ols")
        self.m = self.learner.m
        self.iterations = config.total_timesteps // config.timesteps_per_iteration
        self.budget = self.iterations * config.timesteps_per_iteration
        #: the env's own time limit caps the evaluation episodes
        self.max_steps = int(self.learner.env_params.max_steps)

        def greedy(p, obs, key):
            return self.learner.act(p, p["w"], obs, key), ()

        self._eval_rollout = make_rollout(
            env, greedy, config.eval_episodes, self.max_steps, gamma=config.gamma, emit="summary"
        )
        self._evaluate = jax.jit(self._evaluate_fn)

    # ------------------------------------------------------------------ protocol
    def init(self, key: jax.Array) -> dict:
        ls = LinearSupport(self.m, self.config.epsilon_ols)
        k_learn, key = jax.random.split(key)
        w = ls.next_weight()
        cap = self.iterations + 1
        s, a = self.learner.num_states, self.learner.num_actions
        return {
            "learner": self.learner.init(k_learn, w, 0, self.config.timesteps_per_iteration),
            "key": key,
            "iteration": np.int64(0),
            "tables": np.zeros((cap, s, a, self.m), np.float32),
            "tables_seen": np.zeros((cap, s), bool),
            "support": ls.arrays(cap),
        }

    def update(self, state: dict) -> tuple[dict, dict]:
        learner, logs = self.learner.chunk(state["learner"])
        state = dict(state, learner=learner)
        end = (int(state["iteration"]) + 1) * self.config.timesteps_per_iteration
        if int(learner.env_steps) >= end:
            state, more = self._finish_iteration(state)
            logs = dict(logs, **more)
        return state, logs

    def done(self, state: dict) -> bool:
        return int(state["iteration"]) >= self.iterations

    def env_steps(self, state: dict) -> int:
        return int(state["learner"].env_steps)

    def solution(self, state: dict) -> Solution:
        """The CCS policies, each greedy on its own weight; an empty CCS (before the first iteration ends) hands back
        the policy in training."""
        sup = state["support"]
        n = int(sup["ccs_count"])
        if n == 0:
            lr = state["learner"]
            params = {"q": lr.q[None], "w": lr.w[None], "seen": lr.seen[None]}
            return Solution(act=self.learner.act, params=params, candidate_weights=np.asarray(lr.w)[None])
        w = np.asarray(sup["ccs_weights"][:n], np.float32)
        params = {
            "q": jnp.asarray(state["tables"][:n]),
            "w": jnp.asarray(w),
            "seen": jnp.asarray(state["tables_seen"][:n]),
        }
        return Solution(
            act=self.learner.act,
            params=params,
            candidate_weights=np.asarray(sup["ccs_weights"][:n]),
            candidate_returns=np.asarray(sup["ccs"][:n]),
        )

    def ccs(self, state: dict) -> np.ndarray:
        """The values OLS holds as its convex coverage set ``[n, m]`` (each policy's evaluation at its weight)."""
        sup = state["support"]
        return np.asarray(sup["ccs"][: int(sup["ccs_count"])])

    # ------------------------------------------------------------------ pieces
    def _evaluate_fn(self, params: PyTree, key: jax.Array) -> jax.Array:
        """The mean discounted vector return of ``eval_episodes`` episodes (MORL-Baselines' policy_evaluation_mo)."""
        ro = self._eval_rollout
        k_init, k_run = jax.random.split(key)
        _, summary = ro.run.pure(params, ro.init.pure(k_init, self.learner.env_params), k_run, self.learner.env_params)
        return jnp.mean(summary.first_discounted_return, axis=0)

    def _finish_iteration(self, state: dict) -> tuple[dict, dict]:
        c = self.config
        lr = state["learner"]
        cap = self.iterations + 1
        ls = LinearSupport.from_arrays(state["support"], c.epsilon_ols, seed=int(state["iteration"]))
        n = len(ls.ccs)
        key, k_eval, k_next, k_w = jax.random.split(state["key"], 4)
        params = {"q": lr.q, "w": lr.w, "seen": lr.seen}
        value = np.asarray(self._evaluate(params, k_eval), np.float64)
        tables, seen = state["tables"].copy(), state["tables_seen"].copy()
        tables[n], seen[n] = np.asarray(lr.q), np.asarray(lr.seen)  # the new policy sits after the CCS's
        removed = ls.add_solution(value, np.asarray(lr.w, np.float64))
        keep = [i for i in range(n + 1) if i not in removed]
        tables[: len(keep)], seen[: len(keep)] = tables[keep], seen[keep]
        iteration = int(state["iteration"]) + 1
        w = ls.next_weight()
        ended = w is None
        if ended:  # MORL-Baselines: no corner weight left, train a random weight
            w = np.asarray(jax.random.dirichlet(k_w, jnp.ones(self.m)), np.float64)
        start = int(lr.env_steps) if c.restart_epsilon else 0
        learner = self.learner.init(k_next, w, lr.env_steps, (iteration + 1) * c.timesteps_per_iteration, start)
        if c.transfer_q_table and ls.ccs:
            best = int(np.argmax([np.dot(w, v) for v in ls.ccs]))
            learner = learner.replace(q=jnp.asarray(tables[best]), seen=jnp.asarray(seen[best]))
        logs = {"ccs_size": len(ls.ccs), "ols_ended": float(ended), **{f"value_{i}": value[i] for i in range(self.m)}}
        state = dict(state, learner=learner, key=key, iteration=np.int64(iteration), tables=tables, tables_seen=seen)
        state["support"] = ls.arrays(cap)
        return state, logs


def make_moq(config: MOQConfig, env, env_params=None) -> MOQTrainer:
    return MOQTrainer(config, env, env_params)


def make_ols(config: OLSConfig, env, env_params=None) -> OLSTrainer:
    return OLSTrainer(config, env, env_params)


#: examples/ols_dst.py's Q-learning settings (its Dyna and GPI policy are not ported)
_OLS_DST = {
    "learning_rate": 0.3,
    "gamma": 0.99,
    "initial_epsilon": 1.0,
    "final_epsilon": 0.01,
    "epsilon_decay_steps": 200_000,
}

SPEC_MOQ = register_agent(
    AgentSpec(
        name="mo-q",
        config_cls=MOQConfig,
        make_trainer=make_moq,
        summary="Scalarised tabular MO Q-learning (Van Moffaert et al. 2013): one policy for one preference",
        action_kinds=("discrete",),
    )
)
SPEC_OLS = register_agent(
    AgentSpec(
        name="ols",
        config_cls=OLSConfig,
        make_trainer=make_ols,
        summary="Optimistic Linear Support (Roijers 2016) over tabular MO Q-learning: the convex coverage set",
        action_kinds=("discrete",),
        env_defaults=dict.fromkeys(DST_IDS, _OLS_DST),
    )
)
