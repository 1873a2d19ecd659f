"""The evaluator on hand-built solutions whose returns are known exactly."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import morl
from morl.evaluate import EvalProtocol, evaluate, evaluate_returns
from morl.solution import Solution
from morl.weights import equally_spaced_weights

ENV, PARAMS = morl.make("deep-sea-treasure-v0")


def go_to_column(target, w, obs, key):
    """Right along the surface to column `target`, then straight down: the shortest path to its treasure."""
    return jnp.where(obs[:, 1] < target, 3, 1).astype(jnp.int32)


def conditioned_act(params, w, obs, key):
    return go_to_column(jnp.round(w[0] * params).astype(jnp.int32), w, obs, key)


POLICY_SET = Solution(act=go_to_column, params=jnp.arange(10))
CONDITIONED = Solution(act=conditioned_act, params=jnp.int32(9), conditioned=True)


def test_policy_set_reaches_the_true_front_exactly():
    front = evaluate(POLICY_SET, ENV, protocol=EvalProtocol(gamma=0.99, episodes=3))
    true = ENV.pareto_front(0.99)
    np.testing.assert_allclose(np.sort(front.returns, axis=0), np.sort(true, axis=0), rtol=1e-5)
    assert front.front.shape == (10, 2)
    assert front.metrics["hypervolume"] == pytest.approx(360.40, abs=0.01)
    assert front.metrics["expected_utility"] == pytest.approx(5.610, abs=1e-3)
    assert front.metrics["igd"] == pytest.approx(0.0, abs=1e-4)
    assert front.protocol["gamma"] == 0.99 and front.protocol["ref_point"] == [0.0, -25.0]


def test_undiscounted_returns_and_gamma_are_separate():
    front = evaluate(POLICY_SET, ENV, protocol=EvalProtocol(gamma=1.0, episodes=1))
    np.testing.assert_allclose(front.undiscounted_returns[-1], [23.7, -19.0], rtol=1e-6)
    np.testing.assert_allclose(front.returns, front.undiscounted_returns, rtol=1e-6)


def test_conditioned_solution_is_evaluated_at_every_front_weight():
    front = evaluate(CONDITIONED, ENV, protocol=EvalProtocol(gamma=0.99, episodes=1, front_weights=50))
    assert front.returns.shape == (50, 2) and front.weights.shape == (50, 2)
    true = ENV.pareto_front(0.99)
    # every point the conditioned policy reaches is a true front point
    dist = np.abs(front.front[:, None, :] - true[None]).sum(-1).min(1)
    assert np.all(dist < 1e-4) and len(front.front) >= 5


def test_episode_cap_of_the_protocol_applies():
    stay = Solution(act=lambda p, w, obs, key: jnp.zeros(obs.shape[0], jnp.int32), params=jnp.zeros(1))
    front = evaluate(stay, ENV, protocol=EvalProtocol(gamma=1.0, episodes=1, max_steps=7))
    np.testing.assert_allclose(front.returns, [[0.0, -7.0]])
    assert front.metrics["hypervolume"] == 0.0


def test_assignment_picks_the_best_candidate_for_a_preference():
    sol = Solution(act=go_to_column, params=jnp.arange(10), candidate_returns=ENV.pareto_front(0.99))
    act = sol.act_for([0.99, 0.01])
    assert int(act(jnp.zeros((1, 2), jnp.int32), None)[0]) == 3  # heads right for the far treasure
    with pytest.raises(ValueError):
        sol.act_for([0.5, 0.6])


def test_candidate_axis_is_padded_to_a_power_of_two_on_jax_envs_only():
    """A growing policy set reuses one compiled rollout per power of two; padded rows never reach the result.
    Host envs are not padded (each padded candidate would cost real simulator episodes)."""
    from morl import evaluate as ev
    from morl.evaluate import evaluate_returns

    def act(target, w, obs, key):  # an act of its own: the cache keys of the other tests do not interfere
        return go_to_column(target, w, obs, key)

    def populations(env):
        return sorted(k[2] for k in ev._ROLLOUTS if k[0] == id(env) and k[1] == id(act))

    for cols in ([9, 0, 4], [9, 0, 4, 7]):  # 3 and 4 candidates: both run the population-4 program
        disc, _, w = evaluate_returns(Solution(act=act, params=jnp.asarray(cols)), ENV, PARAMS, episodes=1, gamma=0.99)
        assert disc.shape == (len(cols), 2) and w.shape == (len(cols), 2)
        by_column = ENV.pareto_front(0.99)[np.argsort(ENV.pareto_front(0.99)[:, 0])]  # column c: c-th treasure
        np.testing.assert_allclose(disc, by_column[cols], rtol=1e-5)
    assert populations(ENV) == [4]

    host = morl.make("gym:deep-sea-treasure-v0")[0]
    disc, _, _ = evaluate_returns(
        Solution(act=act, params=jnp.asarray([9, 0, 4])), host, episodes=1, gamma=0.99, max_steps=100
    )
    assert disc.shape == (3, 2) and populations(host) == [3]


def _rollout_episodes(act) -> set[int]:
    """The episode counts of the evaluation rollouts built for ``act``."""
    from morl import evaluate as ev

    return {k[3] for k in ev._ROLLOUTS if k[1] == id(act)}


def test_a_greedy_solution_on_a_deterministic_env_runs_one_episode_with_the_same_result():
    def zigzag(p, w, obs, key):  # ignores its key; wanders before it goes down
        return jnp.where((obs[:, 0] + obs[:, 1] + p) % 3 == 0, 3, 1).astype(jnp.int32)

    def zigzag_too(p, w, obs, key):  # the same policy under another identity (the rollout cache is per act)
        return zigzag(p, w, obs, key)

    protocol = EvalProtocol(gamma=0.99, episodes=5)
    every = evaluate(Solution(act=zigzag, params=jnp.arange(4)), ENV, protocol=protocol)
    once = evaluate(Solution(act=zigzag_too, params=jnp.arange(4), greedy=True), ENV, protocol=protocol)
    assert _rollout_episodes(zigzag) == {5} and _rollout_episodes(zigzag_too) == {1}
    np.testing.assert_array_equal(once.returns, every.returns)
    np.testing.assert_array_equal(once.undiscounted_returns, every.undiscounted_returns)
    assert once.metrics == every.metrics and once.protocol == every.protocol


def test_a_greedy_solution_on_a_stochastic_env_still_runs_every_episode():
    env, _ = morl.make("resource-gathering-v0")
    assert not env.deterministic

    def home(p, w, obs, key):
        return jnp.zeros(obs.shape[0], jnp.int32)

    evaluate(Solution(act=home, params=jnp.zeros(1), greedy=True), env, protocol=EvalProtocol(episodes=3, max_steps=5))
    assert _rollout_episodes(home) == {3}


@pytest.mark.parametrize(
    "env_id", ["deep-sea-treasure-v0", "fruit-tree-v0", "four-room-v0", "minecart-deterministic-v0"]
)
def test_an_env_that_says_it_is_deterministic_ignores_its_keys(env_id):
    """Two runs of the same random actions under different keys are the same, step by step."""
    import jax

    env, params = morl.make(env_id)
    assert env.deterministic
    n = env.action_space.n
    actions = np.random.default_rng(0).integers(0, n, 60)
    reset, step = jax.jit(env.reset), jax.jit(env.step)

    def run(seed):
        key = jax.random.PRNGKey(seed)
        key, k = jax.random.split(key)
        obs, state = reset(k, params)
        out = [np.asarray(obs)]
        for a in actions:
            key, k = jax.random.split(key)
            obs, state, r, term, trunc, _ = step(k, state, jnp.int32(a), params)
            out += [np.asarray(obs), np.asarray(r), np.asarray(term), np.asarray(trunc)]
            if term or trunc:
                key, k = jax.random.split(key)
                obs, state = reset(k, params)
                out.append(np.asarray(obs))
        return out

    for x, y in zip(run(0), run(1), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_conditioned_policy_scores_as_the_policy_set_of_its_copies():
    """The evaluator runs a conditioned policy's one network for every preference (no copy per preference): the
    returns are those of K copies of it, each evaluated at its preference as a policy set."""
    w = equally_spaced_weights(2, 20)
    conditioned = evaluate_returns(CONDITIONED, ENV, weights=w, episodes=2, gamma=0.99)
    copies = Solution(
        act=lambda p, w, obs, key: conditioned_act(p, w, obs, key),
        params=jnp.full(len(w), 9, jnp.int32),
        candidate_weights=w,
    )
    as_set = evaluate_returns(copies, ENV, episodes=2, gamma=0.99)
    for a, b in zip(conditioned, as_set, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len({tuple(r) for r in conditioned[0]}) >= 5  # the preferences reach different treasures


def test_evaluations_of_one_trainer_share_a_rollout_that_goes_with_the_trainer():
    """Agents hand out ``trainer._act``: a new bound method at every ``solution()``. Its evaluations reuse one
    compiled rollout, and the rollout is dropped with the trainer, so a process that trains many runs one after
    another (``morl tune``, a suite) does not keep them all (it once ran out of memory maps after ~50)."""
    import gc
    import weakref

    from morl import evaluate as ev

    class Trainer:
        def act(self, target, w, obs, key):
            return go_to_column(target, w, obs, key)

    trainer = Trainer()
    before = set(ev._ROLLOUTS)  # other tests' entries may go meanwhile (their owners collected): compare keys
    by_column = ENV.pareto_front(0.99)[np.argsort(ENV.pareto_front(0.99)[:, 0])]
    for cols in ([9, 0], [4, 7]):
        disc, _, _ = evaluate_returns(
            Solution(act=trainer.act, params=jnp.asarray(cols)), ENV, PARAMS, episodes=1, gamma=0.99
        )
        np.testing.assert_allclose(disc, by_column[cols], rtol=1e-5)
    built = set(ev._ROLLOUTS) - before
    assert len(built) == 1  # both evaluations ran one compiled rollout
    gone = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert gone() is None and not built & set(ev._ROLLOUTS)
