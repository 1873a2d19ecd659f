"""Temporal-difference blocks with vector values (`agents.td`), on hand-computed cases: losses, schedules, DDQN,
envelope and PD-MORL (Eq. 5) targets, TD3 with vector critics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from morl.agents import td


# ----------------------------------------------------------------------------------------------- small pieces
def test_smooth_l1_and_mse_by_hand():
    pred = jnp.array([[0.0, 3.0], [1.0, -0.5]])
    target = jnp.array([[0.5, 0.0], [1.0, 0.5]])
    # |d| = 0.5, 3, 0, 1: quadratic below 1 (0.125, 0), linear from 1 (2.5, 0.5)
    assert float(td.smooth_l1(pred, target)) == pytest.approx((0.125 + 2.5 + 0.0 + 0.5) / 4)
    assert float(td.mse(pred, target)) == pytest.approx((0.25 + 9.0 + 0.0 + 1.0) / 4)


def test_cosine_similarity_scalarize_and_take_action():
    a = jnp.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    b = jnp.array([[4.0, 3.0], [-2.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(np.asarray(td.cosine_similarity(a, b)), [24 / 25, -1.0, 0.0], atol=1e-6)
    # w [B, 1, m] against q [B, A, m]
    q = jnp.array([[[1.0, 2.0], [3.0, -1.0], [0.0, 5.0]]])
    np.testing.assert_allclose(np.asarray(td.scalarize(jnp.array([[[0.5, 0.5]]]), q)), [[1.5, 1.0, 2.5]])
    np.testing.assert_allclose(np.asarray(td.take_action(q, jnp.array([1]))), [[3.0, -1.0]])


def test_bootstrap_on_terminated_only():
    reward = jnp.array([[1.0, -1.0], [0.0, 2.0]])
    nxt = jnp.array([[5.0, -1.0], [10.0, 10.0]])
    y = td.bootstrap(reward, jnp.array([0.0, 1.0]), 0.9, nxt)
    np.testing.assert_allclose(np.asarray(y), [[1.0 + 4.5, -1.0 - 0.9], [0.0, 2.0]])
    # a boolean flag works the same
    np.testing.assert_allclose(np.asarray(td.bootstrap(reward, jnp.array([False, True]), 0.9, nxt)), np.asarray(y))


def test_polyak_and_select_params():
    online = {"w": jnp.array([1.0, 2.0]), "b": jnp.float32(4.0)}
    target = {"w": jnp.array([3.0, 0.0]), "b": jnp.float32(0.0)}
    out = td.polyak(online, target, 0.25)
    np.testing.assert_allclose(np.asarray(out["w"]), [0.25 * 1 + 0.75 * 3, 0.25 * 2])
    assert float(out["b"]) == pytest.approx(1.0)
    assert td.polyak(online, target, 1.0)["w"].tolist() == [1.0, 2.0]  # tau = 1 copies
    assert td.select_params(jnp.bool_(False), online, target)["w"].tolist() == [3.0, 0.0]


def test_schedules_match_morl_baselines():
    # linearly_decaying_value(1.0, 100, step, warmup 10, 0.1)
    vals = [float(td.linear_schedule(1.0, 0.1, 100, jnp.int32(s), 10)) for s in (0, 10, 60, 110, 500)]
    np.testing.assert_allclose(vals, [1.0, 1.0, 0.55, 0.1, 0.1], atol=1e-6)
    assert float(td.linear_schedule(0.3, 0.9, None, jnp.int32(99))) == pytest.approx(0.3)
    # increasing schedules are clipped from above
    assert float(td.linear_schedule(0.0, 1.0, 10, jnp.int32(50))) == pytest.approx(1.0)


def test_epsilon_greedy_extremes_and_rate():
    greedy = jnp.full((20_000,), 2, jnp.int32)
    key = jax.random.PRNGKey(0)
    assert (np.asarray(td.epsilon_greedy(key, greedy, 4, jnp.float32(0.0))) == 2).all()
    out = np.asarray(td.epsilon_greedy(key, greedy, 4, jnp.float32(1.0)))
    assert set(out.tolist()) == {0, 1, 2, 3}
    # epsilon 0.4 over 4 actions: an action other than the greedy one with probability 0.4 * 3/4 = 0.3; the bound
    # is 6 binomial standard deviations (~2e-9 two-sided)
    other = float(np.mean(np.asarray(td.epsilon_greedy(key, greedy, 4, jnp.float32(0.4))) != 2))
    assert abs(other - 0.3) <= 6 * np.sqrt(0.3 * 0.7 / 20_000), other


# ----------------------------------------------------------------------------------------------- discrete targets
def test_ddqn_vector_target_by_hand():
    # one transition, 2 actions, 2 objectives; w = [0.8, 0.2]
    q_online = jnp.array([[[1.0, 10.0], [2.0, 0.0]]])  # w.Q = [2.8, 1.6] -> online picks action 0
    q_target = jnp.array([[[5.0, -1.0], [7.0, 3.0]]])
    w = jnp.array([[0.8, 0.2]])
    nxt = td.ddqn_next_value(q_online, q_target, w)
    np.testing.assert_allclose(np.asarray(nxt), [[5.0, -1.0]])  # target net evaluated at the ONLINE argmax
    y = td.bootstrap(jnp.array([[1.0, -1.0]]), jnp.array([0.0]), 0.9, nxt)
    np.testing.assert_allclose(np.asarray(y), [[1.0 + 0.9 * 5.0, -1.0 - 0.9]])
    y_term = td.bootstrap(jnp.array([[1.0, -1.0]]), jnp.array([1.0]), 0.9, nxt)
    np.testing.assert_allclose(np.asarray(y_term), [[1.0, -1.0]])


def test_envelope_target_by_hand():
    # one transition, K = 2 sampled preferences, A = 2 actions, m = 2; row preference w = [0.5, 0.5]
    q_online = jnp.array(
        [
            [
                [[1.0, 1.0], [0.0, 3.0]],  # under w'_0: w.Q = [1.0, 1.5] -> best a = 1, value 1.5
                [[4.0, 0.0], [1.0, 1.0]],  # under w'_1: w.Q = [2.0, 1.0] -> best a = 0, value 2.0  <- envelope max
            ]
        ]
    )
    q_target = jnp.array(
        [
            [
                [[10.0, 10.0], [20.0, 20.0]],
                [[30.0, 31.0], [40.0, 41.0]],
            ]
        ]
    )
    w = jnp.array([[0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(td.envelope_next_value(q_online, q_target, w)), [[30.0, 31.0]])
    # a preference favouring objective 1 changes the envelope's choice: w = [0, 1]
    # w'_0: [1, 3] -> a = 1 (3.0); w'_1: [0, 1] -> a = 1 (1.0); best k = 0 -> Q_target[0, 1]
    np.testing.assert_allclose(
        np.asarray(td.envelope_next_value(q_online, q_target, jnp.array([[0.0, 1.0]]))), [[20.0, 20.0]]
    )


# ------------------------------------------------------------------------------------ PD-MORL: TD3 and Eq. 5
def test_td3_target_takes_the_whole_vector_of_the_twin_with_smaller_wq():
    q1 = jnp.array([[10.0, 0.0], [1.0, 1.0]])
    q2 = jnp.array([[0.0, 8.0], [2.0, 2.0]])
    w = jnp.array([[0.5, 0.5], [0.9, 0.1]])
    # row 0: w.q1 = 5.0, w.q2 = 4.0 -> q2 whole;  row 1: w.q1 = 1.0, w.q2 = 2.0 -> q1 whole
    np.testing.assert_allclose(np.asarray(td.td3_min_vector(q1, q2, w)), [[0.0, 8.0], [1.0, 1.0]])
    # an element-wise minimum (CAPQL) would give [0, 0] for row 0: PD-MORL never mixes the twins
    assert not np.allclose(np.asarray(td.td3_min_vector(q1, q2, w))[0], np.minimum(q1, q2)[0])


def test_target_policy_smoothing_clips_noise_and_actions():
    a = jnp.full((2000, 1), 0.9)
    out = np.asarray(td.td3_target_action(jax.random.PRNGKey(0), a, 0.2, 0.5, jnp.array([-1.0]), jnp.array([1.0])))
    assert out.max() <= 1.0 and out.min() >= 0.4 - 1e-6 and (out == 1.0).any()


def test_angle_term_in_degrees_with_the_official_clamp():
    w = jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    q = jnp.array([[1.0, 1.0], [-1.0, 0.5], [3.0, 0.0]])
    ang = np.asarray(td.angle_deg(w, q))
    assert ang[0] == pytest.approx(45.0, abs=1e-4)
    assert ang[1] == pytest.approx(90.0)  # obtuse: cosine clamped at 0
    assert ang[2] == pytest.approx(np.degrees(np.arccos(0.9999)), abs=1e-3)  # parallel: cosine clamped at 0.9999
    q1 = jnp.array([[1.0, 1.0]])
    loss = td.td3_actor_loss(q1, jnp.array([[0.5, 0.5]]), jnp.array([[1.0, 0.0]]), angle_coef=10.0)
    assert float(loss) == pytest.approx(-1.0 + 10.0 * 45.0, abs=1e-3)
    closs = td.td3_critic_loss(q1, q1 + 2.0, q1, jnp.array([[1.0, 0.0]]))
    assert float(closs) == pytest.approx(0.0 + 1.5 + 45.0 + np.degrees(np.arccos(3 / np.sqrt(18))), abs=1e-3)


def test_preference_driven_action_eq5_by_hand():
    # a0 = [5, 0]: w.Q = 2.5 but at 90 degrees from w_p = [0, 1] -> score 0
    # a1 = [1, 2]: w.Q = 1.5, cos = 2 / sqrt(5)                     -> score 1.342  (Eq. 5 picks a1)
    q_next = jnp.array([[[5.0, 0.0], [1.0, 2.0]]])
    w, w_p = jnp.array([[0.5, 0.5]]), jnp.array([[0.0, 1.0]])
    assert int(td.preference_driven_action(q_next, w, w_p)[0]) == 1
    assert int(jnp.argmax(td.scalarize(w[:, None], q_next))) == 0  # plain w.Q would pick a0
    # the shift enters the cosine only: shifting objective 1 by -2 makes a1 = [1, 0] (cos 0) and a0 = [5, -2]
    # (obtuse, cos clamped at 0): both scores 0 -> argmax ties to a0
    assert int(td.preference_driven_action(q_next, w, w_p, jnp.array([0.0, -2.0]))[0]) == 0


def test_td3_losses_without_the_angle_terms_by_hand():
    q1 = jnp.array([[1.0, 3.0]])
    q2 = jnp.array([[0.0, 0.0]])
    y = jnp.array([[1.5, 0.0]])
    # SmoothL1(q1, y) = (0.125 + 2.5) / 2, SmoothL1(q2, y) = (1.0 + 0.0) / 2
    assert float(td.td3_critic_loss(q1, q2, y)) == pytest.approx(1.3125 + 0.5)
    assert float(td.td3_actor_loss(q1, jnp.array([[0.25, 0.75]]))) == pytest.approx(-(0.25 + 2.25))
