"""Built-in agents; importing this package registers them. One algorithm per file, shared blocks beside them."""
from morl.agents import c_morl  # noqa: F401  (registers "c-morl")
