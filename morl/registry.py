"""Environment registry: ``make``, ``register``, ``list_envs``, and the ``morl.envs`` entry-point group.

Ids are versioned (``name-vN``). ``make("gym:<id>")`` wraps any gymnasium / MO-Gymnasium id for the
engine's host path. Keyword arguments go to the env constructor, or, when they name a field of the env's
params (``max_steps``, ...), into the returned params.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_ID_RE = re.compile(r"^(?:[\w.-]+/)?[\w.-]+-v\d+$")


@dataclass(frozen=True)
class EnvSpec:
    id: str
    entry_point: Callable[..., Any] | str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module, _, attr = self.entry_point.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj


_REGISTRY: dict[str, EnvSpec] = {}
_plugins_loaded = False


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def register(id: str, entry_point: Callable[..., Any] | str, **defaults: Any) -> None:
    """Register an env id. ``entry_point`` is a class/factory or ``"module:attr"``; ``defaults`` are kwargs."""
    if not _ID_RE.match(id):
        raise ValueError(f"env id {id!r} is not versioned: use the form 'name-v0' (letters, digits, '-', '_', '.')")
    if id in _REGISTRY and _REGISTRY[id] != EnvSpec(id, entry_point, dict(defaults)):
        raise ValueError(f"env id {id!r} is already registered; bump the version (e.g. '-v1') or pick another name")
    _REGISTRY[id] = EnvSpec(id, entry_point, dict(defaults))


def _load_builtin_and_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    importlib.import_module("morl.envs")  # registers the built-in envs
    for ep in importlib.metadata.entry_points(group="morl.envs"):
        hook = ep.load()  # a module (registers on import) or a function that registers
        if callable(hook):
            hook()


def list_envs() -> list[str]:
    """Every registered id, sorted."""
    _load_builtin_and_plugins()
    return sorted(_REGISTRY)


def spec(id: str) -> EnvSpec:
    _load_builtin_and_plugins()
    if id not in _REGISTRY:
        close = difflib.get_close_matches(id, _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownEnvError(
            f"unknown env id {id!r}.{hint} `morl envs` lists every registered id; "
            f"use 'gym:{id}' for a gymnasium/MO-Gymnasium id."
        )
    return _REGISTRY[id]


def make(id: str, **kwargs: Any):
    """Build an env and its default params: ``env, params = morl.make("deep-sea-treasure-v0")``."""
    if id.startswith("gym:"):
        from morl.gym_host import from_gymnasium  # loads gymnasium and JAX: only for gym: ids

        env = from_gymnasium(id[len("gym:") :], **kwargs)
        return env, env.default_params
    s = spec(id)
    factory = s.load()
    merged = {**s.kwargs, **kwargs}
    ctor_kwargs, param_kwargs = _split_kwargs(factory, merged)
    env = factory(**ctor_kwargs)
    params = env.default_params
    if param_kwargs:
        fields = {f.name for f in dataclasses.fields(params)}
        unknown = sorted(set(param_kwargs) - fields)
        if unknown:
            accepted = sorted(set(_ctor_names(factory)) | fields)
            raise TypeError(f"{id}: unknown argument(s) {unknown}; accepted: {accepted}")
        params = params.replace(**param_kwargs)
    try:
        env.spec_id = id
    except AttributeError:
        pass
    return env, params


def _ctor_names(factory: Callable[..., Any]) -> list[str]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return []
    return [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _split_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[dict, dict]:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return kwargs, {}
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return kwargs, {}
    names = set(_ctor_names(factory))
    return ({k: v for k, v in kwargs.items() if k in names}, {k: v for k, v in kwargs.items() if k not in names})
