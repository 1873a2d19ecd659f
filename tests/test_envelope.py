"""Envelope Q-learning and its shared blocks: replay ring buffer, DDQN / envelope targets, learning on DST."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents import replay as rb
from morl.agents import td
from morl.agents.envelope import EnvelopeConfig, EnvelopeTrainer
from morl.evaluate import EvalProtocol, evaluate


# ----------------------------------------------------------------------------------------------- replay
def _item(v):
    return {"x": jnp.asarray(v, jnp.float32), "a": jnp.asarray(v, jnp.int32)}


def _batch(values):
    return {"x": jnp.asarray(values, jnp.float32), "a": jnp.asarray(values, jnp.int32)}


def test_ring_buffer_wraps_and_keeps_the_newest():
    buf = rb.init(_item(0), capacity=5)
    buf = rb.add(buf, _batch([1, 2, 3]))
    assert int(buf.size) == 3 and int(buf.pos) == 3
    buf = rb.add(buf, _batch([4, 5, 6, 7]))  # overwrites the two oldest (1, 2)
    assert int(buf.size) == 5 and int(buf.pos) == 2
    assert sorted(np.asarray(buf.data["x"]).tolist()) == [3, 4, 5, 6, 7]
    assert np.asarray(buf.data["a"]).dtype == np.int32
    items, idx = rb.sample(buf, jax.random.PRNGKey(0), 1000)
    assert set(np.asarray(items["x"]).astype(int).tolist()) == {3, 4, 5, 6, 7}
    np.testing.assert_array_equal(np.asarray(items["x"]), np.asarray(buf.data["x"])[np.asarray(idx)])


def test_ring_buffer_samples_only_valid_items_and_jits():
    buf = rb.init(_item(0), capacity=100)
    add = jax.jit(rb.add)
    buf = add(buf, _batch([7, 8]))
    items, idx = jax.jit(rb.sample, static_argnums=2)(buf, jax.random.PRNGKey(1), 500)
    assert set(np.asarray(idx).tolist()) == {0, 1}
    assert set(np.asarray(items["a"]).tolist()) == {7, 8}


def test_ring_buffer_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        rb.init(_item(0), capacity=0)
    buf = rb.init(_item(0), capacity=2)
    with pytest.raises(ValueError, match="exceeds the buffer capacity"):
        rb.add(buf, _batch([1, 2, 3]))
    with pytest.raises(ValueError, match="prioritized=True"):
        rb.update_priorities(buf, jnp.array([0]), jnp.array([1.0]))


def test_add_masked_packs_the_kept_items_in_order():
    buf = rb.init(_item(0), capacity=4)
    buf = rb.add_masked(buf, _batch([1, 2, 3]), jnp.array([True, False, True]))
    assert int(buf.size) == 2 and int(buf.pos) == 2
    np.testing.assert_array_equal(np.asarray(buf.data["x"])[:2], [1, 3])
    buf = rb.add_masked(buf, _batch([4, 5, 6]), jnp.array([True, True, True]))  # wraps: 6 overwrites 1
    np.testing.assert_array_equal(np.asarray(buf.data["x"]), [6, 3, 4, 5])
    assert int(buf.size) == 4 and int(buf.pos) == 1


def test_prioritized_replay_samples_in_proportion_and_tracks_the_max():
    buf = rb.init(_item(0), capacity=6, prioritized=True)  # 8 leaves: exercises padding past capacity
    buf = rb.add(buf, _batch([0, 1, 2, 3]))
    np.testing.assert_allclose(np.asarray(rb.priorities(buf))[:4], 1e-5)  # new items get max_priority
    buf = rb.update_priorities(buf, jnp.array([0, 1, 2, 3, 3]), jnp.array([1.0, 0.0, 3.0, 4.0, 4.0]))
    assert float(buf.max_priority) == pytest.approx(4.0)
    assert float(buf.tree[0][0]) == pytest.approx(8.0)  # root = sum of leaves
    _, idx = rb.sample(buf, jax.random.PRNGKey(3), 40_000)
    freq = np.bincount(np.asarray(idx), minlength=6) / 40_000
    np.testing.assert_allclose(freq[:4], [1 / 8, 0.0, 3 / 8, 4 / 8], atol=0.01)
    assert freq[4:].sum() == 0.0
    buf = rb.add(buf, _batch([9]))  # the next item enters with the largest priority seen
    assert float(rb.priorities(buf)[4]) == pytest.approx(4.0)


# ----------------------------------------------------------------------------------------------- targets
def test_ddqn_vector_target_by_hand():
    # one transition, 2 actions, 2 objectives; w = [0.8, 0.2]
    q_online = jnp.array([[[1.0, 10.0], [2.0, 0.0]]])   # w.Q = [2.8, 1.6] -> online picks action 0
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
    q_online = jnp.array([[
        [[1.0, 1.0], [0.0, 3.0]],   # under w'_0: w.Q = [1.0, 1.5] -> best a = 1, value 1.5
        [[4.0, 0.0], [1.0, 1.0]],   # under w'_1: w.Q = [2.0, 1.0] -> best a = 0, value 2.0  <- envelope max
    ]])
    q_target = jnp.array([[
        [[10.0, 10.0], [20.0, 20.0]],
        [[30.0, 31.0], [40.0, 41.0]],
    ]])
    w = jnp.array([[0.5, 0.5]])
    np.testing.assert_allclose(np.asarray(td.envelope_next_value(q_online, q_target, w)), [[30.0, 31.0]])
    # a preference favouring objective 1 changes the envelope's choice: w = [0, 1]
    # w'_0: [1, 3] -> a = 1 (3.0); w'_1: [0, 1] -> a = 1 (1.0); best k = 0 -> Q_target[0, 1]
    np.testing.assert_allclose(np.asarray(td.envelope_next_value(q_online, q_target, jnp.array([[0.0, 1.0]]))),
                               [[20.0, 20.0]])


def test_schedules_match_morl_baselines():
    # linearly_decaying_value(1.0, 100, step, warmup 10, 0.1)
    vals = [float(td.linear_schedule(1.0, 0.1, 100, jnp.int32(s), 10)) for s in (0, 10, 60, 110, 500)]
    np.testing.assert_allclose(vals, [1.0, 1.0, 0.55, 0.1, 0.1], atol=1e-6)
    assert float(td.linear_schedule(0.3, 0.9, None, jnp.int32(99))) == pytest.approx(0.3)


# ----------------------------------------------------------------------------------------------- agent
def test_envelope_registers_with_morl_baselines_defaults():
    spec = agent_spec("envelope")
    cfg = make_config("envelope")
    assert spec.action_kinds == ("discrete",)
    assert (cfg.learning_rate, cfg.net_arch, cfg.batch_size, cfg.target_net_update_freq, cfg.num_sample_w,
            cfg.gamma, cfg.max_grad_norm, cfg.per, cfg.buffer_size) == (
        3e-4, (256, 256, 256, 256), 256, 200, 4, 0.99, 1.0, True, 1_000_000)
    with pytest.raises(ValueError, match="num_sample_w"):
        EnvelopeConfig(num_sample_w=1)
    env, _ = morl.make("mo-mountaincarcontinuous-v0")
    with pytest.raises(ValueError, match="discrete"):
        make_trainer("envelope", env)


#: the CI learning test's settings: MORL-Baselines' defaults, but minibatches of 32 transitions (x 4 preferences)
#: instead of 256 so that a gradient step costs ~5 ms on 2 CPU cores (256: ~40 ms)
#: Budget: the run stops at its first full-HV evaluation (as the 530 s MORL-Baselines figure does), so the budget is
#: a cap that only slow trajectories reach. The HV of consecutive evaluations swings by up to 80 (far treasures won
#: and lost again), so when 100% first comes is trajectory luck: measured (issue 14, AVX-512 Xeon, jax 0.10.2) seeds
#: 1 / 2 / 3 / 4 / 5 first reach 100% at 29k / 9k / 46k / 13k / 23k env steps (at the former 30k cap, seeds 3 and 5
#: failed, and seed 1 passed by 1k steps). 60k leaves 1.3x over the slowest of the five; another CPU's float kernels
#: give another trajectory, i.e. another draw from this spread. Seed 2 is the CI seed (the quickest: ~40 s).
DST_CONFIG = dict(batch_size=32, total_timesteps=60_000, steps_per_chunk=1000)
DST_TRUE_HV = 360.40
DST_SEED = 2
def test_envelope_reaches_the_whole_dst_front():
    """Acceptance: 100% of DST's true hypervolume (gamma 0.99, ref [0, -25]) with a fixed seed within the budget
    (see DST_CONFIG for the budget and the seeds measured). Its speed (MORL-Baselines: 530 s) is a benchmark, not a
    timed test: `python experiments/preference_conditioned.py envelope-dst --seed 1 --stop-at-full`."""
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("envelope", env, params, **DST_CONFIG)
    state = trainer.init(jax.random.PRNGKey(DST_SEED))
    # MORL-Baselines' front: 100 equally spaced preferences, discounted returns. DST and the greedy policy are
    # deterministic, so one episode per preference gives the same front as five (checked on the final front)
    quick = EvalProtocol(gamma=0.99, episodes=1)
    history = []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        front = evaluate(trainer.solution(state), env, protocol=quick)
        history.append((trainer.env_steps(state), round(front.metrics["hypervolume"], 2)))
        if front.metrics["hypervolume"] >= DST_TRUE_HV - 0.01:
            break
    front = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99))
    assert front.metrics["hypervolume"] == pytest.approx(DST_TRUE_HV, abs=0.01), history
    found = np.abs(front.front[:, None, :] - env.pareto_front(0.99)[None]).max(-1).min(0)
    assert (found < 1e-3).all(), f"treasures not reached: {env.pareto_front(0.99)[found >= 1e-3]}"
