"""SAC with a vector critic (`agents.sac`): its sampling, TD target and losses on hand-computed cases.

The networks have no hidden layer (``hidden=()``), so every output is an affine function whose parameters are set
by hand: the actor's mean is ``MU``, its log-std ``LOG_STD``; twin ``k`` of the critic is affine in the action."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from morl.agents.sac import SAC
from morl.spaces import Box

MU = 0.3
LOG_STD = -1.5  # the log-std head's pre-tanh output 0 maps to -5 + 3.5 * (tanh(0) + 1)
ALPHA = 0.5
GAMMA = 0.9
SCALE = 2.0  # action bounds [-2, 2]: scale 2, bias 0

SAC_ = SAC(Box(-10.0, 10.0, (2,)), Box(-SCALE, SCALE, (1,)), reward_dim=2, hidden=(), gamma=GAMMA, alpha=ALPHA)


def _dense(kernel, bias):
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _critic(action_rows, biases):
    """Twin affine critics ``Q_k(s, a) = a * action_rows[k] + biases[k]`` (the observation weights are 0)."""
    kernels = [[[0.0, 0.0], [0.0, 0.0], row] for row in action_rows]
    return {"params": {"_ReluMLP_0": {"Dense_0": _dense(kernels, biases)}}}


ACTOR = {"params": {"Dense_0": _dense([[0.0], [0.0]], [MU]), "Dense_1": _dense([[0.0], [0.0]], [0.0])}}
#: Q_1(s, a) = [1 + a, 2], Q_2(s, a) = [2, a]
CRITIC = _critic([[1.0, 0.0], [0.0, 1.0]], [[1.0, 2.0], [2.0, 0.0]])
#: Q'_1 = [4, 0], Q'_2 = [1, 2] whatever the action
TARGET = _critic([[0.0, 0.0], [0.0, 0.0]], [[4.0, 0.0], [1.0, 2.0]])
X = jnp.array([[1.0, -2.0], [0.5, 3.0], [0.0, 0.0]])
W = jnp.array([0.5, 0.5])


def weighted_sum(v):
    return jnp.sum(W * v, axis=-1)


def _state():
    return SAC_.init(jax.random.PRNGKey(0)).replace(
        actor=ACTOR, critic=CRITIC, critic_target=TARGET, log_alpha=jnp.float32(np.log(ALPHA))
    )


def _by_hand(key, batch):
    """The pre-tanh sample ``u``, the action and its log-probability, computed with numpy from the same noise."""
    eps = np.asarray(jax.random.normal(key, (batch, 1)), np.float64)
    u = MU + np.exp(LOG_STD) * eps
    t = np.tanh(u)
    logp = stats.norm.logpdf(u, MU, np.exp(LOG_STD)) - np.log(SCALE * (1 - t**2) + 1e-6)
    return u[:, 0], SCALE * t[:, 0], logp[:, 0]


def test_sample_squashes_and_corrects_the_log_probability():
    key = jax.random.PRNGKey(1)
    action, logp = SAC_.sample(ACTOR, X, key)
    _, a_hand, logp_hand = _by_hand(key, 3)
    np.testing.assert_allclose(np.asarray(action)[:, 0], a_hand, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logp), logp_hand, rtol=1e-4, atol=1e-4)
    # the evaluation action is the squashed mean
    np.testing.assert_allclose(np.asarray(SAC_.mode(ACTOR, X))[:, 0], SCALE * np.tanh(MU), rtol=1e-6)


def test_td_target_takes_the_whole_target_twin_with_the_smaller_scalarised_value():
    key = jax.random.PRNGKey(2)
    reward = jnp.array([[1.0, -1.0], [0.0, 0.0], [2.0, 3.0]])
    terminated = jnp.array([0.0, 1.0, 0.0])
    _, _, logp_next = _by_hand(key, 3)
    # weighted sum: w.Q'_1 = 2 > w.Q'_2 = 1.5 -> the vector of twin 2, [1, 2]; the entropy bonus on every objective
    y = SAC_.td_target(_state(), X, reward, terminated, weighted_sum, key)
    soft = np.array([1.0, 2.0])[None, :] - ALPHA * logp_next[:, None]
    want = np.asarray(reward) + GAMMA * (1 - np.asarray(terminated))[:, None] * soft
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5)
    # another scalarisation picks another twin: -Q_0 is smaller for twin 1 ([4, 0])
    y = SAC_.td_target(_state(), X, reward, terminated, lambda v: -v[..., 0], key)
    soft = np.array([4.0, 0.0])[None, :] - ALPHA * logp_next[:, None]
    np.testing.assert_allclose(np.asarray(y)[0], np.asarray(reward)[0] + GAMMA * soft[0], rtol=1e-5)


def test_critic_loss_sums_the_twins_mean_squared_errors():
    a = jnp.array([[0.5], [-1.0]])
    target = jnp.array([[1.0, 1.0], [0.0, 0.0]])
    loss, q = SAC_.critic_loss(CRITIC, X[:2], a, target)
    # Q_1 = [1.5, 2], [0, 2]; Q_2 = [2, 0.5], [2, -1]
    np.testing.assert_allclose(np.asarray(q), [[[1.5, 2.0], [0.0, 2.0]], [[2.0, 0.5], [2.0, -1.0]]])
    assert float(loss) == pytest.approx((0.25 + 1.0 + 0.0 + 4.0) / 4 + (1.0 + 0.25 + 4.0 + 1.0) / 4)
    # its gradient w.r.t. twin 2's bias: 2 * mean over the batch of (Q_2 - y) / m, per objective
    grad = jax.grad(lambda c: SAC_.critic_loss(c, X[:2], a, target)[0])(CRITIC)
    np.testing.assert_allclose(
        np.asarray(grad["params"]["_ReluMLP_0"]["Dense_0"]["bias"])[1],
        [2 * (1.0 + 2.0) / 4, 2 * (-0.5 - 1.0) / 4],
        rtol=1e-6,
    )


def test_actor_loss_and_its_reparameterised_gradient():
    key = jax.random.PRNGKey(3)
    u, a, logp = _by_hand(key, 3)
    log_alpha = jnp.float32(np.log(ALPHA))
    loss, _ = SAC_.actor_loss(ACTOR, CRITIC, log_alpha, X, weighted_sum, key)
    # w.Q_1 = (3 + a) / 2 > w.Q_2 = (2 + a) / 2: the smaller twin is Q_2
    assert float(loss) == pytest.approx(np.mean(ALPHA * logp - (2 + a) / 2), rel=1e-5, abs=1e-5)
    # d/d(mean): the Gaussian term does not depend on the mean (u - mu = std * eps); the squashing correction
    # gives d logp / du = 2 SCALE t (1 - t^2) / (SCALE (1 - t^2) + 1e-6), and da / du = SCALE (1 - t^2)
    grad = jax.grad(lambda p: SAC_.actor_loss(p, CRITIC, log_alpha, X, weighted_sum, key)[0])(ACTOR)
    t = np.tanh(u)
    dlogp = 2 * SCALE * t * (1 - t**2) / (SCALE * (1 - t**2) + 1e-6)
    want = np.mean(ALPHA * dlogp - 0.5 * SCALE * (1 - t**2))
    assert float(grad["params"]["Dense_0"]["bias"][0]) == pytest.approx(want, rel=1e-4)


def test_alpha_loss_moves_the_temperature_towards_the_target_entropy():
    logp = jnp.array([0.5, -2.5, 1.0])
    la = jnp.float32(np.log(ALPHA))
    # -mean(alpha (logp - 1)) = -0.5 * mean([-0.5, -3.5, 0]) = 2/3
    assert float(SAC_.alpha_loss(la, logp)) == pytest.approx(2.0 / 3.0, rel=1e-6)
    g_la, g_logp = jax.grad(SAC_.alpha_loss, argnums=(0, 1))(la, logp)
    assert float(g_la) == pytest.approx(2.0 / 3.0, rel=1e-6)  # d/d(log alpha) exp(log alpha) = alpha
    np.testing.assert_array_equal(np.asarray(g_logp), 0.0)  # no gradient into the policy
    # entropy above the target (-logp > 1 on average): a positive gradient, so Adam lowers alpha
    assert float(jax.grad(SAC_.alpha_loss)(la, jnp.array([-3.0, -2.0]))) > 0
