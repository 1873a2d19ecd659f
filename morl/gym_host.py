"""Gymnasium -> morl: any MO-Gymnasium (vector-reward gymnasium) env behind the rollout engine's host path.

``from_gymnasium(id_or_env_fn)`` returns a `GymnasiumEnv` descriptor: it declares what a pure env declares
(spaces, reward names, reference point, time limit, front) and builds the host-side ``MOSyncVectorEnv`` the
engine steps. ``morl.make("gym:<id>")`` calls it. The other direction is `morl.gym_bridge.to_gymnasium`.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.registration import EnvSpec as GymEnvSpec

from morl import spaces as morl_spaces
from morl.registry import UnknownEnvError

__all__ = ["from_gymnasium", "GymnasiumEnv", "known_ref_point", "KNOWN_REF_POINTS"]

#: MORL-Baselines' hypervolume reference points (the source of each is named beside it).
#: Ids without a published point are absent: ref_point is None for them.
KNOWN_REF_POINTS: dict[str, tuple[float, ...]] = {
    # examples/ols_dst.py, examples/pql_dst.py, examples/mp_mo_q_learning_DST.py, tests/test_algos.py
    "deep-sea-treasure-v0": (0.0, -25.0),
    "deep-sea-treasure-concave-v0": (0.0, -25.0),
    # issue #43 PQL benchmark runs (gamma 0.99); the same point as the native fruit-tree-v0 and the C-MORL scripts
    "fruit-tree-v0": (-1.0,) * 6,
    # issue #43 PCN run, MO-Gym #78, C-MORL's minecart script; the same point as the native minecart-v0.
    # pcn_minecart.py's (0, 0, -200) with gamma 1 for the deterministic one
    "minecart-v0": (-1.0, -1.0, -200.0),
    "minecart-deterministic-v0": (0.0, 0.0, -200.0),
    # examples/morld_lunar_lander.py, PR #134
    "mo-lunar-lander-v3": (-101.0, -1001.0, -101.0, -101.0),
    # issue #43, CAPQL line (named -v2 there)
    "mo-lunar-lander-continuous-v3": (-110.0, -400.0, -100.0, -100.0),
    # examples/morld_cheetah.py, examples/pgmorl_halfcheetah.py, issue #43
    "mo-halfcheetah-v4": (-100.0, -100.0),
    "mo-halfcheetah-v5": (-100.0, -100.0),
    # examples/morld_hopper.py, PR #135
    "mo-hopper-v4": (-100.0, -100.0, -100.0),
    "mo-hopper-v5": (-100.0, -100.0, -100.0),
    # examples/gpi_pd_hopper.py, issue #43
    "mo-hopper-2d-v4": (-100.0, -100.0),
    "mo-hopper-2obj-v5": (-100.0, -100.0),
}


def known_ref_point(env_id: str | None) -> tuple[float, ...] | None:
    """MORL-Baselines' reference point for a gymnasium id, or None when none is published."""
    return None if env_id is None else KNOWN_REF_POINTS.get(env_id)


def _import_mo_gymnasium() -> None:
    """MO-Gymnasium registers its ids on import."""
    try:
        import mo_gymnasium  # noqa: F401
    except ImportError:  # plain gymnasium ids still work
        pass


def _resolve_gym_id(env_id: str) -> GymEnvSpec:
    _import_mo_gymnasium()
    try:
        return gymnasium.spec(env_id)
    except gymnasium.error.Error as e:
        ids = list(gymnasium.registry.keys())
        close = difflib.get_close_matches(env_id, ids, n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownEnvError(
            f"unknown gymnasium id {env_id!r}.{hint} gymnasium.pprint_registry() lists every id "
            f"(MO-Gymnasium's ids are registered by `import mo_gymnasium`; a third-party id may need its "
            f"package imported first, or the form 'module:Env-v0'). gymnasium said: {e}"
        ) from None


def _make_gym(env_id: str, kwargs: dict[str, Any]) -> gymnasium.Env:
    # as mo_gym.make: the passive checker assumes a scalar reward
    return gymnasium.make(env_id, disable_env_checker=True, **kwargs)


class _GymFactory:
    """A picklable ``env_fn`` (AsyncVectorEnv-style workers need to pickle it)."""

    def __init__(self, env_id: str | None, fn: Callable[..., gymnasium.Env] | None, kwargs: dict[str, Any]):
        self.env_id, self.fn, self.kwargs = env_id, fn, kwargs

    def __call__(self) -> gymnasium.Env:
        if self.env_id is not None:
            return _make_gym(self.env_id, copy.deepcopy(self.kwargs))
        env = self.fn(**self.kwargs)
        if not isinstance(env, gymnasium.Env):
            raise TypeError(f"from_gymnasium: the env function returned {type(env).__name__}, not a gymnasium.Env")
        return env


class GymnasiumEnv:
    """A gymnasium / MO-Gymnasium env for the rollout engine's host path. Not a pure env: a descriptor.

    It declares what a pure env declares (spaces as morl spaces, reward names, reference point, time limit,
    front) and builds the host-side envs the engine steps: ``make_vector_env(n, seed)`` returns an
    ``MOSyncVectorEnv`` (gymnasium's NEXT_STEP autoreset: the step after an episode ends returns the reset
    observation and a zero reward for that copy), ``make_single()`` one env.
    """

    is_host = True
    default_params = None

    def __init__(
        self,
        env_fn: Callable[[], gymnasium.Env],
        spec_id: str | None = None,
        ref_point: tuple[float, ...] | None = None,
        reward_names: tuple[str, ...] | None = None,
    ):
        self._env_fn = env_fn
        probe = env_fn()
        self._probe = probe
        base = probe.unwrapped
        self.spec_id = spec_id if spec_id is not None else (probe.spec.id if probe.spec is not None else None)
        self.name = self.spec_id or type(base).__name__

        gym_reward_space = getattr(base, "reward_space", None)
        if not (isinstance(gym_reward_space, gymnasium.spaces.Box) and len(gym_reward_space.shape) == 1):
            raise ValueError(
                f"{self.name} has no vector reward (env.unwrapped.reward_space is {gym_reward_space!r}); "
                "from_gymnasium takes MO-Gymnasium-style envs whose unwrapped env declares a 1-D Box reward_space. "
                "Give a scalar-reward env a vector reward first (a wrapper that returns np.array([r], np.float32) "
                "and sets reward_space = Box(-inf, inf, (1,)) on the unwrapped env)"
            )
        try:
            self.observation_space = morl_spaces.from_gymnasium(probe.observation_space)
            self.action_space = morl_spaces.from_gymnasium(probe.action_space)
        except TypeError as e:
            raise TypeError(f"{self.name}: {e}") from None
        self.reward_space = morl_spaces.from_gymnasium(gym_reward_space)
        self.gym_observation_space = probe.observation_space
        self.gym_action_space = probe.action_space
        self.gym_reward_space = gym_reward_space

        dim = int(gym_reward_space.shape[0])
        names = reward_names if reward_names is not None else getattr(base, "reward_names", None)
        self.reward_names = tuple(names) if names else tuple(f"r{i}" for i in range(dim))
        if len(self.reward_names) != dim:
            raise ValueError(
                f"{self.name}: {len(self.reward_names)} reward names {self.reward_names} for a {dim}-objective reward"
            )
        if ref_point is None:
            ref_point = getattr(base, "ref_point", None)
        if ref_point is None:
            ref_point = known_ref_point(self.spec_id)
        self.ref_point = None if ref_point is None else tuple(float(v) for v in ref_point)
        if self.ref_point is not None and len(self.ref_point) != dim:
            raise ValueError(
                f"{self.name}: ref_point {self.ref_point} has {len(self.ref_point)} entries for a "
                f"{dim}-objective reward"
            )
        self.max_steps = probe.spec.max_episode_steps if probe.spec is not None else None

    @property
    def reward_dim(self) -> int:
        return int(self.reward_space.shape[0])

    @property
    def has_known_front(self) -> bool:
        return callable(getattr(self._probe.unwrapped, "pareto_front", None))

    def pareto_front(self, gamma: float = 1.0) -> np.ndarray | None:
        """The env's own ``pareto_front(gamma)`` as an ``[n, reward_dim]`` float array; None when it has none."""
        fn = getattr(self._probe.unwrapped, "pareto_front", None)
        if not callable(fn):
            return None
        front = fn(gamma=gamma)
        return None if front is None else np.asarray(front, dtype=np.float64).reshape(-1, self.reward_dim)

    def make_single(self) -> gymnasium.Env:
        """One fresh gymnasium env."""
        return self._env_fn()

    def make_vector_env(self, num_envs: int, seed: int | None = None):
        """``num_envs`` copies in an ``MOSyncVectorEnv`` (rewards ``(num_envs, reward_dim)`` float32), already reset
        with ``seed`` (copy i gets ``seed + i``, gymnasium's rule), so later unseeded resets are reproducible."""
        from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"{self.name}: num_envs must be a positive int, got {num_envs!r}")
        envs = MOSyncVectorEnv([self._env_fn] * int(num_envs))
        envs.reset(seed=seed)
        return envs

    def close(self) -> None:
        self._probe.close()

    def __repr__(self) -> str:
        return f"<GymnasiumEnv {self.name}>"


def from_gymnasium(
    id_or_env_fn: str | Callable[..., gymnasium.Env],
    *,
    ref_point: tuple[float, ...] | None = None,
    reward_names: tuple[str, ...] | None = None,
    **kwargs: Any,
) -> GymnasiumEnv:
    """Put a vector-reward gymnasium env behind the engine's host path.

    ``id_or_env_fn``: a gymnasium id (MO-Gymnasium's are registered automatically) made with the env checker
    off, as ``mo_gym.make`` does; or a function returning a ``gymnasium.Env``. ``kwargs`` go to
    ``gymnasium.make`` (e.g. ``max_episode_steps``) or to the function. ``ref_point`` / ``reward_names``
    override what the env or MORL-Baselines' table provide.
    """
    if isinstance(id_or_env_fn, str):
        spec = _resolve_gym_id(id_or_env_fn)
        return GymnasiumEnv(
            _GymFactory(id_or_env_fn, None, kwargs), spec_id=spec.id, ref_point=ref_point, reward_names=reward_names
        )
    if isinstance(id_or_env_fn, gymnasium.Env):
        raise TypeError(
            f"from_gymnasium needs an id or a function that builds the env, got the env instance "
            f"{id_or_env_fn!r}; the engine makes several copies, so pass `lambda: <code that builds it>`"
        )
    if callable(id_or_env_fn):
        return GymnasiumEnv(_GymFactory(None, id_or_env_fn, kwargs), ref_point=ref_point, reward_names=reward_names)
    raise TypeError(f"from_gymnasium takes a gymnasium id (str) or an env function, got {type(id_or_env_fn).__name__}")
