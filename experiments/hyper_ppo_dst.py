"""Hyper-PPO on deep-sea-treasure: HV (% of the true front's, gamma 0.99) against transitions and wall time, per seed.

    python experiments/hyper_ppo_dst.py --seeds 0 1 2 --steps 204800
    python experiments/hyper_ppo_dst.py --seeds 0 --network concat      # the AMOR-style ablation

Settings are the CI test's (tests/test_hyper_ppo.py DST_CONFIG) unless given; an evaluation every 5 iterations.
"""

from __future__ import annotations

import argparse
import time

import jax

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import make_trainer
from morl.evaluate import EvalProtocol, evaluate

TRUE_HV = 360.40


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=204_800)
    p.add_argument("--network", default="hyper", choices=("hyper", "concat"))
    p.add_argument("--learning-rate", type=float, default=1e-3)
    args = p.parse_args()
    config = dict(
        total_timesteps=args.steps,
        num_envs=64,
        num_steps=32,
        num_minibatches=4,
        gamma=0.99,
        learning_rate=args.learning_rate,
        network=args.network,
        iterations_per_chunk=5,
    )
    env, params = morl.make("deep-sea-treasure-v0")
    protocol = EvalProtocol(gamma=0.99, episodes=1)
    for seed in args.seeds:
        trainer = make_trainer("hyper-ppo", env, params, **config)
        state = trainer.init(jax.random.PRNGKey(seed))
        start = time.perf_counter()
        while not trainer.done(state):
            state, _ = trainer.update(state)
            hv = evaluate(trainer.solution(state), env, protocol=protocol).metrics["hypervolume"]
            print(
                f"seed {seed}  {trainer.env_steps(state):>8,} transitions  {time.perf_counter() - start:6.1f} s  "
                f"HV {hv:7.2f} ({100 * hv / TRUE_HV:5.1f}%)",
                flush=True,
            )


if __name__ == "__main__":
    main()
