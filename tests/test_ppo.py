"""The shared PPO block (`morl.agents.ppo`) and networks (`morl.agents.networks`).

GAE and the normalisers are checked against hand-computed / reference (numpy, baselines-style) values; two
tiny single-objective problems check that PPO improves the return with either head (categorical, Gaussian).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Chain, gaussian_bandit

from morl.agents.networks import ActorCritic
from morl.agents.ppo import PPO, PPOConfig, RunningMeanStd, gae, linear_lr, normalize_rewards, shuffled_minibatches
from morl.rollout import make_rollout
from morl.spaces import Box, Discrete


# ----------------------------------------------------------------------------------------------- GAE
def test_gae_hand_example_truncation_vs_termination():
    """gamma = lambda = 0.5. Env 0: step 1 is truncated (bootstrap from its final observation's value, stop the
    recursion), step 2 terminates (no bootstrap). Env 1: no episode end, the last step bootstraps."""
    r = jnp.array([[1.0, 1.0], [2.0, 1.0], [0.0, 1.0]])[..., None]  # [T=3, N=2, m=1]
    v = jnp.array([[0.5, 0.0], [1.0, 2.0], [0.0, 2.0]])[..., None]
    nv = jnp.array([[1.0, 2.0], [3.0, 2.0], [4.0, 2.0]])[..., None]  # V(next_obs), true final obs included
    term = jnp.array([[False, False], [False, False], [True, False]])
    trunc = jnp.array([[False, False], [True, False], [False, False]])
    adv, targets = gae(r, v, nv, term, term | trunc, 0.5, 0.5)
    # env 0: d2 = 0 + 0 (terminated: no bootstrap) - 0 = 0; d1 = 2 + .5*3 - 1 = 2.5 (truncated: bootstrapped,
    # recursion cut); d0 = 1 + .5*1 - .5 = 1; A0 = 1 + .25 * 2.5 = 1.625
    # env 1: d2 = 1 + 1 - 2 = 0; d1 = 0; d0 = 1 + 1 - 0 = 2
    np.testing.assert_allclose(adv[..., 0], [[1.625, 2.0], [2.5, 0.0], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(targets[..., 0], [[2.125, 2.0], [3.5, 2.0], [0.0, 2.0]], rtol=1e-6)
    # treating the truncation as a termination would give A1 = 2 - 1 = 1, not 2.5
    adv_wrong, _ = gae(r, v, nv, term | trunc, term | trunc, 0.5, 0.5)
    assert float(adv_wrong[1, 0, 0]) == pytest.approx(1.0)


def test_gae_is_per_objective():
    key = jax.random.PRNGKey(0)
    r, v, nv = (jax.random.normal(k, (7, 3, 2)) for k in jax.random.split(key, 3))
    term = jax.random.bernoulli(key, 0.2, (7, 3))
    adv, _ = gae(r, v, nv, term, term, 0.9, 0.8)
    for j in range(2):
        adv_j, _ = gae(r[..., j : j + 1], v[..., j : j + 1], nv[..., j : j + 1], term, term, 0.9, 0.8)
        np.testing.assert_allclose(adv[..., j], adv_j[..., 0], rtol=1e-6)


# ----------------------------------------------------------------------------------------------- normalisers
def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(3.0, 2.0, (500, 4)), rng.normal(-1.0, 0.5, (300, 4))
    rms = RunningMeanStd.create((4,)).update(jnp.asarray(a, jnp.float32)).update(jnp.asarray(b, jnp.float32))
    both = np.concatenate([a, b])
    # baselines starts from mean 0, var 1 with count 1e-4: a negligible prior
    np.testing.assert_allclose(rms.mean, both.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rms.var, both.var(0), rtol=1e-4, atol=1e-4)
    assert float(rms.count) == pytest.approx(800.0, abs=1e-3)


def _vecnormalize_reference(rewards, done, gamma, clip, eps=1e-8):
    """baselines VecNormalize's obj_rms recursion, in float64 numpy, one step at a time."""
    T, N, m = rewards.shape
    mean, var, count = np.zeros(m), np.ones(m), 1e-4
    ret = np.zeros((N, m))
    out = np.zeros_like(rewards)
    for t in range(T):
        ret = ret * gamma + rewards[t]
        bm, bv, bc = ret.mean(0), ret.var(0), N
        delta, tot = bm - mean, count + bc
        mean, var, count = mean + delta * bc / tot, (var * count + bv * bc + delta**2 * count * bc / tot) / tot, tot
        out[t] = np.clip(rewards[t] / np.sqrt(var + eps), -clip, clip)
        ret[done[t]] = 0.0
    return out, var


def test_reward_normaliser_matches_vecnormalize():
    rng = np.random.default_rng(1)
    rewards = np.stack([rng.normal(0, 5, (40, 3)), -np.ones((40, 3))], axis=-1)  # [T, N, m=2], two scales
    done = rng.random((40, 3)) < 0.1
    expected, var = _vecnormalize_reference(rewards, done, 0.99, 10.0)
    rms, ret, scaled = normalize_rewards(
        RunningMeanStd.create((2,)), jnp.zeros((3, 2)), jnp.asarray(rewards, jnp.float32), jnp.asarray(done), 0.99, 10.0
    )
    np.testing.assert_allclose(scaled, expected, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(rms.var, var, rtol=2e-4)
    # per objective: the constant -1 objective and the noisy one get different scales
    assert abs(float(scaled[..., 0].std()) - float(scaled[..., 1].std())) > 0.01 or not np.allclose(var[0], var[1])
    # and clipping at +-10 applies
    _, _, big = normalize_rewards(
        RunningMeanStd.create((1,)), jnp.zeros((1, 1)), jnp.full((3, 1, 1), 1e6), jnp.zeros((3, 1), bool), 0.99, 10.0
    )
    assert float(jnp.max(jnp.abs(big))) <= 10.0


def test_linear_lr():
    assert float(linear_lr(3e-4, 0, 10)) == pytest.approx(3e-4)
    assert float(linear_lr(3e-4, 5, 10)) == pytest.approx(1.5e-4)
    # the host schedule is bit for bit the scalar float32 one computed with jax ops
    for total in (30, 325):
        on_device = [3e-4 * (1.0 - jnp.asarray(i, jnp.float32) / float(total)) for i in range(total)]
        np.testing.assert_array_equal([linear_lr(3e-4, i, total) for i in range(total)], np.asarray(on_device))


@pytest.mark.parametrize("n, minibatches", [(2048, 4), (1000, 8), (3000, 3), (70_000, 7)])
def test_shuffled_minibatches_is_a_permutation(n, minibatches):
    """Every row index once, in equal minibatches, on each path (one sort round, two rounds, jax's permutation)."""
    out = np.asarray(shuffled_minibatches(jax.random.PRNGKey(n), n, minibatches))
    assert out.shape == (minibatches, n // minibatches)
    np.testing.assert_array_equal(np.sort(out.ravel()), np.arange(n))


def test_shuffled_minibatches_is_uniform():
    """Where row 0 and row 63 land over 6,400 shuffles of 64 rows: each of 64 positions expects 100 hits. A uniform
    shuffle gives a chi-square with 63 degrees of freedom; 135 is exceeded with probability < 1e-6 (scipy
    chi2.sf(135, 63) = 3.7e-7), while an order kept from the index (the failure the packed keys could cause)
    puts row 0 at position 0 every time (chi-square 403,200). The keys are fixed, so the test is deterministic."""
    keys = jax.random.split(jax.random.PRNGKey(0), 6400)
    perms = np.asarray(jax.jit(jax.vmap(lambda k: shuffled_minibatches(k, 64, 1)[0]))(keys))
    for row in (0, 63):
        counts = np.bincount(np.argmax(perms == row, axis=1), minlength=64)
        chi2 = float(np.sum((counts - 100.0) ** 2 / 100.0))
        assert chi2 < 135.0, (row, chi2)


def test_population_restart_on_the_host_equals_ppo_restart():
    """`PPOPopulation.restart` builds the fresh Adam state with numpy (no compile): the same values, dtypes and
    structure as `PPO.restart` of every member."""
    from morl.agents.ppo import make_population

    env = Chain()
    ppo = PPO.for_env(env, PPOConfig(num_envs=2, num_steps=4, num_minibatches=2, epochs=1, hidden=(8,)))
    pop = make_population(ppo, env, 3, stats_gamma=0.99, eval_episodes=1, eval_steps=10, eval_gamma=0.99)
    state = jax.vmap(ppo.init)(jax.random.split(jax.random.PRNGKey(0), 3))
    state = state.replace(opt_state=jax.tree.map(lambda x: x + 1, state.opt_state), ret=state.ret + 1.0)
    host, ref = pop.restart(state), jax.vmap(ppo.restart)(state)
    assert jax.tree.structure(host) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(ref)):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------------------------- networks
def test_networks_init_follows_official_code():
    net = ActorCritic(Box(-1.0, 1.0, (3,)), Box(-1.0, 1.0, (2,)), reward_dim=4)
    params = jax.jit(net.init)(jax.random.PRNGKey(0))
    actor = params["actor"]["params"]
    assert np.all(np.asarray(actor["log_std"]) == 0.0)
    k0 = np.asarray(actor["MLP_0"]["Dense_0"]["kernel"])  # [3, 64]: orthonormal rows, gain 1
    np.testing.assert_allclose(k0 @ k0.T, np.eye(3), atol=1e-5)
    k1 = np.asarray(actor["MLP_0"]["Dense_1"]["kernel"])  # [64, 64]: orthogonal, gain 1
    np.testing.assert_allclose(k1 @ k1.T, np.eye(64), atol=1e-4)
    k_out = np.asarray(actor["MLP_0"]["Dense_2"]["kernel"])  # actor output: gain 0.01
    np.testing.assert_allclose(k_out.T @ k_out, 1e-4 * np.eye(2), atol=1e-8)
    c_out = np.asarray(params["critic"]["params"]["MLP_0"]["Dense_2"]["kernel"])  # critic output: gain 1, 4 values
    assert c_out.shape == (64, 4)
    np.testing.assert_allclose(c_out.T @ c_out, np.eye(4), atol=1e-5)
    assert all(
        np.all(np.asarray(b) == 0)
        for path, b in jax.tree_util.tree_leaves_with_path(params)
        if "bias" in jax.tree_util.keystr(path)
    )
    x = jnp.ones((5, 3))

    @jax.jit
    def run(params, key):
        action, raw, logp = net.sample(params["actor"], x, key)
        return net.value(params["critic"], x), action, logp, *net.log_prob_entropy(params["actor"], x, raw)

    value, action, logp, logp2, ent = run(params, jax.random.PRNGKey(1))
    assert value.shape == (5, 4)
    assert action.shape == (5, 2) and bool(jnp.all(jnp.abs(action) <= 1.0))
    np.testing.assert_allclose(logp, logp2, rtol=1e-5)
    # a unit Gaussian per dimension: entropy 0.5 * log(2 pi e) each
    np.testing.assert_allclose(ent, 2 * 0.5 * np.log(2 * np.pi * np.e), rtol=1e-5)
    disc = ActorCritic(Box(0, 10, (2,), jnp.int32), Discrete(4), reward_dim=2)
    dp = jax.jit(disc.init)(jax.random.PRNGKey(2))
    a, raw, logp = jax.jit(disc.sample)(dp["actor"], jnp.ones((6, 2)), jax.random.PRNGKey(3))
    assert a.shape == (6,) and a.dtype == jnp.int32
    np.testing.assert_allclose(logp, np.log(0.25), atol=0.02)  # near-uniform at init (output gain 0.01)


# ----------------------------------------------------------------------------------------------- learning
def _train(env, config: PPOConfig, updates: int, lr: float, seed: int = 0):
    """PPO on a single-objective env; returns the mean discounted return of finished episodes per update."""
    ppo = PPO.for_env(env, config)
    init = jax.jit(ppo.init)
    rollout = make_rollout(env, ppo.policy, config.num_envs, config.num_steps, gamma=config.gamma)
    weights = jnp.ones((1,), jnp.float32)

    @jax.jit
    def iteration(state, rstate, key):
        k1, k2 = jax.random.split(key)
        rstate, traj = rollout.run.pure(ppo.policy_params(state), rstate, k1, env.default_params)
        state, _ = ppo.update(state, traj, weights, jnp.float32(lr), k2)
        done = traj.terminated | traj.truncated
        mean_return = jnp.sum(jnp.where(done, traj.episode_discounted_return[..., 0], 0.0)) / jnp.maximum(done.sum(), 1)
        return state, rstate, mean_return

    key = jax.random.PRNGKey(seed)
    state, rstate = init(key), rollout.init(jax.random.PRNGKey(seed + 1))
    returns = []
    for k in jax.random.split(key, updates):
        state, rstate, ret = iteration(state, rstate, k)
        returns.append(float(ret))
    return np.array(returns)


def test_ppo_improves_return_discrete():
    cfg = PPOConfig(num_envs=8, num_steps=32, num_minibatches=4, epochs=4, gamma=0.99)
    returns = _train(Chain(), cfg, updates=25, lr=1e-3)
    # random walk from 0 to 5 within 20 steps is slow and unreliable; the optimum is 0.99^4 = 0.961. The uniform
    # random policy's expected discounted return is 0.404 (exact, dynamic programming over position and time), sd 0.446
    # per episode; the first rollout averages its ~10-16 finished episodes (short successful ones over-represented):
    # measured 0.55 / 0.57 / 0.61 / 0.49 / 0.52 over seeds 0-4 (a bound of 0.6 would fail seed 2). The
    # run must start below 0.9 (2.7 sd of that mean above the measured average) and end above it (measured last
    # three updates: 0.960-0.961 on every seed; XLA_FLAGS=--xla_cpu_max_isa=AVX2 (seed 0) and SSE4_2 (seeds 0-2)
    # gave the same values).
    assert returns[0] < 0.9, returns[:3]
    assert returns[-3:].mean() > 0.9, returns[-5:]


def test_ppo_improves_return_gaussian():
    cfg = PPOConfig(num_envs=16, num_steps=16, num_minibatches=4, epochs=4, gamma=0.99)
    returns = _train(gaussian_bandit(), cfg, updates=30, lr=3e-3)
    # at init the mean is ~0 and the std 1: E[-(a - 1)^2] = -2, sd 2.45 per episode, 0.15 for the first update's 256
    # episodes (-1.5: 3.3 sd). Measured seeds 0-4: first -1.87 / -1.89 / -1.86 / -1.94 / -1.95, last three
    # updates -0.076 to -0.082 (threshold -0.6); the same with --xla_cpu_max_isa=AVX2 (seed 0) and SSE4_2 (seeds 0-1)
    assert returns[0] < -1.5, returns[:3]
    assert returns[-3:].mean() > -0.6, returns[-5:]
