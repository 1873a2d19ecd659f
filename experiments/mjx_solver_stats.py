"""C MuJoCo's constraint-solver work per robot, over long random-action rollouts: the data behind the solver caps.

For every MuJoCo id this steps MO-Gymnasium's env (float64, the XML's own options) with uniform random actions,
resetting on termination/truncation, and records for each solver call the Newton iterations
(``data.solver_niter``) and the line-search cost evaluations of each iteration (``data.solver.neval``). With
``--physics fast`` the model gets the robot's fast preset first (`morl.envs.mujoco.robots.FAST_PHYSICS`).

The humanoid runs Newton, as its MJX model does (its XML asks for PGS, which MJX lacks).
``mj_step`` runs the solver once per Euler step and 4 times per RK4 step, but ``data.solver_*`` keep only the
last call, so each step is split as ``mj_step`` does it (``mj_forward``, then ``mj_Euler`` / ``mj_RungeKutta``)
and both the first stage and the last are recorded.

    .venv/bin/python experiments/mjx_solver_stats.py --steps 20000             # exact (the XML's options)
    .venv/bin/python experiments/mjx_solver_stats.py --steps 20000 --physics fast --uncapped
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import morl  # noqa: F401  (registers the ids)
from morl.envs.mujoco.backend import _MOGymFactory
from morl.envs.mujoco.robots import ROBOTS, apply_physics


def record(robot_id: str, steps: int, seed: int, physics: str, uncapped: bool = False) -> dict:
    import mujoco

    env = _MOGymFactory(robot_id, {})()
    u = env.unwrapped
    m, d = u.model, u.data
    if ROBOTS[robot_id].mjx_solver_newton:  # the solver the MJX model runs (MJX has no PGS)
        m.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
    apply_physics(m, ROBOTS[robot_id], physics)
    if uncapped:  # the preset's integrator and flags with the XML's caps: how many iterations it needs
        m.opt.iterations, m.opt.ls_iterations = 100, 50
    rk4 = int(m.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_RK4)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    niter, neval, nactive = [], [], []

    def read():
        n = int(d.solver_niter[0])
        niter.append(n)
        if n:
            neval.append(int(d.solver.neval[:n].max()))
            nactive.append(int(d.solver.nactive[n - 1]))

    episodes = 0
    for _ in range(steps):
        d.ctrl[:] = env.action_space.sample()
        for _ in range(u.frame_skip):
            mujoco.mj_forward(m, d)
            read()
            (mujoco.mj_RungeKutta if rk4 else mujoco.mj_Euler)(m, d, *((4,) if rk4 else ()))
            if rk4:
                read()
        if hasattr(u, "_terminate_when_unhealthy") and u._terminate_when_unhealthy and not u.is_healthy:
            env.reset()
            episodes += 1
    niter, neval = np.asarray(niter), np.asarray(neval)
    q = lambda a, p: int(np.percentile(a, p)) if a.size else 0  # noqa: E731
    return {
        "robot": robot_id,
        "physics": physics,
        "env_steps": steps,
        "solves": int(niter.size),
        "iterations_cap": int(m.opt.iterations),
        "ls_iterations_cap": int(m.opt.ls_iterations),
        "niter_mean": float(niter.mean()),
        "niter_p99": q(niter, 99),
        "niter_max": int(niter.max()),
        "neval_p99": q(neval, 99),
        "neval_max": int(neval.max()) if neval.size else 0,
        "nactive_max": int(max(nactive, default=0)),
        "resets": episodes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000, help="env steps per robot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--physics", default="exact", choices=("exact", "fast"))
    ap.add_argument("--uncapped", action="store_true", help="iterations 100, ls_iterations 50 (the XML's caps)")
    ap.add_argument("--env", nargs="*", default=list(ROBOTS))
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args()
    rows = []
    print(
        f"{'robot':20s} {'solves':>8s} {'caps it/ls':>10s} {'niter mean':>10s} {'p99':>4s} {'max':>4s} "
        f"{'ls evals p99':>12s} {'max':>4s} {'active':>6s} {'s':>5s}"
    )
    for robot_id in args.env:
        start = time.perf_counter()
        r = record(robot_id, args.steps, args.seed, args.physics, args.uncapped)
        rows.append(r)
        print(
            f"{robot_id:20s} {r['solves']:8d} {r['iterations_cap']:>4d}/{r['ls_iterations_cap']:<5d} "
            f"{r['niter_mean']:10.2f} {r['niter_p99']:4d} {r['niter_max']:4d} {r['neval_p99']:12d} "
            f"{r['neval_max']:4d} {r['nactive_max']:6d} {time.perf_counter() - start:5.1f}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
