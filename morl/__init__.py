"""morl: multi-objective reinforcement learning in JAX.

    env, params = morl.make("deep-sea-treasure-v0")

Every name below loads on first use (PEP 562), so ``import morl`` and the ``morl`` command start without JAX:
a Ctrl-C while JAX loads is then caught by the CLI like any other.
"""

import importlib

__version__ = "0.1.0"

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
