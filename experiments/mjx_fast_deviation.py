"""How far ``physics="fast"`` moves each robot's rewards from MO-Gymnasium's: random-action episode statistics.

For every MuJoCo id, ``--episodes`` episodes with uniform random actions (the time limit MO-Gymnasium
registers) under MO-Gymnasium's env as shipped ("exact") and under the same env with the fast preset applied to
its model ("fast", C MuJoCo in float64: the preset's physics without MJX's float32 rounding). Printed per
reward component: mean and std of the per-step reward and the mean episode return with its standard error;
then the episode length. ``--mjx`` adds the MJX fast env itself (slow on a CPU: compile + ~1k steps/s).

    .venv/bin/python experiments/mjx_fast_deviation.py --episodes 200
    .venv/bin/python experiments/mjx_fast_deviation.py --env mo-hopper-v5 --episodes 256 \
        --mjx exact fast --mjx-steps 200
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import morl
from morl.envs.mujoco.backend import _MOGymFactory
from morl.envs.mujoco.robots import ROBOTS


def episodes_c(robot_id: str, physics: str, episodes: int, seed: int) -> dict:
    """Per-episode returns (episodes x m), lengths and per-step rewards of MO-Gymnasium's env in C."""
    env = _MOGymFactory(robot_id, {}, physics)()
    env.action_space.seed(seed)
    returns, lengths, steps = [], [], []
    for e in range(episodes):
        env.reset(seed=seed + e)
        ret, t, done = 0.0, 0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret, t, done = ret + np.asarray(r, np.float64), t + 1, term or trunc
            steps.append(r)
        returns.append(ret)
        lengths.append(t)
    return {"returns": np.asarray(returns), "lengths": np.asarray(lengths, float), "steps": np.asarray(steps)}


def episodes_mjx(robot_id: str, physics: str, episodes: int, seed: int, steps: int | None = None) -> dict:
    """The first episode of each of ``episodes`` MJX envs (vmapped; random actions; one program of ``steps``
    env steps, the time limit by default: fewer suffice for robots that fall)."""
    import jax

    from morl.rollout import make_rollout, random_policy

    env, params = morl.make(robot_id, backend="mjx", physics=physics)
    steps = params.max_steps if steps is None else steps
    rollout = make_rollout(env, random_policy(env), episodes, steps, emit="summary", seed=seed)
    _, out = rollout.run((), rollout.init(jax.random.PRNGKey(seed), params), jax.random.PRNGKey(seed + 1), params)
    out = jax.device_get(out)
    assert np.all(out.episodes >= 1), "every env must finish an episode within the time limit"
    return {
        "returns": np.asarray(out.first_return, np.float64),
        "lengths": np.asarray(out.first_length, float),
        "steps": None,
    }


def summary(s: dict) -> dict:
    n = len(s["lengths"])
    out = {
        "episodes": n,
        "return_mean": s["returns"].mean(0).tolist(),
        "return_se": (s["returns"].std(0, ddof=1) / np.sqrt(n)).tolist(),
        "length_mean": float(s["lengths"].mean()),
        "length_se": float(s["lengths"].std(ddof=1) / np.sqrt(n)),
    }
    if s["steps"] is not None:
        out["step_mean"] = s["steps"].mean(0).tolist()
        out["step_std"] = s["steps"].std(0).tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", nargs="*", default=list(ROBOTS))
    ap.add_argument("--episodes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--mjx",
        nargs="*",
        default=None,
        choices=("exact", "fast"),
        help="also run MJX with these presets (default: fast)",
    )
    ap.add_argument("--mjx-steps", type=int, default=None, help="env steps of the MJX program (default: time limit)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for robot_id in args.env:
        runs = {
            "exact": episodes_c(robot_id, "exact", args.episodes, args.seed),
            "fast": episodes_c(robot_id, "fast", args.episodes, args.seed),
        }
        for preset in (args.mjx or ["fast"]) if args.mjx is not None else []:
            runs[f"mjx {preset}"] = episodes_mjx(robot_id, preset, args.episodes, args.seed, args.mjx_steps)
        names = ROBOTS[robot_id].reward_names
        print(f"\n{robot_id} ({args.episodes} random-action episodes each)")
        for what, s in runs.items():
            su = summary(s)
            rows.append({"robot": robot_id, "physics": what, **su})
            parts = [f"{n} {m:9.3f} +- {se:6.3f}" for n, m, se in zip(names, su["return_mean"], su["return_se"])]
            step = ""
            if "step_mean" in su:
                step = "  per step " + ", ".join(f"{m:.3f}/{sd:.3f}" for m, sd in zip(su["step_mean"], su["step_std"]))
            print(
                f"  {what:9s} length {su['length_mean']:7.1f} +- {su['length_se']:5.1f}  return "
                + ", ".join(parts)
                + step,
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
