"""Multi-objective bandits: exact Pareto sets and gaps, Pareto UCB1 against an independent numpy simulation, regret
growth (logarithmic for the UCB-type algorithms, linear for a uniform policy), determinism, vmap over instances,
the env view, the metrics, and the `morl bandit` command end to end.

Compiles are shared: one jitted `simulate_runs` per (algorithm, shape), small horizons and run counts."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
from morl import bandits as MB
from morl.agents import bandits as AB
from morl.envs import bandits as EB
from morl.store import Store

SIM = jax.jit(AB.simulate_runs, static_argnums=(0, 5))
Z = 4.0  # two-sided normal tail 6e-5: a false alarm in about one CI run in 16,000 per comparison


# ---------------------------------------------------------------------------------------- Pareto set and gaps
def _dominated_by(a: np.ndarray, b: np.ndarray) -> bool:
    """b dominates a: b >= a in every objective and > in one (plain Python)."""
    return all(y >= x for x, y in zip(a, b)) and any(y > x for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(12))
def test_pareto_set_and_gaps_match_the_definition(seed):
    rng = np.random.default_rng(seed)
    k, m = int(rng.integers(2, 12)), int(rng.integers(1, 5))
    means = np.round(rng.uniform(0, 1, (k, m)), 1)  # rounding makes ties and duplicate arms
    mask = EB.pareto_mask(means)
    ref = [not any(_dominated_by(means[i], means[j]) for j in range(k)) for i in range(k)]
    assert mask.tolist() == ref
    assert np.asarray(EB.pareto_mask_jax(jnp.asarray(means, jnp.float32))).tolist() == ref
    gaps = EB.pareto_gaps(means)
    assert (gaps[mask] == 0).all()
    # a positive gap needs an arm better in every objective; an arm dominated with a tie somewhere has gap 0
    strictly = [any((means[j] > means[i]).all() for j in range(k)) for i in range(k)]
    assert (gaps > 0).tolist() == strictly
    for i in range(k):  # the gap is the infimum: just above it mu_i + eps is undominated, just below it is dominated
        above = means[i] + gaps[i] + 1e-9
        assert not any(_dominated_by(above, means[j]) for j in range(k))
        if gaps[i] > 0:
            below = means[i] + gaps[i] - 1e-9
            assert any(_dominated_by(below, means[j]) for j in range(k))


def test_classic_instances():
    dn = EB.get_instance("bandit-drugan-nowe-20-v0")
    assert dn.num_arms == 20 and dn.pareto.sum() == 4
    assert sorted(map(tuple, dn.means[dn.pareto])) == [(0.5, 0.57), (0.52, 0.54), (0.53, 0.51), (0.55, 0.5)]
    six = EB.get_instance("drugan-nowe-6")
    np.testing.assert_allclose(six.gaps, [0, 0, 0, 0, 0.01, 0.02], atol=1e-12)
    ids = morl.list_envs()
    for name in EB.INSTANCES:
        assert EB.env_id(name) in ids


def test_env_view_samples_the_instance():
    env, params = morl.make("bandit-gaussian-3obj-v0")
    inst = env.instance
    np.testing.assert_array_equal(env.pareto_front(), inst.means[inst.pareto])
    _, st = env.reset(jax.random.key(0), params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    n = 20_000
    _, _, r, term, _, _ = step(jax.random.split(jax.random.key(1), n), st, jnp.int32(4), params)
    r = np.asarray(r, np.float64)
    assert r.shape == (n, 3) and np.asarray(term).all()
    se = r.std(0) / np.sqrt(n)
    assert (np.abs(r.mean(0) - inst.means[4]) < Z * se).all()
    cov = inst.scale_tril[4] @ inst.scale_tril[4].T
    np.testing.assert_allclose(np.cov(r.T), cov, atol=0.004)  # sd of a covariance entry here: ~0.0005
    env2, p2 = morl.make("bandit-two-arm-v0")
    _, _, r2, *_ = jax.vmap(env2.step, in_axes=(0, None, None, None))(
        jax.random.split(jax.random.key(2), n), st, jnp.int32(0), p2
    )
    r2 = np.asarray(r2)
    assert set(np.unique(r2)) <= {0.0, 1.0}
    assert (np.abs(r2.mean(0) - [0.7, 0.6]) < Z * np.sqrt(0.25 / n)).all()


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_by_hand():
    inst = EB.BanditInstance("t", "bernoulli", np.array([[0.8, 0.3], [0.3, 0.8], [0.3, 0.1]]), np.zeros((3, 2, 2)))
    counts = np.array([[[3, 1, 0], [6, 2, 4]]])  # [R=1, J=2, K=3]
    sums = np.zeros((1, 2, 3, 2))
    sums[0, 1] = [[4.8, 1.8], [0.6, 1.6], [2.0, 2.0]]  # means (0.8,.3), (.3,.8), (.5,.5)
    sums[0, 0, :2] = [[2.4, 0.9], [0.3, 0.8]]
    got = MB.metrics_from_counts(counts, sums, inst)
    np.testing.assert_allclose(got["pareto_regret"], [[0.0, 4 * 0.2]])
    np.testing.assert_allclose(got["unfairness"], [[0.5, 0.5]])  # std/mean of (3, 1) and of (6, 2)
    w = MB.eval_weights(2)
    scal = inst.means @ w.T
    np.testing.assert_allclose(got["scalarized_regret"][0, 1], counts[0, 1] @ (scal.max(0) - scal))
    # at j=1 the empirical means make arm 2 look Pareto optimal: one misclassified arm; at j=0 arm 2 is unpulled
    np.testing.assert_array_equal(got["front_error"], [[0.0, 1.0]])


# ---------------------------------------------------------------------------------------- Pareto UCB1 vs numpy
def _numpy_pareto_ucb1(means: np.ndarray, horizon: int, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Pareto UCB1 written independently in numpy (loop over pulls, runs side by side): pulls per arm [runs, K]."""
    k, m = means.shape
    n_star = int(EB.pareto_mask(means).sum())
    counts = np.zeros((runs, k))
    sums = np.zeros((runs, k, m))
    for t in range(horizon):
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(2 * np.log(max(t, 1) * (m * n_star) ** 0.25) / counts)
            ucb = np.where(counts[..., None] > 0, sums / counts[..., None] + bonus[..., None], np.inf)
        optimal = np.ones((runs, k), bool)
        for i in range(k):
            for j in range(k):
                dom = (ucb[:, j] >= ucb[:, i]).all(-1) & (ucb[:, j] > ucb[:, i]).any(-1)
                optimal[:, i] &= ~dom
        u = np.where(optimal, rng.random((runs, k)), -1.0)
        arm = u.argmax(1)
        reward = (rng.random((runs, m)) < means[arm]).astype(float)
        counts[np.arange(runs), arm] += 1
        sums[np.arange(runs), arm] += reward
    return counts


def test_pareto_ucb1_regret_matches_an_independent_numpy_simulation():
    """Mean Pareto regret at T of 2,000 JAX runs and 2,000 numpy runs agree within Z = 4 standard errors of their
    difference (sqrt(se_jax^2 + se_numpy^2)); the runs are independent, so the difference is ~ N(0, se^2)."""
    inst = EB.get_instance("two-arm")
    horizon, runs = 300, 2000
    counts, _ = SIM(
        AB.ParetoUCB1(), jax.random.key(7), inst.params(), horizon, jnp.asarray(AB.log_checkpoints(horizon, 8)), runs
    )
    reg_jax = np.asarray(counts[:, -1], np.float64) @ inst.gaps
    reg_np = _numpy_pareto_ucb1(inst.means, horizon, runs, np.random.default_rng(123)) @ inst.gaps
    se = np.sqrt(reg_jax.var(ddof=1) / runs + reg_np.var(ddof=1) / runs)
    assert abs(reg_jax.mean() - reg_np.mean()) < Z * se, (reg_jax.mean(), reg_np.mean(), se)
    assert reg_jax.mean() < 0.7 * horizon * inst.gaps.mean()  # and it learns: uniform play would cost T * mean gap


def test_pareto_thompson_sampling_learns():
    """Bernoulli Pareto TS (Beta posteriors) on the same 2-arm instance and shapes: far below uniform play, and
    below Pareto UCB1, whose confidence bonus explores more (4 standard errors of the difference)."""
    inst = EB.get_instance("two-arm")
    cps = jnp.asarray(AB.log_checkpoints(300, 8))
    ts, _ = SIM(AB.ParetoThompson(), jax.random.key(7), inst.params(), 300, cps, 2000)
    ucb, _ = SIM(AB.ParetoUCB1(), jax.random.key(7), inst.params(), 300, cps, 2000)
    reg_ts = np.asarray(ts[:, -1], np.float64) @ inst.gaps
    reg_ucb = np.asarray(ucb[:, -1], np.float64) @ inst.gaps
    se = np.sqrt(reg_ts.var(ddof=1) / 2000 + reg_ucb.var(ddof=1) / 2000)
    assert reg_ts.mean() + Z * se < reg_ucb.mean()
    assert reg_ts.mean() < 0.3 * 300 * inst.gaps.mean()


# ---------------------------------------------------------------------------------------- regret growth
# two Pareto arms and two dominated ones with gaps 0.5 and 0.55: large enough that UCB1 leaves its transient
# (every scalarisation's own initial round robin included) well before T
GROWTH = EB.BanditInstance(
    "growth", "bernoulli", np.array([[0.9, 0.6], [0.6, 0.9], [0.1, 0.1], [0.2, 0.05]]), np.zeros((4, 2, 2))
)
T_GROWTH, R_GROWTH = 2**15, 32
CPS = jnp.asarray(2 ** np.arange(16), jnp.int32)  # 1, 2, 4, ..., 2^15


def _regret_curve(algo) -> np.ndarray:
    counts, _ = SIM(algo, jax.random.key(3), GROWTH.params(), T_GROWTH, CPS, R_GROWTH)
    return np.asarray(counts, np.float64) @ GROWTH.gaps  # [R, J]


def _slope_bound(algo) -> float:
    """d E[regret] / d log T from the UCB1 analysis (Auer et al. 2002): a dominated arm i is pulled at most
    8 log T / d^2 + O(1) times, d its gap in the index UCB1 ranks by. Pareto UCB1: d = the Pareto gap, so the slope
    is at most sum_i 8 / gap_i. Scalarised UCB1: scalarisation s runs UCB1 on its rounds (log of them = log T -
    log S), d = its scalarised gap delta_si, so the slope is at most sum_s sum_i 8 gap_i / delta_si^2."""
    gaps = GROWTH.gaps
    dom = gaps > 0
    if isinstance(algo, AB.ParetoUCB1):
        return float((8 / gaps[dom]).sum())
    p = GROWTH.params()
    w = jnp.asarray(algo.weights(2))
    f = np.asarray(jax.vmap(lambda wi: algo.scalarize(wi, p.means, p))(w), np.float64)  # [S, K]
    delta = f.max(1, keepdims=True) - f
    return float((8 * gaps[dom] / delta[:, dom] ** 2).sum())


@pytest.mark.parametrize(
    "algo", [AB.ParetoUCB1(), AB.ScalarizedUCB1("linear"), AB.ScalarizedUCB1("chebyshev")], ids=lambda a: a.name
)
def test_ucb_regret_grows_logarithmically(algo):
    reg = _regret_curve(algo).mean(0)
    late = (reg[15] - reg[12]) / np.log(8)  # slope of regret vs log t between T/8 and T
    assert late <= _slope_bound(algo)
    # logarithmic, not linear: the last three doublings add about what the three before them added (linear: 8x)
    assert (reg[15] - reg[12]) < 2.0 * (reg[12] - reg[9])
    uniform_late = (T_GROWTH - T_GROWTH / 8) * GROWTH.gaps.mean() / np.log(8)
    assert late < 0.25 * uniform_late


def test_uniform_regret_is_linear():
    reg = _regret_curve(AB.Uniform())
    t = np.asarray(CPS, np.float64)
    mean, se = reg.mean(0), reg.std(0, ddof=1) / np.sqrt(R_GROWTH)
    expect = t * GROWTH.gaps.mean()  # E[regret(t)] = t * mean gap, exactly
    assert (np.abs(mean - expect)[4:] < Z * se[4:]).all()
    assert (reg[:, 15] - reg[:, 12]).mean() > 6.0 * (reg[:, 12] - reg[:, 9]).mean()


def test_exp3_regret_is_within_its_adversarial_bound():
    """EXP3 with gamma tuned for T has expected regret at most 2 sqrt(e - 1) sqrt(T K ln K) < 2.63 sqrt(T K ln K)
    on rewards in [0, 1] (Auer et al. 2002, Corollary 3.2); Pareto regret is at most the equal-weight scalarised
    regret it is run on, and Bernoulli rewards need no rescaling, so the same bound holds for Pareto regret."""
    reg = _regret_curve(AB.ScalarizedEXP3())
    k = GROWTH.num_arms
    bound = 2.63 * np.sqrt(T_GROWTH * k * np.log(k))
    assert reg[:, 15].mean() <= bound
    assert reg[:, 15].mean() < 0.2 * T_GROWTH * GROWTH.gaps.mean()  # far below uniform play


# ---------------------------------------------------------------------------------------- determinism, vmap, chunking
def test_same_seed_same_curves_and_chunking_does_not_matter():
    inst = EB.get_instance("two-arm")
    cps = AB.log_checkpoints(300, 8)
    a = SIM(AB.ParetoUCB1(), jax.random.key(7), inst.params(), 300, jnp.asarray(cps), 2000)
    b = SIM(AB.ParetoUCB1(), jax.random.key(7), inst.params(), 300, jnp.asarray(cps), 2000)
    c = SIM(AB.ParetoUCB1(), jax.random.key(8), inst.params(), 300, jnp.asarray(cps), 2000)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    # the command's chunked driver (one jitted segment per checkpoint) gives the same numbers bit for bit
    res = MB.run_experiment("pareto-ucb1", "bandit-two-arm-v0", 300, 16, seed=5, points=8)
    one = SIM(AB.ParetoUCB1(), jax.random.key(5), inst.params(), 300, jnp.asarray(res.checkpoints), 16)
    np.testing.assert_array_equal(res.counts, np.asarray(one[0]))
    np.testing.assert_array_equal(res.sums, np.asarray(one[1]))
    again = MB.run_experiment("pareto-ucb1", "two-arm", 300, 16, seed=5, points=8)
    np.testing.assert_array_equal(again.metrics["pareto_regret"], res.metrics["pareto_regret"])


def test_vmap_over_instances_equals_one_instance_at_a_time():
    insts = [EB.random_instance(s, 3, 2, "gaussian") for s in (0, 1)]
    stacked = EB.stack_params([i.params() for i in insts])
    cps = jnp.asarray(AB.log_checkpoints(64, 4))
    algo = AB.ParetoThompson()
    counts, sums = jax.jit(AB.simulate_instances, static_argnums=(0, 5))(algo, jax.random.key(1), stacked, 64, cps, 4)
    assert counts.shape == (2, 4, len(cps), 3) and (np.asarray(counts[..., -1, :]).sum(-1) == 64).all()
    for i, inst in enumerate(insts):
        c1, s1 = jax.jit(AB.simulate_runs, static_argnums=(0, 5))(
            algo, jax.random.fold_in(jax.random.key(1), i), inst.params(), 64, cps, 4
        )
        np.testing.assert_array_equal(np.asarray(counts[i]), np.asarray(c1))
        np.testing.assert_allclose(np.asarray(sums[i]), np.asarray(s1), rtol=1e-6)


# ---------------------------------------------------------------------------------------- the command
def test_command_run_board_plot(tmp_path, capsys):
    from morl.cli import main

    d = str(tmp_path / "b")
    for algo in ("pareto-ucb1", "uniform"):
        assert (
            main(
                [
                    "bandit",
                    "run",
                    algo,
                    "--instance",
                    "two-arm",
                    "--horizon",
                    "300",
                    "--runs",
                    "16",
                    "--points",
                    "8",
                    "--runs-dir",
                    d,
                ]
            )
            == 0
        )
    out = capsys.readouterr().out
    assert "Pareto regret" in out and "pulls/s" in out
    folders = sorted(p for p in (tmp_path / "b").iterdir() if p.is_dir())
    assert len(folders) == 2
    for f in folders:
        assert {"config.json", "curves.csv", "final.csv", "result.json"} <= {p.name for p in f.iterdir()}
        res = json.loads((f / "result.json").read_text())
        assert res["protocol"] == {"kind": "bandit", "horizon": 300, "runs": 16}
    rows = Store(tmp_path / "b" / "results.sqlite").runs()
    assert sorted(r["agent"] for r in rows) == ["pareto-ucb1", "uniform"]
    assert {r["env"] for r in rows} == {"bandit-two-arm-v0"}
    assert main(["bandit", "board", "--runs-dir", d]) == 0
    md = (tmp_path / "b" / "leaderboard.md").read_text()
    assert "## bandit-two-arm-v0, T = 300" in md and md.index("| pareto-ucb1") < md.index("| uniform")
    assert main(["bandit", "plot", "--runs-dir", d, "--out", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert main(["plot", str(folders[0]), "--out", str(tmp_path / "one.png")]) == 0  # `morl plot` of a bandit run
    assert (tmp_path / "one.png").stat().st_size > 1000
    for sub in ("run", "board", "plot", "list"):
        assert main(["bandit", sub, "--help"]) == 0
    assert main(["bandit", "list"]) == 0 and "bandit-drugan-nowe-20-v0" in capsys.readouterr().out
    assert main(["bandit", "run", "nope", "--instance", "two-arm", "--runs-dir", d]) == 2
    assert main(["bandit", "run", "uniform", "--instance", "nope", "--runs-dir", d]) == 2
