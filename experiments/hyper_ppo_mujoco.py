"""Hyper-PPO beside C-MORL on the 2-objective MuJoCo robots, at the same number of real training transitions.

    python experiments/hyper_ppo_mujoco.py --steps 2000000 --json /tmp/hyper_ppo_mujoco.json
    python experiments/hyper_ppo_mujoco.py --envs mo-hopper-2obj-v5 --seeds 1 2
    python experiments/hyper_ppo_mujoco.py --set hyper-ppo.learning_rate=5e-4 --set hyper-ppo.num_envs=128

Training. C-MORL: its per-env settings (``agents/c_morl.py`` ``ENV_DEFAULTS``; mo-halfcheetah-v5 has none, so it
gets the other 2-objective robots' episode cap 500 and reference point (-100, -100)), the budget ``--steps`` with
the Pareto initialisation's share at 2/3 of it (the official split, 7,987,200 of 11,960,320), on the native MuJoCo
backend (float64, MO-Gymnasium's twin). Hyper-PPO: its per-robot settings (``agents/hyper_ppo.py``
``ENV_DEFAULTS``) with the budget ``--steps``, on the MJX backend (it trains inside one jitted program, so it needs
a pure-JAX env) with the physics preset ``--physics``; ``--set AGENT.FIELD=VALUE`` overrides a setting and the row
records it. Hyper-PPO's ``iterations_per_chunk`` (how many iterations one jitted call runs; it does not change the
result) is set to a divisor of its iteration count (4-10, where there is one), so no chunk computes iterations past
the budget. Wall time runs from building the trainer to the end of training: JIT compilation included.

Evaluation: the same for both, as ``morl train`` does it (``morl.evaluate`` with the run's final evaluation key)
under C-MORL's protocol (discount 0.99, episodes capped at 500 steps, reference point (-100, -100), 5 episodes per
policy or preference, 100 equally spaced preferences for the conditioned policy), on the native backend with the
exact physics whatever the training backend, so both fronts are measured in the same simulator.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time

import jax

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import make_config, make_trainer
from morl.evaluate import EvalProtocol, evaluate
from morl.runs.driver import final_eval_key

ENVS = ("mo-hopper-2obj-v5", "mo-halfcheetah-v5")
AGENTS = ("c-morl", "hyper-ppo")
PROTOCOL = EvalProtocol(gamma=0.99, max_steps=500, ref_point=(-100.0, -100.0))


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``AGENT.FIELD=VALUE`` options -> {agent: {field: value}} (values read as Python literals where they parse)."""
    out: dict[str, dict] = {}
    for item in items:
        lhs, sep, value = item.partition("=")
        agent, dot, field = lhs.partition(".")
        if not sep or not dot or agent not in AGENTS:
            raise SystemExit(f"--set {item!r}: expected AGENT.FIELD=VALUE with AGENT one of {AGENTS}")
        try:
            out.setdefault(agent, {})[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out.setdefault(agent, {})[field] = value
    return out


def overrides_for(agent: str, env_id: str, steps: int, extra: dict) -> dict:
    if agent == "c-morl":
        base = {"total_steps": steps, "init_steps": int(round(steps * 2 / 3))}
        if env_id == "mo-halfcheetah-v5":
            base |= {"max_episode_steps": PROTOCOL.max_steps, "ref_point": PROTOCOL.ref_point}
    else:
        base = {"total_timesteps": steps}
        cfg = make_config("hyper-ppo", env_id, **(base | extra))
        divisors = [d for d in range(4, 11) if cfg.iterations % d == 0]
        if "iterations_per_chunk" not in extra and divisors:  # no chunk computes iterations past the budget
            base["iterations_per_chunk"] = max(divisors)
    return base | extra


def train_env(agent: str, env_id: str, physics: str, cap: int | None):
    if agent == "c-morl":  # the native backend takes its time limit when it is made
        return morl.make(env_id, backend="mujoco", max_steps=cap)
    return morl.make(env_id, backend="mjx", physics=physics)


def run_one(agent: str, env_id: str, seed: int, steps: int, physics: str, extra: dict, eval_env) -> dict:
    overrides = overrides_for(agent, env_id, steps, extra)
    cap = make_config("c-morl", env_id, **overrides).max_episode_steps if agent == "c-morl" else None
    env, params = train_env(agent, env_id, physics, cap)
    t0 = time.perf_counter()
    trainer = make_trainer(agent, env, params, **overrides)
    state = trainer.init(jax.random.PRNGKey(seed))
    last = -1e9
    while not trainer.done(state):
        state, _ = trainer.update(state)
        if time.perf_counter() - last >= 30:
            last = time.perf_counter()
            print(
                f"  {agent} {env_id} seed {seed}: {trainer.env_steps(state):>10,} transitions "
                f"{time.perf_counter() - t0:7.1f} s  load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t0
    load = os.getloadavg()
    t1 = time.perf_counter()
    front = evaluate(trainer.solution(state), eval_env, None, PROTOCOL, key=final_eval_key(seed))
    eval_s = time.perf_counter() - t1
    m = front.metrics
    return {
        "env": env_id,
        "agent": agent,
        "seed": seed,
        "transitions": int(trainer.env_steps(state)),
        "budget": steps,
        "train_backend": "mujoco (exact)" if agent == "c-morl" else f"mjx ({physics})",
        "overrides": {k: v for k, v in overrides.items() if k not in ("total_steps", "total_timesteps")},
        "train_wall_s": round(train_s, 1),
        "eval_wall_s": round(eval_s, 1),
        "hypervolume": float(m["hypervolume"]),
        "expected_utility": float(m["expected_utility"]),
        "front_size": int(m["cardinality"]),
        "front": front.front.tolist(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "protocol": front.protocol,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    p.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps", type=int, default=2_000_000, help="real training transitions per run (both agents)")
    p.add_argument("--physics", default="fast", choices=("exact", "fast"), help="hyper-ppo's MJX training physics")
    p.add_argument("--set", action="append", default=[], metavar="AGENT.FIELD=VALUE", help="override a setting")
    p.add_argument("--json", default="hyper_ppo_mujoco.json", help="where the rows go (rewritten after each run)")
    args = p.parse_args()
    extra = parse_sets(args.set)
    rows = []
    for env_id in args.envs:
        eval_env, _ = morl.make(env_id, backend="mujoco", max_steps=PROTOCOL.max_steps)
        for seed in args.seeds:
            for agent in args.agents:
                rows.append(run_one(agent, env_id, seed, args.steps, args.physics, extra.get(agent, {}), eval_env))
                r = rows[-1]
                print(
                    f"{env_id} {agent} seed {seed}: {r['transitions']:,} transitions, train {r['train_wall_s']} s, "
                    f"eval {r['eval_wall_s']} s, HV {r['hypervolume']:.1f}, EU {r['expected_utility']:.2f}, "
                    f"front {r['front_size']}, load {r['load_avg_1_5_15']}",
                    flush=True,
                )
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print("\n| env | agent | seed | transitions | train backend | wall (s, compile incl.) | HV | EU | front | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        load = "/".join(f"{x:.1f}" for x in r["load_avg_1_5_15"])
        print(
            f"| {r['env']} | {r['agent']} | {r['seed']} | {r['transitions']:,} | {r['train_backend']} | "
            f"{r['train_wall_s']:.0f} | {r['hypervolume']:,.0f} | {r['expected_utility']:.2f} | {r['front_size']} | "
            f"{load} |"
        )


if __name__ == "__main__":
    main()
