"""Figures for the preference-conditioned agents (Envelope, PD-MORL); outside CI.

    python experiments/preference_conditioned.py envelope-dst   # wall time to 100% of DST's HV (MORL-Baselines: 530 s)
    python experiments/preference_conditioned.py pd-dst         # PD-MORL discrete on DST: time to 100%, final HV
    python experiments/preference_conditioned.py pd-ftn         # PD-MORL discrete on fruit-tree depth 6, paper budget
    python experiments/preference_conditioned.py dst-speed      # both agents, seeds 0-2, paper network and DST default
    python experiments/preference_conditioned.py seeds          # Envelope on DST: 8 seeds in one program vs 8 runs

Each run trains with a fixed seed, evaluates the conditioned policy after every chunk with MORL-Baselines'
protocol (100 equally spaced preferences, discounted returns, gamma 0.99; EU over 50 preferences; fruit tree: the
paper's step-0.1 preference grid, ``EvalProtocol(front_grid=0.1)``, see docs/algorithms/pd-morl.md) and prints one
JSON line per evaluation and a summary line (also appended to ``--out``). Wall time counts everything from the
trainer's construction (compiles included) but not the evaluations (``wall_with_evals_s`` counts them too); CPU
time is the process's. Beside the first evaluation at 100% of the true HV, the summary gives the first at the HV
of an exact conditioned policy under the same preferences (``exact_policy_hv``: 359.26 on DST, where 100% needs a
lucky Q error).

``dst-speed`` prints, for Envelope and PD-MORL discrete and seeds 0-2 (every seed), the wall time to 100% of DST's
HV with the paper's network (4 x 256), with the agent's deep-sea-treasure default network and with the measured
recipes in ``RECIPES`` (not defaults), beside MORL-Baselines' 530 s (goal with the DST default: <= 10.6 s, 50x).
``seeds`` trains ``--num-seeds`` Envelope seeds on DST as the run driver does (``jit(vmap(update))``, one program)
and as as many one-seed runs that each build and compile their own trainer (separate ``morl train`` runs), and
prints both walls, their ratio and each seed's final HV both ways.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

import morl
import morl.envs  # noqa: F401
from morl.agent import make_config, make_trainer
from morl.evaluate import EvalProtocol, evaluate

TRUE_HV = {"deep-sea-treasure-v0": 360.40, "fruit-tree-v0": 46034.80}
MORL_BASELINES_ENVELOPE_DST_S = 530.0  # MORL-Baselines' Envelope to 100% of DST's HV (docs/sources.md)

#: the paper's networks, overriding the agents' deep-sea-treasure defaults
PAPER_NET = {"envelope": {"net_arch": (256, 256, 256, 256)}, "pd-morl-discrete": {"hidden": 256, "num_layers": 4}}

#: settings measured beside the defaults, not defaults themselves: Envelope's fast DST recipe reaches 100% on seeds
#: 0-2 in seconds but on only ~60% of seeds, and its Q-network diverges if trained on (docs/algorithms/envelope.md,
#: "What 100% of DST's HV measures")
RECIPES = {
    "envelope": [
        (
            "2x128 16 envs",
            {
                "net_arch": (128, 128),
                "learning_rate": 1e-3,
                "num_envs": 16,
                "total_timesteps": 300_000,
                "steps_per_chunk": 250,
            },
        )
    ]
}

#: evaluation protocol per experiment (default: MORL-Baselines'); fruit tree: the paper's step-0.1 grid, one
#: episode per preference (the env and the greedy policy are deterministic)
PROTOCOLS = {"pd-ftn": {"front_grid": 0.1, "episodes": 1}}

EXPERIMENTS = {
    # the CI test's settings: MORL-Baselines' defaults with minibatches of 32 transitions x 4 preferences
    "envelope-dst": (
        "envelope",
        "deep-sea-treasure-v0",
        {},
        dict(batch_size=32, total_timesteps=60_000, steps_per_chunk=1000),
    ),
    # MORL-Baselines' defaults as they are (batch 256): ~8x the compute per gradient step
    "envelope-dst-b256": ("envelope", "deep-sea-treasure-v0", {}, dict(total_timesteps=60_000, steps_per_chunk=1000)),
    # PD-MORL discrete, official DST settings but epsilon from 0.3 (the CI test's; 0.8 suits only the official
    # budget), budget cut to 60k main-run steps (official: 1M), key runs 3 x 5k, inside the 75k budget
    "pd-dst": (
        "pd-morl-discrete",
        "deep-sea-treasure-v0",
        {},
        dict(total_timesteps=75_000, key_timesteps=5_000, epsilon_start=0.3, steps_per_chunk=100),
    ),
    # PD-MORL discrete on fruit tree depth 6 at the paper's budget: 100k steps x 10 processes, 1 update per step,
    # plus the 7 key runs x 20k (the budget covers them: docs/budgets.md)
    "pd-ftn": (
        "pd-morl-discrete",
        "fruit-tree-v0",
        {"depth": 6},
        dict(total_timesteps=1_140_000, key_timesteps=20_000, steps_per_chunk=2000),
    ),
}


def exact_policy_hv(env, protocol: EvalProtocol) -> float | None:
    """The HV of a conditioned policy that is exact at every front preference of ``protocol``: each picks the true
    front point of highest ``w . F`` (ties to the first). On DST 359.26, not 360.40: no preference of the
    100-point set selects the 20.3 treasure (docs/algorithms/envelope.md)."""
    if not env.has_known_front:
        return None
    import numpy as np

    from morl.metrics import hypervolume

    front = np.asarray(env.pareto_front(protocol.gamma))
    chosen = np.unique(np.argmax(protocol.front_preferences(env.reward_dim) @ front.T, axis=1))
    ref = protocol.ref_point if protocol.ref_point is not None else env.ref_point
    return hypervolume(front[chosen], ref)


def run(name: str, seed: int, stop_at_full: bool, out: str | None, overrides: dict) -> dict:
    agent, env_id, env_kwargs, cfg = EXPERIMENTS[name]
    cfg = {**cfg, **overrides}
    env, params = morl.make(env_id, **env_kwargs)
    protocol = EvalProtocol(gamma=0.99, **PROTOCOLS.get(name, {}))
    true_hv = TRUE_HV.get(env_id)
    exact_hv = exact_policy_hv(env, protocol)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    eval_wall = 0.0
    trainer = make_trainer(agent, env, params, **cfg)
    state = trainer.init(jax.random.PRNGKey(seed))
    best, reached, reached_exact, rows = 0.0, None, None, []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        jax.block_until_ready(state)
        t = time.perf_counter()
        if int(logs.get("phase", 1)) == 0:  # PD-MORL key runs: nothing conditioned to evaluate yet
            continue
        train_wall = t - wall0 - eval_wall
        front = evaluate(trainer.solution(state), env, protocol=protocol)
        eval_wall += time.perf_counter() - t
        hv, eu = front.metrics["hypervolume"], front.metrics["expected_utility"]
        best = max(best, hv)
        row = {
            "env_steps": trainer.env_steps(state),
            "train_wall_s": round(train_wall, 1),
            "wall_with_evals_s": round(time.perf_counter() - wall0, 1),
            "cpu_s": round(time.process_time() - cpu0, 1),
            "hv": round(hv, 3),
            "eu": round(eu, 4),
            "hv_pct": round(100 * hv / true_hv, 2) if true_hv else None,
            "points": len(front.front),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if exact_hv and reached_exact is None and hv >= exact_hv - 0.01:
            reached_exact = row
        if true_hv and reached is None and hv >= true_hv - 0.01:
            reached = row
            if stop_at_full:
                break
    final = rows[-1] if rows else {}
    summary = {
        "experiment": name,
        "agent": agent,
        "env": env_id,
        "seed": seed,
        "config": cfg,
        "final": final,
        "best_hv": round(best, 3),
        "reached_full_hv": reached,
        "exact_policy_hv": None if exact_hv is None else round(exact_hv, 3),
        "reached_exact_policy_hv": reached_exact,
        "train_env_steps_per_s": round(final.get("env_steps", 0) / max(final.get("train_wall_s", 1e-9), 1e-9)),
        "machine": f"{platform.node()} {os.cpu_count()} cpus",
        "jax": jax.__version__,
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return summary


def dst_speed(seeds: list[int], out: str | None) -> None:
    """Wall time to 100% of DST's HV per agent, network and seed, as one table."""
    rows = []
    for name in ("envelope-dst", "pd-dst"):
        agent = EXPERIMENTS[name][0]
        default = make_config(agent, "deep-sea-treasure-v0")
        nets = [("paper 4x256", PAPER_NET[agent])]
        if any(getattr(default, k) != v for k, v in PAPER_NET[agent].items()):  # a smaller DST default exists
            nets.append(("DST default", {}))
        nets += RECIPES.get(agent, [])
        for net, overrides in nets:
            for seed in seeds:
                s = run(name, seed, True, out, dict(overrides))
                reached, exact = s["reached_full_hv"], s["reached_exact_policy_hv"]
                rows.append(
                    {
                        "agent": agent,
                        "network": net,
                        "seed": seed,
                        "wall_to_100pct_s": reached["train_wall_s"] if reached else None,
                        "wall_with_evals_s": reached["wall_with_evals_s"] if reached else None,
                        "wall_to_exact_s": exact["train_wall_s"] if exact else None,
                        "exact_env_steps": exact["env_steps"] if exact else None,
                        "cpu_s": reached["cpu_s"] if reached else None,
                        "env_steps": reached["env_steps"] if reached else None,
                        "best_hv_pct": round(100 * s["best_hv"] / TRUE_HV["deep-sea-treasure-v0"], 2),
                    }
                )
    print(
        f"\nwall time to 100% of DST's HV (MORL-Baselines' Envelope: {MORL_BASELINES_ENVELOPE_DST_S:.0f} s; "
        f"goal with the DST default <= {MORL_BASELINES_ENVELOPE_DST_S / 50:.1f} s); load {os.getloadavg()[0]:.1f}"
    )
    for r in rows:
        wall = "not reached" if r["wall_to_100pct_s"] is None else f"{r['wall_to_100pct_s']:7.1f} s"
        speedup = (
            "" if r["wall_to_100pct_s"] is None else f"  {MORL_BASELINES_ENVELOPE_DST_S / r['wall_to_100pct_s']:5.1f}x"
        )
        exact = "-" if r["wall_to_exact_s"] is None else f"{r['wall_to_exact_s']:.1f} s ({r['exact_env_steps']} steps)"
        print(
            f"  {r['agent']:18s} {r['network']:14s} seed {r['seed']}: {wall}{speedup}  (cpu {r['cpu_s']} s, "
            f"{r['env_steps']} env steps, with evaluations {r['wall_with_evals_s']} s, best {r['best_hv_pct']}%); "
            f"to the exact policy's HV: {exact}"
        )
    print("TABLE " + json.dumps(rows))


def seeds_in_one_program(num_seeds: int, steps: int, overrides: dict) -> None:
    """Envelope on DST (the CI settings, the DST default network): ``num_seeds`` seeds as one vmapped program
    against as many one-seed runs, each building its own trainer (its own compiles), as separate runs do."""
    agent, env_id, _, cfg = EXPERIMENTS["envelope-dst"]
    cfg = {**cfg, "total_timesteps": steps, **overrides}
    env, params = morl.make(env_id)
    protocol = EvalProtocol(gamma=0.99, episodes=1)

    def hv(trainer, state):
        return round(evaluate(trainer.solution(state), env, protocol=protocol).metrics["hypervolume"], 3)

    t = time.perf_counter()
    trainer = make_trainer(agent, env, params, **cfg)
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))
    state = vinit(jax.numpy.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
    while not trainer.done(jax.tree.map(lambda x: x[0], state)):
        state, _ = vupdate(state)
    jax.block_until_ready(state)
    one_program = time.perf_counter() - t
    hv_vmapped = [hv(trainer, jax.tree.map(lambda x: x[i], state)) for i in range(num_seeds)]  # noqa: B023
    separate, hv_single = 0.0, []
    for s in range(num_seeds):
        t = time.perf_counter()
        trainer = make_trainer(agent, env, params, **cfg)
        st = trainer.init(jax.random.PRNGKey(s))
        while not trainer.done(st):
            st, _ = trainer.update(st)
        jax.block_until_ready(st)
        separate += time.perf_counter() - t
        hv_single.append(hv(trainer, st))
    row = {
        "seeds": num_seeds,
        "env_steps_per_seed": steps,
        "config": cfg,
        "one_program_s": round(one_program, 1),
        "separate_runs_s": round(separate, 1),
        "ratio": round(one_program / separate, 3),
        "hv_one_program": hv_vmapped,
        "hv_separate": hv_single,
        "load1": round(os.getloadavg()[0], 1),
    }
    print("SEEDS " + json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=sorted(EXPERIMENTS) + ["dst-speed", "seeds"])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="dst-speed: the seeds")
    p.add_argument("--num-seeds", type=int, default=8, help="seeds: how many")
    p.add_argument("--steps", type=int, default=10_000, help="seeds: env steps per seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-at-full", action="store_true", help="stop once 100%% of the true HV is reached")
    p.add_argument("--out", default=None, help="append the summary JSON line to this file")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides (Python literals)")
    args = p.parse_args()
    if args.experiment == "dst-speed":
        dst_speed(args.seeds, args.out)
        return
    overrides = {}
    for item in args.set:
        k, v = item.split("=", 1)
        overrides[k] = eval(v, {}, {})  # noqa: S307  (a local experiment script)
    if args.experiment == "seeds":
        seeds_in_one_program(args.num_seeds, args.steps, overrides)
        return
    run(args.experiment, args.seed, args.stop_at_full, args.out, overrides)


if __name__ == "__main__":
    main()
