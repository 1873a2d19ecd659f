"""JAX's persistent compilation cache, on by default for the library and the CLI.

On small envs compiling is most of a training's wall time; with the cache a second run of the same
(agent, env, shapes) loads its programs from disk instead. ``$MORL_COMPILATION_CACHE`` is a folder, or
``off``; the default is ``$XDG_CACHE_HOME/morl/jax`` (``~/.cache/morl/jax``). Entries are keyed by the
program, the jax version and the device, so a stale entry is never reused. A cache folder the user set
in JAX's own config (``jax_compilation_cache_dir``) wins.
"""

from __future__ import annotations

import os

OFF = ("off", "0", "false", "no", "none")
_ENABLED: list[str | None] = []


def cache_dir() -> str | None:
    """Where the cache lives for this process (None when switched off)."""
    where = os.environ.get("MORL_COMPILATION_CACHE", "")
    if where.lower() in OFF:
        return None
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "morl", "jax")
    return where


def enable_compilation_cache() -> str | None:
    """Switch the cache on (once per process); returns the folder in use, or None when off or unavailable."""
    if _ENABLED:
        return _ENABLED[0]
    import jax

    where = cache_dir()
    try:
        if jax.config.jax_compilation_cache_dir:  # the user's own choice
            where = jax.config.jax_compilation_cache_dir
        elif where is not None:
            os.makedirs(where, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", where)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except (OSError, AttributeError):  # read-only home or an older jax: compile as usual
        where = None
    _ENABLED.append(where)
    return where
