"""morl: multi-objective reinforcement learning in JAX.

    env, params = morl.make("deep-sea-treasure-v0")
"""

from morl.env import Environment, EnvParams, time_limit
from morl.registry import EnvSpec, UnknownEnvError, list_envs, make, register, spec
from morl import spaces

__version__ = "0.1.0"


def __getattr__(name):  # lazy: keep `import morl` light, gymnasium bridge / metrics load on use
    lazy = {
        "to_gymnasium": ("morl.gym_bridge", "to_gymnasium"),
        "from_gymnasium": ("morl.gym_bridge", "from_gymnasium"),
    }
    if name in lazy:
        import importlib

        module, attr = lazy[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'morl' has no attribute {name!r}")


__all__ = [
    "Environment", "EnvParams", "EnvSpec", "UnknownEnvError", "list_envs", "make", "register", "spec",
    "spaces", "time_limit", "to_gymnasium", "from_gymnasium", "__version__",
]
