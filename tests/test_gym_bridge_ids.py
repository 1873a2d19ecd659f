"""Every ported id seen through `to_gymnasium` looks like MO-Gymnasium's env: the same spaces bit for bit, the
same observation types and values, and MO-Gymnasium's tools (checker, LinearReward, MORecordEpisodeStatistics)
run on it."""

from __future__ import annotations

import warnings

import gymnasium
import mo_gymnasium as mo_gym
import numpy as np
import pytest
from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics

from morl.gym_bridge import check_env, to_gymnasium

# MO-Gymnasium's own reward spaces are float64 literals cast to float32; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32:UserWarning")

CLASSIC_IDS = [
    "deep-sea-treasure-v0",
    "deep-sea-treasure-concave-v0",
    "deep-sea-treasure-mirrored-v0",
    "fruit-tree-v0",
    "resource-gathering-v0",
    "four-room-v0",
    "minecart-v0",
    "minecart-deterministic-v0",
    "mo-mountaincar-v0",
    "mo-mountaincar-3d-v0",
    "mo-mountaincar-timemove-v0",
    "mo-mountaincar-timespeed-v0",
    "mo-mountaincarcontinuous-v0",
    "breakable-bottles-v0",
    "fishwood-v0",
    "water-reservoir-v0",
]
# MO-Gymnasium declares the time penalty's high as -1, but its own step returns 0 there on the goal step
# (test_mo_gymnasium_mountain_car_reward_leaves_its_declared_space): the bridge keeps the true bound 0
MOUNTAIN_CAR_TIME_HIGH = {
    "mo-mountaincar-v0",
    "mo-mountaincar-3d-v0",
    "mo-mountaincar-timemove-v0",
    "mo-mountaincar-timespeed-v0",
}


def assert_same_space(ours, theirs, what):
    """Exact equality: type, dtype, shape, bounds bit for bit (gymnasium's Box == uses allclose), Dict keys."""
    assert type(ours) is type(theirs), f"{what}: {ours} vs MO-Gymnasium's {theirs}"
    if isinstance(theirs, gymnasium.spaces.Dict):
        assert list(ours.spaces) == list(theirs.spaces), what
        for k in theirs.spaces:
            assert_same_space(ours[k], theirs[k], f"{what}[{k!r}]")
    elif isinstance(theirs, gymnasium.spaces.Box):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), f"{what}: {ours} vs {theirs}"
        np.testing.assert_array_equal(ours.low, theirs.low, err_msg=what)
        np.testing.assert_array_equal(ours.high, theirs.high, err_msg=what)
    else:
        assert ours == theirs and ours.dtype == theirs.dtype, f"{what}: {ours} vs MO-Gymnasium's {theirs}"


def assert_same_observation(ours, theirs):
    """MO-Gymnasium's observation: the same container, keys in the same order, equal values; arrays of the same
    dtype and shape. One difference, by design: breakable-bottles' ``bottles_dropped`` is an int8 array where
    MO-Gymnasium returns a list (gymnasium's checker flags the list; an array is what its MultiBinary holds)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), (ours, theirs)
        for k in theirs:
            if isinstance(theirs[k], list):
                assert isinstance(ours[k], np.ndarray) and ours[k].dtype == np.int8, (k, ours[k])
                assert ours[k].tolist() == theirs[k], (k, ours[k], theirs[k])
            else:
                assert_same_observation(ours[k], theirs[k])
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray) and (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
        np.testing.assert_array_equal(ours, theirs)
    else:
        assert type(ours) is type(theirs) and ours == theirs, (ours, theirs)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [(i, {}) for i in CLASSIC_IDS]
    + [("fruit-tree-v0", {"depth": 5}), ("water-reservoir-v0", {"nO": 3}), ("breakable-bottles-v0", {"size": 7})],
)
def test_bridged_spaces_equal_mo_gymnasium(env_id, kwargs):
    ours, theirs = to_gymnasium(env_id, **kwargs), mo_gym.make(env_id, **kwargs).unwrapped
    assert_same_space(ours.observation_space, theirs.observation_space, f"{env_id} observation_space")
    assert_same_space(ours.action_space, theirs.action_space, f"{env_id} action_space")
    if env_id in MOUNTAIN_CAR_TIME_HIGH:
        assert theirs.reward_space.high[0] == -1.0 and ours.reward_space.high[0] == 0.0
        np.testing.assert_array_equal(ours.reward_space.high[1:], theirs.reward_space.high[1:])
        np.testing.assert_array_equal(ours.reward_space.low, theirs.reward_space.low)
    else:
        assert_same_space(ours.reward_space, theirs.reward_space, f"{env_id} reward_space")
    assert ours.reward_dim == theirs.reward_dim


def test_mo_gymnasium_mountain_car_reward_leaves_its_declared_space():
    """Why the bridge's mountain-car reward spaces say 0, not MO-Gymnasium's -1, for the time penalty's high."""
    env = mo_gym.make("mo-mountaincar-v0")
    obs, _ = env.reset(seed=0)
    for _ in range(200):  # energy pumping: push along the velocity; reaches the goal in ~100 steps
        obs, reward, term, _, _ = env.step(2 if obs[1] >= 0 else 0)
        if term:
            break
    assert term and reward[0] == 0.0 and reward not in env.unwrapped.reward_space
    assert reward in to_gymnasium("mo-mountaincar-v0").reward_space


def assert_same_structure(ours, theirs):
    """The same observation type as MO-Gymnasium's (values may differ: different random streams)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and list(ours) == list(theirs), (ours, theirs)
        for k in theirs:
            if isinstance(theirs[k], list):  # breakable-bottles' bottles_dropped (see assert_same_observation)
                assert isinstance(ours[k], np.ndarray) and ours[k].dtype == np.int8 and len(ours[k]) == len(theirs[k])
            else:
                assert_same_structure(ours[k], theirs[k])
    elif isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray) and (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), (ours, theirs)
    else:
        assert type(ours) is type(theirs), (ours, theirs)


@pytest.mark.parametrize("env_id", CLASSIC_IDS)
def test_mo_gymnasium_tools_run_on_every_bridged_id(env_id):
    """gymnasium's check_env (via ours: all its checks but the scalar-reward one, plus vector-reward checks), then
    MO-Gymnasium's LinearReward and MORecordEpisodeStatistics beside MO-Gymnasium's own env under the same
    actions: every observation has MO-Gymnasium's type (container, keys, dtype, shape)."""
    bridged = to_gymnasium(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning of gymnasium's checker (e.g. an observation type) fails
        if env_id == "water-reservoir-v0":  # MO-Gymnasium's own spaces (Box(0, inf) action and observation)
            warnings.filterwarnings(
                "ignore",
                message=r".*(A Box (action|observation) space maximum value is "
                r"infinity|For Box action spaces, we recommend using a symm)",
            )
        check_env(bridged)
    w = np.full(bridged.reward_dim, 1.0 / bridged.reward_dim)
    ours = MORecordEpisodeStatistics(LinearReward(to_gymnasium(env_id), weight=w), gamma=0.99)
    theirs = mo_gym.make(env_id)
    ours.action_space.seed(0)
    obs, _ = ours.reset(seed=0)
    ref, _ = theirs.reset(seed=0)
    assert_same_structure(obs, ref)
    for _ in range(60):
        action = ours.action_space.sample()
        obs, r, term, trunc, info = ours.step(action)
        ref, ref_r, ref_term, ref_trunc, _ = theirs.step(action)
        assert_same_structure(obs, ref)
        assert np.ndim(r) == 0 and np.isfinite(r) and np.asarray(info["vector_reward"]).shape == np.shape(ref_r)
        if term or trunc:
            assert info["episode"]["r"].shape == (bridged.reward_dim,)
            obs, _ = ours.reset()
        if ref_term or ref_trunc:
            theirs.reset()


# action sequences that reach every kind of step (breakable-bottles: two drops on cell 1 with prob_drop 1)
BOTTLES_ACTIONS = [0, 0, 0, 0, 2, 2, 1, 1, 0, 0, 2, 1, 1, 1, 0, 2, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "env_id, kwargs, actions",
    [
        ("deep-sea-treasure-v0", {}, [1, 3, 1, 1, 3, 3, 1, 1]),
        ("deep-sea-treasure-mirrored-v0", {}, [2, 1, 1, 3, 1, 1, 2, 1, 1]),
        ("fruit-tree-v0", {}, [0, 1, 1, 0, 1, 0]),
        ("four-room-v0", {}, [3, 3, 1, 1, 3, 0, 2, 3, 3, 1, 1, 1, 3]),
        ("minecart-deterministic-v0", {}, [4, 4, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 3, 3, 5, 5]),
        ("breakable-bottles-v0", {"prob_drop": 0.0}, BOTTLES_ACTIONS),
        ("breakable-bottles-v0", {"prob_drop": 1.0}, BOTTLES_ACTIONS),
        ("breakable-bottles-v0", {"prob_drop": 1.0, "unbreakable_bottles": True}, [0, 0, 0, 0, 2, 2, 1, 1, 0, 2, 0, 2]),
    ],
)
def test_bridged_observations_equal_mo_gymnasium(env_id, kwargs, actions):
    """Deterministic ids (and breakable-bottles with its drop forced to 0 or 1 on both sides): the same seed and
    actions give MO-Gymnasium's observations (type, keys, values) and rewards, and MO-Gymnasium's own code reads
    ours (breakable-bottles' get_obs_idx, gymnasium's FlattenObservation)."""
    ours, theirs = to_gymnasium(env_id, **kwargs), mo_gym.make(env_id, **kwargs)
    obs, _ = ours.reset(seed=3)
    ref, _ = theirs.reset(seed=3)
    assert_same_observation(obs, ref)
    seen, potentials = [(obs, ref)], []
    for a in actions:
        obs, r, term, trunc, _ = ours.step(a)
        ref, ref_r, ref_term, ref_trunc, _ = theirs.step(a)
        assert_same_observation(obs, ref)
        np.testing.assert_array_equal(r, np.asarray(ref_r, np.float32))
        assert r in ours.reward_space
        assert (term, trunc) == (ref_term, ref_trunc)
        potentials.append(r[-1])
        seen.append((obs, ref))
        if term or trunc:
            break
    if env_id == "breakable-bottles-v0":
        mo_env, space = theirs.unwrapped, theirs.unwrapped.observation_space
        flat = gymnasium.wrappers.FlattenObservation(to_gymnasium(env_id, **kwargs))
        assert flat.observation_space == gymnasium.spaces.flatten_space(space)
        for o, ref in seen:
            assert mo_env.get_obs_idx(o) == mo_env.get_obs_idx(ref)
            np.testing.assert_array_equal(flat.observation(o), gymnasium.spaces.flatten(space, ref))
        if kwargs["prob_drop"] == 1.0 and not kwargs.get("unbreakable_bottles"):
            assert max(o["bottles_dropped"][0] for o, _ in seen) == 2  # counts, as MO-Gymnasium's values
        if kwargs.get("unbreakable_bottles"):
            # picking a dropped bottle up again: potential reward +1, inside the bridge's reward space
            assert max(potentials) == 1.0 and ours.reward_space.high[2] == 1.0
