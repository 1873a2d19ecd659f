"""mo-lunar-lander stays behind the `gym:` bridge (Box2D is not portable to JAX): a few training steps on it."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest

import morl
from morl.agent import make_trainer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("Box2D") is None,
    reason="Box2D is not installed (pip install 'morl[dev]' brings it); mo-lunar-lander-v3 needs it",
)


def test_c_morl_trains_a_few_steps_on_gym_lunar_lander():
    env, params = morl.make("gym:mo-lunar-lander-v3", max_episode_steps=50)  # short episodes keep CI fast
    assert env.is_host and env.reward_dim == 4 and env.ref_point == (-101.0, -1001.0, -101.0, -101.0)
    trainer = make_trainer(
        "c-morl",
        env,
        total_steps=2 * 2 * 64 * 3,
        init_steps=2 * 2 * 64 * 2,
        num_envs=2,
        num_steps=64,
        epochs=1,
        num_minibatches=2,
        init_weight_delta=1.0,
        num_select=1,
        update_iter=1,
        eval_episodes=1,
        eval_interval=1,
    )
    state = trainer.init(jax.random.PRNGKey(0))
    updates = 0
    while not trainer.done(state) and updates < 20:
        state, logs = trainer.update(state)
        updates += 1
    assert trainer.done(state), "the tiny budget was not spent in 20 updates"
    assert trainer.env_steps(state) > 0
    solution = trainer.solution(state)
    returns = np.asarray(solution.candidate_returns)
    assert returns.ndim == 2 and returns.shape[1] == 4 and np.all(np.isfinite(returns))
