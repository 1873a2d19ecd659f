"""Built-in environments; importing this package registers every family's ids.

One file (or package, ``mujoco/``) per family; ``float64.py`` and ``minecart_front.py`` are helpers, not
families. ``morl.envs.list()`` lists every registered id.
"""

from morl.registry import list_envs as list  # noqa: A001, F401  (morl.envs.list(), as the design names it)

from . import (
    bandits,  # noqa: F401
    breakable_bottles,  # noqa: F401
    deep_sea_treasure,  # noqa: F401
    fishwood,  # noqa: F401
    four_room,  # noqa: F401
    fruit_tree,  # noqa: F401
    minecart,  # noqa: F401
    mountain_car,  # noqa: F401
    mujoco,  # noqa: F401
    resource_gathering,  # noqa: F401
    water_reservoir,  # noqa: F401
)
