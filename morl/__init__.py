"""morl: multi-objective reinforcement learning in JAX.

    env, params = morl.make("deep-sea-treasure-v0")

Every name below loads on first use (PEP 562), so ``import morl`` and the ``morl`` command start without JAX:
a Ctrl-C while JAX loads is then caught by the CLI like any other.
"""

import importlib
import os

__version__ = "0.1.0"

#: XLA_FLAGS as the user set it (None: unset), before morl adds `DEFAULT_XLA_FLAGS`
USER_XLA_FLAGS = os.environ.get("XLA_FLAGS")

#: XLA options morl turns on before JAX starts, each unless XLA_FLAGS already names it. Region analysis lets XLA's
#: CPU compiler update a replay buffer in place inside a training scan; without it the buffer (and the priority
#: tree) is copied on every env step: Envelope's chunks at a 1M-transition buffer take 6.0 s instead of 1.9 s,
#: GPI-LS's 1.65 s instead of 0.3 s, with the same results (docs/architecture.md, "XLA flags").
DEFAULT_XLA_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)


def _flag_name(flag: str) -> str:
    """`--name=value` and `--name` both name `--name`; a user's setting of it wins over morl's default."""
    return flag.split("=", 1)[0]


def _add_default_xla_flags() -> None:
    """XLA reads XLA_FLAGS when its first backend starts, so this runs at import, before JAX can."""
    flags = os.environ.get("XLA_FLAGS", "")
    named = {_flag_name(f) for f in flags.split()}
    extra = [f for f in DEFAULT_XLA_FLAGS if _flag_name(f) not in named]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join([flags, *extra]).strip()


def user_xla_flags() -> str:
    """XLA_FLAGS without the flags morl added itself: what a reproduce command has to set."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f not in DEFAULT_XLA_FLAGS)


_add_default_xla_flags()

_LAZY = {
    "Environment": "morl.env",
    "EnvParams": "morl.env",
    "time_limit": "morl.env",
    "EnvSpec": "morl.registry",
    "UnknownEnvError": "morl.registry",
    "list_envs": "morl.registry",
    "make": "morl.registry",
    "register": "morl.registry",
    "spec": "morl.registry",
    "to_gymnasium": "morl.gym_bridge",
    "from_gymnasium": "morl.gym_bridge",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "spaces":
        return importlib.import_module("morl.spaces")
    raise AttributeError(f"module 'morl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__all__ = [
    "Environment",
    "EnvParams",
    "EnvSpec",
    "UnknownEnvError",
    "list_envs",
    "make",
    "register",
    "spec",
    "spaces",
    "time_limit",
    "to_gymnasium",
    "from_gymnasium",
    "__version__",
]
