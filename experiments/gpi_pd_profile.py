"""Where GPI-PD's time goes per env step, at MORL-Baselines' minecart example settings (agents/gpi.py MINECART and
the GPIPDConfig defaults: 256x4 Q-nets, batches of 128, 20 gradient steps per env step, model fits every 250 steps,
25,000-state Dyna rollouts), on a replay holding ``--replay`` random transitions and a support of 6 preferences.

    python experiments/gpi_pd_profile.py
    git show REV:agents/gpi.py > /tmp/gpi_before.py                         # an older agents/gpi.py ...
    python experiments/gpi_pd_profile.py --baseline /tmp/gpi_before.py      # ... timed first, in the same process

Times, after compiling: a late chunk with Dyna minibatches (``steps_per_chunk`` 10 here, so one call is 200 gradient
steps), the env step with its GPI action alone, one Dyna rollout (every 250 steps), one priority reset (every
iteration), and model-fit epochs (every 250 steps the fit runs until 5 epochs pass without improvement, so at least 6).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import morl
import morl.agent
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import make_config
from morl.agents import dynamics as dyn
from morl.agents import gpi
from morl.agents import replay as rb

CHUNK = 10


def load_baseline(path: str):
    """Import another agents/gpi.py as a module, without registering its agents a second time."""
    register = morl.agent.register_agent
    morl.agent.register_agent = lambda spec: spec
    try:
        spec = importlib.util.spec_from_file_location("gpi_baseline", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpi_baseline"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        morl.agent.register_agent = register
    return module


def timed(f, *args, reps: int) -> float:
    jax.block_until_ready(f(*args))
    t0 = time.perf_counter()
    for _ in range(reps):
        jax.block_until_ready(f(*args))
    return (time.perf_counter() - t0) / reps


def profile(module, name: str, n: int, fit_epochs: int) -> None:
    env, params = morl.make("minecart-v0")
    cfg = make_config("gpi-pd", "minecart-v0", steps_per_chunk=CHUNK)
    tr = module.GPITrainer(cfg, env, params)
    state = tr.init(jax.random.PRNGKey(0))
    k = jax.random.PRNGKey(1)
    obs = jax.random.uniform(k, (n, tr.obs_dim))
    items = {
        "obs": obs,
        "action": jax.random.randint(k, (n,), 0, tr.num_actions),
        "reward": jax.random.normal(k, (n, tr.m)),
        "next_obs": obs + 0.01,
        "terminated": jnp.zeros(n),
    }
    support = np.zeros((cfg.max_support, tr.m), np.float32)
    support[:6] = np.random.default_rng(0).dirichlet(np.ones(tr.m), 6)
    lr = state.learner.replace(
        replay=jax.jit(rb.add)(state.learner.replay, items),
        model_replay=jax.jit(rb.add)(state.learner.model_replay, jax.tree.map(lambda a: a[:5000], items)),
        support=jnp.asarray(support),
        support_count=jnp.int32(6),
        env_steps=jnp.int32(n),
    )
    policy = {"q": lr.q_params, "support": lr.support, "mask": jnp.arange(cfg.max_support) < 6, "w": lr.w}
    policy |= {"epsilon": jnp.float32(0.05), "random": jnp.bool_(False)}
    env_step = jax.jit(lambda s, key: tr.rollout.run.pure(policy, s, key, tr.env_params))
    ms = {
        "chunk (20 gradient steps + env step)": timed(tr._chunks[(True, True)], lr, reps=2) / CHUNK,
        "env step + GPI action alone": timed(env_step, lr.rollout, k, reps=20),
        "Dyna rollout / 250": timed(tr._dyna_rollout, lr, state.model, jnp.asarray(state.elites), 8, reps=1) / 250,
        "priority reset / 10,000": timed(tr._reset_priorities, lr, 8, reps=1) / cfg.timesteps_per_iter,
    }
    x, y = tr._fit_data(lr.replay)
    fit = dyn.make_fit(tr.model, tr.capacity, dyn.FitSettings(max_epochs=fit_epochs))
    fit(state.model, x, y, n, k)
    t0 = time.perf_counter()
    fit(state.model, x, y, n, k)
    epoch = (time.perf_counter() - t0) / fit_epochs
    ms[f"model fit: 6 epochs / 250 (one epoch on {n:,} rows: {epoch:.2f} s)"] = 6 * epoch / 250
    for piece, s in ms.items():
        print(f"{name:9s} {piece:55s} {s * 1e3:8.1f} ms per env step", flush=True)
    total = sum(v for p, v in ms.items() if not p.startswith("env step"))
    print(f"{name:9s} {'total':55s} {total * 1e3:8.1f} ms per env step", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replay", type=int, default=20_000, help="random transitions in the replay")
    ap.add_argument("--fit-epochs", type=int, default=3, help="epochs timed (per-epoch cost)")
    ap.add_argument("--baseline", help="another agents/gpi.py to time first")
    args = ap.parse_args()
    if args.baseline:
        profile(load_baseline(args.baseline), "baseline", args.replay, args.fit_epochs)
    profile(gpi, "current", args.replay, args.fit_epochs)


if __name__ == "__main__":
    main()
