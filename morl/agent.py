"""The agent interface and registry: every algorithm plugs into the CLI, evaluator and store through it.

An agent is a frozen config dataclass (defaults = the paper's settings, documented field by field) and a
factory ``make_trainer(config, env, env_params) -> Trainer``. Training is chunked: the host calls
``update`` repeatedly (each call is a jitted chunk of work), so the CLI can report progress, evaluate and
checkpoint between chunks, and a killed run resumes from its last checkpoint. ``TrainState`` must be a
pytree of arrays (so it checkpoints) and carry its own PRNG key (so a resumed run is bit-identical).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from morl.solution import Solution
from morl.spaces import Discrete

PyTree = Any


class Trainer(ABC):
    """What the CLI, the run driver and the leaderboard call on an agent; built-in trainers subclass it.

    Every member they use is declared here: the five methods and ``vmappable``. Anything else a trainer
    has (a ``front(state)`` helper, phase logic) is its own business.
    """

    config: Any
    #: True when ``init``/``update``/``done``/``env_steps``/``solution`` are pure functions of the state that
    #: ``jax.vmap`` can batch over seeds: the run driver then trains several seeds as one program.
    vmappable: ClassVar[bool] = False

    @abstractmethod
    def init(self, key: jax.Array) -> PyTree:
        """A fresh train state (a pytree of arrays, including its PRNG key)."""

    @abstractmethod
    def update(self, state: PyTree) -> tuple[PyTree, dict[str, float]]:
        """One chunk of training; returns the new state and scalar logs."""

    @abstractmethod
    def done(self, state: PyTree) -> bool:
        """True once the budget is spent."""

    @abstractmethod
    def env_steps(self, state: PyTree) -> int:
        """Real environment transitions consumed so far."""

    @abstractmethod
    def solution(self, state: PyTree) -> Solution:
        """The current solution (policy set or conditioned policy)."""


class JitTrainer(Trainer):
    """A `Trainer` made of two pure functions, jitted once: ``_init_fn(key) -> state`` and ``_chunk(state) ->
    (state, logs)``, whose state counts the real transitions it consumed in ``state.env_steps``. Subclasses call
    ``_compile()`` at the end of ``__init__``; ``done`` compares the count with ``budget`` (the config's
    ``total_timesteps``; override it where an agent spends its budget in whole units)."""

    @abstractmethod
    def _init_fn(self, key: jax.Array) -> PyTree: ...

    @abstractmethod
    def _chunk(self, state: PyTree) -> tuple[PyTree, dict]: ...

    def _compile(self) -> None:
        self._init = jax.jit(self._init_fn)
        self._update = jax.jit(self._chunk)

    @property
    def budget(self) -> int:
        return self.config.total_timesteps

    def init(self, key: jax.Array) -> PyTree:
        return self._init(key)

    def update(self, state: PyTree) -> tuple[PyTree, dict]:
        return self._update(state)

    def done(self, state: PyTree) -> bool:
        return int(state.env_steps) >= self.budget

    def env_steps(self, state: PyTree) -> int:
        return int(state.env_steps)


def episode_return_logs(returns: jax.Array, episodes: jax.Array) -> dict[str, jax.Array]:
    """A chunk's ``episode_return_{i}`` logs: the mean vector return of the training episodes that ended in it.

    ``returns`` ``[T, m]`` holds, per step (or episode) of the chunk, the summed returns of the episodes that ended
    there (zeros elsewhere); ``episodes`` counts them. A chunk where none ended logs zeros."""
    mean = jnp.sum(returns, axis=0) / jnp.maximum(episodes, 1)
    return {f"episode_return_{i}": mean[i] for i in range(mean.shape[0])}


@dataclass(frozen=True)
class AgentSpec:
    name: str
    config_cls: type
    make_trainer: Callable[..., Trainer]
    summary: str = ""
    #: which action spaces it supports: "discrete", "continuous" or both
    action_kinds: tuple[str, ...] = ("discrete", "continuous")
    #: config overrides per env id (e.g. the official per-env settings)
    env_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: the config field that is the training budget in real env transitions (`morl train --steps` sets it)
    budget_field: str = "total_timesteps"
    #: settings for accelerators: ``f(values) -> overrides``, given the config's values after the per-env defaults;
    #: `make_config` applies them when JAX's default backend is a GPU or TPU (wide env batches fill the device),
    #: before the caller's overrides, so the run's config.json records them like any other value
    accelerator_defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None


def check_config(
    agent: str,
    config: Any,
    *,
    at_least_one: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    unit_interval: tuple[str, ...] = (),
    choices: dict[str, tuple] | None = None,
) -> None:
    """One validation style for every agent config (call it from ``__post_init__``): each failure is a
    ValueError that names the agent, the field, what it must be and what it got."""
    for name in at_least_one:
        if getattr(config, name) < 1:
            raise ValueError(f"{agent} config: {name} must be >= 1, got {getattr(config, name)!r}")
    for name in non_negative:
        if getattr(config, name) < 0:
            raise ValueError(f"{agent} config: {name} must be >= 0, got {getattr(config, name)!r}")
    for name in unit_interval:
        if not 0 < getattr(config, name) <= 1:
            raise ValueError(f"{agent} config: {name} must be in (0, 1], got {getattr(config, name)!r}")
    for name, allowed in (choices or {}).items():
        if getattr(config, name) not in allowed:
            raise ValueError(
                f"{agent} config: {name} must be one of {', '.join(map(repr, allowed))}, got {getattr(config, name)!r}"
            )


def require_discrete(env, who: str, hint: str = "") -> None:
    """For trainers built directly (``make_trainer`` checks `AgentSpec.action_kinds` first): a clear error when the
    env's actions are not discrete; ``hint`` ends the message (where to go instead)."""
    if not isinstance(env.action_space, Discrete):
        raise ValueError(f"{who} needs discrete actions; {env.name} has {type(env.action_space).__name__}{hint}")


_AGENTS: dict[str, AgentSpec] = {}


def register_agent(spec: AgentSpec) -> AgentSpec:
    if not dataclasses.is_dataclass(spec.config_cls):
        raise TypeError(f"agent {spec.name!r}: config_cls must be a dataclass")
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    if spec.budget_field not in fields:
        raise TypeError(
            f"agent {spec.name!r}: budget_field {spec.budget_field!r} is not a field of "
            f"{spec.config_cls.__name__}; name the config field that holds the env-step budget"
        )
    _AGENTS[spec.name] = spec
    return spec


def _load() -> None:
    import morl.agents  # noqa: F401  (registers the built-in agents)


def list_agents() -> list[str]:
    _load()
    return sorted(_AGENTS)


def agent_spec(name: str) -> AgentSpec:
    _load()
    if name not in _AGENTS:
        close = difflib.get_close_matches(name, _AGENTS, n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown agent {name!r}.{hint} Registered agents: {', '.join(sorted(_AGENTS)) or 'none'}")
    return _AGENTS[name]


ACCELERATORS = ("gpu", "tpu")


def make_config(name: str, env_id: str | None = None, **overrides: Any):
    """The agent's config: paper defaults, then the per-env defaults, then (on a GPU or TPU) the agent's
    `AgentSpec.accelerator_defaults`, then ``overrides``."""
    spec = agent_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    merged = dict(spec.env_defaults.get(env_id, {})) if env_id else {}
    if spec.accelerator_defaults is not None and jax.default_backend() in ACCELERATORS:
        base = {f.name: f.default for f in dataclasses.fields(spec.config_cls) if f.default is not dataclasses.MISSING}
        merged.update(spec.accelerator_defaults(base | merged))
    merged.update(overrides)
    unknown = sorted(set(merged) - fields)
    if unknown:
        raise TypeError(f"agent {name!r} has no config field(s) {unknown}; fields: {sorted(fields)}")
    return spec.config_cls(**merged)


def make_trainer(name: str, env, env_params=None, config=None, **overrides: Any) -> Trainer:
    spec = agent_spec(name)
    if config is None:
        config = make_config(name, getattr(env, "spec_id", None), **overrides)
    kind = "discrete" if type(env.action_space).__name__ == "Discrete" else "continuous"
    if kind not in spec.action_kinds:
        raise ValueError(
            f"agent {name!r} supports {'/'.join(spec.action_kinds)} actions only, but {env.name} has "
            f"{kind} actions; {_agents_for_kind(kind, name)}"
        )
    trainer = spec.make_trainer(config, env, env.default_params if env_params is None else env_params)
    if not isinstance(trainer, Trainer):
        raise TypeError(
            f"agent {name!r}: make_trainer returned a {type(trainer).__name__}; it must return an "
            f"instance of a morl.agent.Trainer subclass"
        )
    return trainer


def agents_supporting(kind: str, near: str | None = None) -> list[str]:
    """The registered agents that support ``kind`` ("discrete" or "continuous") actions; with ``near``, the
    closest names to it first (longest common prefix, then difflib's similarity: ``pd-morl`` finds
    ``pd-morl-discrete`` and back), otherwise sorted."""
    _load()
    names = sorted(n for n, s in _AGENTS.items() if kind in s.action_kinds and n != near)
    if near is not None:

        def closeness(n: str) -> tuple[int, float]:
            prefix = len(os.path.commonprefix([near, n]))
            return -prefix, -difflib.SequenceMatcher(None, near, n).ratio()

        names.sort(key=closeness)  # stable: ties stay sorted
    return names


def _agents_for_kind(kind: str, name: str) -> str:
    ranked = agents_supporting(kind, near=name)
    if not ranked:
        return f"no registered agent supports {kind} actions"
    others = f", or another agent for {kind} actions: {', '.join(ranked[1:])}" if len(ranked) > 1 else ""
    return f"use {ranked[0]!r} instead{others}"


def train(
    trainer: Trainer, key: jax.Array, callback: Callable[[PyTree, dict], None] | None = None
) -> tuple[PyTree, Solution]:
    """Run a trainer to the end of its budget (the CLI adds progress, evaluation and checkpoints around this)."""
    state = trainer.init(key)
    while not trainer.done(state):
        state, logs = trainer.update(state)
        if callback is not None:
            callback(state, logs)
    return state, trainer.solution(state)
