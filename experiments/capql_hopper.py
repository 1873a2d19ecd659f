"""CAPQL on mo-hopper-2obj-v5 under C-MORL's protocol (reference point [-100, -100], gamma 0.99, 500-step cap); outside
CI.

    python experiments/capql_hopper.py --steps 100000 --seeds 0 1 2 --eval-every 25000 --out capql_hopper.jsonl

The seeds train as one vmapped program (MJX backend, ``physics="fast"``: CAPQL trains inside one jitted program and
needs a pure-JAX env). Every ``--eval-every`` env steps each seed's conditioned policy is evaluated on the protocol's
preferences (100 equally spaced, ``--episodes`` episodes each, discounted returns) and one JSON line is printed and
appended to ``--out``. C-MORL's official code reaches HV 1.365e5 +- 3.3e3 there at its 11.96M-step budget
(docs/algorithms/capql.md). Wall times count compiles but not evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

import morl
import morl.envs  # noqa: F401
from morl.agent import make_trainer
from morl.evaluate import EvalProtocol, evaluate

ENV_ID = "mo-hopper-2obj-v5"
PROTOCOL = dict(gamma=0.99, max_steps=500, ref_point=(-100.0, -100.0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000, help="env steps per seed (the budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--chunk", type=int, default=1000, help="vector env steps per jitted chunk")
    p.add_argument("--eval-every", type=int, default=25_000, help="env steps between evaluations")
    p.add_argument(
        "--episodes",
        type=int,
        default=1,
        help="episodes per evaluation preference (MJX: deterministic policy, random reset noise)",
    )
    p.add_argument("--physics", default="fast", choices=("fast", "exact"))
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides (Python literals)")
    p.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = p.parse_args()

    env, params = morl.make(ENV_ID, backend="mjx", physics=args.physics, max_steps=500)
    overrides = {k: eval(v) for k, v in (s.split("=", 1) for s in args.set)}  # noqa: S307  (a local script)
    t0 = time.time()
    trainer = make_trainer("capql", env, params, total_timesteps=args.steps, steps_per_chunk=args.chunk, **overrides)
    protocol = EvalProtocol(episodes=args.episodes, **PROTOCOL)
    keys = jax.vmap(jax.random.PRNGKey)(np.asarray(args.seeds))
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))
    state = vinit(keys)
    eval_time = 0.0
    next_eval = args.eval_every
    while True:
        state, logs = vupdate(state)
        steps = int(np.max(np.asarray(state.env_steps)))
        print(f"{steps} env steps/seed, {time.time() - t0 - eval_time:.0f} s training", file=sys.stderr, flush=True)
        finished = steps >= args.steps
        if steps >= next_eval or finished:
            next_eval += args.eval_every
            t_eval = time.time()
            hv, eu, n = [], [], []
            for i in range(len(args.seeds)):
                sol = trainer.solution(jax.tree.map(lambda x, i=i: x[i], state))
                front = evaluate(sol, env, params, protocol)
                hv.append(float(front.metrics["hypervolume"]))
                eu.append(float(front.metrics["expected_utility"]))
                n.append(len(front.front))
            eval_time += time.time() - t_eval
            row = {
                "env": ENV_ID,
                "physics": args.physics,
                "env_steps": steps,
                "seeds": args.seeds,
                "hv": hv,
                "hv_mean": float(np.mean(hv)),
                "eu": eu,
                "front_points": n,
                "train_wall_s": round(time.time() - t0 - eval_time, 1),
                "eval_wall_s": round(eval_time, 1),
                "episode_return": [np.asarray(logs[f"episode_return_{j}"]).round(1).tolist() for j in range(2)],
                "overrides": overrides,
                "load_avg": os.getloadavg()[0],
                "host": platform.node(),
            }
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
        if finished:
            break


if __name__ == "__main__":
    main()
