"""EUPG on FishWood: the expected utility E[min(fish, floor(wood / 2))] after a budget, per seed, for the paper's
utility of accrued + future reward and for MORL-Baselines' future-only variant (docs/algorithms/eupg.md).

    python experiments/eupg_fishwood.py --steps 150000 --seeds 0 1 2 3 4

Seeds train as one vmapped program; each trained policy is scored on 100 fresh episodes with sampled actions (as
MORL-Baselines' eval_mo_reward_conditioned samples), undiscounted returns.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import make_trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=150_000, help="training budget per seed (env steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--inputs", nargs="+", default=["accrued+future", "future"], help="utility_input values to run")
    args = ap.parse_args()
    env, params = morl.make("fishwood-v0")
    for inp in args.inputs:
        tr = make_trainer("eupg", env, params, total_timesteps=args.steps, utility_input=inp, episodes_per_chunk=250)
        keys = jnp.stack([jax.random.PRNGKey(s) for s in args.seeds])
        start = time.time()
        state = jax.jit(jax.vmap(tr.init))(keys)
        step = jax.jit(jax.vmap(tr.update))
        while int(np.min(np.asarray(state.env_steps))) < args.steps:
            state, _ = step(state)
        eus = [
            tr.expected_utility(jax.tree.map(lambda x, i=i: x[i], state), jax.random.PRNGKey(1000 + s))
            for i, s in enumerate(args.seeds)
        ]
        print(
            f"utility_input={inp} steps={args.steps} seeds={args.seeds} EU per seed {np.round(eus, 2).tolist()} "
            f"mean {np.mean(eus):.2f} ({time.time() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
