"""Throughput of the vmapped bandit simulation beside plain numpy loops of the same algorithm, same machine.

    python experiments/bench_bandits.py [--algo pareto-ucb1] [--instance drugan-nowe-20] [--runs 1000]
                                        [--horizon 100000] [--numpy-runs 1000] [--numpy-horizon 2000]

Three programs run Pareto UCB1 (or ``--algo``; the numpy loops are Pareto UCB1 only):

* ``jax``: `agents.bandits.simulate_runs`, one jitted program (lax.scan over checkpoints, fori_loop over pulls,
  vmap over runs); timed after a separate compile;
* ``numpy, runs vectorised``: a Python loop over pulls, every run side by side in numpy arrays [R, K, m];
* ``numpy, one run at a time``: a Python loop over runs and pulls with small numpy arrays (the usual way
  bandit experiments are written).

Each reports runs x pulls per second; the numpy loops run a smaller size (they are slow) and the rate is what
compares. Results go to stdout as a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def numpy_vectorised(means: np.ndarray, horizon: int, runs: int, seed: int = 0) -> np.ndarray:
    """Pareto UCB1 over ``runs`` runs side by side; returns pulls per arm [runs, K]."""
    rng = np.random.default_rng(seed)
    k, m = means.shape
    n_star = int(_pareto(means).sum())
    counts = np.zeros((runs, k))
    sums = np.zeros((runs, k, m))
    rows = np.arange(runs)
    for t in range(horizon):
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(2 * np.log(max(t, 1) * (m * n_star) ** 0.25) / counts)
            ucb = np.where(counts[..., None] > 0, sums / counts[..., None] + bonus[..., None], np.inf)
        ge = (ucb[:, None, :, :] >= ucb[:, :, None, :]).all(-1)
        gt = (ucb[:, None, :, :] > ucb[:, :, None, :]).any(-1)
        optimal = ~(ge & gt).any(-1)
        arm = np.where(optimal, rng.random((runs, k)), -1.0).argmax(1)
        reward = (rng.random((runs, m)) < means[arm]).astype(float)
        counts[rows, arm] += 1
        sums[rows, arm] += reward
    return counts


def numpy_one_run(means: np.ndarray, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """Pareto UCB1, one run, one pull at a time."""
    k, m = means.shape
    n_star = int(_pareto(means).sum())
    counts = np.zeros(k)
    sums = np.zeros((k, m))
    for t in range(horizon):
        if t < k:
            arm = t
        else:
            ucb = sums / counts[:, None] + np.sqrt(2 * np.log(t * (m * n_star) ** 0.25) / counts)[:, None]
            arm = rng.choice(np.flatnonzero(_pareto(ucb)))
        counts[arm] += 1
        sums[arm] += rng.random(m) < means[arm]
    return counts


def _pareto(v: np.ndarray) -> np.ndarray:
    ge = (v[None, :, :] >= v[:, None, :]).all(-1)
    gt = (v[None, :, :] > v[:, None, :]).any(-1)
    return ~(ge & gt).any(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", default="pareto-ucb1")
    ap.add_argument("--instance", default="drugan-nowe-20")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--horizon", type=int, default=100_000)
    ap.add_argument("--numpy-runs", type=int, default=1000)
    ap.add_argument("--numpy-horizon", type=int, default=2000)
    ap.add_argument("--single-runs", type=int, default=2, help="runs of the one-run-at-a-time loop")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from morl.agents import bandits as AB
    from morl.envs.bandits import get_instance

    inst = get_instance(args.instance)
    algo = AB.get_algorithm(args.algo)
    params = inst.params()
    cps = jnp.asarray(AB.log_checkpoints(args.horizon, 20))
    sim = jax.jit(AB.simulate_runs, static_argnums=(0, 5))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = sim.lower(algo, key, params, jnp.int32(args.horizon), cps, args.runs).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts, _ = compiled(key, params, jnp.int32(args.horizon), cps)
    counts = np.asarray(jax.block_until_ready(counts))
    jax_s = time.perf_counter() - t0
    regret = counts[:, -1] @ inst.gaps

    t0 = time.perf_counter()
    numpy_vectorised(inst.means, args.numpy_horizon, args.numpy_runs)
    vec_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(args.single_runs):
        numpy_one_run(inst.means, args.numpy_horizon, rng)
    one_s = time.perf_counter() - t0

    rows = [
        ("jax (jit + vmap)", args.runs, args.horizon, jax_s, args.runs * args.horizon / jax_s),
        (
            "numpy, runs vectorised",
            args.numpy_runs,
            args.numpy_horizon,
            vec_s,
            args.numpy_runs * args.numpy_horizon / vec_s,
        ),
        (
            "numpy, one run at a time",
            args.single_runs,
            args.numpy_horizon,
            one_s,
            args.single_runs * args.numpy_horizon / one_s,
        ),
    ]
    print(
        f"{args.algo} on {inst.name} ({inst.num_arms} arms, {inst.num_objectives} objectives); "
        f"{jax.devices()[0].platform}, {platform.processor() or platform.machine()}, jax {jax.__version__}"
    )
    print(f"{'program':<26} {'runs':>6} {'horizon':>9} {'seconds':>9} {'runs x pulls / s':>17}")
    for name, r, h, s, rate in rows:
        print(f"{name:<26} {r:>6} {h:>9,} {s:>9.2f} {rate:>17,.0f}")
    print(
        f"jax compile {compile_s:.2f} s; mean Pareto regret at T = {regret.mean():.2f} "
        f"(+- {1.96 * regret.std(ddof=1) / np.sqrt(len(regret)):.2f})"
    )
    print(
        json.dumps(
            {
                "algo": args.algo,
                "instance": inst.name,
                "compile_s": compile_s,
                "rows": [dict(zip(("program", "runs", "horizon", "seconds", "rate"), r)) for r in rows],
            }
        )
    )


if __name__ == "__main__":
    main()
