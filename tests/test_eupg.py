"""EUPG: the utility and loss against hand-computed values, and learning FishWood's expected utility."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.eupg import EUPGConfig, utility
from morl.evaluate import EvalProtocol, evaluate


def test_eupg_registers_with_morl_baselines_defaults_and_refuses_bad_input():
    assert agent_spec("eupg").action_kinds == ("discrete",)
    c = make_config("eupg")
    assert (c.learning_rate, c.gamma, c.net_arch, c.utility, c.total_timesteps) == (1e-3, 0.99, (50,), "linear", 4e6)
    assert make_config("eupg", "fishwood-v0").utility == "fishwood"
    with pytest.raises(ValueError, match="utility_input"):
        EUPGConfig(utility_input="past")
    env, _ = morl.make("fruit-tree-v0")
    with pytest.raises(ValueError, match="fishwood utility needs 2 objectives"):
        make_trainer("eupg", env, utility="fishwood")
    with pytest.raises(ValueError, match="weights needs 6 values"):
        make_trainer("eupg", env, weights=(1.0, 1.0))


def test_fishwood_utility_by_hand():
    r = jnp.array([[3.0, 7.0], [5.0, 7.0], [0.0, 100.0]])
    np.testing.assert_array_equal(np.asarray(utility("fishwood", r, None)), [3.0, 3.0, 0.0])
    np.testing.assert_array_equal(np.asarray(utility("linear", r, jnp.array([1.0, 0.5]))), [6.5, 8.5, 50.0])


#: 150 episodes of FishWood (30k steps) cost ~2 s after compiling; CI_STEPS is the learning test's budget
CI_STEPS = 150_000


@pytest.fixture(scope="module")
def fishwood():
    env, params = morl.make("fishwood-v0")
    trainer = make_trainer("eupg", env, params, total_timesteps=CI_STEPS, episodes_per_chunk=250)
    return env, params, trainer


def test_loss_by_hand(fishwood):
    """u_t = u(R^-_t + R^+_t) on a 3-step episode (then padding): the loss is -mean_t log pi(a_t) u_t."""
    env, _, tr = fishwood
    params = tr.init(jax.random.PRNGKey(0)).params
    t = tr.horizon
    reward = np.zeros((t, 2), np.float32)
    reward[:3] = [[0, 1], [0, 1], [1, 0]]
    accrued = np.zeros((t, 2), np.float32)
    accrued[1:3] = [[0, 1], [0, 2]]
    obs = np.ones((t, 1), np.int32)
    action = np.array([1, 1, 0] + [0] * (t - 3), np.int32)
    steps = collections.namedtuple("Steps", "reward extras obs action")
    traj = steps(*map(jnp.asarray, (reward, accrued, obs, action)))
    mask = jnp.arange(t) < 3
    g = 0.99
    future = np.array([[g * g, 1 + g], [g, 1.0], [1.0, 0.0]])  # R^+_t = r_t + g r_{t+1} + ...
    u = np.minimum((future + accrued[:3])[:, 0], np.floor((future + accrued[:3])[:, 1] / 2))  # [0, 0.99, 1]
    p = np.asarray(jax.jit(tr.probs)(params, traj.obs[:3], traj.extras[:3]))
    want = -np.mean(np.log(p[np.arange(3), action[:3]]) * u)
    assert float(jax.jit(tr.loss)(params, traj, mask)) == pytest.approx(want, rel=1e-6)
    np.testing.assert_allclose(u, [0.0, 0.99, 1.0])


def test_eupg_learns_fishwood(fishwood):
    """Uniform random actions earn E[min(fish, floor(wood / 2))] ~ 9.5 (fish ~ Binomial(100, 0.1)); at CI_STEPS the
    policy earns more than 12 (measured: docs/algorithms/eupg.md has the curve and MORL-Baselines' figure)."""
    env, params, tr = fishwood
    state = tr.init(jax.random.PRNGKey(0))
    lowered = []  # one event per program lowered: the chunk compiles in the first update, never again

    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(updates)

    updates = 0
    jax.monitoring.register_event_duration_secs_listener(count)
    try:
        while not tr.done(state):
            state, logs = tr.update(state)
            updates += 1
    finally:
        jax.monitoring.unregister_event_duration_listener(count)
    assert updates == 3 and set(lowered) <= {0}, lowered
    assert tr.env_steps(state) == CI_STEPS and int(state.episodes) == CI_STEPS // 200
    eu = tr.expected_utility(state, jax.random.PRNGKey(1))
    assert eu > 12.0, eu
    # the evaluator feeds the accrued reward (episode_context) to the policy: one candidate, its mean return. u is
    # concave (a min of increasing terms, up to the floor's 0.5), so u(E[R]) >= E[u(R)] - 0.5 > 11.5
    front = evaluate(tr.solution(state), env, params, EvalProtocol(gamma=1.0, episodes=5))
    assert front.returns.shape == (1, 2)
    assert float(utility("fishwood", jnp.asarray(front.returns[0]), None)) > 11.5, front.returns
