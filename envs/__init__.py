"""Built-in environments; importing this package registers every family's ids.

One file (or package, ``mujoco/``) per family; ``float64.py`` and ``minecart_front.py`` are helpers, not
families. ``morl.envs.list()`` lists every registered id.
"""

from morl.registry import list_envs as list  # noqa: A001, F401  (morl.envs.list(), as the design names it)

from . import deep_sea_treasure  # noqa: F401
from . import fruit_tree  # noqa: F401
from . import resource_gathering  # noqa: F401
from . import four_room  # noqa: F401
from . import breakable_bottles  # noqa: F401
from . import fishwood  # noqa: F401
from . import mountain_car  # noqa: F401
from . import water_reservoir  # noqa: F401
from . import minecart  # noqa: F401
from . import mujoco  # noqa: F401
from . import bandits  # noqa: F401
