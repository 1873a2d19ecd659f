"""Hyper-PPO (MORLAX): the hypernetwork against its formula, the sparse preference sampler, config errors, and the
front it learns on deep-sea-treasure."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.hyper_ppo import HyperPPOConfig, sample_preferences
from morl.evaluate import EvalProtocol, evaluate

DST_TRUE_HV = 360.40  # gamma 0.99, ref [0, -25]


def _swish(x):
    return x / (1.0 + np.exp(-x))


def test_registers_with_morlax_defaults_and_per_robot_settings():
    spec = agent_spec("hyper-ppo")
    cfg = make_config("hyper-ppo")
    assert spec.action_kinds == ("discrete", "continuous")
    assert (cfg.num_envs, cfg.num_steps, cfg.num_minibatches, cfg.epochs, cfg.learning_rate, cfg.gamma) == (
        128,
        20,
        2,
        4,
        5e-4,
        0.98,
    )
    assert (cfg.num_clusters, cfg.sampling, cfg.hyper_hidden, cfg.num_features, cfg.hidden) == (
        8,
        "sparse",
        (128, 128),
        16,
        (64, 64),
    )
    hopper = make_config("hyper-ppo", "mo-hopper-2obj-v5")
    assert (hopper.num_envs, hopper.num_steps, hopper.num_minibatches, hopper.learning_rate) == (1024, 30, 32, 5e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(network="mlp"), "network"),
        (dict(num_envs=12, num_clusters=8), "multiple of num_clusters"),
        (dict(total_timesteps=100, num_envs=8, num_steps=20), "less than one iteration"),
        (dict(num_envs=6, num_steps=5, num_minibatches=4, num_clusters=6), "divisible by num_minibatches"),
    ],
)
def test_bad_configs_name_the_field_and_the_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        HyperPPOConfig(**bad)


def test_sparse_preferences_are_dirichlet_draws_then_the_corners_in_blocks():
    w = np.asarray(sample_preferences(jax.random.PRNGKey(0), 16, 3, "sparse", 8, 1.0))
    assert w.shape == (16, 3) and np.allclose(w.sum(1), 1.0, atol=1e-6) and (w >= 0).all()
    blocks = w.reshape(8, 2, 3)
    assert (blocks[:, 0] == blocks[:, 1]).all()  # each preference drives num_envs / K consecutive envs
    np.testing.assert_array_equal(blocks[5:, 0], np.eye(3))  # the last m clusters are the simplex corners
    assert len({tuple(r) for r in blocks[:5, 0]}) == 5 and (blocks[:5, 0].max(1) < 1.0).all()
    dense = np.asarray(sample_preferences(jax.random.PRNGKey(0), 16, 3, "dense", 8, 1.0))
    assert len({tuple(r) for r in dense}) == 16 and np.allclose(dense.sum(1), 1.0, atol=1e-6)


def test_hypernetwork_generates_the_target_weights_by_its_formula():
    """theta(w) = swish-MLP(w / sum w) @ W + b: at init W = 0, so every preference gets the same fresh network b;
    with W set, the generated weights equal the formula computed by hand in numpy."""
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = dict(total_timesteps=64, num_envs=8, num_steps=8, num_minibatches=1, hyper_hidden=(5,), num_features=3)
    trainer = make_trainer("hyper-ppo", env, params, **cfg)
    net = trainer.net
    p = net.init(jax.random.PRNGKey(1))
    w = jnp.array([[0.2, 0.8], [1.0, 0.0], [3.0, 1.0]], jnp.float32)  # the last one is not normalised on purpose
    theta = np.asarray(net.generate(p, "actor", w))
    b = np.asarray(p["actor"]["params"]["b"])
    assert np.array_equal(theta, np.broadcast_to(b, theta.shape))
    hp = jax.tree.map(np.asarray, p["actor"]["params"])
    hp["W"] = np.asarray(jax.random.normal(jax.random.PRNGKey(2), hp["W"].shape), np.float32)
    p["actor"]["params"] = jax.tree.map(jnp.asarray, hp)
    x = np.asarray(w) / np.asarray(w).sum(1, keepdims=True)
    h = _swish(x @ hp["Dense_0"]["kernel"] + hp["Dense_0"]["bias"])
    f = h @ hp["Dense_1"]["kernel"] + hp["Dense_1"]["bias"]
    np.testing.assert_allclose(np.asarray(net.generate(p, "actor", w)), f @ hp["W"] + hp["b"], rtol=1e-5, atol=1e-5)
    # the generated weights are what the actor uses: two preferences now act through different networks
    obs = jnp.zeros((3, 2), jnp.int32)
    out = np.asarray(net.actor_out(p, trainer.features(trainer.init(jax.random.PRNGKey(0)).obs_rms, obs), w))
    assert out.shape == (3, 4) and not np.allclose(out[0], out[1])


#: the CI learning run: 64 envs x 32 steps per iteration, 8 preferences (6 Dirichlet + the 2 corners) per
#: iteration, 50 iterations (102,400 transitions); the step size 1e-3 (MOCheetah's 5e-4 needs twice the budget).
DST_CONFIG = dict(
    total_timesteps=102_400,
    num_envs=64,
    num_steps=32,
    num_minibatches=4,
    gamma=0.99,
    learning_rate=1e-3,
    iterations_per_chunk=25,
)


def test_dst_front_reaches_95_percent_of_the_true_hypervolume():
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("hyper-ppo", env, params, **DST_CONFIG)
    state = trainer.init(jax.random.PRNGKey(0))
    while not trainer.done(state):
        state, logs = trainer.update(state)
    assert trainer.env_steps(state) == DST_CONFIG["total_timesteps"]
    assert trainer._update._cache_size() == 1  # one program for every chunk, the last one included
    front = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99, episodes=1))
    assert front.metrics["hypervolume"] >= 0.95 * DST_TRUE_HV, front.front
