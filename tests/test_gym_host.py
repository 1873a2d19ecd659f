"""gymnasium -> morl: from_gymnasium / morl.make("gym:...") and the host-path descriptor `GymnasiumEnv`."""

from __future__ import annotations

import gymnasium
import mo_gymnasium as mo_gym
import numpy as np
import pytest
from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

import morl
from morl import gym_bridge
from morl.gym_bridge import to_gymnasium
from morl.gym_host import KNOWN_REF_POINTS, GymnasiumEnv, from_gymnasium, known_ref_point
from morl.spaces import Discrete

# MO-Gymnasium's own reward spaces are float64 literals cast to float32; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32:UserWarning")

DST, _ = morl.make("deep-sea-treasure-v0")


@pytest.fixture(scope="module")
def gym_dst():
    env, params = morl.make("gym:deep-sea-treasure-v0")
    assert params is None
    return env


def test_make_gym_id_returns_a_host_descriptor(gym_dst):
    g = gym_dst
    assert isinstance(g, GymnasiumEnv) and g.is_host and g.default_params is None
    assert g.observation_space.shape == DST.observation_space.shape == (2,)
    assert np.dtype(g.observation_space.dtype) == np.int32
    np.testing.assert_array_equal(g.observation_space.high, DST.observation_space.high)
    assert g.action_space == Discrete(4) == DST.action_space
    np.testing.assert_allclose(g.reward_space.low, DST.reward_space.low)
    np.testing.assert_allclose(g.reward_space.high, DST.reward_space.high, rtol=1e-6)
    assert g.reward_dim == 2 and g.reward_names == ("r0", "r1")  # MO-Gymnasium envs carry no names
    assert g.ref_point == (0.0, -25.0) == DST.ref_point
    assert g.max_steps == 100 and g.spec_id == g.name == "deep-sea-treasure-v0"
    assert g.has_known_front
    np.testing.assert_allclose(g.pareto_front(0.99), DST.pareto_front(0.99), rtol=1e-6)
    single = g.make_single()
    single.reset(seed=0)
    assert single.step(1)[1].shape == (2,)


def test_make_vector_env_is_a_seeded_mo_sync_vector_env(gym_dst):
    vec = gym_dst.make_vector_env(3, seed=0)
    assert isinstance(vec, MOSyncVectorEnv) and vec.num_envs == 3
    obs, rewards, term, _, _ = vec.step(np.array([1, 3, 0]))
    np.testing.assert_array_equal(obs, [[1, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(rewards, [[0.7, -1.0], [0.0, -1.0], [0.0, -1.0]], rtol=1e-6)
    assert rewards.dtype == np.float32 and list(term) == [True, False, False]
    with pytest.raises(ValueError, match="num_envs must be a positive int"):
        gym_dst.make_vector_env(0)
    # a stochastic env: the same seed gives the same starts (also on the next unseeded reset)
    car = from_gymnasium("mo-mountaincar-v0")
    a, b, c = car.make_vector_env(2, seed=7), car.make_vector_env(2, seed=7), car.make_vector_env(2, seed=8)
    oa, ob, oc = a.reset()[0], b.reset()[0], c.reset()[0]
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc) and not np.array_equal(oa[0], oa[1])


def test_unknown_gym_id_names_close_matches():
    with pytest.raises(morl.UnknownEnvError, match="Did you mean: deep-sea-treasure-v0"):
        morl.make("gym:deep-sea-treasur-v0")
    with pytest.raises(morl.UnknownEnvError, match="minecart-v0"):
        from_gymnasium("minecart-v9")


def test_bad_gym_envs_get_clear_errors():
    with pytest.raises(ValueError, match="CartPole-v1 has no vector reward"):
        from_gymnasium("CartPole-v1")
    with pytest.raises(TypeError, match="breakable-bottles-v0.*FlattenObservation"):
        from_gymnasium("breakable-bottles-v0")
    with pytest.raises(TypeError, match="function that builds the env"):
        from_gymnasium(mo_gym.make("deep-sea-treasure-v0"))
    with pytest.raises(ValueError, match="ref_point"):
        from_gymnasium("deep-sea-treasure-v0", ref_point=(0.0, 0.0, 0.0))


def test_env_functions_kwargs_and_overrides():
    g = from_gymnasium(mo_gym.make, env_name="minecart-v0", reward_names=("ore1", "ore2", "fuel"))
    assert g.spec_id == "minecart-v0" and g.ref_point == (-1.0, -1.0, -200.0)
    assert g.reward_names == ("ore1", "ore2", "fuel") and g.reward_dim == 3 and g.max_steps == 1000
    short = from_gymnasium("deep-sea-treasure-v0", max_episode_steps=7, ref_point=(0, -50))
    assert short.max_steps == 7 and short.ref_point == (0.0, -50.0)
    assert short.make_single().spec.max_episode_steps == 7


def test_known_ref_points_are_real_ids():
    registered = set(gymnasium.registry)
    assert set(KNOWN_REF_POINTS) <= registered, set(KNOWN_REF_POINTS) - registered


def test_round_trip_keeps_names_ref_point_limit_and_front():
    g = from_gymnasium(lambda: to_gymnasium("deep-sea-treasure-v0"))
    assert g.reward_names == ("treasure", "time") and g.ref_point == (0.0, -25.0) and g.max_steps == 100
    assert g.observation_space.shape == (2,) and g.action_space == Discrete(4)
    np.testing.assert_allclose(g.pareto_front(0.95), DST.pareto_front(0.95))
    vec = g.make_vector_env(2, seed=0)
    _, rewards, term, *_ = vec.step(np.array([1, 0]))
    np.testing.assert_allclose(rewards, [[0.7, -1.0], [0.0, -1.0]], rtol=1e-6)
    assert list(term) == [True, False]


def test_both_directions_import_from_gym_bridge_and_morl():
    """``morl.gym_bridge`` re-exports the gymnasium -> morl side, and ``morl.from_gymnasium`` is the same function."""
    assert gym_bridge.GymnasiumEnv is GymnasiumEnv and gym_bridge.from_gymnasium is from_gymnasium
    assert gym_bridge.KNOWN_REF_POINTS is KNOWN_REF_POINTS and gym_bridge.known_ref_point is known_ref_point
    assert morl.from_gymnasium is from_gymnasium and morl.to_gymnasium is to_gymnasium
    assert known_ref_point("minecart-v0") == (-1.0, -1.0, -200.0) and known_ref_point(None) is None
