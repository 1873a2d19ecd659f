"""MORL/D: scalarisation and PSA against hand-computed values, the device Pareto archive, and learning.

Learning test: the DQN inner learner on deep-sea-treasure-v0 must reach >= 95% of the true front's hypervolume
(360.40 at gamma 0.99, reference point (0, -25); docs/sources.md), evaluated by the library's
evaluator (not the agent's own numbers). The trained trainer is shared (one compile) by the tests that inspect it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401
from morl import metrics as morl_metrics
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents import replay as rb
from morl.agents.scalarization import (
    Scalarization,
    dominated_by,
    initial_utopia,
    neighbourhoods,
    psa_weights,
    tchebycheff,
    update_utopia,
    weighted_sum,
)
from morl.evaluate import EvalProtocol, evaluate
from morl.pareto import Archive, archive_insert, crowding_distance, crowding_distance_jax, non_dominated
from morl.weights import equally_spaced_weights

DST_TRUE_HV = 360.40094637581575  # MO-Gymnasium's front at gamma 0.99, ref (0, -25) (docs/sources.md)


# =============================================================================================== scalarisation
def test_weighted_sum_and_tchebycheff_hand_computed():
    w = jnp.array([0.3, 0.7])
    assert float(weighted_sum(w, jnp.array([2.0, 1.0]))) == pytest.approx(0.3 * 2 + 0.7 * 1)
    # w * |v - z| = [0.3 * 2, 0.7 * 2] = [0.6, 1.4] -> -1.4
    assert float(tchebycheff(w, jnp.array([2.0, 1.0]), jnp.array([4.0, 3.0]))) == pytest.approx(-1.4)
    # batched over leading axes
    v = jnp.array([[2.0, 1.0], [4.0, 3.0], [3.0, 0.0]])
    np.testing.assert_allclose(tchebycheff(w, v, jnp.array([4.0, 3.0])), [-1.4, 0.0, -2.1], rtol=1e-6)


def test_utopia_point_is_adapted_online_as_morl_baselines():
    z = initial_utopia(2)
    assert np.all(np.isneginf(np.asarray(z)))
    z = update_utopia(z, jnp.array([[1.0, 5.0], [3.0, 2.0]]), tau=0.5)  # best seen + tau
    np.testing.assert_allclose(z, [3.5, 5.5])
    z = update_utopia(z, jnp.array([4.0, 0.0]), tau=0.5)  # only the first objective moves
    np.testing.assert_allclose(z, [4.5, 5.5])
    tch = Scalarization("tch", tau=0.5)
    w = jnp.array([0.3, 0.7])
    # an existing utopia point that already covers v is kept: -1.4 as above
    assert float(tch(w, jnp.array([2.0, 1.0]), jnp.array([4.0, 3.0]))) == pytest.approx(-1.4)
    # from -inf the closure first moves z to v + tau: w * |v - z| = [0.15, 0.35] -> -0.35
    assert float(tch(w, jnp.array([2.0, 1.0]), initial_utopia(2))) == pytest.approx(-0.35)
    assert float(Scalarization("ws")(w, jnp.array([2.0, 1.0]))) == pytest.approx(1.3)
    with pytest.raises(ValueError, match="'ws'.*'tch'"):
        Scalarization("chebyshev")


def test_psa_weight_adaptation_hand_computed():
    weights = jnp.array([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    evals = jnp.array([[2.0, 1.0], [1.0, 3.0], [3.0, 0.5]])
    archive = jnp.array([[2.0, 1.0], [1.0, 3.0], [3.0, 0.5], [2.05, 1.0], [0.0, 0.0]])
    valid = jnp.array([True, True, True, True, False])
    new = np.asarray(psa_weights(weights, evals, archive, valid, delta=0.1))
    # member 0: squared distances 0, 5, 1.25, 0.0025 (<= 0.01: skipped) -> closest (3, 0.5);
    # worse in objective 0 (divide by 1.1), better in objective 1 (multiply by 1.1), then L1-normalise
    a, b = 0.5 / 1.1, 0.5 * 1.1
    np.testing.assert_allclose(new[0], [a / (a + b), b / (a + b)], rtol=1e-6)
    np.testing.assert_allclose(new[0], [0.452489, 0.547511], atol=1e-6)
    # member 1: closest other point (2, 1) at 5 (vs 5.1025 and 10.25): worse in 0, better in 1
    a, b = 0.2 / 1.1, 0.8 * 1.1
    np.testing.assert_allclose(new[1], [a / (a + b), b / (a + b)], rtol=1e-6)
    # member 2: closest (2.05, 1) at 1.1025 + 0.25: better in 0, worse in 1; the padded row (0, 0) is ignored
    a, b = 0.6 * 1.1, 0.4 / 1.1
    np.testing.assert_allclose(new[2], [a / (a + b), b / (a + b)], rtol=1e-6)
    # ties (equal objective) count as "at least as good": multiply
    tie = psa_weights(jnp.array([[0.5, 0.5]]), jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 1.0]]), jnp.array([True]))
    np.testing.assert_allclose(tie, [[0.5, 0.5]], rtol=1e-6)
    # no archive point farther than the threshold: the weight only gets renormalised
    kept = psa_weights(jnp.array([[0.25, 0.25]]), jnp.array([[1.0, 1.0]]), archive, jnp.zeros(5, bool))
    np.testing.assert_allclose(kept, [[0.5, 0.5]])


def test_psa_leaves_members_the_archive_dominates_where_they_are():
    """A minecart member whose greedy policy never drives home (fuel about -219 over the 1,000-step cap) is no
    trade-off: plain PSA compares it with its closest archive point and shifts its weight to the objective where it
    merely ties (ore 2 = 0), round after round; with ``skip_dominated`` it keeps its weight, and non-dominated
    members move as before."""
    weights = jnp.array([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0], [0.25, 0.75, 0.0]])
    evals = jnp.array([[0.0, 0.0, -219.4], [0.0, 0.0, -0.26], [0.6, 0.9, -1.3]])
    archive = jnp.array([[1.5, 0.0, -1.34], [0.0, 0.0, -0.26], [0.6, 0.9, -1.3], [0.0, 1.5, -1.0]])
    valid = jnp.array([True, True, True, False])
    plain = np.asarray(psa_weights(weights, evals, archive, valid, delta=0.1))
    kept = np.asarray(psa_weights(weights, evals, archive, valid, delta=0.1, skip_dominated=True))
    # member 0: closest point (1.5, 0, -1.34): worse in ore 1 and fuel (divide), tied in ore 2 (multiply)
    a, b, c = 0.5 / 1.1, 0.25 * 1.1, 0.25 / 1.1
    np.testing.assert_allclose(plain[0], np.array([a, b, c]) / (a + b + c), rtol=1e-6)
    np.testing.assert_allclose(kept[0], [0.5, 0.25, 0.25])
    # members 1 and 2 are archive points (not dominated): both variants move them alike
    np.testing.assert_allclose(kept[1:], plain[1:], rtol=1e-6)
    assert not np.allclose(plain[2], weights[2])
    np.testing.assert_array_equal(np.asarray(dominated_by(evals, archive, valid)), [True, False, False])
    # the padded row would dominate (0, 1, -2) but is not a real archive point
    assert not bool(dominated_by(jnp.array([[0.0, 1.0, -2.0]]), archive, valid)[0])


def test_neighbourhoods_by_squared_distance():
    w = jnp.array([[0.0, 1.0], [0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_array_equal(neighbourhoods(w, 1), [[1], [0], [1], [2]])
    np.testing.assert_array_equal(neighbourhoods(w, 2)[0], [1, 2])
    with pytest.raises(ValueError, match="neighbourhood size"):
        neighbourhoods(w, 4)


# =============================================================================================== archive
def test_archive_keeps_non_dominated_first_occurrence_and_its_policy():
    arch = Archive.empty(4, 2, {"p": jnp.zeros(3)})
    pts = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    arch = archive_insert(arch, pts, jnp.full((3, 2), 0.5), {"p": jnp.arange(9.0).reshape(3, 3)})
    assert int(arch.valid.sum()) == 3
    # a duplicate of an archived point is dropped (the archived one, with its policy, stays), a dominated one too
    arch = archive_insert(
        arch, jnp.array([[0.5, 0.5], [0.2, 0.2], [0.6, 0.6]]), jnp.zeros((3, 2)), {"p": jnp.full((3, 3), -1.0)}
    )
    got = np.asarray(arch.returns)[np.asarray(arch.valid)]
    np.testing.assert_allclose(got, [[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]])
    np.testing.assert_allclose(np.asarray(arch.policy["p"])[:2], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_allclose(np.asarray(arch.policy["p"])[2], [-1, -1, -1])
    # NaN candidates (an evaluation that blew up) never enter
    arch2 = archive_insert(arch, jnp.array([[jnp.nan, 9.0]]), jnp.zeros((1, 2)), {"p": jnp.zeros((1, 3))})
    assert int(arch2.valid.sum()) == 3


def test_archive_overflow_drops_the_most_crowded_point():
    pts = np.array([[0.0, 3.0], [1.0, 2.0], [1.5, 1.4], [3.0, 0.0]])
    cd = np.asarray(crowding_distance_jax(jnp.asarray(pts), jnp.ones(4, bool)))
    np.testing.assert_allclose(cd, crowding_distance(pts))  # same as the host NSGA-II distance
    # (1, 2): 1.5/3 + 1.6/3 = 1.033 < (1.5, 1.4): 2/3 + 2/3 -> (1, 2) goes
    arch = archive_insert(
        Archive.empty(3, 2, {"p": jnp.zeros(())}), jnp.asarray(pts), jnp.zeros((4, 2)), {"p": jnp.arange(4.0)}
    )
    np.testing.assert_allclose(np.asarray(arch.returns), pts[[0, 2, 3]])
    np.testing.assert_allclose(np.asarray(arch.policy["p"]), [0.0, 2.0, 3.0])


# =============================================================================================== config
def test_registered_with_documented_defaults_and_clear_errors():
    spec = agent_spec("morld")
    cfg = spec.config_cls()
    # MORL-Baselines' MORLD / MOSAC defaults
    assert (cfg.pop_size, cfg.gamma, cfg.exchange_every, cfg.neighborhood_size, cfg.update_passes) == (
        6,
        0.995,
        40_000,
        1,
        10,
    )
    assert (cfg.scalarization, cfg.weight_init, cfg.batch_size, cfg.tau, cfg.q_lr, cfg.policy_lr) == (
        "ws",
        "uniform",
        128,
        0.005,
        1e-3,
        3e-4,
    )
    for bad, match in [
        (dict(scalarization="pbi"), "scalarization"),
        (dict(transfer="all"), "transfer"),
        (dict(neighborhood_size=6), "neighborhood_size"),
        (dict(weight_adaptation="moead"), "weight_adaptation"),
    ]:
        with pytest.raises(ValueError, match=match):
            spec.config_cls(**bad)
    with pytest.raises(ValueError, match="pop_size >= 3"):
        make_trainer("morld", morl.make("resource-gathering-v0")[0], config=spec.config_cls(pop_size=2))


# =============================================================================================== learning (DQN)
#: seeds trained together (one vmapped program, as `morl train --seeds 0-2` runs them)
DST_SEEDS = (0, 1, 2)


@functools.lru_cache(maxsize=2)
def trained_dst_seeds(seeds: tuple[int, ...] = DST_SEEDS):
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("morld", env, params, config=make_config("morld", "deep-sea-treasure-v0"))
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))
    states = vinit(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)))
    seed_state = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    while not trainer.done(seed_state(states, 0)):
        states, logs = vupdate(states)
    return env, params, trainer, [seed_state(states, i) for i in range(len(seeds))], seed_state(logs, 0)


def trained_dst():
    """Seed 0 at the DST defaults' full budget (one seed: CI checks the budget, archive and weights on it; the
    slow result test trains all of DST_SEEDS)."""
    env, params, trainer, states, logs = trained_dst_seeds((DST_SEEDS[0],))
    return env, params, trainer, states[0], logs


# slow (110 s with a cold compile cache, the longest test): CI keeps MORL/D's minecart result test and its hand checks
@pytest.mark.slow
def test_dst_dqn_reaches_95_percent_of_the_true_hypervolume():
    """Mean over 3 seeds >= 95% of the true HV, every seed >= 90%. Why a mean and not one seed: measured,
    seeds 0-4 reach HV 356.1 / 358.4 / 355.0 / 360.4 / 358.4 = 98.5-100% of the true front, seed 0 with
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 356.1, seed 1 with SSE4_2 358.4, but seed 0 with SSE4_2 341.1 (94.6%: one
    treasure short, and still at 300k steps, so not a budget question). A run is a draw from that spread (another
    CPU's float kernels give another trajectory); one missing treasure costs ~5.4 points, so the mean of 3 stays
    >= 95% unless two seeds each miss a treasure and the third is short too, and >= 90% bounds any single seed
    below by one missing treasure with margin. The mean over seeds is what MORL papers report."""
    env, params, trainer, states, _ = trained_dst_seeds()
    true = env.pareto_front(0.99)
    fractions = []
    for state in states:
        front = evaluate(trainer.solution(state), env, params, EvalProtocol(gamma=0.99, episodes=1))
        fractions.append(front.metrics["hypervolume"] / DST_TRUE_HV)
        # every point the evaluator found is a true Pareto point of DST (deterministic env)
        for p in front.front:
            assert np.min(np.abs(true - p).max(axis=1)) < 1e-3, p
    print(f"MORL/D DST seeds {DST_SEEDS}: HV fractions {np.round(fractions, 4)}")
    assert np.mean(fractions) >= 0.95, fractions
    assert min(fractions) >= 0.90, fractions


def test_dst_budget_archive_and_weights():
    env, params, trainer, state, logs = trained_dst()
    cfg = trainer.config
    assert trainer.env_steps(state) >= cfg.total_timesteps
    assert trainer.env_steps(state) < cfg.total_timesteps + cfg.pop_size * cfg.exchange_every
    assert int(logs["rounds"]) == int(state.rounds) and int(state.rounds) >= 2
    # the archive is non-dominated and holds a policy per point
    front = trainer.front(state)
    from morl.pareto import non_dominated

    assert len(non_dominated(front)) == len(front) >= 5
    assert jax.tree.leaves(trainer.solution(state).params)[0].shape[0] == len(front)
    # PSA moved some weights and they stay on the simplex
    w = np.asarray(state.weights)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    assert (w >= 0).all() and not np.allclose(w, trainer.init_weights)


# =============================================================================================== normalisation
def test_reward_normalisation_reaches_the_learners():
    """With normalize_rewards=True the batch every learner trains on is the raw reward divided by the running
    std of the discounted return (MORL-Baselines normalises a wrapper its policies never see, §4.4)."""
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = make_config(
        "morld",
        "deep-sea-treasure-v0",
        normalize_rewards=True,
        pop_size=3,
        exchange_every=200,
        total_timesteps=600,
        learning_starts=100,
        net_arch=(16,),
        buffer_size=1000,
        update_passes=0,
    )
    trainer = make_trainer("morld", env, params, config=cfg)
    state, _ = trainer.update(trainer.init(jax.random.PRNGKey(1)))
    scale = np.asarray(trainer.reward_scale(state))
    assert np.all(scale > 0) and not np.allclose(scale, 1.0)
    key = jax.random.PRNGKey(2)
    batch = trainer.learner_batch(state, key)
    raw, _ = jax.vmap(lambda k: rb.sample(state.replay, k, cfg.batch_size))(jax.random.split(key, cfg.pop_size))
    np.testing.assert_allclose(np.asarray(batch["reward"]), np.asarray(raw["reward"]) / scale, rtol=1e-6)
    # and the switch reproduces MORL-Baselines (raw rewards)
    off = make_trainer(
        "morld", env, params, config=make_config("morld", "deep-sea-treasure-v0", normalize_rewards=False, pop_size=3)
    )
    np.testing.assert_array_equal(np.asarray(off.reward_scale(off.init(jax.random.PRNGKey(0)))), [1.0, 1.0])


# =============================================================================================== transfer
def _flat(tree, i) -> np.ndarray:
    """Member ``i``'s parameters as one vector."""
    return np.concatenate([np.asarray(x[i]).ravel() for x in jax.tree.leaves(tree)])


def _tiny_dst(**over):
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = make_config("morld", "deep-sea-treasure-v0", **{**TINY, **over})
    return env, params, make_trainer("morld", env, params, config=cfg)


TINY = dict(
    pop_size=3,
    exchange_every=200,
    total_timesteps=600,
    learning_starts=100,
    net_arch=(16,),
    buffer_size=1000,
    update_passes=0,
)


def test_transfer_first_round_copies_the_lower_neighbour_and_improvement_adopts_better_ones():
    env, params, trainer = _tiny_dst(transfer="first_round", neighborhood_size=1)
    state0 = trainer.init(jax.random.PRNGKey(3))
    state1, _ = trainer.update(state0)
    nb = np.asarray(state1.neighbours)[:, 0]
    leaf = lambda i: _flat(state1.learner.q, i)  # noqa: E731
    copied = [n for n in range(3) if nb[n] < n]
    assert copied, nb
    for n in copied:
        np.testing.assert_array_equal(leaf(n), leaf(nb[n]))  # networks copied ...
        assert int(jax.tree.leaves(state1.learner.opt)[0][n]) == 0  # ... and Adam restarted
    assert len({leaf(n).tobytes() for n in range(3)}) == 3 - len(copied)  # nobody else
    # only after the first round
    state2, _ = trainer.update(state1)
    assert not any(np.array_equal(_flat(state2.learner.q, n), _flat(state2.learner.q, nb[n])) for n in copied)

    # "improvement": member i takes a neighbour's networks when that neighbour's return scalarises higher
    # under i's own weight
    env, params, trainer = _tiny_dst(transfer="improvement", neighborhood_size=1, normalize_rewards=False)
    state = trainer.init(jax.random.PRNGKey(4))
    w = np.asarray(state.weights)
    nb = np.asarray(state.neighbours)[:, 0]
    evals = jnp.asarray(np.where(w[:, :1] > 0.5, [[20.0, -10.0]], [[0.7, -1.0]]), jnp.float32)
    moved = trainer._transfer(state, evals)
    for i in range(3):
        better = float(w[i] @ np.asarray(evals[nb[i]])) > float(w[i] @ np.asarray(evals[i]))
        same = np.array_equal(_flat(moved.learner.q, i), _flat(state.learner.q, nb[i]))
        assert same == better, (i, w, nb)


# =============================================================================================== continuous (SAC)
def test_sac_inner_learner_runs_tchebycheff_psa_transfer_on_continuous_actions():
    env, params = morl.make("mo-mountaincarcontinuous-v0")
    cfg = make_config(
        "morld",
        pop_size=3,
        exchange_every=100,
        total_timesteps=600,
        learning_starts=50,
        batch_size=16,
        buffer_size=500,
        net_arch=(16, 16),
        eval_episodes=1,
        max_episode_steps=60,
        scalarization="tch",
        weight_adaptation="psa",
        transfer="improvement",
        update_passes=0,
        weight_init="random",
    )
    trainer = make_trainer("morld", env, params, config=cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    alpha0 = float(np.exp(np.asarray(state.learner.log_alpha)).mean())
    while not trainer.done(state):
        state, logs = trainer.update(state)
    assert int(state.rounds) == 2 and trainer.env_steps(state) == 600
    assert np.all(np.isfinite(np.asarray(state.utopia)))  # Tchebycheff utopia point was adapted
    assert float(logs["alpha"]) != pytest.approx(alpha0)  # temperature tuned
    np.testing.assert_allclose(np.asarray(state.weights).sum(axis=1), 1.0, rtol=1e-5)
    sol = trainer.solution(state)
    front = evaluate(sol, env, params, EvalProtocol(gamma=0.99, episodes=1, max_steps=60))
    assert len(front.front) >= 1 and np.all(np.isfinite(front.returns))
    # deterministic evaluation actions stay inside the action bounds
    obs = jnp.zeros((4, 2), jnp.float32)
    act = np.asarray(sol.act(sol.candidate(0), None, obs, jax.random.PRNGKey(0)))
    assert act.shape == (4, 1) and np.all(np.abs(act) <= 1.0)


# =============================================================================================== weighted loss
def test_weighted_loss_ignores_the_objectives_a_member_does_not_weigh():
    """With ``weighted_loss`` a member's update depends on objective i's TD error only through ``m * w_i``: the
    fuel-only member (w = (0, 0, 1)) takes the same gradient step whatever the ore rewards are. With the plain
    vector loss it does not: under reward normalisation the sparse ore rewards are divided by a small std and their
    errors dominate the shared network's gradient (on minecart the fuel-only member then idled at the base; see
    docs/algorithms/morld.md)."""
    from morl.agents.morld_learners import DQNLearner
    from morl.agents.networks import ObsEncoder
    from morl.spaces import Box

    space = Box(-1.0, 1.0, (6,))
    make = lambda weighted: DQNLearner(  # noqa: E731
        ObsEncoder(space), 6, 3, Scalarization("ws"), (16,), 1e-3, 0.98, 0.005, 1, 1.0, weighted
    )
    k_obs, k_next, k_act, k_r = jax.random.split(jax.random.PRNGKey(0), 4)
    batch = {
        "obs": jax.random.uniform(k_obs, (32, 6), minval=-1.0, maxval=1.0),
        "next_obs": jax.random.uniform(k_next, (32, 6), minval=-1.0, maxval=1.0),
        "action": jax.random.randint(k_act, (32,), 0, 6),
        "reward": jax.random.normal(k_r, (32, 3)),
        "terminated": jnp.zeros((32,)),
    }
    big_ore = dict(batch, reward=batch["reward"].at[:, :2].multiply(30.0))  # ore rewards over a small std
    w, z = jnp.array([0.0, 0.0, 1.0]), initial_utopia(3)
    for weighted in (False, True):
        learner = make(weighted)
        state, update = learner.init(jax.random.PRNGKey(1)), jax.jit(learner.update)
        a, _, _ = update(state, w, z, batch, jax.random.PRNGKey(2))
        b, _, _ = update(state, w, z, big_ore, jax.random.PRNGKey(2))
        same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.q), jax.tree.leaves(b.q)))
        assert same == weighted, weighted
    # the weighted learner with a mixed weight counts every weighted objective: the step moves with the ore rewards
    w = jnp.array([0.5, 0.0, 0.5])
    a, _, _ = update(state, w, z, batch, jax.random.PRNGKey(2))
    b, _, _ = update(state, w, z, big_ore, jax.random.PRNGKey(2))
    assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.q), jax.tree.leaves(b.q)))


def test_minecart_fuel_only_member_drives_home_with_the_weighted_loss():
    """The corner fix on a small instance: the three one-hot weights on minecart-deterministic with reward
    normalisation (its defaults), 150k transitions. The fuel-only member must find the cheapest episode, leaving the
    base and coming straight back (fuel about -0.26 at gamma 1; idling to the 1,000-step cap costs -20), and the
    archive must keep that point. Measured with the plain vector loss at these settings: seeds 0 and 1 both end
    with the single point (0, 0, -20), the member idling (docs/algorithms/morld.md)."""
    env, params = morl.make("minecart-deterministic-v0")
    cfg = make_config(
        "morld",
        "minecart-deterministic-v0",
        pop_size=3,
        total_timesteps=150_000,
        exchange_every=5_000,
        net_arch=(64, 64),
        batch_size=64,
        num_envs=4,
        weighted_loss=True,
    )
    trainer = make_trainer("morld", env, params, config=cfg)
    np.testing.assert_array_equal(trainer.init_weights[0], [0.0, 0.0, 1.0])
    state = trainer.init(jax.random.PRNGKey(0))
    while not trainer.done(state):
        state, _ = trainer.update(state)
    front = evaluate(trainer.solution(state), env, params, EvalProtocol(gamma=1.0, episodes=1)).front
    print("minecart pop-3 front", np.round(front, 3).tolist())
    home = (front[:, 0] == 0) & (front[:, 1] == 0)
    # the true front's point is (0, 0, -0.26); -1 leaves room for a detour but not for idling (-20) or looping
    assert home.any() and front[home, 2].max() > -1.0, front


def test_accelerator_defaults_take_fewer_wider_gradient_steps(monkeypatch):
    """On a GPU/TPU, make_config steps 16 envs per member (8 where exchange_every is not a multiple of 16) with a
    quarter of the gradient steps per transition on 4x batches: every transition is sampled as often. On a CPU
    today's settings; the caller's overrides win. The backend is faked: no GPU is needed."""
    cpu = make_config("morld", "deep-sea-treasure-v0")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = make_config("morld", "deep-sea-treasure-v0")  # exchange_every 1,000: a multiple of 8, not of 16
    assert (cpu.num_envs, cpu.gradient_updates, cpu.batch_size) == (1, 1, 64)
    assert (gpu.num_envs, gpu.gradient_updates, gpu.batch_size) == (8, 2, 256)
    for c in (cpu, gpu):  # samples per transition, and the budget
        assert c.gradient_updates * c.batch_size / c.num_envs == 64 and c.total_timesteps == cpu.total_timesteps
    default = make_config("morld")  # exchange_every 40,000
    assert (default.num_envs, default.gradient_updates, default.batch_size) == (16, 4, 512)
    assert make_config("morld", "deep-sea-treasure-v0", gradient_updates=3).gradient_updates == 3
    assert make_config("morld", "deep-sea-treasure-v0", batch_size=64).batch_size == 64
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert make_config("morld", "deep-sea-treasure-v0") == cpu


def test_minecart_weighted_sum_optima_cover_three_quarters_of_the_hv_tchebycheff_optima_nearly_all():
    """Why MORL/D's weighted sums cannot reach 100% of minecart-deterministic's HV at convergence.

    Every action sequence of the env's front enumeration, chosen by an exact learner for each weight of a dense
    simplex grid (training gamma 0.98, MORL/D's minecart setting), then scored undiscounted (the protocol's gamma
    1). Weighted sums pick only the supported points: both 1.5-ore corners at -1.0 fuel, the (0.75, 0.75) mixture
    and the trip home, which give the whole EU but 75.8% of the HV; the (0.9, 0.6) and (0.6, 0.9) mixtures tie
    with the corners at w = (0.5, 0.5, 0) and win at no weight. Tchebycheff (utopia 0.1 above the best) has a
    window for every true point."""
    env, _ = morl.make("minecart-deterministic-v0")
    true = env.pareto_front(1.0)
    ref = np.asarray(env.ref_point)
    undiscounted, discounted = env.route_returns(1.0), env.route_returns(0.98)
    # an exact learner's choice is never dominated in its own (discounted) returns: keep those routes only
    dominated = np.any(
        np.all(discounted[:, None] >= discounted[None], axis=2)
        & np.any(discounted[:, None] > discounted[None], axis=2),
        axis=0,
    )
    undiscounted, discounted = undiscounted[~dominated], discounted[~dominated]
    n = 200
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    w = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], axis=1) / n
    true_hv = morl_metrics.hypervolume(true, ref)
    eu_weights = equally_spaced_weights(3, 50)

    def chosen(scores):
        return non_dominated(np.unique(undiscounted[np.argmax(scores, axis=1)], axis=0))

    ws = chosen(w @ discounted.T)
    assert morl_metrics.hypervolume(ws, ref) / true_hv < 0.76
    assert morl_metrics.expected_utility(ws, eu_weights) >= morl_metrics.expected_utility(true, eu_weights) - 1e-3
    utility = w @ true.T  # [W, points]
    for mixture in ([0.9, 0.6, -1.04], [0.6, 0.9, -1.04]):
        k = int(np.flatnonzero(np.all(np.isclose(true, mixture), axis=1))[0])
        assert not np.any(utility[:, k] > np.delete(utility, k, axis=1).max(1) + 1e-9)  # no weight prefers it

    utopia = discounted.max(0) + 0.1
    tch = chosen(-np.max(w[:, None, :] * np.abs(utopia - discounted[None]), axis=2))
    assert morl_metrics.hypervolume(tch, ref) / true_hv > 0.9999
