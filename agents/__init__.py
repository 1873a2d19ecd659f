"""Built-in agents; importing this package registers them. One algorithm per file, shared blocks beside them."""

from morl.agents import (
    c_morl,  # noqa: F401  (registers "c-morl")
    capql,  # noqa: F401  (registers "capql")
    envelope,  # noqa: F401  (registers "envelope")
    eupg,  # noqa: F401  (registers "eupg")
    gpi,  # noqa: F401  (registers "gpi-ls", "gpi-pd")
    hyper_ppo,  # noqa: F401  (registers "hyper-ppo")
    mo_q,  # noqa: F401  (registers "mo-q", "ols")
    morld,  # noqa: F401  (registers "morld")
    pcn,  # noqa: F401  (registers "pcn")
    pd_morl,  # noqa: F401  (registers "pd-morl", "pd-morl-discrete")
    pgmorl,  # noqa: F401  (registers "pgmorl")
    pql,  # noqa: F401  (registers "pql")
)
