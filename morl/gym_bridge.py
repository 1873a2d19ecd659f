"""The Gymnasium bridge, both ways; this module is the morl -> gymnasium direction and the checker.

``to_gymnasium(env)`` shows a pure-JAX morl env to the Gymnasium world (MO-Gymnasium wrappers, vector envs,
MORL-Baselines agents, the env checker): a ``gymnasium.Env`` with a float32 vector reward of shape
``(reward_dim,)`` and an ``unwrapped.reward_space``, exactly like an MO-Gymnasium env.

``from_gymnasium(id_or_env_fn)`` goes the other way (`morl.gym_host`, re-exported here): it puts any
MO-Gymnasium env behind the rollout engine's host path as a `GymnasiumEnv` descriptor.

Checking an env: gymnasium's ``check_env`` assumes a scalar reward. MO-Gymnasium side-steps that by
disabling the passive checker in ``mo_gym.make`` and, in its own tests, running ``check_env`` on
``LinearReward(env)``. That fails with gymnasium 1.4 (``LinearReward`` puts the same weight array into every
``info``, which ``check_returned_data_not_reused`` rejects, even for MO-Gymnasium's own deep-sea-treasure).
`check_env` here runs gymnasium's full ``check_env`` on the raw env instead and skips exactly one check, the
scalar-reward one (see `check_env`), replacing it with vector-reward checks.

MO-Gymnasium's spaces: a pure env may keep a flat array observation for speed where MO-Gymnasium's env has
another one (a ``Dict``, say). The env file then declares the gymnasium view, and the bridge shows that view
(no per-env code in the bridge). Optional methods on the env, each taking the wrapper's params:

- ``gymnasium_observation_space(params) -> gymnasium.Space`` and ``to_gymnasium_observation(obs, params)``
  (``obs`` the pure env's observation as a numpy array; returns the gymnasium observation): declared together;
- ``gymnasium_reward_space(params) -> gymnasium.spaces.Box``: the reward space to show, when it differs from
  ``env.reward_space`` (the rewards themselves are unchanged: a float32 vector).

Without them the bridge shows ``env.observation_space.to_gymnasium()`` / ``env.reward_space.to_gymnasium()``
and the observation array as it is. ``envs/breakable_bottles.py`` declares all three.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.registration import EnvSpec as GymEnvSpec
from gymnasium.utils import env_checker as gym_env_checker

from morl import spaces as morl_spaces
from morl.env import Environment, EnvParams
from morl.gym_host import KNOWN_REF_POINTS, GymnasiumEnv, from_gymnasium, known_ref_point
from morl.registry import make

__all__ = [
    "to_gymnasium",
    "from_gymnasium",
    "ToGymnasiumEnv",
    "GymnasiumEnv",
    "check_env",
    "known_ref_point",
    "KNOWN_REF_POINTS",
]


@dataclass(frozen=True)
class _Compiled:
    """The jitted reset/step of one env object; every wrapper of that object shares them (one compile)."""

    reset: Callable[..., Any]
    step: Callable[..., Any]


_COMPILED_FALLBACK: dict[int, tuple[Environment, _Compiled]] = {}  # envs without a __dict__ (slots)
_ENV_CACHE: dict[tuple, tuple[Environment, EnvParams]] = {}  # (id, kwargs) -> one shared env object


def _compiled(env: Environment) -> _Compiled:
    """Jitted reset/step for ``env``, built once per env object and stored on it."""
    store = getattr(env, "__dict__", None)
    if store is not None and isinstance(store.get("_gym_bridge_compiled"), _Compiled):
        return store["_gym_bridge_compiled"]
    if store is None and id(env) in _COMPILED_FALLBACK:
        return _COMPILED_FALLBACK[id(env)][1]

    def reset(key, params):
        # one dispatch per call: the key is split inside the compiled function
        key, sub = jax.random.split(key)
        obs, state = env.reset(sub, params)
        return key, obs, state

    def step(key, state, action, params):
        key, sub = jax.random.split(key)
        obs, state, reward, terminated, truncated, info = env.step(sub, state, action, params)
        # reward and both flags in one float32 array: one device-to-host transfer instead of three
        packed = jnp.concatenate(
            [jnp.ravel(reward).astype(jnp.float32), jnp.stack([terminated, truncated]).astype(jnp.float32)]
        )
        return key, obs, state, packed, info

    fns = _Compiled(jax.jit(reset), jax.jit(step))
    if store is not None:
        store["_gym_bridge_compiled"] = fns
    else:
        _COMPILED_FALLBACK[id(env)] = (env, fns)  # keep env alive so its id stays unique
    return fns


def _make_cached(env_id: str, make_kwargs: dict[str, Any]) -> tuple[Environment, EnvParams]:
    """``morl.make`` memoised per (id, kwargs): pure envs are stateless, so wrappers can share one object
    (and therefore one compile), e.g. the copies inside an ``MOSyncVectorEnv``."""
    try:
        cache_key = (env_id, tuple(sorted(make_kwargs.items())))
        hash(cache_key)
    except TypeError:  # unhashable kwargs: no sharing
        return make(env_id, **make_kwargs)
    if cache_key not in _ENV_CACHE:
        _ENV_CACHE[cache_key] = make(env_id, **make_kwargs)
    return _ENV_CACHE[cache_key]


def _key_from_seed(seed: int) -> jax.Array:
    """``PRNGKey(seed)`` for 32-bit seeds (so a seeded reset equals ``env.reset`` from that key); larger seeds
    go through numpy's SeedSequence, because ``PRNGKey`` keeps only their low 32 bits."""
    if 0 <= seed < 2**32:
        return jax.random.PRNGKey(seed)
    return jnp.asarray(np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32))


class ToGymnasiumEnv(gymnasium.Env):
    """A pure-JAX morl env as a ``gymnasium.Env`` with a vector reward (what MO-Gymnasium tools expect).

    Keys: ``reset(seed=s)`` starts from ``key = PRNGKey(s)``; ``reset()`` without a seed starts from
    ``PRNGKey(np_random.integers(2**32))`` (so a seeded reset makes every later unseeded reset reproducible,
    as in gymnasium). Each reset and each step then does ``key, sub = jax.random.split(key)`` and passes
    ``sub`` to the pure ``env.reset`` / ``env.step``; a direct rollout with the same key schedule returns
    the same trajectory.

    Episodes end where the pure env says (its own ``truncated``); no ``TimeLimit`` is added.
    """

    metadata: dict[str, Any] = {"render_modes": [], "render_fps": None}
    render_mode = None

    def __init__(
        self,
        env: Environment,
        params: EnvParams | None = None,
        *,
        source_id: str | None = None,
        make_kwargs: dict[str, Any] | None = None,
        base_params: EnvParams | None = None,
    ):
        if not isinstance(env, Environment):
            raise TypeError(f"ToGymnasiumEnv needs a morl Environment, got {type(env).__name__}")
        self.morl_env = env
        self._params_given = params is not None
        if params is None:
            params = env.default_params if base_params is None else base_params
        self.params = params
        # device-side params with fixed dtypes, so every call hits the same compiled function
        self._params = jax.tree.map(jnp.asarray, self.params)
        self._fns = _compiled(env)
        self._source_id = source_id
        self._make_kwargs = dict(make_kwargs or {})

        self._morl_action_space = env.action_space
        self.observation_space, self._obs_mapped = _gymnasium_observation(env, self.params)
        self.action_space = self._morl_action_space.to_gymnasium()
        self.reward_space = _gymnasium_reward_space(env, self.params)
        self.reward_dim = int(env.reward_dim)
        self.reward_names = tuple(env.reward_names) or tuple(f"r{i}" for i in range(self.reward_dim))
        self.ref_point = None if env.ref_point is None else tuple(float(v) for v in env.ref_point)
        max_steps = getattr(self.params, "max_steps", None)
        self.max_steps = None if max_steps is None else int(max_steps)
        self.name = env.name
        self.spec = self._make_spec()

        self._act_dtype = np.dtype(self._morl_action_space.dtype)
        self._obs_dtype = None if self._obs_mapped else np.dtype(self.observation_space.dtype)
        self._obs_scalar = isinstance(self.observation_space, gymnasium.spaces.Discrete)
        self._key = None
        self._state = None
        self._needs_reset = True
        self._t = 0  # steps in the current episode
        self._episode = 0  # episodes started (the first is episode 1)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; ``options`` is accepted for API compatibility and ignored."""
        super().reset(seed=seed)
        if seed is not None:
            key = _key_from_seed(int(seed))
        else:
            key = jax.random.PRNGKey(int(self.np_random.integers(2**32)))
        self._key, obs, self._state = self._fns.reset(key, self._params)
        self._needs_reset = False
        self._t = 0
        self._episode += 1
        return self._to_obs(np.asarray(obs)), {}

    def step(self, action: Any):
        if self._needs_reset:
            raise gymnasium.error.ResetNeeded(
                f"{self.name}: step() called "
                + ("before reset()" if self._state is None else "after the episode ended (terminated or truncated)")
                + "; call env.reset() first"
            )
        act = self._check_action(action)
        self._key, obs, self._state, packed, info = self._fns.step(self._key, self._state, act, self._params)
        packed = np.asarray(packed)
        if packed.shape != (self.reward_dim + 2,):
            self._needs_reset = True
            raise ValueError(
                f"{self.name}: step returned a reward of {packed.shape[0] - 2} values, but the env "
                f"declares reward_space {self.reward_space} ({self.reward_dim} objectives); fix the "
                "env's step or its reward_space"
            )
        reward = packed[: self.reward_dim].copy()
        terminated, truncated = bool(packed[-2]), bool(packed[-1])
        self._t += 1
        if not np.isfinite(reward).all():
            self._needs_reset = True
            bad = [n for n, r in zip(self.reward_names, reward) if not np.isfinite(r)]
            raise FloatingPointError(
                f"{self.name}: the reward vector at step {self._t} of episode {self._episode} (after action "
                f"{action!r}) is {reward.tolist()}, non-finite in objective(s) {bad}. The pure env produced it; "
                "check its step function and params (jax.config.update('jax_debug_nans', True) points at the "
                "operation). Call reset() to start a new episode."
            )
        if terminated or truncated:
            self._needs_reset = True
        return self._to_obs(np.asarray(obs)), reward, terminated, truncated, _to_numpy_info(info)

    def render(self) -> None:
        return None

    def close(self) -> None:
        self._state = None
        self._needs_reset = True

    # ------------------------------------------------------------------ MO extras
    def pareto_front(self, gamma: float = 1.0) -> np.ndarray | None:
        """The pure env's true front of discounted vector returns (None when unknown)."""
        return self.morl_env.pareto_front(gamma)

    @property
    def has_known_front(self) -> bool:
        return self.morl_env.has_known_front

    # ------------------------------------------------------------------ helpers
    def _make_spec(self) -> GymEnvSpec:
        """A spec that rebuilds this wrapper via ``gymnasium.make(env.spec)`` (the checker's close check uses
        it). ``max_episode_steps`` is informational: the pure env truncates by itself. ``gymnasium.make`` would
        add a ``TimeLimit`` at the same step, which is harmless."""
        kwargs: dict[str, Any] = {"id_or_env": self._source_id or self.morl_env, **self._make_kwargs}
        if self._params_given:
            kwargs["params"] = self.params
        name = self.name if self._source_id is None else self._source_id
        return GymEnvSpec(
            id=f"morl/{name}",
            entry_point=to_gymnasium,
            kwargs=kwargs,
            max_episode_steps=self.max_steps,
            disable_env_checker=True,
            nondeterministic=False,
        )

    def _to_obs(self, obs: np.ndarray) -> Any:
        if self._obs_mapped:  # the env's own gymnasium view (e.g. MO-Gymnasium's Dict)
            return self.morl_env.to_gymnasium_observation(np.array(obs), self.params)
        if self._obs_scalar:
            return self._obs_dtype.type(obs)
        return np.array(obs, dtype=self._obs_dtype)  # a fresh array each call, never a view of a device buffer

    def _check_action(self, action: Any) -> np.ndarray:
        space, gspace = self._morl_action_space, self.action_space
        arr = np.asarray(action)
        if isinstance(space, morl_spaces.Discrete):
            hi = space.start + space.n - 1
            if arr.shape != ():
                fix = (
                    "pass a scalar, e.g. int(action.item())"
                    if arr.size == 1
                    else "step one env with one action (MOSyncVectorEnv for several)"
                )
                raise ValueError(
                    f"{self.name}: action {action!r} has shape {arr.shape}, but the action space is "
                    f"{gspace} (one integer in [{space.start}, {hi}]); {fix}"
                )
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"{self.name}: action {action!r} has dtype {arr.dtype}, but the action space is "
                    f"{gspace} (one integer in [{space.start}, {hi}]); pass an int (e.g. int(action) "
                    "or argmax of your logits)"
                )
            if not space.start <= int(arr) <= hi:
                raise ValueError(
                    f"{self.name}: action {action!r} is out of range for the action space {gspace}; "
                    f"pick an integer in [{space.start}, {hi}] (env.action_space.sample() draws one)"
                )
            return np.asarray(arr, dtype=self._act_dtype)
        # Box
        if arr.shape != space.shape:
            fix = (
                f"reshape it to {space.shape}"
                if arr.size == math.prod(space.shape)
                else f"pass an array of shape {space.shape}"
            )
            raise ValueError(
                f"{self.name}: action {action!r} has shape {arr.shape}, but the action space is {gspace}; {fix}"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(
                f"{self.name}: action {action!r} has dtype {arr.dtype}, but the action space is "
                f"{gspace}; pass a numeric array"
            )
        arr = arr.astype(self._act_dtype)
        if np.isnan(arr).any():
            raise ValueError(
                f"{self.name}: action {action!r} contains NaN; the action space is {gspace}. Check the policy's outputs"
            )
        low, high = gspace.low, gspace.high
        if not (np.all(arr >= low) and np.all(arr <= high)):
            raise ValueError(
                f"{self.name}: action {action!r} is outside the action space {gspace} "
                f"(low {low.tolist()}, high {high.tolist()}); clip it with "
                "np.clip(action, env.action_space.low, env.action_space.high) or squash the policy "
                "output (e.g. tanh) into the bounds"
            )
        return arr

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_fns")  # jitted functions do not pickle; rebuilt (or re-shared) on load
        if self._source_id is not None:
            state.pop("morl_env")  # rebuilt from the id so it shares the process's compile
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "morl_env" not in state:
            self.morl_env = _make_cached(self._source_id, self._make_kwargs)[0]
        self._fns = _compiled(self.morl_env)

    def __repr__(self) -> str:
        return f"<ToGymnasiumEnv {self.name}>"


def _gymnasium_observation(env: Environment, params: EnvParams) -> tuple[gymnasium.Space, bool]:
    """The observation space to show, and whether observations go through ``env.to_gymnasium_observation``."""
    space_fn = getattr(env, "gymnasium_observation_space", None)
    obs_fn = getattr(env, "to_gymnasium_observation", None)
    if space_fn is None and obs_fn is None:
        return env.observation_space.to_gymnasium(), False
    if not (callable(space_fn) and callable(obs_fn)):
        have, missing = (
            ("gymnasium_observation_space", "to_gymnasium_observation")
            if obs_fn is None
            else ("to_gymnasium_observation", "gymnasium_observation_space")
        )
        raise TypeError(
            f"{env.name}: the env declares {have} but no callable {missing}; declare both methods "
            "(the gymnasium observation space and the mapping of an observation into it) or neither"
        )
    space = space_fn(params)
    if not isinstance(space, gymnasium.Space):
        raise TypeError(
            f"{env.name}: gymnasium_observation_space(params) returned {type(space).__name__}; it must "
            "return a gymnasium.Space"
        )
    return space, True


def _gymnasium_reward_space(env: Environment, params: EnvParams) -> gymnasium.spaces.Box:
    fn = getattr(env, "gymnasium_reward_space", None)
    space = env.reward_space.to_gymnasium() if fn is None else fn(params)
    dim = int(env.reward_dim)
    if not (isinstance(space, gymnasium.spaces.Box) and space.shape == (dim,)):
        raise TypeError(
            f"{env.name}: gymnasium_reward_space(params) returned {space!r}; it must be a gymnasium Box "
            f"of shape ({dim},), one entry per objective"
        )
    return space


def _to_numpy_info(info: Any) -> dict[str, Any]:
    """A fresh dict of fresh numpy values (users keep infos; nothing may alias a device buffer)."""
    if not info:
        return {}
    info = jax.device_get(info)
    if not isinstance(info, dict):
        return {"info": info}
    return jax.tree.map(lambda x: np.array(x) if isinstance(x, np.ndarray) else x, info)


def to_gymnasium(id_or_env: str | Environment, params: EnvParams | None = None, **make_kwargs: Any) -> ToGymnasiumEnv:
    """Wrap a pure morl env (an id or an `Environment`) as a ``gymnasium.Env`` with a vector reward.

    ``make_kwargs`` go to ``morl.make`` (only with an id). Wrappers made from the same id and kwargs share one
    env object and one compile.
    """
    if isinstance(id_or_env, str):
        env, default_params = _make_cached(id_or_env, make_kwargs)
        return ToGymnasiumEnv(env, params, source_id=id_or_env, make_kwargs=make_kwargs, base_params=default_params)
    if isinstance(id_or_env, Environment):
        if make_kwargs:
            raise TypeError(
                f"to_gymnasium: keyword arguments {sorted(make_kwargs)} only apply to an env id; with an "
                "Environment object pass params=... (or build it with morl.make(id, **kwargs))"
            )
        return ToGymnasiumEnv(id_or_env, params)
    if isinstance(id_or_env, (GymnasiumEnv, gymnasium.Env)):
        raise TypeError(
            f"to_gymnasium: {id_or_env!r} is already a gymnasium env (or a GymnasiumEnv descriptor, "
            "whose make_single() builds one); to_gymnasium takes a pure morl env or its id"
        )
    raise TypeError(f"to_gymnasium takes a morl env id (str) or a morl Environment, got {type(id_or_env).__name__}")


# ------------------------------------------------------------------ checking

#: the start of the one gymnasium check that `check_env` skips (``passive_env_checker.env_step_passive_checker``)
SCALAR_REWARD_WARNING = "The reward returned by `step()` must be a float"


def check_env(
    env: gymnasium.Env, skip_render_check: bool = True, skip_close_check: bool = False, vector_steps: int = 50
) -> None:
    """gymnasium's ``check_env`` for a vector-reward env.

    Skipped, exactly: the scalar-reward check of ``gymnasium.utils.passive_env_checker.env_step_passive_checker``
    (the warning "The reward returned by `step()` must be a float, int, np.integer or np.floating", and the
    ``np.isnan`` / ``np.isinf`` warnings on that scalar, which cannot run on a vector). In gymnasium 1.4 it
    is a warning, not an assertion, so it is silenced and nothing else is: every other check runs unchanged
    (spaces, reset return type, seeding determinism, options, step determinism, data not reused, close).

    Added instead (MO-Gymnasium's ``_test_reward_bounds`` and then some): over ``vector_steps`` random steps
    the reward is a float32 ``np.ndarray`` of shape ``(reward_dim,)``, finite, and inside
    ``env.unwrapped.reward_space``. Raises AssertionError on the first failure.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*" + re.escape(SCALAR_REWARD_WARNING))
        gym_env_checker.check_env(env, skip_render_check=skip_render_check, skip_close_check=skip_close_check)
    _check_vector_reward(env, vector_steps)


def _check_vector_reward(env: gymnasium.Env, n_steps: int) -> None:
    base = env.unwrapped
    space = getattr(base, "reward_space", None)
    assert isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1, (
        f"env.unwrapped.reward_space must be a 1-D gymnasium Box, got {space!r}"
    )
    dim = getattr(base, "reward_dim", None)
    assert dim == space.shape[0], f"env.unwrapped.reward_dim ({dim}) != reward_space.shape[0] ({space.shape[0]})"
    env.action_space.seed(0)
    env.reset(seed=0)
    for t in range(n_steps):
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert isinstance(reward, np.ndarray) and reward.dtype == np.float32 and reward.shape == (dim,), (
            f"step {t}: reward must be a float32 np.ndarray of shape ({dim},), got {type(reward).__name__} "
            f"{getattr(reward, 'dtype', '')} {getattr(reward, 'shape', '')}"
        )
        assert np.all(np.isfinite(reward)), f"step {t}: reward {reward} is not finite"
        assert space.contains(reward), f"step {t}: reward {reward} is outside reward_space {space}"
        if terminated or truncated:
            env.reset()
