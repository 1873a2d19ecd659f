"""What both PD-MORL variants share: the lane (one learner and its envs), the two-phase train state, phase control,
key-preference evaluation, interpolator fits and the HER store.

Phases: one seed's ``update`` runs the key-run chunk or the main-run chunk, picked on the host from ``state.phase``
(two programs, each compiled once). Several seeds (the run driver's ``jit(vmap(update))``) run one program whose
phase switch is a ``lax.cond`` on the first seed's phase, with each phase vmapped over the seeds (a custom vmap
rule: a plain vmap of a ``cond`` on a batched flag would run both phases every chunk). Seeds of one group share
their config, so their key runs end at the same chunk and every seed is always in the first seed's phase.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax import custom_batching

from morl.agent import Trainer
from morl.agents import replay as rb
from morl.agents.pd_morl.interpolator import Interpolator, key_preferences, make_interpolator, refit
from morl.agents.preferences import SubspaceGrid, gaussian_preferences
from morl.rollout import RolloutState, make_rollout, require_pure_jax
from morl.solution import Solution

PyTree = Any


@struct.dataclass
class Lane:
    """One learner: networks, optimiser, replay, its envs and their episode preferences."""

    params: PyTree
    target: PyTree
    opt_state: PyTree
    replay: rb.Replay
    rollout: RolloutState
    w: jax.Array  # [N, m]
    steps: jax.Array  # int32 env steps of this lane
    updates: jax.Array  # int32
    noise: jax.Array | None = None  # [N, A] correlated exploration noise state (continuous only)


@struct.dataclass
class PDState:
    phase: jax.Array  # int32: 0 key runs, 1 main run
    keys: Lane  # leaves with a leading K axis (one lane per key preference)
    key_returns: jax.Array  # [K, m] best evaluated return of each key run
    main: Lane
    interp: Interpolator
    key: jax.Array


def _round3(w: jax.Array) -> jax.Array:
    return jnp.round(w * 1000.0) / 1000.0


class PDMORLBase(Trainer):
    """Phase control, key evaluation and interpolator refits shared by both variants (host dispatch by phase)."""

    vmappable = True  # seeds in one program: `update` under the driver's jit(vmap) (module docstring)
    agent_name: str  # the registered name, for error messages

    # ------------------------------------------------------------ what each variant defines
    @abstractmethod
    def _init_fn(self, key: jax.Array) -> PDState:
        """A fresh state: one lane per key preference, the main lane, an interpolator to be fitted."""

    @abstractmethod
    def _iteration(
        self, lane: Lane, key: jax.Array, *, main: bool, w_key: jax.Array | None, interp: Interpolator, budget: int
    ) -> tuple[Lane, dict]:
        """One vector env step of a lane and its gradient steps (key runs: ``main`` False, preference ``w_key``)."""

    @abstractmethod
    def _gradient_step(
        self, lane: Lane, key: jax.Array, enabled: jax.Array, main: bool, interp: Interpolator
    ) -> tuple[Lane, dict]:
        """One gradient step of a lane (the main run's target uses the interpolator), kept only where ``enabled``."""

    @abstractmethod
    def _greedy(self, params: PyTree, w: jax.Array, obs: jax.Array) -> jax.Array:
        """Deterministic actions of the conditioned policy (key evaluation)."""

    @abstractmethod
    def _policy_params(self, params: PyTree) -> PyTree:
        """The part of a lane's parameters the policy needs (the actor, or the whole Q-network)."""

    def _setup_common(self, config, env, env_params, max_episode_steps: int | None = None):
        """Settings both variants share; ``max_episode_steps`` caps training and key-evaluation episodes."""
        require_pure_jax(env, "PD-MORL")
        self.config = config
        self.env = env
        self.env_params = env.default_params if env_params is None else env_params
        if max_episode_steps is not None:  # training (and key-evaluation) episodes end at the official cap
            if max_episode_steps < 1:
                raise ValueError(f"max_episode_steps must be >= 1 (or None for the env's), got {max_episode_steps}")
            self.env_params = self.env_params.replace(
                max_steps=min(int(max_episode_steps), int(self.env_params.max_steps))
            )
        self.m = env.reward_dim
        if config.cosine_shift is not None and len(config.cosine_shift) != self.m:
            raise ValueError(
                f"cosine_shift needs {self.m} values (one per objective of {env.name}), got {config.cosine_shift}"
            )
        self.key_w = jnp.asarray(key_preferences(self.m))
        self.num_keys = int(self.key_w.shape[0])
        # the budget covers the key runs: the main run gets what they leave (docs/budgets.md)
        key_total = self.num_keys * config.key_timesteps
        self.main_budget = int(config.total_timesteps) - key_total
        if self.main_budget <= 0:
            share = max(1, config.total_timesteps // 50)
            raise ValueError(
                f"{self.agent_name}: the {self.num_keys} key-preference runs ({self.num_keys} x "
                f"key_timesteps {config.key_timesteps:,} = {key_total:,} transitions) leave nothing of "
                f"the budget total_timesteps {config.total_timesteps:,} for the main run; raise --steps "
                f"above {key_total:,} or lower --key-timesteps (e.g. --key-timesteps {share}, 2% of the "
                "budget each)"
            )
        self.grid = SubspaceGrid.make(self.m, config.w_step, config.num_subspaces)
        self.num_envs = config.num_envs
        self.subspace_of_env = jnp.arange(self.num_envs, dtype=jnp.int32) % config.num_subspaces
        self.upd_per_vec = max(1, int(round(config.updates_per_step * self.num_envs)))
        steps = int(self.env_params.max_steps)

        def eval_policy(p, obs, key):
            return self._greedy(p["params"], p["w"], obs), ()

        self.eval_rollout = make_rollout(
            env, eval_policy, config.eval_episodes, steps, gamma=config.gamma, population=self.num_keys, emit="summary"
        )

    # -------------------------------------------------------------- protocol
    def init(self, key: jax.Array) -> PDState:
        return self._init(key)

    def update(self, state: PDState) -> tuple[PDState, dict]:
        if isinstance(state.phase, jax.core.Tracer):  # traced: the seeds-in-one-program path (module docstring)
            if self._update_traced is None:
                self._update_traced = self._traced_update()
            return self._update_traced(state)
        return self._key_chunk(state) if int(state.phase) == 0 else self._main_chunk(state)

    def done(self, state: PDState) -> bool:
        return int(state.phase) == 1 and int(state.main.steps) >= self.main_budget

    def env_steps(self, state: PDState) -> int:
        return int(jnp.sum(state.keys.steps)) + int(state.main.steps)

    def solution(self, state: PDState) -> Solution:
        return Solution(act=self._act, params=state.main.params, conditioned=True, greedy=True)

    # -------------------------------------------------------------- evaluation at the key preferences
    def _evaluate_keys(self, params_per_key: PyTree, key: jax.Array) -> jax.Array:
        """Mean discounted returns ``[K, m]`` of policies (one per key, leading K axis) at the key preferences."""
        k_init, k_run = jax.random.split(key)
        state = self.eval_rollout.init.pure(k_init, self.env_params)
        _, summary = self.eval_rollout.run.pure(
            {"params": params_per_key, "w": self.key_w}, state, k_run, self.env_params
        )
        done = summary.episodes > 0  # [K, E]
        ret = jnp.where(done[..., None], summary.first_discounted_return, 0.0)
        return jnp.sum(ret, axis=1) / jnp.maximum(jnp.sum(done, axis=1), 1)[:, None]

    def _finish_keys(self, state: PDState) -> PDState:
        """Fit the interpolator from the key runs and switch to the main run."""
        c = self.config
        if c.cosine_shift is None:
            shift = jnp.maximum(0.0, -jnp.min(state.key_returns, axis=0))
        else:
            shift = jnp.asarray(c.cosine_shift, jnp.float32)
        interp = make_interpolator(self.key_w, state.key_returns, shift, "l2")
        return state.replace(interp=interp, phase=jnp.int32(1))

    def _key_chunk_fn(self, state: PDState):
        c = self.config
        key, k_lanes, k_eval = jax.random.split(state.key, 3)

        def lane_chunk(lane, w_key, k):
            def body(lane, k):
                return self._iteration(lane, k, main=False, w_key=w_key, interp=state.interp, budget=c.key_timesteps)

            return jax.lax.scan(body, lane, jax.random.split(k, c.steps_per_chunk))

        lanes, logs = jax.vmap(lane_chunk)(state.keys, self.key_w, jax.random.split(k_lanes, self.num_keys))
        returns = self._evaluate_keys(self._policy_params(lanes.params), k_eval)
        better = jnp.sum(self.key_w * returns, -1) > jnp.sum(self.key_w * state.key_returns, -1)
        key_returns = jnp.where(better[:, None], returns, state.key_returns)
        state = state.replace(keys=lanes, key_returns=key_returns, key=key)
        out = {"loss": jnp.mean(logs["loss"]), "phase": jnp.int32(0)}
        for i in range(self.num_keys):
            out[f"key{i}_utility"] = jnp.sum(self.key_w[i] * key_returns[i])
        return state, out

    def _key_chunk(self, state: PDState):
        state, logs = self._key_chunk_jit(state)
        if int(jnp.min(state.keys.steps)) >= self.config.key_timesteps:
            state = self._finish_keys_jit(state)
        return state, logs

    def _main_chunk_fn(self, state: PDState):
        c = self.config
        key, k_chunk, k_eval = jax.random.split(state.key, 3)

        def body(lane, k):
            return self._iteration(lane, k, main=True, w_key=None, interp=state.interp, budget=self.main_budget)

        lane, logs = jax.lax.scan(body, state.main, jax.random.split(k_chunk, c.steps_per_chunk))
        interp = state.interp
        if c.refit_interpolator:
            params = jax.tree.map(
                lambda x: jnp.broadcast_to(x, (self.num_keys,) + x.shape), self._policy_params(lane.params)
            )
            interp = refit(interp, self._evaluate_keys(params, k_eval), c.refit_norm)
        state = state.replace(main=lane, interp=interp, key=key)
        out = {"loss": jnp.mean(logs["loss"]), "phase": jnp.int32(1), "updates": lane.updates}
        out.update({k: jnp.mean(v) for k, v in logs.items() if k != "loss"})
        return state, out

    def _compile(self):
        self._init = jax.jit(self._init_fn)
        self._key_chunk_jit = jax.jit(self._key_chunk_fn)
        self._finish_keys_jit = jax.jit(self._finish_keys)
        self._main_chunk = jax.jit(self._main_chunk_fn)
        self._update_traced = None  # built on first use

    def _traced_update(self):
        """``update`` as one traceable function of the state: both phases behind a ``lax.cond`` on the phase, and
        a vmap rule that keeps the cond unbatched (on the first seed's phase) and vmaps each phase. Logs: both
        phases' names; a phase's missing ones are NaN (float) or 0 (int)."""
        template = jax.eval_shape(self._init_fn, jax.random.PRNGKey(0))
        shapes = {**jax.eval_shape(self._main_chunk_fn, template)[1], **jax.eval_shape(self._key_chunk_fn, template)[1]}

        def filled(logs):
            def fill(s):
                return jnp.full(s.shape, jnp.nan if jnp.issubdtype(s.dtype, jnp.floating) else 0, s.dtype)

            return {k: logs[k] if k in logs else fill(v) for k, v in sorted(shapes.items())}

        def key_phase(state):
            state, logs = self._key_chunk_fn(state)
            finished = jnp.min(state.keys.steps) >= self.config.key_timesteps
            return jax.lax.cond(finished, self._finish_keys, lambda s: s, state), filled(logs)

        def main_phase(state):
            state, logs = self._main_chunk_fn(state)
            return state, filled(logs)

        @custom_batching.custom_vmap
        def update(state):
            return jax.lax.cond(state.phase == 0, key_phase, main_phase, state)

        @update.def_vmap
        def update_seeds(axis_size, in_batched, state):
            state = jax.tree.map(
                lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)), state, in_batched[0]
            )
            out = jax.lax.cond(state.phase[0] == 0, jax.vmap(key_phase), jax.vmap(main_phase), state)
            return out, jax.tree.map(lambda _: True, out)

        return update

    def _episode_preferences(self, key: jax.Array, main: bool, w_key: jax.Array | None) -> jax.Array:
        if main:
            return _round3(self.grid.sample(key, self.subspace_of_env))
        return jnp.broadcast_to(w_key, (self.num_envs, self.m))

    def _step(self, lane, policy_params, w_act, active, k_roll, k_w, k_her, *, main: bool, w_key, her_start: int):
        """One vector env step of a lane's envs under ``policy_params`` (acting with preferences ``w_act``), recorded
        where the lane is ``active``: its transitions (with HER copies) into the lane's replay, the next episode's
        preferences where an episode ended, and the step count; inactive lanes keep their replay. Returns the lane
        and the step's transitions."""
        rstate, traj = self.rollout.run.pure(policy_params, lane.rollout, k_roll, self.env_params)
        tr = jax.tree.map(lambda x: x[0], traj)
        items = {
            "obs": tr.obs,
            "action": tr.action.astype(lane.replay.data["action"].dtype),
            "reward": tr.reward,
            "next_obs": tr.next_obs,
            "terminated": tr.terminated.astype(jnp.float32),
            "w": w_act,
        }
        done = (tr.terminated | tr.truncated) & active
        w = jnp.where(done[:, None], self._episode_preferences(k_w, main, w_key), lane.w)
        replay = self._store(lane.replay, items, k_her, main, her_start=her_start)
        replay = replay.replace(
            pos=jnp.where(active, replay.pos, lane.replay.pos), size=jnp.where(active, replay.size, lane.replay.size)
        )
        lane = lane.replace(
            rollout=rstate, w=w, replay=replay, steps=jnp.where(active, lane.steps + self.num_envs, lane.steps)
        )
        return lane, tr

    def _learn(self, lane: Lane, key: jax.Array, learning: jax.Array, main: bool, interp: Interpolator):
        """``upd_per_vec`` gradient steps of a lane (`_gradient_step`), kept only where ``learning``; returns the lane
        and the steps' logs, stacked."""

        def grad_step(lane, k):
            return self._gradient_step(lane, k, learning, main, interp)

        return jax.lax.scan(grad_step, lane, jax.random.split(key, self.upd_per_vec))

    def _store(self, replay: rb.Replay, items: dict, key: jax.Array, main: bool, her_start: int) -> rb.Replay:
        """Store transitions; in the main run with ``weight_num`` HER copies each, once past ``her_start``."""
        c = self.config
        if not main or c.weight_num == 0:
            return rb.add(replay, items)
        n = self.num_envs
        her_w = gaussian_preferences(key, n * c.weight_num, self.m, decimals=3).reshape(n, c.weight_num, self.m)
        copies = jax.tree.map(lambda x: jnp.repeat(x[:, None], c.weight_num + 1, axis=1), items)
        copies["w"] = jnp.concatenate([items["w"][:, None], her_w], axis=1)
        flat = jax.tree.map(lambda x: x.reshape((n * (c.weight_num + 1),) + x.shape[2:]), copies)
        her_on = replay.size > her_start
        per_transition = jnp.concatenate([jnp.ones((1,), bool), jnp.broadcast_to(her_on, (c.weight_num,))])
        return rb.add_masked(replay, flat, jnp.tile(per_transition, n))
