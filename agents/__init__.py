"""Built-in agents; importing this package registers them. One algorithm per file, shared blocks beside them."""
from morl.agents import c_morl  # noqa: F401  (registers "c-morl")
from morl.agents import envelope  # noqa: F401  (registers "envelope")
from morl.agents import pd_morl  # noqa: F401  (registers "pd-morl", "pd-morl-discrete")
from morl.agents import morld  # noqa: F401  (registers "morld")
from morl.agents import pgmorl  # noqa: F401  (registers "pgmorl")
