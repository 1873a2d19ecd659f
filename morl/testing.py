"""Twin testing: step a morl env and its MO-Gymnasium twin on the same actions and compare every step.

Used by the conformance tests of every ported environment. Stochastic parts are synchronised through
hooks: ``sync_reset`` copies the reference's (possibly random) initial state into ours, and ``sync_step``
injects the reference's random outcome for the coming step into our state or params before both step.
Nothing else crosses over: a mismatch fails the run (no tolerated steps, no resynchronisation), and with
``obs_atol = reward_atol = 0`` (the default) observations and reward vectors must be equal bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import mo_gymnasium as mo_gym
import numpy as np

import morl


@dataclass
class TwinCase:
    env_id: str  # morl id
    gym_id: str  # MO-Gymnasium id
    kwargs: dict[str, Any] = field(default_factory=dict)
    gym_kwargs: dict[str, Any] = field(default_factory=dict)
    #: (reference unwrapped env, our state, our params) -> our state, after both reset
    sync_reset: Callable[[Any, Any, Any], Any] | None = None
    #: (reference unwrapped env, our state, our params, action) -> (our state, our params), before each step
    sync_step: Callable[[Any, Any, Any, Any], tuple[Any, Any]] | None = None
    #: reference observation -> flat array comparable to ours (for dict observations)
    ref_obs: Callable[[Any], np.ndarray] = np.asarray
    obs_atol: float = 0.0
    reward_atol: float = 0.0
    #: draws an action for the reference env from a numpy Generator (default: action_space.sample)
    sample_action: Callable[[Any, np.random.Generator], Any] | None = None


@dataclass
class TwinReport:
    episodes: int
    steps: int
    terminated: int
    truncated: int
    #: per-episode undiscounted return vectors of the reference env, shape [episodes, reward_dim]
    returns: np.ndarray | None = None
    #: largest |ours - reference| over observations / rewards (0.0 when bit-identical)
    max_obs_diff: float = 0.0
    max_reward_diff: float = 0.0


_JIT_CACHE: dict[int, tuple[Callable, Callable]] = {}


def _jitted(env) -> tuple[Callable, Callable]:
    if id(env) not in _JIT_CACHE:
        _JIT_CACHE[id(env)] = (jax.jit(env.reset), jax.jit(env.step))
    return _JIT_CACHE[id(env)]


@partial(jax.jit, static_argnums=1)
def _split_chain(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` rounds of ``key, sub = jax.random.split(key)``: the final key and the ``n`` subkeys."""
    return jax.lax.scan(lambda k, _: tuple(jax.random.split(k)), key, None, length=n)


class _KeyChain:
    """The subkeys of repeated ``key, sub = jax.random.split(key)``, in order, made in jitted blocks.

    Same keys as splitting eagerly step by step, without the ~100 us an eager split costs per step.
    """

    BLOCK = 256

    def __init__(self, key: jax.Array):
        self._key = key
        self._subkeys = np.empty((0, 2), np.uint32)
        self._next = 0

    def __call__(self) -> np.ndarray:
        if self._next == len(self._subkeys):
            self._key, subkeys = _split_chain(self._key, self.BLOCK)
            self._subkeys, self._next = np.asarray(subkeys), 0
        self._next += 1
        return self._subkeys[self._next - 1]


def run_twin(case: TwinCase, episodes: int = 200, seed: int = 0) -> TwinReport:
    """Run ``episodes`` random-action episodes on both envs; raise AssertionError at the first mismatch."""
    env, params = morl.make(case.env_id, **case.kwargs)
    ref = mo_gym.make(case.gym_id, **case.gym_kwargs)
    reset, step = _jitted(env)
    rng = np.random.default_rng(seed)
    next_key = _KeyChain(jax.random.PRNGKey(seed))
    total_steps = n_term = n_trunc = 0
    diffs = {"obs": 0.0, "reward": 0.0}
    returns = []
    for ep in range(episodes):
        ref_obs, _ = ref.reset(seed=int(rng.integers(2**31)))
        obs, state = reset(next_key(), params)
        ep_params = params
        if case.sync_reset is not None:
            state = case.sync_reset(ref.unwrapped, state, ep_params)
            obs = _obs_of(env, state, ep_params)
        _compare(case, "obs", ep, "reset", case.ref_obs(ref_obs), obs, case.obs_atol, diffs)
        t = 0
        ep_return = 0.0
        while True:
            if case.sample_action is not None:
                action = case.sample_action(ref.action_space, rng)
            else:
                ref.action_space.seed(int(rng.integers(2**31)))
                action = ref.action_space.sample()
            if case.sync_step is not None:
                state, ep_params = case.sync_step(ref.unwrapped, state, ep_params, action)
            ref_obs, ref_r, ref_term, ref_trunc, _ = ref.step(action)
            obs, state, r, term, trunc, _ = step(next_key(), state, np.asarray(action), ep_params)
            t += 1
            ep_return = ep_return + np.asarray(ref_r, np.float64)
            where = _Where(t, action)
            _compare(case, "obs", ep, where, case.ref_obs(ref_obs), obs, case.obs_atol, diffs)
            _compare(case, "reward", ep, where, np.asarray(ref_r, np.float32), r, case.reward_atol, diffs)
            assert bool(term) == bool(ref_term), f"{case.env_id} ep {ep} {where}: terminated {bool(term)} != {ref_term}"
            assert bool(trunc) == bool(ref_trunc), (
                f"{case.env_id} ep {ep} {where}: truncated {bool(trunc)} != {ref_trunc}"
            )
            if ref_term or ref_trunc:
                n_term += bool(ref_term)
                n_trunc += bool(ref_trunc)
                break
        total_steps += t
        returns.append(ep_return)
    ref.close()
    return TwinReport(episodes, total_steps, n_term, n_trunc, np.stack(returns), diffs["obs"], diffs["reward"])


class _Where:
    """``step t, action a`` for failure messages, formatted only when one is raised: the repr of an
    array action costs more than the rest of a twin step."""

    __slots__ = ("t", "action")

    def __init__(self, t: int, action: Any):
        self.t, self.action = t, action

    def __str__(self) -> str:
        return f"step {self.t}, action {self.action!r}"


def _obs_of(env, state, params):
    """Observation of a synchronised state: envs expose ``get_obs(state, params)`` when they need syncing."""
    return env.get_obs(state, params)


def _compare(case, what, ep, where, expected, got, atol, diffs):
    """``atol == 0``: equal bit for bit where both sides have the same dtype (float32 words compared as
    integers, so -0.0 is not 0.0), equal values otherwise; ``atol > 0``: within ``atol``, and the
    largest difference seen goes into ``diffs[what]``."""
    expected = np.asarray(expected)
    got = np.asarray(got)
    assert expected.shape == got.shape, f"{case.env_id} ep {ep} {where}: {what} shape {got.shape} != {expected.shape}"
    if atol == 0.0:
        if expected.dtype == got.dtype:
            ok = expected.tobytes() == got.tobytes()
        else:
            ok = np.array_equal(expected.astype(np.float64), got.astype(np.float64))
    else:
        expected, got = expected.astype(np.float64), got.astype(np.float64)
        with np.errstate(invalid="ignore"):
            diff = np.abs(expected - got)
            ok = bool(np.all(diff <= atol)) or np.allclose(expected, got, atol=atol, rtol=0)  # infinities
        if ok:
            diffs[what] = max(diffs[what], float(np.nanmax(diff, initial=0.0)))
    assert ok, f"{case.env_id} ep {ep} {where}: {what} differs\n ours: {got!r}\n  ref: {expected!r}"
