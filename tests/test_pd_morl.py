"""PD-MORL: the interpolator, preference sub-spaces, HER, and learning on DST and mountain car (its TD3 and Eq. 5
target blocks: test_td.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import RBFInterpolator

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.pd_morl import eval_rbf, fit_rbf, interpolate, key_preferences, make_interpolator
from morl.agents.preferences import SubspaceGrid, gaussian_preferences, grid, jitter_preference
from morl.evaluate import EvalProtocol, evaluate
from morl.weights import random_weights


# ----------------------------------------------------------------------------------------------- interpolator
def test_rbf_interpolator_matches_scipy_for_two_objectives():
    pts = key_preferences(2).astype(np.float64)
    vals = np.array([[0.3, 0.95], [0.9, 0.1], [0.7, 0.7]])
    x = random_weights(2, 50, 0)
    coeffs, center, scale = fit_rbf(jnp.asarray(pts), jnp.asarray(vals))
    ours = np.asarray(eval_rbf(jnp.asarray(pts, jnp.float32), coeffs, center, scale, jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(ours, RBFInterpolator(pts, vals, kernel="linear")(x), atol=1e-5)


@pytest.mark.parametrize("m", [3, 6])
def test_rbf_interpolator_is_exact_at_the_keys_and_satisfies_the_side_condition(m):
    # For m >= 3 the polynomial block is singular on the simplex; scipy's LU still returns numbers, but they break
    # the RBF side condition P^T a = 0. The least-squares solution keeps it, and interpolates the keys exactly.
    pts = key_preferences(m)
    vals = np.random.default_rng(m).random((m + 1, m)).astype(np.float32)
    coeffs, center, scale = fit_rbf(jnp.asarray(pts), jnp.asarray(vals))
    at_keys = np.asarray(eval_rbf(jnp.asarray(pts), coeffs, center, scale, jnp.asarray(pts)))
    np.testing.assert_allclose(at_keys, vals, atol=1e-4)
    poly = np.concatenate([np.ones((m + 1, 1)), (pts - np.asarray(center)) / np.asarray(scale)], 1)
    np.testing.assert_allclose(poly.T @ np.asarray(coeffs)[: m + 1], 0.0, atol=1e-4)


def test_interpolator_normalises_shifted_key_returns():
    pts = jnp.asarray(key_preferences(2))
    returns = jnp.array([[0.0, -1.0], [23.0, -17.0], [12.0, -6.0]])
    shift = jnp.array([0.0, 17.0])
    interp = make_interpolator(pts, returns, shift, "l2")
    w_p = np.asarray(interpolate(interp, pts))
    expected = np.asarray(returns + shift)
    np.testing.assert_allclose(w_p, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-4)
    interp1 = make_interpolator(pts, returns, shift, "l1")
    np.testing.assert_allclose(np.abs(np.asarray(interpolate(interp1, pts))).sum(1), 1.0, atol=1e-4)


def test_a_key_run_that_earned_nothing_stands_in_with_its_own_preference():
    # key 0 looped (no treasure, every step's time cost): shifted by -min it is the zero vector, whose direction
    # would zero every Eq. 5 score near w = [1, 0]; the key preference stands in for it
    pts = jnp.asarray(key_preferences(2))
    returns = jnp.array([[0.0, -26.0], [0.7, -1.0], [13.2, -6.8]])
    interp = make_interpolator(pts, returns, jnp.array([0.0, 26.0]), "l2")
    w_p = np.asarray(interpolate(interp, pts))
    np.testing.assert_allclose(w_p[0], [1.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(w_p[1], np.array([0.7, 25.0]) / np.linalg.norm([0.7, 25.0]), atol=1e-4)
    assert np.isfinite(np.asarray(interpolate(interp, jnp.asarray(random_weights(2, 20, 0), jnp.float32)))).all()


# ----------------------------------------------------------------------------------------------- preferences
def test_subspaces_are_contiguous_slices_of_the_grid():
    full = grid(2, 0.01)
    assert full.shape == (101, 2) and np.allclose(full.sum(1), 1.0)
    sub = SubspaceGrid.make(2, 0.01, 10)
    assert sub.counts.tolist() == [11] + [10] * 9  # np.array_split of 101 points
    parts = np.array_split(full, 10)
    ids = jnp.repeat(jnp.arange(10), 200)
    drawn = np.asarray(sub.sample(jax.random.PRNGKey(0), ids)).reshape(10, 200, 2)
    for s in range(10):
        lo, hi = parts[s][:, 0].min(), parts[s][:, 0].max()
        assert drawn[s, :, 0].min() >= lo - 1e-6 and drawn[s, :, 0].max() <= hi + 1e-6
        assert len(np.unique(drawn[s, :, 0].round(4))) == len(parts[s])  # every point of the sub-space is drawn
    with pytest.raises(ValueError, match="divide 1"):
        grid(2, 0.3)


def test_her_and_key_preference_samplers():
    w = np.asarray(gaussian_preferences(jax.random.PRNGKey(0), 1000, 3, decimals=3))
    assert (w >= 0).all() and np.allclose(w.sum(1), 1.0, atol=2e-3) and np.allclose(w, w.round(3))
    j = np.asarray(jitter_preference(jax.random.PRNGKey(1), jnp.tile(jnp.array([[1.0, 0.0]]), (1000, 1))))
    assert np.allclose(j.sum(1), 1.0, atol=1e-6) and j[:, 1].max() <= 0.05 / 0.95 + 1e-6 and j[:, 1].max() > 0.01


# ----------------------------------------------------------------------------------------------- agents
def test_registration_and_official_defaults():
    d = make_config("pd-morl-discrete")
    assert (
        d.batch_size,
        d.hidden,
        d.num_layers,
        d.learning_rate,
        d.tau,
        d.buffer_size,
        d.weight_num,
        d.epsilon_start,
        d.epsilon_final,
        d.w_step,
        d.num_subspaces,
        d.gamma,
    ) == (32, 256, 4, 3e-4, 0.005, 10_000, 3, 0.8, 0.05, 0.01, 10, 0.99)
    ftn = make_config("pd-morl-discrete", "fruit-tree-v0")
    assert (ftn.hidden, ftn.w_step) == (512, 0.05)
    dst = make_config("pd-morl-discrete", "deep-sea-treasure-v0")
    assert dst.max_episode_steps == 30  # official DST cap
    assert (dst.hidden, dst.num_layers) == (64, 2)  # ours: DST's whole front with 2 x 64 (docs/algorithms/pd-morl.md)
    c = make_config("pd-morl")
    assert (
        c.batch_size,
        c.hidden,
        c.gamma,
        c.policy_freq,
        c.actor_loss_coeff,
        c.w_step,
        c.expl_noise,
        c.policy_noise,
        c.noise_clip,
        c.tau,
        c.weight_num,
    ) == (256, 400, 0.995, 10, 10.0, 0.001, 0.1, 0.2, 0.5, 0.005, 3)
    assert agent_spec("pd-morl").action_kinds == ("continuous",)
    env, _ = morl.make("deep-sea-treasure-v0")
    with pytest.raises(ValueError, match="supports continuous"):
        make_trainer("pd-morl", env)


def test_her_copies_start_after_her_start():
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("pd-morl-discrete", env, params, her_start=5, buffer_size=100)
    n = trainer.num_envs
    items = {
        "obs": jnp.zeros((n, 2), jnp.int32),
        "action": jnp.arange(n, dtype=jnp.int32),
        "reward": jnp.zeros((n, 2)),
        "next_obs": jnp.zeros((n, 2), jnp.int32),
        "terminated": jnp.zeros((n,)),
        "w": jnp.tile(jnp.array([[0.25, 0.75]]), (n, 1)),
    }
    replay = trainer.init(jax.random.PRNGKey(0)).main.replay
    replay = trainer._store(replay, items, jax.random.PRNGKey(1), True, her_start=5)  # size 0: no copies yet
    assert int(replay.size) == n
    replay = trainer._store(replay, items, jax.random.PRNGKey(2), True, her_start=5)  # size 10 > 5: 1 + 3 each
    assert int(replay.size) == n + 4 * n
    new = jax.tree.map(lambda x: np.asarray(x)[n : 5 * n], replay.data)
    np.testing.assert_array_equal(new["action"], np.repeat(np.arange(n), 4))  # each copy follows its original
    np.testing.assert_allclose(new["w"][::4], 0.25 * np.ones((n, 1)) * [1, 3])  # originals keep their preference
    her_w = np.delete(new["w"], np.arange(0, 4 * n, 4), axis=0)
    assert np.allclose(her_w.sum(1), 1.0, atol=2e-3) and not np.allclose(her_w, [0.25, 0.75])


#: CI budget for DST (official: 1M env steps and 1M updates). Key runs: 3 x 5k env steps, inside the budget
#: (budget accounting: total_timesteps covers the key runs). Epsilon starts at 0.3
#: instead of the official 0.8: at 1/30 of the official budget, 0.8 -> 0.05 over the run leaves the agent acting
#: mostly at random, random walks end at the shallow treasures, and the two deepest (23.7, 22.4) were never found
#: (93-95% of the HV with 0.8 at 20-40k steps; seed 0 reaches 99.4% with 0.3). Main run 45k (60k budget): with a
#: 30k main run seeds 0-3 reach 99.4 / 97.9 / 95.3 / 99.4% (seed 0 with XLA_FLAGS=--xla_cpu_max_isa=SSE4_2:
#: 99.8%), seed 2 only 0.3 points above the bound; at 45k seeds 0-4 reach 99.4 / 96.1 / 98.7 / 99.4 / 99.2%. Those
#: figures are the official 4 x 256 network's; the test trains the DST default 2 x 64 (the agent's env defaults),
#: which passes here and reached 100% on seeds 0-2 at 33-39k env steps in experiments/preference_conditioned.py.
DST_CONFIG = dict(total_timesteps=60_000, key_timesteps=5_000, epsilon_start=0.3, steps_per_chunk=250)
DST_TRUE_HV = 360.40


def test_pd_morl_discrete_reaches_95_percent_of_dst_hv_without_the_true_front(monkeypatch):
    env, params = morl.make("deep-sea-treasure-v0")
    true_front = env.pareto_front(0.99)

    def forbidden(*_a, **_k):
        raise AssertionError("PD-MORL read the true Pareto front during training")

    monkeypatch.setattr(type(env), "pareto_front", forbidden)
    trainer = make_trainer("pd-morl-discrete", env, params, **DST_CONFIG)
    state = trainer.init(jax.random.PRNGKey(0))
    logs_by_chunk = []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        logs_by_chunk.append(logs)
    assert trainer.env_steps(state) == DST_CONFIG["total_timesteps"] == 3 * DST_CONFIG["key_timesteps"] + 45_000
    monkeypatch.undo()
    front = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99))
    hv = front.metrics["hypervolume"]
    assert hv >= 0.95 * DST_TRUE_HV, f"HV {hv:.2f} = {hv / DST_TRUE_HV:.1%} of {DST_TRUE_HV}; front {front.front}"
    # the interpolator's key returns are real policy returns, each a point the env can produce
    key_returns = np.asarray(state.interp.returns)
    assert (key_returns[:, 1] < 0).all() and key_returns.shape == (3, 2)
    assert true_front.shape == (10, 2)


#: a small continuous budget (official: 3 x 2M key steps + 10M main steps with 400-unit networks). What it takes to
#: reach the goal at ~1% of that (measured, seed 0, 3 x 30k key + 30k main steps = the 120k budget):
#: - correlated exploration (``noise_correlation`` 0.9, ``expl_noise`` 0.5): i.i.d. noise almost never climbs the hill;
#: - one update per env step (official), critic ``lr`` 1e-3 and ``tau`` 0.02: at 3e-4 / 0.005 the [0.5, 0.5] key run
#:   does not reach the goal within 30k steps and the interpolator then points the uniform preference at pure fuel
#:   (the actor keeps the official 3e-4: at 1e-3 the fuel-only preference jitters around a = 0, fuel -1.5);
#: - angle weights 0.1 (critic) / 1 (actor) instead of 1 / 10: on returns of ~100 the official weights (set for
#:   MuJoCo returns in the thousands) swamp the TD loss and the front stays at 1 point (see the module docstring);
#: - a main-run warm-up of 1,500 correlated random steps per env (half the main budget): with 500, seed 0 still
#:   gives 5 points but seeds 1 and 2 only 2-3 (goal-reaching data is scarce); with 1,500, seeds 0 / 1 / 2 give
#:   6 / 7 / 6 points, HV 949k / 912k / 922k (random policy: ~870k);
#: - gamma 0.99, the evaluation's.
MC_CONFIG = dict(
    total_timesteps=120_000,
    key_timesteps=30_000,
    hidden=64,
    batch_size=64,
    key_batch_size=64,
    start_timesteps=1_500,
    key_start_timesteps=5_000,
    buffer_size=150_000,
    key_buffer_size=30_000,
    policy_freq=2,
    updates_per_step=1.0,
    eval_episodes=1,
    steps_per_chunk=500,
    gamma=0.99,
    lr_actor=3e-4,
    lr_critic=1e-3,
    tau=0.02,
    expl_noise=0.5,
    noise_correlation=0.9,
    critic_angle_coeff=0.1,
    actor_loss_coeff=1.0,
)


# slow (80 s cold): CI keeps PD-MORL's DST result test and the continuous variant's budget test
@pytest.mark.slow
def test_pd_morl_continuous_on_mountain_car_finds_a_front_and_learns_the_fuel_objective():
    """Small-budget check of MO-TD3-HER end to end: preferences that weigh time reach the goal with different fuel
    budgets, fuel-weighted preferences spend (almost) nothing, so the front has >= 3 non-dominated points.

    What holds across trajectories (measured on an AVX-512 Xeon at this budget, seeds 0-4, and seed 0 with
    XLA_FLAGS=--xla_cpu_max_isa=SSE4_2, a different trajectory; AVX2 gave seed 0's default trajectory bit for bit):
    HV 948k / 901k / 939k / 933k / 904k, SSE4_2 935k, against the random policy's 872k; 5 / 4 / 4 / 4 / 4 (SSE4_2: 5)
    front points, of which 4 / 3 / 3 / 3 / 3 (4) reach the goal; the front's least-fuel point spends -0.019 / -0.003
    / -0.008 / -0.011 / -0.004 (-0.27), threshold -1. What does not hold: the fuel-only preference w = [0, 1] alone
    spent -1.57 / -0.003 / -2.70 / -0.093 / -0.11 (-0.43) here and -14.3 on an AMD EPYC (the edge of the preference
    space, where the actor's gradient towards a = 0 vanishes), and >= 2 points reaching the goal within 458 steps
    (time > -99) held on 5 of 6 runs. Doubling the main run to 60k steps does not fix either (seeds 0 / 1 / 2: 3 / 1 /
    3 front points, seed 1 never reaches the goal), so the test asserts the properties that hold, at this budget."""
    from morl.solution import Solution

    env, params = morl.make("mo-mountaincarcontinuous-v0")
    trainer = make_trainer("pd-morl", env, params, **MC_CONFIG)
    state = trainer.init(jax.random.PRNGKey(0))
    phases = []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        phases.append(int(logs["phase"]))
    assert phases[0] == 0 and phases[-1] == 1 and trainer.env_steps(state) == 3 * 30_000 + 30_000
    protocol = EvalProtocol(gamma=0.99, episodes=2, front_weights=20)
    front = evaluate(trainer.solution(state), env, protocol=protocol)

    def random_act(p, w, obs, key):
        return jax.random.uniform(key, (obs.shape[0], 1), minval=-1.0, maxval=1.0)

    random_front = evaluate(Solution(act=random_act, params={}, conditioned=True), env, protocol=protocol)
    assert front.metrics["hypervolume"] > random_front.metrics["hypervolume"], (front.front, random_front.front)
    # >= 3 non-dominated points: policies that never reach the goal all share the 999-step time cost (-99.996), so
    # only the one spending the least fuel is non-dominated; the others must reach the goal (measured: >= 3 of them)
    assert len(front.front) >= 3, front.front
    assert (front.front[:, 0] > -99.99).sum() >= 2, front.front
    # the agent learned the fuel objective: the front's least-fuel policy spends (almost) nothing (random: ~-33;
    # measured worst -0.27, a 3.7x margin)
    assert front.front[:, 1].max() > -1.0, front.front
    # the interpolator was fitted on evaluated key returns (finite, one per key preference)
    assert np.isfinite(np.asarray(state.interp.returns)).all() and state.interp.returns.shape == (3, 2)


# ----------------------------------------------------------------------------------------------- fruit tree
def _exact_fruit_tree_solution(env):
    """A conditioned policy that walks to ``argmax_i w . F_i`` (the fruit index's bits, most significant first, are
    the actions): what a fully trained PD-MORL network would do at every preference."""
    from morl.solution import Solution

    depth = env.depth

    def act(params, w, obs, key):
        wb = jnp.broadcast_to(jnp.asarray(w, jnp.float32), (obs.shape[0], params.shape[1]))
        target = jnp.argmax(wb @ params.T, axis=-1)
        return ((target >> jnp.clip(depth - 1 - obs[:, 0], 0, depth - 1)) & 1).astype(jnp.int32)

    return Solution(act=act, params=jnp.asarray(env.pareto_front(0.99), jnp.float32), conditioned=True)


def test_fruit_tree_hv_of_an_exact_policy_needs_a_preference_grid_not_100_energy_preferences():
    # Why PD-MORL's fruit-tree HV fell while training converged: every depth-6 fruit is the argmax of w . F for some
    # w, but the 100 energy preferences of the MORL-Baselines protocol reach only 43 of the 64 fruits, so an exact
    # policy scores 74.3% of the true HV there; a policy scoring more (80-87% was measured) picks wrong fruits that
    # happen to lie outside those 43. The paper's step-0.1 grid (3,003 preferences) reaches every fruit.
    from morl.evaluate import evaluate_returns
    from morl.metrics import hypervolume
    from morl.weights import equally_spaced_weights

    env, params = morl.make("fruit-tree-v0", depth=6)
    front = env.pareto_front(0.99)
    true_hv = hypervolume(front, env.ref_point)
    assert abs(true_hv - 46_034.80) < 0.01
    solution = _exact_fruit_tree_solution(env)
    hv = {}
    for name, w in {"energy100": equally_spaced_weights(6, 100), "grid0.1": grid(6, 0.1)}.items():
        disc, _, _ = evaluate_returns(solution, env, params, w, episodes=1, gamma=0.99)
        np.testing.assert_allclose(disc, front[np.argmax(w @ front.T, axis=1)], rtol=1e-5)  # exact at every w
        hv[name] = hypervolume(disc, env.ref_point) / true_hv
    assert abs(hv["energy100"] - 0.7426) < 1e-3 and hv["grid0.1"] > 0.9999, hv


def test_the_grid_protocol_evaluates_a_conditioned_policy_on_the_simplex_grid():
    # EvalProtocol(front_grid=0.1): the paper's evaluation grid, 3,003 preferences of one network in one program
    from morl.metrics import hypervolume

    env, params = morl.make("fruit-tree-v0", depth=6)
    true_hv = hypervolume(env.pareto_front(0.99), env.ref_point)
    protocol = EvalProtocol(gamma=0.99, episodes=1, front_grid=0.1)
    assert protocol.front_preferences(6).shape == (3003, 6) and protocol.as_dict()["front_grid"] == 0.1
    assert "front_grid" not in EvalProtocol().as_dict()  # unset: recorded protocols (and their hashes) unchanged
    front = evaluate(_exact_fruit_tree_solution(env), env, params, protocol)
    assert len(front.returns) == 3003 and len(front.front) == 64
    assert abs(front.metrics["hypervolume"] / true_hv - 1.0) < 1e-6
    with pytest.raises(ValueError, match="front_grid"):
        EvalProtocol(front_grid=0.3)


# ----------------------------------------------------------------------------------------------- seeds in one program
def _vmapped_and_single(trainer, seeds):
    """Each seed trained alone, and all seeds as the run driver trains them (``jit(vmap(init))``,
    ``jit(vmap(update))`` until the first seed is done): (single-seed states, vmapped state, chunks of each)."""
    singles, chunks = [], []
    for s in seeds:
        state, n = trainer.init(jax.random.PRNGKey(s)), 0
        while not trainer.done(state):
            state, _ = trainer.update(state)
            n += 1
        singles.append(state)
        chunks.append(n)
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))
    state, n = vinit(jnp.stack([jax.random.PRNGKey(s) for s in seeds])), 0
    while not trainer.done(jax.tree.map(lambda x: x[0], state)):
        state, logs = vupdate(state)
        n += 1
    return singles, state, chunks + [n], logs


def assert_seed_matches(single, vmapped, i):
    """Integer leaves (steps, replay heads, stored observations and actions, phase) equal; float leaves equal up
    to float32 rounding. XLA's batched kernels sum in another order than the one-seed kernels (measured on tiny
    networks: |diff| <= 1e-7 after 1k transitions), so bit-equality is not what vmap gives; equal integer
    leaves show that every action and minibatch index was the same."""
    ours = jax.tree.leaves(jax.tree.map(lambda x: x[i], vmapped))
    for a, b in zip(jax.tree.leaves(single), ours, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(b, a)


def test_pd_morl_discrete_seeds_in_one_program_match_their_single_seed_runs():
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = dict(
        total_timesteps=3 * 200 + 400,
        key_timesteps=200,
        hidden=16,
        num_layers=2,
        buffer_size=2000,
        steps_per_chunk=20,
        batch_size=16,
    )
    trainer = make_trainer("pd-morl-discrete", env, params, **cfg)
    assert trainer.vmappable
    singles, vmapped, chunks, logs = _vmapped_and_single(trainer, [0, 1])
    assert chunks == [3, 3, 3] and np.asarray(vmapped.phase).tolist() == [1, 1]  # 1 key chunk, 2 main chunks
    assert np.isnan(np.asarray(logs["key0_utility"])).all() and np.asarray(logs["updates"]).min() > 0  # main-run logs
    for i, single in enumerate(singles):
        assert_seed_matches(single, vmapped, i)
