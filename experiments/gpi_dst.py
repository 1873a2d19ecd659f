"""GPI-LS on deep-sea-treasure-v0: the hypervolume after every linear-support iteration, until 100% of the true
front's (360.40 at gamma 0.99, ref [0, -25]) or the budget; prints steps and wall time (compile included).

    python experiments/gpi_dst.py --seed 0                 # the CI test's settings (tests/test_gpi.py DST_CONFIG)
    python experiments/gpi_dst.py --seed 0 --reference     # MORL-Baselines' defaults (10k-step iterations, 20
                                                          # gradient steps per env step after 5k steps)
"""

from __future__ import annotations

import argparse
import json
import time

import jax

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import make_trainer
from morl.evaluate import EvalProtocol, evaluate

#: tests/test_gpi.py's DST_CONFIG (kept in step by hand)
CI = dict(
    net_arch=(64, 64, 64),
    batch_size=32,
    timesteps_per_iter=1000,
    gradient_updates=5,
    gradient_updates_starts=0,
    eval_episodes=1,
    buffer_size=20_000,
)
TRUE_HV = 360.40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=40_000, help="budget (stops earlier at 100%%)")
    ap.add_argument("--reference", action="store_true", help="MORL-Baselines' defaults instead of the CI settings")
    ap.add_argument("--agent", default="gpi-ls")
    args = ap.parse_args()
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = {} if args.reference else dict(CI)
    trainer = make_trainer(args.agent, env, params, total_timesteps=args.steps, **cfg)
    quick = EvalProtocol(gamma=0.99, episodes=1)  # DST and the greedy GPI policy are deterministic
    t0 = time.perf_counter()
    state = trainer.init(jax.random.PRNGKey(args.seed))
    it = 0
    while not trainer.done(state):
        state, _ = trainer.update(state)
        if int(state.iteration) != it and trainer.env_steps(state) % trainer.config.timesteps_per_iter == 0:
            it = int(state.iteration)
            hv = evaluate(trainer.solution(state), env, protocol=quick).metrics["hypervolume"]
            row = dict(steps=trainer.env_steps(state), wall_s=round(time.perf_counter() - t0, 1), hv=round(hv, 2))
            row |= {"pct": round(100 * hv / TRUE_HV, 1), "ccs": int(state.ls["ccs_count"])}
            print(json.dumps(row), flush=True)
            if hv >= TRUE_HV - 0.01:
                break
    final = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99))
    print(json.dumps({"final_hv": round(final.metrics["hypervolume"], 2), "steps": trainer.env_steps(state)}))


if __name__ == "__main__":
    main()
