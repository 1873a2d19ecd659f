"""What ``config.json`` records and how it is read back: config dataclasses <-> JSON, the budget, provenance.

A config is stored as ``dataclasses.asdict`` makes it (a field whose type is itself a dataclass becomes a
nested object) and rebuilt from its type annotations: lists back to tuples, ints back to floats where the
field is a float, nested objects back to their dataclass. So ``config_from_dict(cls, config_to_dict(c)) == c``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from morl.runs.files import RunError
from morl.store import clean_json


def config_to_dict(config: Any) -> dict[str, Any]:
    return clean_json(dataclasses.asdict(config))


def _coerce(value: Any, hint: Any) -> Any:
    """JSON value -> the annotated type (lists back to tuples, dicts back to dataclasses, ...); unknown
    annotations pass through."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except (TypeError, ValueError):
                continue
        return value
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        return tuple(value)
    if origin is list and isinstance(value, list):
        return [_coerce(v, args[0]) for v in value] if args else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is tuple and isinstance(value, list):
        return tuple(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    return value


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass (nested ones included) from its JSON form (``config.json``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise RunError(f"{cls.__name__} has no field(s) {unknown}; was the run made by another version of the agent?")
    return cls(**{k: _coerce(v, hints.get(k)) for k, v in data.items()})


def protocol_from_dict(data: dict[str, Any]):
    """The ``EvalProtocol`` of a recorded protocol (keys it does not know, e.g. derived ones, are dropped)."""
    from morl.evaluate import EvalProtocol

    return config_from_dict(
        EvalProtocol, {k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(EvalProtocol)}}
    )


def budget_field(spec) -> str:
    """The agent's budget (env steps) config field, as its ``AgentSpec`` declares it."""
    return spec.budget_field


def config_budget(spec, config) -> int | None:
    name = budget_field(spec)
    value = getattr(config, name, None) if name else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def machine_info() -> str:
    from morl.bench import machine

    return machine()


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """``morl`` version, with the git commit when running from a checkout."""
    import morl

    version = morl.__version__
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(morl.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            version += f"+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


#: modules imported for this process by ``morl --import`` / ``$MORL_IMPORT``; recorded in every new run's
#: ``config.json`` ("imports") so that eval, plot and resume import them again by themselves
IMPORTS: list[str] = []


def import_modules(modules: Iterable[str], why: str = "--import / MORL_IMPORT") -> None:
    """Import ``modules`` (the current folder importable, as with ``python -m``); a clear `RunError` if one fails."""
    import importlib
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for m in modules:
        m = m.strip()
        if not m:
            continue
        try:
            importlib.import_module(m)
        except ImportError as exc:
            raise RunError(
                f"cannot import {m!r} ({why}): {exc}; run from the folder that holds it, add that "
                "folder to PYTHONPATH, or install its package"
            ) from None


def import_recorded(meta: dict[str, Any]) -> None:
    """Import the modules a run's ``config.json`` lists (those that registered its agent or env)."""
    mods = [m for m in meta.get("imports") or [] if isinstance(m, str)]
    if mods:
        import_modules(mods, why=f"recorded by run {meta.get('run_id', '?')}")
