"""Figures for the decomposition-based agents (MORL/D, PGMORL); outside CI.

    python experiments/decomposition.py morld-minecart            # MORL/D (DQN learner), minecart-deterministic
    python experiments/decomposition.py morld-minecart --max-wall 840 --set total_timesteps=2_000_000
    python experiments/decomposition.py morld-minecart --seeds 0 1 2   # seeds as one vmapped program (MORL/D)
    python experiments/decomposition.py pgmorl-mcc --max-wall 300  # PGMORL defaults, mountain car: env steps/s
    python experiments/decomposition.py suite-timing --scale 0.1 --envs deep-sea-treasure-v0 --agents morld pgmorl

``suite-timing`` trains ONE seed of each (agent, env) of a suite (default ``classic``) exactly as ``morl suite run
SUITE --steps-scale SCALE`` would (same configs, protocol and periodic evaluations; a throw-away runs folder) and
prints its wall time, build and compiles included: the figure to plan a suite's scale with.

Each run trains with a fixed seed (``--seed``, default 0), evaluates after every ``--eval-every`` trainer updates
and at the end with `morl.evaluate` (the experiment's protocol below; the env's default reference point) and
prints one JSON line per evaluation plus a ``SUMMARY`` line (also appended to ``--out``). ``--max-wall`` stops
training after the first update that ends past that many seconds (the summary says so); the budget reached is
then ``env_steps``, not the config's ``total_timesteps``.

Clocks: ``train_wall_s`` runs from before the trainer is built (JIT compiles included) and excludes the
evaluations; ``steps_per_s`` = env steps / train_wall_s; ``steps_per_s_after_first`` leaves out the first update
(which holds the compile). Env steps are real training transitions of the whole population (evaluation episodes
excluded, as both MORL-Baselines and the official codes count them).

Protocols:
- ``morld-minecart``: MORL-Baselines' minecart-deterministic protocol (gamma 1.0, ref (0, 0, -200)); the true
  front's HV is 147.84 and its EU (50 weights) 0.497 (docs/sources.md). MORL/D's minecart settings
  are `agents.morld.ENV_DEFAULTS`; the experiment shortens ``exchange_every`` to 5,000 env steps per member
  (MORL-Baselines' lunar-lander example) so that the archive is updated 8x more often than at the 40k default.
- ``pgmorl-mcc``: PGMORL's defaults (MORL-Baselines' ``PGMORL.__init__``: 6 tasks x 4 envs x 2,048 steps per
  iteration) on mo-mountaincarcontinuous-v0; the reference is MORL-Baselines' PGMORL on this machine class at
  2.6k env steps/s (docs/sources.md). Protocol gamma 0.99, 5 episodes.

Measured (seed 0, the shared 2-core x86_64 CPU, 1-min load 5-7 from other jobs, jax 0.10.2 CPU):
- ``morld-minecart --eval-every 20 --set total_timesteps=8_000_000 net_arch='(64,64)' batch_size=64 num_envs=4``:
  8.01M env steps in 643 s of training (12.5k env steps/s, compile included; first round 24 s); HV 107.14 = 72.5%
  of 147.84 from 0.6M steps on (4 points; the archive found one point mixing both ores), EU 0.402 (true front
  0.497). With 15 members (``--max-wall 600 --set total_timesteps=6_000_000 pop_size=15 net_arch='(64,64)'
  batch_size=64 num_envs=4``): 6.0M env steps in 525 s (11.4k env steps/s with the compile), HV 147.31 = 99.6%
  of 147.84 from 3.0M steps on (87.6% at 1.5M), 5 points, EU 0.297 (it lost the single-ore corners).
  Both with the plain TD loss; minecart's default is now ``weighted_loss=True`` (docs/algorithms/morld.md).
  With it, ``--seeds 0 1 2 --eval-every 8 --set total_timesteps=3_000_000 pop_size=15 'net_arch=(64,64)'
  batch_size=64 num_envs=4`` (one vmapped program, 1,154 s for the three seeds, load 10-29): HV 99.80 / 99.49 /
  99.44% and EU 0.425 / 0.432 / 0.427, every seed with both 1.5-ore corners, the home point and the three mixtures.
  With ``num_envs=1`` instead (one gradient step per transition; one-seed runs ``--seed S --set ...
  num_envs=1``, 650-800 s each beside three other jobs): EU 0.479 / 0.472 / 0.469, HV 96.54 / 87.65 / 99.70%.
  MORL-Baselines' MORL/D default budget is 1M steps with pop 6 and 256-256 nets, one gradient step per
  transition: ~300 env steps/s here (measured, same script), i.e. 0.27M steps in 15 min.
- ``pgmorl-mcc --eval-every 1000``: the whole default budget, 4.96M env steps (101 PPO iterations x 6 tasks x
  8,192), in 167 s: 29.7k env steps/s with the compile (34.5k after the first iteration) vs MORL-Baselines'
  2.6k (11x); final EP of 16 points, HV 9.5e5 (gamma 0.99, ref the env's).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import time

import numpy as np

EXPERIMENTS = {
    # agent, env id, env kwargs, config overrides, protocol (EvalProtocol fields), true front HV (or None)
    "morld-minecart": (
        "morld",
        "minecart-deterministic-v0",
        {},
        dict(total_timesteps=1_000_000, exchange_every=5_000),
        dict(gamma=1.0, episodes=1),
        147.84,
    ),
    "pgmorl-mcc": ("pgmorl", "mo-mountaincarcontinuous-v0", {}, {}, dict(gamma=0.99, episodes=5), None),
}


def machine() -> str:
    import jax

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared; 1-min load {load:.1f} "
        f"at the end), jax {jax.__version__} on {jax.devices()[0].platform}"
    )


def run(
    name: str,
    seed: int = 0,
    overrides: dict | None = None,
    max_wall: float | None = None,
    eval_every: int = 1,
    out: str | None = None,
    trace: bool = False,
    then_at: int | None = None,
    then_overrides: dict | None = None,
) -> dict:
    """Train one experiment; return (and print) its summary. ``trace`` (MORL/D): after every update print a
    ``TRACE`` line with each member's weight and latest evaluation and the archive's points. ``then_at``: from the
    first update that ends at or past this many env steps, go on training the same state with the config changed
    by ``then_overrides`` (e.g. a weighted-sum start, then Tchebycheff)."""
    t0 = time.perf_counter()
    import jax

    import morl
    import morl.envs  # noqa: F401
    from morl.agent import agent_spec, make_trainer
    from morl.evaluate import EvalProtocol, evaluate

    agent, env_id, env_kwargs, cfg, proto, true_hv = EXPERIMENTS[name]
    cfg = {**cfg, **(overrides or {})}
    env, params = morl.make(env_id, **env_kwargs)
    protocol = EvalProtocol(**proto)
    eval_wall = 0.0
    trainer = make_trainer(agent, env, params, **cfg)
    state = trainer.init(jax.random.PRNGKey(seed))
    rows, updates, first, stopped = [], 0, None, False

    def evaluation(state, logs) -> dict:
        front = evaluate(trainer.solution(state), env, params, protocol, key=jax.random.PRNGKey(10_000 + seed))
        hv, eu = front.metrics["hypervolume"], front.metrics["expected_utility"]
        return {
            "env_steps": trainer.env_steps(state),
            "updates": updates,
            "train_wall_s": None,
            "hv": round(hv, 3),
            "hv_pct": round(100 * hv / true_hv, 2) if true_hv else None,
            "eu": round(eu, 4),
            "points": len(front.front),
            **{k: round(float(logs[k]), 3) for k in ("archive_size", "ep_hv") if k in logs},
        }

    logs = {}
    while not trainer.done(state):
        state, logs = trainer.update(state)
        jax.block_until_ready(state)
        updates += 1
        if then_at is not None and trainer.env_steps(state) >= then_at:
            trainer, then_at = make_trainer(agent, env, params, **{**cfg, **(then_overrides or {})}), None
        if trace:
            rounded = lambda x: np.round(np.asarray(x, np.float64), 3).tolist()  # noqa: E731
            arch = state.archive
            print(
                "TRACE "
                + json.dumps(
                    {
                        "env_steps": trainer.env_steps(state),
                        "weights": rounded(state.weights),
                        "evals": rounded(state.last_eval),
                        "archive": rounded(np.asarray(arch.returns)[np.asarray(arch.valid)]),
                    }
                ),
                flush=True,
            )
        now = time.perf_counter()
        train_wall = now - t0 - eval_wall
        if first is None:
            first = (train_wall, trainer.env_steps(state))
        stopped = max_wall is not None and train_wall >= max_wall and not trainer.done(state)
        if updates % eval_every == 0 or trainer.done(state) or stopped:
            row = evaluation(state, logs)
            row["train_wall_s"] = round(train_wall, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
            eval_wall += time.perf_counter() - now
        if stopped:
            break
    train_wall = time.perf_counter() - t0 - eval_wall
    steps = trainer.env_steps(state)
    final = rows[-1] if rows else {}
    summary = {
        "experiment": name,
        "agent": agent,
        "env": env_id,
        "seed": seed,
        "config": cfg,
        "config_total_timesteps": getattr(trainer.config, agent_spec(agent).budget_field),
        "stopped_by_max_wall": stopped,
        "env_steps": steps,
        "updates": updates,
        "train_wall_s": round(train_wall, 1),
        "first_update_s": round(first[0], 1) if first else None,
        "steps_per_s": round(steps / max(train_wall, 1e-9)),
        "steps_per_s_after_first": (
            round((steps - first[1]) / max(train_wall - first[0], 1e-9)) if first and updates > 1 else None
        ),
        "final": final,
        "best_hv": max((r["hv"] for r in rows), default=None),
        "true_hv": true_hv,
        "protocol": protocol.as_dict(),
        "machine": machine(),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(summary) + "\n")
    return summary


def run_seeds(
    name: str, seeds: list[int], overrides: dict | None = None, eval_every: int = 1, out: str | None = None
) -> list[dict]:
    """Train several seeds of one experiment as ONE vmapped program (the trainer must be ``vmappable``); evaluate
    every seed after every ``eval_every`` updates and at the end; print one JSON row per seed and evaluation and one
    ``SUMMARY`` line per seed (also appended to ``out``)."""
    t0 = time.perf_counter()
    import jax
    import jax.numpy as jnp

    import morl
    import morl.envs  # noqa: F401
    from morl.agent import make_trainer
    from morl.evaluate import EvalProtocol, evaluate

    agent, env_id, env_kwargs, cfg, proto, true_hv = EXPERIMENTS[name]
    cfg = {**cfg, **(overrides or {})}
    env, params = morl.make(env_id, **env_kwargs)
    protocol = EvalProtocol(**proto)
    trainer = make_trainer(agent, env, params, **cfg)
    if not getattr(trainer, "vmappable", False):
        raise SystemExit(f"{agent} is not vmappable over seeds; run one --seed at a time")
    states = jax.jit(jax.vmap(trainer.init))(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)))
    vupdate = jax.jit(jax.vmap(trainer.update))
    pick = lambda i: jax.tree.map(lambda x: x[i], states)  # noqa: E731
    rows: dict[int, list[dict]] = {s: [] for s in seeds}
    updates, eval_wall = 0, 0.0
    while not trainer.done(pick(0)):
        states, _ = vupdate(states)
        jax.block_until_ready(states)
        updates += 1
        if updates % eval_every == 0 or trainer.done(pick(0)):
            now = time.perf_counter()
            for i, seed in enumerate(seeds):
                state = pick(i)
                front = evaluate(trainer.solution(state), env, params, protocol, key=jax.random.PRNGKey(10_000 + seed))
                hv, eu = front.metrics["hypervolume"], front.metrics["expected_utility"]
                row = {
                    "seed": seed,
                    "env_steps": trainer.env_steps(state),
                    "updates": updates,
                    "train_wall_s": round(now - t0 - eval_wall, 1),
                    "hv": round(hv, 3),
                    "hv_pct": round(100 * hv / true_hv, 2) if true_hv else None,
                    "eu": round(eu, 4),
                    "points": len(front.front),
                    "front": np.round(np.asarray(front.front, np.float64), 3).tolist(),
                }
                rows[seed].append(row)
                print(json.dumps(row), flush=True)
            eval_wall += time.perf_counter() - now
    summaries = []
    for seed in seeds:
        summary = {
            "experiment": name,
            "agent": agent,
            "env": env_id,
            "seeds_in_one_program": seeds,
            "seed": seed,
            "config": cfg,
            "updates": updates,
            "train_wall_s_all_seeds": round(time.perf_counter() - t0 - eval_wall, 1),
            "final": rows[seed][-1],
            "true_hv": true_hv,
            "protocol": protocol.as_dict(),
            "machine": machine(),
        }
        summaries.append(summary)
        print("SUMMARY " + json.dumps(summary), flush=True)
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(summary) + "\n")
    return summaries


def suite_timing(
    suite: str = "classic",
    scale: float = 0.1,
    envs: list[str] | None = None,
    agents: list[str] | None = None,
    seeds: int = 1,
    runs_dir: str | None = None,
    out: str | None = None,
) -> list[dict]:
    """Wall time of one suite run per (agent, env) at ``scale`` (``seeds`` > 1: the group's first seeds together,
    as the suite trains them: one vmapped program on a GPU/TPU where the trainer allows, else in lanes)."""
    import tempfile

    from morl.runs import METRICS_JSONL, create_run, read_jsonl, train_runs
    from morl.suites import load_suite, suite_requests

    s = load_suite(suite)
    rows = []
    with tempfile.TemporaryDirectory(prefix="suite-timing-", dir=runs_dir) as tmp:
        for group in suite_requests(s, None, scale):
            req = group[0]
            if (envs and req.env not in envs) or (agents and req.agent not in agents):
                continue
            t0 = time.perf_counter()
            infos = [create_run(tmp, r) for r in group[:seeds]]
            results = train_runs(infos, store=False)
            wall = time.perf_counter() - t0
            # the run's own per-update clock: the first update holds the compiles, the rest is the marginal cost
            log = read_jsonl(infos[0].path / METRICS_JSONL)
            first, last = log[0], log[-1]
            per_step = (
                (last["wall_time"] - first["wall_time"]) / (last["env_steps"] - first["env_steps"])
                if len(log) > 1 and last["env_steps"] > first["env_steps"]
                else None
            )
            row = {
                "suite": s.name,
                "scale": scale,
                "agent": req.agent,
                "env": req.env,
                "seeds": len(infos),
                "env_steps": results[0]["env_steps"],
                "wall_s": round(wall, 1),
                "run_wall_s": [round(r["wall_time"], 1) for r in results],
                "first_update": {"env_steps": first["env_steps"], "wall_s": round(first["wall_time"], 1)},
                "us_per_step_after_first": round(1e6 * per_step, 2) if per_step else None,
                "hv": [round(r["metrics"]["hypervolume"], 3) for r in results],
                "machine": machine(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if out:
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def main(argv=None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "suite-timing":
        p = argparse.ArgumentParser(prog="decomposition.py suite-timing", description=suite_timing.__doc__)
        p.add_argument("--suite", default="classic")
        p.add_argument("--scale", type=float, default=0.1, help="the suite's --steps-scale")
        p.add_argument("--envs", nargs="*", default=None)
        p.add_argument("--agents", nargs="*", default=None)
        p.add_argument("--seeds", type=int, default=1, help="seeds per (agent, env), trained as the suite does")
        p.add_argument("--out", default=None, help="append one JSON line per (agent, env) to this file")
        a = p.parse_args(argv[1:])
        suite_timing(a.suite, a.scale, a.envs, a.agents, a.seeds, out=a.out)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="several seeds as one vmapped program")
    p.add_argument("--max-wall", type=float, default=None, help="stop after the update that ends past this many s")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate every N trainer updates (and at the end)")
    p.add_argument("--out", default=None, help="append the summary JSON line to this file")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides (Python literals)")
    p.add_argument(
        "--trace",
        action="store_true",
        help="MORL/D: print every member's weight and evaluation and the archive after every update (TRACE lines)",
    )
    p.add_argument("--then-at", type=int, default=None, help="env steps after which --then-set applies")
    p.add_argument("--then-set", nargs="*", default=[], metavar="FIELD=VALUE", help="config changes from --then-at")
    args = p.parse_args(argv)

    def parsed(items):
        return {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in items)}

    overrides = parsed(args.set)
    if args.seeds:
        run_seeds(args.experiment, args.seeds, overrides, args.eval_every, args.out)
        return
    run(
        args.experiment,
        args.seed,
        overrides,
        args.max_wall,
        args.eval_every,
        args.out,
        args.trace,
        args.then_at,
        parsed(args.then_set),
    )


if __name__ == "__main__":
    main()
