"""GPI-PD on minecart-v0: the front's hypervolume per seed (gamma 0.98, ref [-1, -1, -200], 100 preferences x 5
episodes: the classic suite's minecart protocol, MORL-Baselines' reference point), beside C-MORL's 560 +/- 50.

    python experiments/gpi_pd_minecart.py --seeds 0 1 2 --steps 20000   # the reduced settings (REDUCED below)
    python experiments/gpi_pd_minecart.py --seeds 0 --reference         # MORL-Baselines' example: 150k steps,
                                                                        # 256x4 nets, 20 gradient steps per env step

Prints one JSON line per linear-support iteration (steps, wall time, CCS size, model buffer) and one per seed (HV,
front size, wall time with compile, training and evaluation apart).
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

#: what fits the shared 2-core CPU: smaller nets and minibatches, 2 gradient steps per env step, a smaller model and
#: Dyna rollouts, 5,000-step iterations, one episode per linear-support evaluation; the rest is the example's
#: (agents/gpi.py MINECART: gamma 0.98, epsilon 1 -> 0.05 over 50k steps, target copies every 200 steps)
REDUCED = dict(
    timesteps_per_iter=5000,
    net_arch=(64, 64, 64),
    batch_size=32,
    gradient_updates=2,
    dynamics_net_arch=(64, 64),
    dynamics_rollout_batch_size=5000,
    eval_episodes=1,
)
PROTOCOL = EvalProtocol(gamma=0.98, ref_point=(-1.0, -1.0, -200.0))
C_MORL_HV = "560 +/- 50"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=20_000, help="budget in real env steps per seed")
    ap.add_argument("--reference", action="store_true", help="MORL-Baselines' example settings instead of REDUCED")
    ap.add_argument("--epsilon-decay-steps", type=int, default=None, help="override the example's 50,000")
    args = ap.parse_args()
    env, params = morl.make("minecart-v0")
    cfg = {} if args.reference else dict(REDUCED)
    if args.epsilon_decay_steps is not None:
        cfg["epsilon_decay_steps"] = args.epsilon_decay_steps
    trainer = make_trainer("gpi-pd", env, params, total_timesteps=args.steps, **cfg)
    for seed in args.seeds:
        t0 = time.perf_counter()
        state = trainer.init(jax.random.PRNGKey(seed))
        it = 0
        while not trainer.done(state):
            state, logs = trainer.update(state)
            if int(state.iteration) != it:
                it = int(state.iteration)
                row = dict(seed=seed, steps=trainer.env_steps(state), wall_s=round(time.perf_counter() - t0, 1))
                row |= {k: logs[k] for k in ("ccs_size", "support_size", "model_buffer", "model_holdout_mse")}
                print(json.dumps(row), flush=True)
        train_s = time.perf_counter() - t0
        front = evaluate(trainer.solution(state), env, params, protocol=PROTOCOL)
        out = dict(seed=seed, steps=trainer.env_steps(state), hv=round(front.metrics["hypervolume"], 1))
        out |= dict(front_points=len(front.front), train_s=round(train_s, 1))
        out |= dict(eval_s=round(time.perf_counter() - t0 - train_s, 1), c_morl_hv=C_MORL_HV)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
