"""Benchmark: C-MORL (JAX) on deep-sea-treasure: wall time to 95% and 100% of the true hypervolume, and
training env steps per second.

    python experiments/bench_c_morl.py                 # seeds 0 1 2, the env's default C-MORL config
    python experiments/bench_c_morl.py --seeds 0 --env deep-sea-treasure-v0 --set num_envs=32

Clock: starts before the env and the trainer are built and runs to the update whose buffer first reaches the
fraction, so JIT compilation, evaluation and buffer bookkeeping are all included. The hypervolume is the
policy buffer's: every buffered return is a deterministic evaluation with the protocol's discount (0.99), which
on deep-sea-treasure (deterministic) equals `morl.evaluate`'s; the final row re-checks it with `morl.evaluate`.
Env steps count real training transitions only (evaluation episodes are logged apart).

Reference (docs/sources.md, MORL-Baselines 1.3.0 on this machine class, 2 cores, seed 0):
Envelope 530 s to 100% of the true HV (104 train steps/s), GPI-LS 566 s to 99.7%. The project's goal is >= 50x.

`bench_c_morl` returns one seed's figures as a dict, for ``morl bench c-morl`` to wire in.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import time


def bench_c_morl(
    env_id: str = "deep-sea-treasure-v0",
    seed: int = 0,
    stop_at_full: bool = False,
    env_kwargs: dict | None = None,
    **overrides,
) -> dict:
    """Train C-MORL once; return wall times (compile included) to 95% / 100% of the true HV and throughput."""
    t0 = time.perf_counter()
    import jax

    import morl
    from morl.agent import make_trainer
    from morl.agents import c_morl
    from morl.evaluate import EvalProtocol, evaluate
    from morl.metrics import hypervolume

    c_morl._PROGRAMS.clear()  # trainers share compiled programs: every seed's clock includes its compile
    env, params = morl.make(env_id, **(env_kwargs or {}))
    trainer = make_trainer("c-morl", env, params, **overrides)
    cfg = trainer.config
    if not env.has_known_front or trainer.ref_point is None:
        raise ValueError(f"{env_id}: the benchmark needs a known front and a reference point")
    true_hv = hypervolume(env.pareto_front(cfg.eval_gamma), trainer.ref_point)
    state = trainer.init(jax.random.PRNGKey(seed))
    t95 = t100 = steps95 = steps100 = None
    first_update_end = None
    updates = 0
    hv = 0.0
    while not trainer.done(state):
        state, logs = trainer.update(state)
        updates += 1
        now = time.perf_counter() - t0
        if first_update_end is None:
            first_update_end, first_steps = now, trainer.env_steps(state)
        hv = logs.get("buffer_hv", 0.0)
        if t95 is None and hv >= 0.95 * true_hv:
            t95, steps95 = now, trainer.env_steps(state)
        if t100 is None and hv >= true_hv * (1 - 1e-6):
            t100, steps100 = now, trainer.env_steps(state)
            if stop_at_full:
                break
    wall = time.perf_counter() - t0
    steps = trainer.env_steps(state)
    result = evaluate(
        trainer.solution(state),
        env,
        params,
        EvalProtocol(gamma=cfg.eval_gamma, episodes=cfg.eval_episodes, ref_point=tuple(trainer.ref_point)),
    )
    return {
        "env": env_id,
        "seed": seed,
        "true_hv": true_hv,
        "final_buffer_hv": hv,
        "final_eval_hv": result.metrics["hypervolume"],
        "front_points": len(result.front),
        "t95_s": t95,
        "t100_s": t100,
        "steps95": steps95,
        "steps100": steps100,
        "wall_s": wall,
        "env_steps": steps,
        "updates": updates,
        "steps_per_s": steps / wall,
        # throughput after the first update (which includes the compile of the stage-1 program)
        "steps_per_s_after_first_update": (steps - first_steps) / max(wall - first_update_end, 1e-9),
        "first_update_s": first_update_end,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
        f"on {jax.devices()[0].platform}",
    }


def paper_protocol_run(env_id: str = "minecart-v0", seed: int = 0, env_kwargs: dict | None = None, **overrides) -> dict:
    """One C-MORL run at the env's default (official) budget, scored like the official code: HV, EU and SP of
    the policy buffer (its returns are evaluations with the config's episodes, discount and episode cap), EU on
    C-MORL's preference grid (``generate_w_batch_test`` with the script's step: 0.5 for minecart) and on
    MORL-Baselines' 50 equally spaced weights; plus a fresh `morl.evaluate` of the final solution."""
    import itertools

    import jax
    import numpy as np

    import morl
    from morl import metrics
    from morl.agent import make_trainer
    from morl.evaluate import EvalProtocol, evaluate
    from morl.weights import equally_spaced_weights

    t0 = time.perf_counter()
    env, params = morl.make(env_id, **(env_kwargs or {}))
    trainer = make_trainer("c-morl", env, params, **overrides)
    cfg = trainer.config
    state = trainer.init(jax.random.PRNGKey(seed))
    while not trainer.done(state):
        state, logs = trainer.update(state)
    wall = time.perf_counter() - t0
    front = trainer.front(state)
    m = env.reward_dim
    step = 0.5 if m >= 3 else 0.01  # the official scripts' eval_delta_weight (minecart/lunar/fruit: 0.5)
    grid = np.array([w for w in itertools.product(np.arange(0, 1 + step, step), repeat=m) if np.sum(w) == 1.0])
    ref = tuple(trainer.ref_point)
    fresh = evaluate(
        trainer.solution(state),
        env,
        params,
        EvalProtocol(gamma=cfg.eval_gamma, episodes=cfg.eval_episodes, max_steps=cfg.max_episode_steps, ref_point=ref),
        key=jax.random.PRNGKey(10_000 + seed),
    )
    true_hv = metrics.hypervolume(env.pareto_front(cfg.eval_gamma), ref) if env.has_known_front else float("nan")
    return {
        "env": env_id,
        "seed": seed,
        "wall_s": wall,
        "env_steps": trainer.env_steps(state),
        "true_hv": true_hv,
        "eval_episodes": int(state.eval_episodes),
        "points": len(front),
        "hv": metrics.hypervolume(front, ref),
        "eu_cmorl_grid": metrics.expected_utility(front, grid),
        "eu_50": metrics.expected_utility(front, equally_spaced_weights(m, 50)),
        "sp": metrics.sparsity(front),
        "fresh_eval_hv": fresh.metrics["hypervolume"],
        "fresh_eval_points": len(fresh.front),
    }


def _fmt(x, unit=""):
    return "-" if x is None else (f"{x:,.1f}{unit}" if isinstance(x, float) else f"{x:,}{unit}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--env", default="deep-sea-treasure-v0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stop-at-full", action="store_true", help="stop a run once it reaches 100%% of the true HV")
    parser.add_argument(
        "--compilation-cache",
        metavar="DIR",
        help="use JAX's persistent compilation cache in DIR (a second run then skips XLA compiles; "
        "report such runs as warm, not as compile-included)",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    parser.add_argument(
        "--env-kwargs",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="arguments of morl.make, e.g. depth=5 for fruit-tree-v0",
    )
    parser.add_argument(
        "--paper-protocol",
        action="store_true",
        help="instead: full default-budget runs scored like the official code (HV, EU, SP), e.g. --env minecart-v0",
    )
    args = parser.parse_args(argv)
    overrides = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.set)}
    env_kwargs = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in args.env_kwargs)}
    if args.compilation_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if args.paper_protocol:
        import numpy as np

        runs = []
        for seed in args.seeds:
            r = paper_protocol_run(args.env, seed, env_kwargs=env_kwargs, **overrides)
            runs.append(r)
            print(
                f"seed {seed}: HV {r['hv']:.2f}, EU {r['eu_cmorl_grid']:.4f} (C-MORL grid) / {r['eu_50']:.4f} (50 w), "
                f"SP {r['sp']:.5f}, {r['points']} points, {r['env_steps']:,} steps, {r['wall_s']:.0f} s; "
                f"fresh evaluation HV {r['fresh_eval_hv']:.2f}"
                + (
                    f"; {100 * r['hv'] / r['true_hv']:.2f}% of the true front's HV"
                    if r["true_hv"] == r["true_hv"]
                    else ""
                ),
                flush=True,
            )
        for k in ("hv", "eu_cmorl_grid", "eu_50", "sp", "fresh_eval_hv", "wall_s"):
            v = np.array([r[k] for r in runs])
            print(f"{k}: {v.mean():.4f} +- {v.std():.4f} (over {len(v)} seeds)")
        return
    rows = []
    for seed in args.seeds:  # every seed builds a new trainer, so every seed's clock includes its compile
        row = bench_c_morl(args.env, seed, stop_at_full=args.stop_at_full, env_kwargs=env_kwargs, **overrides)
        rows.append(row)
        print(
            f"seed {seed}: 95% at {_fmt(row['t95_s'], ' s')}, 100% at {_fmt(row['t100_s'], ' s')}, "
            f"final HV {row['final_eval_hv']:.2f}/{row['true_hv']:.2f} ({row['front_points']} points), "
            f"{row['env_steps']:,} steps in {row['wall_s']:.1f} s (first update, with the compiles, done at "
            f"{row['first_update_s']:.1f} s)",
            flush=True,
        )
    cache = f"; persistent compilation cache {args.compilation_cache}" if args.compilation_cache else ""
    print(f"\nC-MORL on {args.env}; machine: {rows[0]['machine']}{cache}")
    header = f"| {'run':<28} | {'to 95% HV':>10} | {'to 100% HV':>11} | {'train steps/s':>14} | {'final HV':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for r in rows:
        print(
            f"| {'C-MORL JAX, seed ' + str(r['seed']):<28} | {_fmt(r['t95_s'], ' s'):>10} | "
            f"{_fmt(r['t100_s'], ' s'):>11} | "
            f"{r['steps_per_s']:>14,.0f} | {100 * r['final_eval_hv'] / r['true_hv']:>8.1f}% |"
        )
    print(f"| {'Envelope, MORL-Baselines':<28} | {'-':>10} | {'530.0 s':>11} | {104:>14,} | {'100.0%':>9} |")
    print(f"| {'GPI-LS, MORL-Baselines':<28} | {'-':>10} | {'(99.7%) 566 s':>11} | {71:>14,} | {'99.7%':>9} |")
    t100 = [r["t100_s"] for r in rows if r["t100_s"] is not None]
    if t100:
        worst = max(t100)
        print(
            f"\nSpeed-up to 100% HV vs Envelope (530 s): {530.0 / worst:.1f}x (slowest seed, {worst:.1f} s); "
            f"vs GPI-LS to 99.7% (566 s): {566.0 / worst:.1f}x. Goal: 50x."
        )
    sps = [r["steps_per_s_after_first_update"] for r in rows]
    print(
        f"Training throughput after the first update (compile excluded): {min(sps):,.0f} - {max(sps):,.0f} env steps/s."
    )


if __name__ == "__main__":
    main()
