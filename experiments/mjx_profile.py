"""Where the MJX engine's time goes: raw ``jax.vmap(mjx.step)`` against the env and the engine, on one model.

Rows (env steps/s, compile excluded; one env step = ``frame_skip`` physics steps):

- ``raw mjx.step``: one physics step, ``jax.jit(jax.vmap(mjx.step))`` (what a per-physics-step figure counts);
- ``raw x frame_skip``: ``frame_skip`` of those per env step (what the env must do: hopper 4);
- ``env.step``: the env's vmapped step (our forward, the XML's integrator, observation, reward, health);
- ``engine``: `morl.rollout.make_rollout` with a random policy (auto-reset of every env at every step, stats).

``--ls N`` adds the raw rows with ``opt.ls_iterations = N``, once vmapped and once for a single env: MJX's
line search is a ``lax.scan`` of ``ls_iterations`` steps with a ``lax.cond`` inside; under ``vmap`` the cond's
predicate is batched and becomes a ``select`` that evaluates the body every time, so the vmapped step pays for
all ``ls_iterations`` while a single env skips them. ``--count`` records MJX's own Newton and line-search
iterations (float32) per solve over a random rollout.

    .venv/bin/python experiments/mjx_profile.py --env mo-hopper-v5 --num-envs 64 256 --ls 4 --count
"""

from __future__ import annotations

import argparse
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

import morl
from morl.env import select_tree
from morl.rollout import make_rollout, random_policy


def batch_states(env, n: int):
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, env.default_params)
    # a few steps in, so that the feet touch the ground and the solver has contacts to resolve
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    act = jnp.zeros((n, env.nu))
    for _ in range(10):
        obs, state, *_ = step(keys, state, act, env.default_params)
    return state


def cond_count(jaxpr) -> dict[str, int]:
    """How many ``cond``/``select_n``/``while``/``scan`` equations a jaxpr holds, sub-jaxprs included."""
    counts: dict[str, int] = {}

    def walk(j):
        for eqn in j.eqns:
            counts[eqn.primitive.name] = counts.get(eqn.primitive.name, 0) + 1
            for v in eqn.params.values():
                for sub in v if isinstance(v, (tuple, list)) else (v,):
                    if hasattr(sub, "jaxpr"):
                        walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jaxpr.jaxpr)
    return {k: counts.get(k, 0) for k in ("cond", "select_n", "while", "scan")}


def profile(env_id: str, physics: str, sizes: list[int], ls: int | None, calls: int, single: bool, rounds: int) -> None:
    """Compile every row first, then time them in ``rounds`` interleaved rounds and keep each row's best: on a
    shared machine the load changes between rows, and the best of interleaved rounds compares like with like."""
    from mujoco import mjx

    env, params = morl.make(env_id, backend="mjx", physics=physics)
    mx, fs = env.mx, env.frame_skip
    print(
        f"\n{env_id} physics={physics}: integrator {env._integrator}, frame_skip {fs}, "
        f"iterations {env.mj_model.opt.iterations}, ls_iterations {env.mj_model.opt.ls_iterations}"
    )
    models = {"": mx}
    if ls is not None:
        m = env.mj_model.__copy__()
        m.opt.ls_iterations = ls
        models[f" (ls_iterations={ls})"] = mjx.put_model(m, impl="jax")
    for n in sizes:
        rows = build_rows(env, params, models, n, single)
        compile_s = []
        for _, fn, args, _ in rows:
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            compile_s.append(time.perf_counter() - start)
        best = [np.inf] * len(rows)
        for _ in range(rounds):
            for i, (_, fn, args, per_call) in enumerate(rows):
                reps = max(1, min(calls * fs, round(calls * n / per_call)))  # ~calls env steps per env
                start = time.perf_counter()
                for _ in range(reps):
                    out = fn(*args)
                jax.block_until_ready(out)
                best[i] = min(best[i], (time.perf_counter() - start) / reps / per_call)
        print(f"  {n} envs: {'what':42s} {'first call s':>12s} {'env steps/s':>12s} {'physics steps/s':>16s}")
        for (what, *_), c, t in zip(rows, compile_s, best):
            print(f"  {'':{len(str(n)) + 6}s}{what:42s} {c:12.1f} {1 / t:12,.0f} {fs / t:16,.0f}", flush=True)
    if ls is not None:
        d = batch_states(env, 2).data
        vm = jax.make_jaxpr(jax.vmap(lambda d: mjx.step(mx, d)))(d)
        sg = jax.make_jaxpr(lambda d: mjx.step(mx, d))(jax.tree.map(lambda x: x[0], d))
        print(f"  jaxpr primitives, single env: {cond_count(sg)}; vmapped: {cond_count(vm)}")


def build_rows(env, params, models: dict, n: int, single: bool, steps: int = 10) -> list[tuple]:
    """(what, jitted fn, args, env steps per call) for ``n`` envs; ``steps``: env steps per scanned call."""
    from mujoco import mjx

    mx, fs = env.mx, env.frame_skip
    state = batch_states(env, n)
    d, ctrl = state.data, jnp.zeros((n, env.nu))
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    rows = []
    for tag, model in models.items():
        rows.append(
            (
                f"raw mjx.step{tag} (1 physics step)",
                jax.jit(jax.vmap(lambda d, model=model: mjx.step(model, d))),
                (d,),
                n / fs,
            )
        )
        if single:
            rows.append(
                (
                    f"  single env, no vmap{tag}",
                    jax.jit(lambda d, model=model: mjx.step(model, d)),
                    (jax.tree.map(lambda x: x[0], d),),
                    1 / fs,
                )
            )
    rows.append(
        (
            f"raw mjx.step x {fs} (fori_loop)",
            jax.jit(jax.vmap(lambda d, u: jax.lax.fori_loop(0, fs, lambda _, x: mjx.step(mx, x), d.replace(ctrl=u)))),
            (d, ctrl),
            n,
        )
    )
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    vreset = jax.vmap(env.reset, in_axes=(0, None))
    rows.append(("env.step (vmap)", jax.jit(vstep), (keys, state, ctrl, params), n))

    def scanned(state, key, reset: bool):
        def body(state, k):
            k1, k2 = jax.random.split(k)
            _, nxt, _, term, trunc, _ = vstep(jax.random.split(k1, n), state, ctrl, params)
            if reset:
                _, fresh = vreset(jax.random.split(k2, n), params)
                nxt = jax.vmap(select_tree)(term | trunc, fresh, nxt)
            return nxt, None

        return jax.lax.scan(body, state, jax.random.split(key, steps))[0]

    key = jax.random.PRNGKey(2)
    rows.append(
        (f"scan {steps} x env.step, no reset", jax.jit(lambda s, k: scanned(s, k, False)), (state, key), n * steps)
    )
    rows.append(
        (
            f"scan {steps} x (env.step + reset + select)",
            jax.jit(lambda s, k: scanned(s, k, True)),
            (state, key),
            n * steps,
        )
    )
    rollout = make_rollout(env, random_policy(env), n, steps, emit="summary", seed=0)
    rs = rollout.init(jax.random.PRNGKey(0), params)
    rows.append(
        ("engine rollout (random policy, stats)", lambda rs, k: rollout.run((), rs, k, params), (rs, key), n * steps)
    )
    return rows


def count_iterations(env_id: str, physics: str, n: int, steps: int, uncapped: bool = False) -> None:
    """MJX's Newton iterations per solve and line-search iterations per Newton iteration (float32), per env,
    over ``steps`` random-action env steps of ``n`` envs (vmapped: the counts are per env, as the selects
    keep each env's own counters)."""
    import mujoco
    from mujoco import mjx
    from mujoco.mjx._src import solver as S
    from mujoco.mjx._src.types import DisableBit, SolverType

    records: list[np.ndarray] = []
    stash: dict = {}
    original = S._while_loop_scan

    def scan_and_stash(cond, body, init, max_iter):
        out = original(cond, body, init, max_iter)
        stash["ls_iter"] = out.ls_iter
        return out

    def solve(m, d):  # mjx.solve with counters (mujoco/mjx/_src/solver.py, same arithmetic)
        def cond(c):
            ctx = c[0]
            improvement = S._rescale(m, d, ctx.prev_cost - ctx.cost)
            gradient = S._rescale(m, d, S.math.norm(ctx.grad))
            done = (ctx.solver_niter >= m.opt.iterations) | (improvement < m.opt.tolerance)
            return ~(done | (gradient < m.opt.tolerance))

        def body(c):
            ctx, ls_max, ls_sum = c
            ctx = S._linesearch(m, d, ctx)
            ls = stash["ls_iter"]
            prev_grad, prev_mgrad = ctx.grad, ctx.Mgrad
            ctx = S._update_gradient(m, d, S._update_constraint(m, d, ctx))
            if m.opt.solver == SolverType.NEWTON:
                search = -ctx.Mgrad
            else:
                beta = jnp.dot(ctx.grad, ctx.Mgrad - prev_mgrad) / jnp.maximum(
                    mujoco.mjMINVAL, jnp.dot(prev_grad, prev_mgrad)
                )
                search = -ctx.Mgrad + jnp.maximum(0, beta) * ctx.search
            return ctx.replace(search=search, solver_niter=ctx.solver_niter + 1), jnp.maximum(ls_max, ls), ls_sum + ls

        qacc = d.qacc_smooth
        if not m.opt.disableflags & DisableBit.WARMSTART:
            warm = S.Context.create(m, d.replace(qacc=d.qacc_warmstart), grad=False)
            smth = S.Context.create(m, d.replace(qacc=d.qacc_smooth), grad=False)
            qacc = jnp.where(warm.cost < smth.cost, d.qacc_warmstart, d.qacc_smooth)
        d = d.replace(qacc=qacc)
        ctx, ls_max, ls_sum = jax.lax.while_loop(cond, body, (S.Context.create(m, d), 0, 0))
        jax.debug.callback(
            lambda *a: records.append(np.stack([np.asarray(x) for x in a], -1).reshape(-1, 3)),
            ctx.solver_niter,
            ls_max,
            ls_sum,
        )
        return d.tree_replace(
            {"qfrc_constraint": ctx.qfrc_constraint, "qacc": ctx.qacc, "_impl.efc_force": ctx.efc_force}
        )

    env, params = morl.make(env_id, backend="mjx", physics=physics)
    if uncapped:  # the preset's integrator and flags with the XML's caps: how far MJX's own solves go
        env.mj_model.opt.iterations, env.mj_model.opt.ls_iterations = 100, 50
        env.mx = mjx.put_model(env.mj_model, impl="jax")
    env._mjx = types.SimpleNamespace(**{k: getattr(mjx, k) for k in dir(mjx) if not k.startswith("__")})
    env._mjx.solve = solve
    S._while_loop_scan = scan_and_stash
    try:
        step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
        key = jax.random.PRNGKey(0)
        _, state = reset(jax.random.split(key, n), params)
        low, high = env.action_space.low, env.action_space.high
        for _ in range(steps):
            key, ka, kr = jax.random.split(key, 3)
            act = jax.random.uniform(ka, (n, env.nu), minval=low, maxval=high)
            _, state, _, term, _, _ = step(jax.random.split(kr, n), state, act, params)
            _, fresh = reset(jax.random.split(kr, n), params)
            state = jax.vmap(select_tree)(term, fresh, state)
        jax.block_until_ready(state)
    finally:
        S._while_loop_scan = original
    r = np.concatenate(records)
    niter, ls_max, ls_sum = r[:, 0], r[:, 1], r[:, 2]
    per_iter = ls_sum[niter > 0] / niter[niter > 0]
    label = f"{physics}, uncapped" if uncapped else physics
    print(
        f"\n{env_id} physics={label}, MJX float32, {len(r)} solves ({n} envs x {steps} env steps): "
        f"Newton iterations mean {niter.mean():.2f}, p99 {np.percentile(niter, 99):.0f}, max {niter.max()} "
        f"(cap {env.mj_model.opt.iterations}); line-search iterations per Newton iteration mean "
        f"{per_iter.mean():.2f}, max {ls_max.max()} (cap {env.mj_model.opt.ls_iterations}); solves at the "
        f"Newton cap {np.mean(niter >= env.mj_model.opt.iterations):.3%}, with a line search at its cap "
        f"{np.mean(ls_max >= env.mj_model.opt.ls_iterations):.3%}; largest Newton iterations in a batch of {n} "
        f"(what a vmapped while_loop runs) mean {niter.reshape(-1, n).max(1).mean():.2f}; longest line search of "
        f"a solve: p90 {np.percentile(ls_max, 90):.0f}, p99 {np.percentile(ls_max, 99):.0f}, "
        f"p99.9 {np.percentile(ls_max, 99.9):.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="mo-hopper-v5")
    ap.add_argument("--physics", nargs="+", default=["exact", "fast"])
    ap.add_argument("--num-envs", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--calls", type=int, default=20, help="about this many env steps per env per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (the best is kept)")
    ap.add_argument("--ls", type=int, default=None, help="also time raw mjx.step with this ls_iterations")
    ap.add_argument("--count", action="store_true", help="record MJX's solver iterations")
    ap.add_argument("--count-envs", type=int, default=64)
    ap.add_argument("--uncapped", action="store_true", help="--count with iterations 100, ls_iterations 50")
    ap.add_argument("--count-steps", type=int, default=200)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--single", action="store_true", help="also time one env without vmap (2 more compiles)")
    args = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}")
    for physics in args.physics:
        if not args.no_timing:
            profile(args.env, physics, args.num_envs, args.ls, args.calls, args.single, args.rounds)
        if args.count:
            count_iterations(args.env, physics, args.count_envs, args.count_steps, args.uncapped)


if __name__ == "__main__":
    main()
