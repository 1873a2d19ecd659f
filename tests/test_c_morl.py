"""C-MORL (`morl.agents.c_morl`): its building blocks (buffer, selection, the IPO barrier), the extension's
constrained step on a problem whose answer is known, learning results on deep-sea-treasure and fruit-tree,
determinism and checkpoints, the host (gym:) path.

Learning tests are result tests against the true fronts (MO-Gymnasium ``pareto_front``): they never lower a
target. Compiled programs are shared through module-level fixtures.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import BANDIT, CMORL_HOST_TINY, Chain, arc, bandit2

import morl
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.c_morl import (
    PHASE_EXTEND,
    Barrier,
    CMORLConfig,
    CMORLState,
    CMORLTrainer,
    PolicyBuffer,
    buffer_insert,
    constraint_threshold,
    extended_log,
    plan_budget,
    select_policies,
)
from morl.agents.ppo import PPO, PPOConfig
from morl.agents.preferences import generate_weights_batch_dfs
from morl.evaluate import EvalProtocol, evaluate
from morl.metrics import hypervolume
from morl.rollout import make_rollout

DST_TRUE_HV = 360.40  # deep-sea-treasure, gamma 0.99, ref (0, -25)
FTN5_TRUE_HV = 36815.95  # fruit-tree depth 5, gamma 0.99, ref -1^6


# ----------------------------------------------------------------------------------------------- building blocks
def test_preference_grid_matches_official():
    np.testing.assert_allclose(
        generate_weights_batch_dfs(2, 0.0, 1.0, 0.2),
        [[0, 1], [0.2, 0.8], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2], [1, 0]],
        atol=1e-12,
    )
    np.testing.assert_allclose(generate_weights_batch_dfs(2, 0.0, 1.0, 0.5), [[0, 1], [0.5, 0.5], [1, 0]], atol=1e-12)
    # the 3-objective MuJoCo grid: the last weight is 1 - sum, so it can be 0 despite min 0.2
    np.testing.assert_allclose(
        generate_weights_batch_dfs(3, 0.2, 0.8, 0.3),
        [[0.2, 0.2, 0.6], [0.2, 0.5, 0.3], [0.2, 0.8, 0], [0.5, 0.2, 0.3], [0.5, 0.5, 0], [0.8, 0.2, 0]],
        atol=1e-12,
    )
    corners = generate_weights_batch_dfs(6, 0.0, 1.0, 1.0)
    assert corners.shape == (6, 6) and sorted(map(tuple, corners)) == sorted(map(tuple, np.eye(6)))
    assert len(generate_weights_batch_dfs(3, 0.0, 1.0, 0.5)) == 6  # minecart


def test_official_budgets_give_the_official_update_counts():
    """Per-env defaults are the official code's real transitions: `plan_budget` recovers its update counts
    (``num_init_steps // M // 512`` and ``(T - T_init) // N // 512 // L``)."""
    expected = {
        ("minecart-v0", 3): (6, 65, 32),
        ("fruit-tree-v0", 6): (6, 32, 21),
        ("mo-hopper-2d-v4", 2): (6, 325, 97),
        ("mo-ant-2d-v4", 2): (3, 651, 97),
        ("mo-hopper-v4", 3): (6, 488, 54),
        ("mo-lunar-lander-v2", 4): (4, 97, 24),
    }
    for (env_id, m), (M, init, ext) in expected.items():
        plan = plan_budget(make_config("c-morl", env_id), m)
        assert (plan["M"], plan["init_updates"], plan["ext_updates"]) == (M, init, ext), env_id
        assert plan["used"] == make_config("c-morl", env_id).total_steps, env_id
    spec = agent_spec("c-morl")
    assert spec.config_cls is CMORLConfig and set(spec.action_kinds) == {"discrete", "continuous"}
    cfg = make_config("c-morl", "minecart-v0")
    assert (cfg.beta, cfg.barrier_t, cfg.update_iter, cfg.policy_buffer, cfg.eval_gamma) == (0.9, 20.0, 20, 200, 0.98)


def _buffer(returns, capacity, ids):
    n = len(returns)
    pad = capacity - n
    return PolicyBuffer(
        policy={"id": np.concatenate([np.asarray(ids, np.float32), np.zeros(pad, np.float32)])},
        returns=np.concatenate([np.asarray(returns, np.float64).reshape(n, -1), np.zeros((pad, 2))]),
        weights=np.zeros((capacity, 2)),
        valid=np.arange(capacity) < n,
    )


def test_buffer_insert_filters_dominated_duplicates_and_reference_point():
    buf = _buffer([[1.0, 5.0], [3.0, 3.0]], capacity=6, ids=[10, 11])
    cand = PolicyBuffer(
        policy={"id": np.array([20, 21, 22, 23], np.float32)},
        returns=np.array(
            [
                [2.0, 2.0],  # dominated by (3, 3)
                [3.0, 3.0],  # duplicate: the existing entry (id 11) wins
                [5.0, 1.0],  # new front point
                [9.0, -30.0],
            ]
        ),  # below the reference point (y < -25)
        weights=np.zeros((4, 2)),
        valid=np.array([True, True, True, True]),
    )
    new = buffer_insert(buf, cand, ref_point=np.array([0.0, -25.0]), cap=200)
    kept = {tuple(r): i for r, i in zip(new.returns[new.valid], new.policy["id"][new.valid])}
    assert kept == {(1.0, 5.0): 10, (3.0, 3.0): 11, (5.0, 1.0): 22}
    assert new.valid.shape == (6,)
    # inactive candidates are ignored even when they would dominate
    cand.returns[0] = [100.0, 100.0]
    cand = cand.replace(valid=np.array([False, False, False, False]))
    assert buffer_insert(buf, cand, None, 200).valid.sum() == 2


def test_buffer_cap_keeps_largest_crowding_distance():
    pts = np.array([[0.0, 10.0], [1.0, 9.5], [1.1, 9.4], [5.0, 5.0], [10.0, 0.0]])
    buf = _buffer(pts, capacity=8, ids=np.arange(5))
    empty = PolicyBuffer(
        policy={"id": np.zeros(1, np.float32)},
        returns=np.zeros((1, 2)),
        weights=np.zeros((1, 2)),
        valid=np.zeros(1, bool),
    )
    new = buffer_insert(buf, empty, None, cap=3)
    # extremes (infinite distance) first, then the most isolated interior point (5, 5); the crowded pair goes
    assert sorted(map(tuple, new.returns[new.valid])) == [(0.0, 10.0), (5.0, 5.0), (10.0, 0.0)]


def test_selection_extremes_first_and_never_reselects():
    returns = np.array([[0.0, 10.0], [4.0, 6.0], [5.0, 5.0], [6.0, 3.0], [10.0, 0.0]])
    valid = np.ones(5, bool)
    first = select_policies(returns, valid, np.zeros((0, 2)), 2)
    assert sorted(first.tolist()) == [0, 4]  # the two extremes (infinite crowding distance)
    second = select_policies(returns, valid, returns[first], 2)
    assert not set(second.tolist()) & {0, 4} and len(second) == 2
    assert len(select_policies(returns, valid, returns, 3)) == 0  # everything selected before


def test_constraint_threshold_paper_and_negative_returns():
    np.testing.assert_allclose(constraint_threshold(jnp.array([10.0, 0.0, -10.0]), 0.9), [9.0, 0.0, -11.0])


def test_extended_log_continues_along_its_tangent():
    s = jnp.array([2.0, 0.5, 0.1, 0.0, -1.0])
    f = jnp.full(5, 0.1)
    np.testing.assert_allclose(extended_log(s[:3], f[:3]), np.log([2.0, 0.5, 0.1]), rtol=1e-6)
    # below the floor: the tangent at the floor (value and slope continuous, finite for s <= 0)
    np.testing.assert_allclose(extended_log(s[3:], f[3:]), np.log(0.1) + (s[3:] - 0.1) / 0.1, rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(extended_log(x, f)))(s)
    assert np.all(np.isfinite(g)) and float(g[3]) == pytest.approx(10.0)


def test_barrier_term_is_zero_without_constraints():
    """C-MORL's ``Barrier.none`` adds nothing to the PPO loss: its value and its gradient are exactly 0, so an
    update with it is an update without it (up to XLA's float reordering when the two are compiled apart)."""
    ratio, adv, scale = jnp.array([0.5, 1.0, 2.0]), jnp.array([[1.0, 4.0], [-3.0, 0.5], [2.0, -1.0]]), jnp.float32(0.7)
    value, grads = jax.value_and_grad(Barrier.none(2), argnums=(0, 1, 2))(ratio, adv, scale)
    assert float(value) == 0.0 and all(np.all(np.asarray(g) == 0.0) for g in grads)
    env = Chain()
    cfg = PPOConfig(num_envs=4, num_steps=8, num_minibatches=2, epochs=1, gamma=0.99)
    ppo = PPO.for_env(env, cfg)
    rollout = make_rollout(env, ppo.policy, 4, 8, gamma=0.99)
    state = jax.jit(ppo.init)(jax.random.PRNGKey(0))
    _, traj = rollout.run(ppo.policy_params(state), rollout.init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    w, lr, k = jnp.ones((1,)), jnp.float32(1e-3), jax.random.PRNGKey(3)
    a = jax.jit(lambda s, t: ppo.update(s, t, w, lr, k)[0])(state, traj)
    b = jax.jit(lambda s, t: ppo.update(s, t, w, lr, k, Barrier.none(1))[0])(state, traj)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-8)


# ----------------------------------------------------------------------------------------------- extension
# The 2-objective bandit of conftest (`BANDIT`): its constrained optimum is known.


def _bandit_extension(barrier_t: float, updates: int = 20):
    """Extend a hand-made pi_r (p(a0) = 0.6, 0.1 each other action) along both objectives; returns the exact
    stochastic returns of both tasks after every update, the thresholds and the final deterministic returns."""
    env = bandit2()
    batch = 8 * 16
    cfg = CMORLConfig(
        total_steps=2 * batch + 2 * updates * batch,
        init_steps=2 * batch,
        init_weight_delta=1.0,
        num_select=1,
        update_iter=updates,
        num_envs=8,
        num_steps=16,
        num_minibatches=4,
        eval_episodes=1,
        eval_gamma=1.0,
        gamma=0.99,
        barrier_t=barrier_t,
        normalize_obs=False,
        extension_lr=1e-3,
    )
    trainer = CMORLTrainer(cfg, env)
    assert (trainer.M, trainer.P_ext, trainer.ext_updates) == (2, 2, updates)
    state = trainer.init(jax.random.PRNGKey(0))
    pop = state.pop
    head = pop.params["actor"]["params"]["MLP_0"]["Dense_2"]
    bias = np.zeros(head["bias"].shape, np.float32)
    bias[:, 0] = np.log(6.0)  # softmax -> (0.6, 0.1, 0.1, 0.1, 0.1)
    params = jax.tree.map(lambda x: x, pop.params)
    params["actor"]["params"]["MLP_0"]["Dense_2"] = {
        "bias": jnp.asarray(bias),
        "kernel": jnp.zeros_like(head["kernel"]),
    }
    pop = pop.replace(params=params)
    state = state.replace(
        buffer=trainer._offer(state.buffer, pop, np.ones((2, 2)), np.full((2, 2), 0.5), np.array([True, False]))
    )
    state = trainer._start_round(state)
    assert int(state.phase) == PHASE_EXTEND and state.task.active.tolist() == [True, True]
    probs = jax.jit(jax.vmap(lambda a: jax.nn.softmax(trainer.ppo.net.actor.apply(a, jnp.ones((1, 1))))[0]))
    exact, thresholds = [], None
    while not trainer.done(state):
        state, _ = trainer.update(state)
        if thresholds is None:
            thresholds = np.asarray(state.task.ctrl.threshold, np.float64)
        exact.append(np.asarray(probs(state.task.pop.params["actor"])) @ BANDIT)
    return np.array(exact), thresholds, state.task.returns, trainer.front(state)


def test_extension_raises_objective_within_constraints():
    exact, thr, det, front = _bandit_extension(barrier_t=20.0)
    g_r = 0.6 * BANDIT[0] + 0.1 * BANDIT[1:].sum(0)  # (0.995, 0.995): pi_r's return
    # thresholds: beta * G_j(pi_r), measured on the first rollout (128 episodes): 0.9 * 0.995 up to the sample mean's
    # noise, sd 0.9 * 0.313 / sqrt(128) = 0.025 (0.313: the sd of one episode's return under pi_r); 3.5 sd still
    # tells beta = 0.9 from 0.8 or 1.0 (0.1 away). Measured (seeds 0-4): up to 1.9 sd (seed 3), beyond an
    # atol of 0.04 (1.6 sd); --xla_cpu_max_isa=AVX2 / SSE4_2 gave the default's values (seeds 0-1).
    p_r = np.array([0.6, 0.1, 0.1, 0.1, 0.1])
    sd = 0.9 * np.sqrt(p_r @ BANDIT**2 - g_r**2) / np.sqrt(128)
    np.testing.assert_allclose(np.diag(thr[:, ::-1]), 0.9 * g_r, atol=3.5 * sd.max())
    for task, (own, j) in enumerate([(0, 1), (1, 0)]):
        # every iterate keeps the other objective above its threshold (stochastic policy, exact return) ...
        assert np.all(exact[:, task, j] >= thr[task, j] - 1e-3), (task, exact[:, task], thr[task])
        # ... and the objective rises to the known constrained optimum (1.3; the mixed optimum is 1.3145); measured
        # seeds 0-4: >= 1.279 (the lowest where the sampled threshold was highest, 0.92)
        assert exact[-1, task, own] > 1.25, exact[-1, task]
        assert exact[-1, task, own] < 1.33
    # the deterministic policies the buffer records: a1 = (1.3, 0.95) and a3 = (0.95, 1.3)
    np.testing.assert_allclose(det, [[1.3, 0.95], [0.95, 1.3]], atol=1e-6)
    assert {(1.3, 0.95), (0.95, 1.3)} <= {tuple(np.round(p, 4)) for p in front}


def test_extension_without_barrier_leaves_the_constraint():
    """Control: with the barrier switched off (t -> inf) the same updates go to the unconstrained corners."""
    exact, thr, det, _ = _bandit_extension(barrier_t=1e9)
    np.testing.assert_allclose(det, [[1.5, 0.2], [0.2, 1.5]], atol=1e-6)
    assert exact[-1, 0, 1] < thr[0, 1] and exact[-1, 1, 0] < thr[1, 0]


# ----------------------------------------------------------------------------------------------- continuous actions
def test_continuous_actions_gaussian_policies():
    """Gaussian policies: stage 1 reaches the preference optima a* = w0 / (2 w1) = 0, 0.25, 1 (their 3 points
    alone have 88.2% of the true HV) and the extension fills the front in between."""
    batch = 8 * 16
    cfg = CMORLConfig(
        total_steps=4 * 20 * batch + 4 * 10 * batch,
        init_steps=4 * 20 * batch,
        init_weight_delta=1 / 3,
        num_select=2,
        update_iter=10,
        num_envs=8,
        num_steps=16,
        num_minibatches=4,
        eval_interval=5,
        eval_episodes=1,
        eval_gamma=1.0,
        gamma=0.99,
        normalize_obs=False,
        lr=3e-3,
        extension_lr=3e-3,
    )
    trainer = CMORLTrainer(cfg, arc())
    assert (trainer.M, trainer.P_init, trainer.P_ext) == (4, 4, 4)  # one compiled program for both stages
    state = trainer.init(jax.random.PRNGKey(0))
    while not trainer.done(state):
        state, _ = trainer.update(state)
    front = trainer.front(state)
    a = np.linspace(0.0, 1.0, 2001)
    true_hv = hypervolume(np.stack([a, 1 - a * a], axis=1), (-1.0, -1.0))
    # at least 40% of the gap the preference optima leave: 0.882 + 0.4 * 0.118. Measured seeds 0-4:
    # 96.3 / 94.7 / 94.3 / 97.7 / 94.1% of the true HV (>= 50% of the gap), 37-46 front points; seed 0 with
    # XLA_FLAGS=--xla_cpu_max_isa=AVX2 / SSE4_2: 95.4 / 95.1%, seed 1 with SSE4_2: 94.8%
    assert hypervolume(front, (-1.0, -1.0)) >= 0.929 * true_hv, front
    assert len(front) >= 8 and front[:, 0].min() < 0.05 and front[:, 0].max() > 0.95, front


# ----------------------------------------------------------------------------------------------- deep-sea-treasure
LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"  # one event per program lowered (cache hit or not)


@pytest.fixture(scope="module")
def dst_run():
    lowered = {"at": "build", "count": {}}

    def count(event, duration, **kwargs):
        if event == LOWERING:
            lowered["count"][lowered["at"]] = lowered["count"].get(lowered["at"], 0) + 1

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        env, params = morl.make("deep-sea-treasure-v0")
        trainer = make_trainer("c-morl", env, params)  # the per-env defaults
        lowered["at"] = "init"
        state = trainer.init(jax.random.PRNGKey(0))
        snapshots, i = {}, 0
        while not trainer.done(state):
            lowered["at"] = i
            state, logs = trainer.update(state)
            i += 1
            if i in (32, 35):  # the extension starts after update 30
                snapshots[i] = jax.tree.map(np.array, state)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    return env, params, trainer, state, snapshots, lowered["count"]


def test_dst_training_compiles_once(dst_run):
    """Every program of a training is compiled in its first update (the populations share one program, nothing is
    retraced as the buffer fills, between the phases or at a round's start): later updates lower nothing."""
    *_, lowered = dst_run
    assert set(lowered) <= {"build", "init", 0}, lowered
    # the stage-1 step, the evaluation and a few key splits; the init program and the env reset at init
    assert lowered.get(0, 0) <= 5 and lowered.get("init", 0) <= 8, lowered


def test_dst_reaches_95_percent_of_true_hv(dst_run):
    # measured seeds 0 / 1 / 2: 100.0% of the true HV each (10 of 10 points)
    env, params, trainer, state, *_ = dst_run
    assert trainer.env_steps(state) == 1_085_440
    solution = trainer.solution(state)
    result = evaluate(solution, env, params, EvalProtocol(gamma=0.99, episodes=1, ref_point=(0.0, -25.0)))
    hv = result.metrics["hypervolume"]
    assert hv >= 0.95 * DST_TRUE_HV, (hv, result.front)
    # the trainer's own buffer agrees with the evaluator (deterministic env and policies)
    assert hypervolume(trainer.front(state), (0.0, -25.0)) == pytest.approx(hv, rel=1e-5)
    # assignment: the policy served for a preference is the buffer's best for it, and it earns that return
    for w in ([0.9, 0.1], [0.5, 0.5], [0.1, 0.9]):
        act = solution.act_for(w)
        rollout = make_rollout(env, lambda p, obs, k, act=act: (act(obs, k), ()), 1, 100, gamma=0.99, emit="summary")
        _, summary = rollout.run(None, rollout.init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
        best = solution.candidate_returns[np.argmax(solution.candidate_returns @ np.asarray(w))]
        np.testing.assert_allclose(np.asarray(summary.first_discounted_return[0]), best, rtol=1e-5)


def test_same_seed_same_front_and_resume(dst_run):
    env, params, trainer, state, snapshots, _ = dst_run
    # resuming from a copy of the state (a checkpoint) gives the same updates
    resumed = jax.tree.map(np.array, snapshots[32])
    for _ in range(3):
        resumed, _ = trainer.update(resumed)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(snapshots[35])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a second full run with the same seed and config gives the same front and the same policies
    again = trainer.init(jax.random.PRNGKey(0))
    while not trainer.done(again):
        again, _ = trainer.update(again)
    np.testing.assert_array_equal(trainer.front(again), trainer.front(state))
    for a, b in zip(jax.tree.leaves(again.buffer), jax.tree.leaves(state.buffer)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_restores_the_typed_state(dst_run, tmp_path):
    """An orbax checkpoint of the typed state (`CMORLState`) restores with the trainer's template and resumes with
    the same updates."""
    from morl import runs as R

    env, params, trainer, state, snapshots, _ = dst_run
    ck = R.Checkpointer(tmp_path / "ck")
    ck.save(32, snapshots[32], {})
    restored, _ = ck.restore(R.state_template(trainer, jax.random.PRNGKey(0)))
    ck.close()
    assert isinstance(restored, CMORLState) and isinstance(restored.buffer.returns, np.ndarray)
    for _ in range(3):
        restored, _ = trainer.update(restored)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(snapshots[35])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------------------- fruit tree
# slow (55 s cold): CI keeps C-MORL's DST result, resume and compile-once tests
@pytest.mark.slow
def test_fruit_tree_depth5_reaches_80_percent_of_true_hv():
    env, params = morl.make("fruit-tree-v0", depth=5)
    # the official per-env settings (PPO sizes, corner preferences, eval gamma) on a smaller budget: 20 PPO updates
    # of the 6 initial policies, then one round of 16 extension updates from N = 3 policies (18 tasks); one
    # evaluation episode (env and policies are deterministic). Measured seeds 0 / 1 / 2: 85.8 / 83.7 / 86.2% of the
    # true HV, >= 3.7 points above the 80% bound.
    cfg = make_config(
        "c-morl", "fruit-tree-v0", total_steps=1_671_168, init_steps=491_520, num_select=3, eval_episodes=1
    )
    trainer = make_trainer("c-morl", env, params, config=cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    while not trainer.done(state):
        state, _ = trainer.update(state)
    result = evaluate(trainer.solution(state), env, params, EvalProtocol(gamma=0.99, episodes=1, ref_point=(-1.0,) * 6))
    assert result.metrics["hypervolume"] >= 0.80 * FTN5_TRUE_HV, (result.metrics, len(result.front))


# ----------------------------------------------------------------------------------------------- host path
def test_host_path_gym_deep_sea_treasure():
    # a 20-step time limit: even a policy that never finds a treasure scores above the reference point (0, -25),
    # so the buffer is never empty and the extension round runs
    env, _ = morl.make("gym:deep-sea-treasure-v0", max_episode_steps=20)
    assert getattr(env, "is_host", False) and env.max_steps == 20
    cfg = make_config("c-morl", "deep-sea-treasure-v0", **CMORL_HOST_TINY)
    trainer = make_trainer("c-morl", env, config=cfg)
    assert (trainer.M, trainer.init_updates, trainer.ext_updates) == (2, 1, 1)
    state = trainer.init(jax.random.PRNGKey(0))
    phases = []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        phases.append(int(logs["phase"]))
        assert np.isfinite(logs["pg_loss"]) and np.isfinite(logs["value_loss"])
    assert trainer.env_steps(state) == 256 and phases[0] == PHASE_EXTEND
    front = trainer.front(state)
    assert len(front) >= 1 and np.all(front >= np.array([0.0, -25.0]))
    result = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99, episodes=1))
    np.testing.assert_allclose(np.sort(result.front, axis=0), np.sort(front, axis=0), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- accelerators
def test_accelerator_defaults_widen_the_env_batch(monkeypatch):
    """On a GPU/TPU, make_config gives 512 envs per policy with the same transitions per update (so the same
    budget plan) where the CPU rollouts are long (MuJoCo: 8 x 512); deep-sea-treasure's 64-step rollouts keep their
    layout; on a CPU today's settings; the caller's overrides win. The backend is faked: no GPU is needed."""
    cpu = make_config("c-morl", "mo-hopper-2obj-v5")
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = make_config("c-morl", "mo-hopper-2obj-v5")
    assert (cpu.num_envs, cpu.num_steps) == (8, 512) and (gpu.num_envs, gpu.num_steps) == (512, 8)
    assert gpu.total_steps == 11_960_320 and plan_budget(gpu, 2) == plan_budget(cpu, 2)
    dst = make_config("c-morl", "deep-sea-treasure-v0")
    assert (dst.num_envs, dst.num_steps) == (32, 64)
    assert make_config("c-morl", "mo-hopper-2obj-v5", num_envs=16).num_envs == 16
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert make_config("c-morl", "mo-hopper-2obj-v5") == cpu


def test_trainers_with_the_same_settings_share_their_programs():
    """Seeds trained one after another in one process (`morl train --seeds`) compile once: a second trainer for the
    same env and config gets the first one's compiled population; another config or env gets its own."""
    env, params = morl.make("deep-sea-treasure-v0")
    first = make_trainer("c-morl", env, params)
    again = make_trainer("c-morl", *morl.make("deep-sea-treasure-v0"))
    assert again._pops[again.P_init] is first._pops[first.P_init]
    other = make_trainer("c-morl", env, params, num_select=4)
    assert other._pops[other.P_ext] is not first._pops[first.P_ext]
    deeper = make_trainer("c-morl", *morl.make("fruit-tree-v0", depth=5), init_weight_delta=1.0, num_select=2)
    shallower = make_trainer("c-morl", *morl.make("fruit-tree-v0", depth=6), init_weight_delta=1.0, num_select=2)
    assert deeper._pops[deeper.P_init] is not shallower._pops[shallower.P_init]
