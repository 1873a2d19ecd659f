"""MO Q-learning and OLS over it: the TD update by hand, and OLS building DST's convex coverage set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.mo_q import OLSConfig
from morl.evaluate import EvalProtocol, evaluate


def test_mo_q_and_ols_register_with_morl_baselines_defaults_and_refuse_bad_input():
    assert agent_spec("mo-q").action_kinds == agent_spec("ols").action_kinds == ("discrete",)
    c = make_config("mo-q")
    assert (c.learning_rate, c.gamma, c.initial_epsilon, c.final_epsilon, c.epsilon_decay_steps) == (
        0.1,
        0.9,
        0.1,
        0.1,
        None,
    )
    d = make_config("ols", "deep-sea-treasure-v0")  # examples/ols_dst.py
    assert (d.learning_rate, d.gamma, d.initial_epsilon, d.final_epsilon, d.epsilon_decay_steps) == (
        0.3,
        0.99,
        1.0,
        0.01,
        200_000,
    )
    assert (d.total_timesteps, d.timesteps_per_iteration, d.epsilon_ols, d.transfer_q_table) == (
        3_000_000,
        200_000,
        0.0,
        True,
    )
    with pytest.raises(ValueError, match="more than the whole budget"):
        OLSConfig(total_timesteps=10, timesteps_per_iteration=20)
    env, _ = morl.make("deep-sea-treasure-v0")
    with pytest.raises(ValueError, match="weights must be 2 non-negative"):
        make_trainer("mo-q", env, weights=(1.0, -1.0))


def test_td_update_by_hand():
    """Q(s, a) += lr (r + gamma Q(s', argmax_a' w . Q(s', a')) - Q(s, a)), one step (the rest of the chunk idle)."""
    env, params = morl.make("deep-sea-treasure-v0")
    tr = make_trainer("mo-q", env, params, weights=(0.25, 0.75), learning_rate=0.5, steps_per_chunk=4)
    st = tr.init(jax.random.PRNGKey(0))
    q = np.zeros(st.q.shape, np.float32)
    q[0] = [[1.0, -2.0], [3.0, -3.0], [2.0, -1.0], [0.0, -1.5]]  # start (0, 0): w . Q = -1.25, -1.5, -0.25, -1.125
    q[1] = [[4.0, -1.0], [0.0, 0.0], [8.0, -4.0], [5.0, -2.0]]  # (0, 1): w . Q = 0.25, 0, -1, -0.25 -> a' = 0
    st = st.replace(q=jnp.asarray(q), seen=st.seen.at[0].set(True).at[1].set(True), stop_at=jnp.int32(1))
    one, _ = tr.update(st)
    changed = np.flatnonzero(np.any(np.asarray(one.q[0]) != q[0], axis=-1))
    assert int(one.env_steps) == 1 and len(changed) <= 1
    a = int(changed[0]) if len(changed) else None
    # the start's moves: up and left stay at (0, 0) (reward (0, -1)), down ends on the 0.7 treasure, right -> (0, 1)
    nxt = {0: (q[0][2], [0.0, -1.0], False), 2: (q[0][2], [0.0, -1.0], False), 3: (q[1][0], [0.0, -1.0], False)}
    nxt[1] = (np.zeros(2), [0.7, -1.0], True)
    for action, (boot, r, term) in nxt.items():
        want = q[0][action] + 0.5 * (np.asarray(r) + (0.0 if term else 0.9) * boot - q[0][action])
        if action == a:
            np.testing.assert_allclose(np.asarray(one.q[0, a]), want, rtol=1e-6)
    if a is None:  # the update can leave Q unchanged only when the target equals Q(s, a): not the case here
        pytest.fail("no entry of the start's row moved")


#: OLS on DST with examples/ols_dst.py's Q-learning but 30k-step iterations (epsilon 1 -> 0.01 over 300k steps):
#: seed 0's first 4 iterations (120k steps) add 4 CCS points, each a point of the true front
OLS_CI = dict(total_timesteps=120_000, timesteps_per_iteration=30_000, epsilon_decay_steps=300_000)


def test_ols_builds_dst_ccs_from_true_front_points():
    env, params = morl.make("deep-sea-treasure-v0")
    tr = make_trainer("ols", env, params, steps_per_chunk=10_000, **OLS_CI)
    st = tr.init(jax.random.PRNGKey(0))
    weights, lowered = [], []

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(len(weights))

    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        while not tr.done(st):
            weights.append(np.asarray(st["learner"].w))
            st, logs = tr.update(st)
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    # the chunk compiles in the first update, the evaluation and the next policy's set-up at the first iteration's
    # end (update 3); the other iterations lower nothing
    assert len(weights) == 12 and set(lowered) <= {1, 3}, lowered
    assert tr.env_steps(st) == 120_000
    ccs, true = tr.ccs(st), env.pareto_front(0.99)
    # each value is a true front point (float32 tables: 1e-3 is far below the gaps between points)
    dist = np.abs(ccs[:, None, :] - true[None]).max(-1).min(-1)
    assert len(ccs) == 4 and (dist < 1e-3).all(), ccs
    # OLS starts at the simplex's extremes, then corner weights of the CCS
    np.testing.assert_array_equal(weights[0], [1.0, 0.0])
    # the evaluator earns each policy's value (deterministic env; the greedy policy at its own weight)
    result = evaluate(tr.solution(st), env, params, EvalProtocol(gamma=0.99, episodes=1))
    np.testing.assert_allclose(result.returns, ccs, atol=1e-4)


@pytest.mark.slow
def test_ols_finds_the_whole_dst_ccs():
    """Acceptance: examples/ols_dst.py's Q-learning and budget (15 iterations of 200k steps), each policy restarting
    the epsilon schedule: the CCS is DST's whole front at gamma 0.99 (10 points, HV 360.40). Measured for seed 0:
    210 s at load average ~18 on 2 cores. With MORL-Baselines' single schedule (restart_epsilon=False) the same run
    finds 9 of the 10 (docs/algorithms/mo-q.md)."""
    env, params = morl.make("deep-sea-treasure-v0")
    tr = make_trainer("ols", env, params, restart_epsilon=True)
    st = tr.init(jax.random.PRNGKey(0))
    while not tr.done(st):
        st, _ = tr.update(st)
    true = env.pareto_front(0.99)
    ccs = tr.ccs(st)
    assert len(ccs) == 10 and (np.abs(ccs[:, None, :] - true[None]).max(-1).min(-1) < 1e-3).all(), ccs
    result = evaluate(tr.solution(st), env, params, EvalProtocol(gamma=0.99, episodes=1))
    assert result.metrics["hypervolume"] == pytest.approx(360.40, abs=0.01)
