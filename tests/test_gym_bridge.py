"""morl -> gymnasium: to_gymnasium (checker, MO-Gymnasium wrappers, vector env, bad input, env-declared views).
Every ported id seen through the bridge is compared with MO-Gymnasium's in tests/test_gym_bridge_ids.py; the
other direction is tested in tests/test_gym_host.py.

Wrappers of one env object share one compile, so the whole file compiles each pure env a handful of times.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from mo_gymnasium.wrappers import LinearReward, MORecordEpisodeStatistics
from mo_gymnasium.wrappers.vector import MOSyncVectorEnv

import morl
from morl.env import Environment, EnvParams, time_limit
from morl.gym_bridge import SCALAR_REWARD_WARNING, ToGymnasiumEnv, _compiled, check_env, to_gymnasium
from morl.spaces import Box

# MO-Gymnasium's own reward spaces are float64 literals cast to float32; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting to float32:UserWarning")


# ------------------------------------------------------------------ a small stochastic env with a Box action
@struct.dataclass
class NoisyParams(EnvParams):
    max_steps: int = 4
    nan_at: int = -1  # the step whose reward is NaN (-1: never), to test the NaN guard


class NoisyLine(Environment):
    """A point on [-3, 3] pushed by a continuous action plus noise; random start; ends at the right wall."""

    reward_names = ("progress", "effort")
    ref_point = (-10.0, -2.0)

    @property
    def default_params(self) -> NoisyParams:
        return NoisyParams()

    @property
    def observation_space(self) -> Box:
        return Box(np.array([-3.0, 0.0]), np.array([3.0, 1.0]), (2,), jnp.float32)

    @property
    def action_space(self) -> Box:
        return Box(-1.0, 1.0, (1,), jnp.float32)

    @property
    def reward_space(self) -> Box:
        return Box(np.array([-6.0, -1.0]), np.array([6.0, 0.0]), (2,), jnp.float32)

    def _obs(self, state, params):
        return jnp.stack([state[0], state[1] / params.max_steps]).astype(jnp.float32)

    def reset(self, key, params):
        state = (jax.random.uniform(key, (), minval=-1.0, maxval=1.0), jnp.int32(0))
        return self._obs(state, params), state

    def step(self, key, state, action, params):
        pos, time = state
        new = jnp.clip(pos + action[0] + 0.3 * jax.random.normal(key), -3.0, 3.0)
        time = time + 1
        reward = jnp.stack([new - pos, -(action[0] ** 2)]).astype(jnp.float32)
        reward = jnp.where(time == params.nan_at, jnp.nan, reward)
        state = (new, time)
        return self._obs(state, params), state, reward, new >= 3.0, time_limit(time, params), {"pos": new}


NOISY = NoisyLine()
DST, DST_PARAMS = morl.make("deep-sea-treasure-v0")
_DIRECT = {}  # independent jitted functions for direct rollouts (not the bridge's)


def direct_episode(env, params, key, actions):
    """Step the pure env with the bridge's documented key schedule; stop at the end of the episode."""
    if id(env) not in _DIRECT:
        _DIRECT[id(env)] = (jax.jit(env.reset), jax.jit(env.step))
    reset, step = _DIRECT[id(env)]
    key, sub = jax.random.split(key)
    obs, state = reset(sub, params)
    observations, rewards = [np.asarray(obs)], []
    for a in actions:
        key, sub = jax.random.split(key)
        obs, state, r, term, trunc, _ = step(sub, state, jnp.asarray(a), params)
        observations.append(np.asarray(obs))
        rewards.append(np.asarray(r))
        if bool(term) or bool(trunc):
            return observations, np.array(rewards), bool(term), bool(trunc)
    raise AssertionError("episode did not end within the given actions")


def dst_actions(seed, n=100):
    return np.random.default_rng(seed).integers(0, 4, n)


def noisy_actions(seed, n=20):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def dst():
    return to_gymnasium("deep-sea-treasure-v0")


@pytest.fixture(scope="module")
def noisy():
    return to_gymnasium(NOISY)


# ================================================================== to_gymnasium: API and the checker
def test_check_env_passes_with_only_the_scalar_reward_check_skipped(dst):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any other warning of gymnasium's checker fails the test
        check_env(dst, skip_render_check=True)
    # gymnasium's own check_env on the same env warns about exactly one thing: the non-scalar reward
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium.utils.env_checker.check_env(dst, skip_render_check=True)
    messages = [str(w.message) for w in caught]
    assert messages and all(SCALAR_REWARD_WARNING in m for m in messages), messages


def test_check_env_on_a_stochastic_box_action_env(noisy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(noisy, skip_render_check=True)


class _BadRewardEnv(gymnasium.Env):
    """Passes gymnasium's checks, but its reward leaves the declared reward_space."""

    observation_space = gymnasium.spaces.Discrete(2)
    action_space = gymnasium.spaces.Discrete(2)
    reward_space = gymnasium.spaces.Box(0.0, 1.0, (2,), np.float32)
    reward_dim = 2

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, np.array([0.5, 3.0], np.float32), False, False, {}


def test_check_env_catches_a_reward_outside_the_reward_space():
    with pytest.raises(AssertionError, match="outside reward_space"):
        check_env(_BadRewardEnv(), skip_close_check=True)


def test_declared_spaces_and_mo_attributes(dst):
    assert isinstance(dst, ToGymnasiumEnv) and isinstance(dst, gymnasium.Env)
    assert dst.unwrapped is dst  # no TimeLimit or other wrapper
    assert dst.observation_space == gymnasium.spaces.Box(0, 11, (2,), np.int32)
    assert dst.action_space == gymnasium.spaces.Discrete(4)
    assert isinstance(dst.reward_space, gymnasium.spaces.Box) and dst.reward_space.dtype == np.float32
    np.testing.assert_allclose(dst.reward_space.low, [0.0, -1.0])
    np.testing.assert_allclose(dst.reward_space.high, [23.7, -1.0], rtol=1e-6)
    assert dst.reward_dim == 2 and dst.reward_names == ("treasure", "time") and dst.ref_point == (0.0, -25.0)
    assert dst.metadata["render_modes"] == [] and dst.render() is None
    assert dst.spec.id == "morl/deep-sea-treasure-v0" and dst.spec.max_episode_steps == 100
    np.testing.assert_allclose(dst.pareto_front(0.99), DST.pareto_front(0.99))
    assert dst.has_known_front and not to_gymnasium(NOISY).has_known_front
    assert to_gymnasium(NOISY).pareto_front(0.99) is None


def test_observations_and_rewards_have_declared_types(dst, noisy):
    obs, info = dst.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.dtype == np.int32 and obs.shape == (2,) and info == {}
    obs, r, term, trunc, info = dst.step(1)
    assert obs.dtype == np.int32 and r.dtype == np.float32 and r.shape == (2,)
    assert type(term) is bool and type(trunc) is bool
    obs, _ = noisy.reset(seed=0)
    assert obs.dtype == np.float32 and obs in noisy.observation_space
    _, r, _, _, info = noisy.step(np.zeros(1, np.float32))
    assert r.dtype == np.float32 and isinstance(info["pos"], np.ndarray)  # the pure env's info, as numpy


def test_episode_matches_direct_rollout_with_the_documented_keys(noisy):
    actions = noisy_actions(1)
    obs_d, rew_d, term_d, trunc_d = direct_episode(NOISY, NOISY.default_params, jax.random.PRNGKey(42), actions)
    obs, _ = noisy.reset(seed=42)
    np.testing.assert_array_equal(obs, obs_d[0])
    for t, a in enumerate(actions):
        obs, r, term, trunc, _ = noisy.step(a)
        np.testing.assert_array_equal(obs, obs_d[t + 1])
        np.testing.assert_array_equal(r, rew_d[t])
        if term or trunc:
            break
    assert (term, trunc) == (term_d, trunc_d) and t + 1 == len(rew_d)


def test_seeding_is_reproducible_and_unseeded_resets_follow_np_random(noisy):
    a = to_gymnasium(NOISY)
    first, _ = noisy.reset(seed=7)
    again, _ = a.reset(seed=7)
    np.testing.assert_array_equal(first, again)
    other, _ = a.reset(seed=8)
    assert not np.array_equal(first, other)
    # after the same seeded reset, unseeded resets agree, and use PRNGKey(np_random.integers(2**32))
    noisy.reset(seed=3)
    a.reset(seed=3)
    rng = pickle.loads(pickle.dumps(noisy.np_random))
    expected_seed = int(rng.integers(2**32))
    o1, _ = noisy.reset()
    o2, _ = a.reset()
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(
        o1, direct_episode(NOISY, NOISY.default_params, jax.random.PRNGKey(expected_seed), noisy_actions(0))[0][0]
    )
    # seeds beyond 32 bits are not truncated (PRNGKey alone would map both of these to the same key)
    b1, _ = a.reset(seed=2**40)
    b2, _ = a.reset(seed=2**40 + 2**33)
    assert not np.array_equal(b1, b2)


def test_truncation_follows_the_pure_env_without_a_second_time_limit():
    env = to_gymnasium(NOISY, NoisyParams(max_steps=3))
    assert env.spec.max_episode_steps == 3 and env.max_steps == 3
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    # gymnasium.make(env.spec) rebuilds it (with a TimeLimit at the same step, so nothing changes)
    remade = gymnasium.make(env.spec)
    remade.reset(seed=0)
    assert [remade.step(np.zeros(1, np.float32))[3] for _ in range(3)] == [False, False, True]
    assert remade.unwrapped.params.max_steps == 3


def test_make_kwargs_go_to_morl_make_and_are_in_the_spec():
    env = to_gymnasium("deep-sea-treasure-v0", max_steps=5)
    assert env.max_steps == 5 and env.spec.kwargs == {"id_or_env": "deep-sea-treasure-v0", "max_steps": 5}
    env.reset(seed=0)
    for _ in range(5):
        _, _, term, trunc, _ = env.step(0)  # up into the wall: never terminates
    assert (term, trunc) == (False, True)
    with pytest.raises(TypeError, match="only apply to an env id"):
        to_gymnasium(DST, max_steps=5)
    with pytest.raises(TypeError, match="already a gymnasium env"):
        to_gymnasium(env)


def test_wrappers_of_one_env_share_one_compile(dst):
    fresh = NoisyLine()
    envs = [to_gymnasium(fresh, NoisyParams(max_steps=m)) for m in (2, 3, 4)]  # params are data: no retrace
    for i, e in enumerate(envs):
        e.reset(seed=i)
        e.step(np.array([0.5]))  # float64 action: cast to the space dtype, same compile
        e.step(np.float32([-0.5]))
    fns = _compiled(fresh)
    assert fns.reset._cache_size() == 1 and fns.step._cache_size() == 1
    # the same id (and kwargs) maps to the same env object, hence the same compile
    assert to_gymnasium("deep-sea-treasure-v0").morl_env is dst.morl_env


def test_pickle_round_trip(dst):
    dst.reset(seed=0)
    dst.step(3)
    restored = pickle.loads(pickle.dumps(dst))
    assert restored._fns is dst._fns  # rebuilt from the id: same env object, same compile
    for a in (3, 3, 0, 2):  # along the surface, no treasure
        o1, r1, *_ = dst.step(a)
        o2, r2, *_ = restored.step(a)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)


# ================================================================== to_gymnasium: bad input
def test_discrete_action_errors_name_the_action_the_space_and_the_fix(dst):
    dst.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 4 is out of range.*Discrete\(4\).*\[0, 3\]"):
        dst.step(4)
    with pytest.raises(ValueError, match=r"action -1 is out of range"):
        dst.step(-1)
    with pytest.raises(ValueError, match=r"shape \(1,\).*Discrete\(4\).*int\(action.item\(\)\)"):
        dst.step(np.array([1]))
    with pytest.raises(ValueError, match=r"shape \(2,\).*MOSyncVectorEnv"):
        dst.step(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"action 1.0 has dtype float64.*pass an int"):
        dst.step(1.0)
    dst.step(np.int64(1))  # numpy and python integers are fine


def test_box_action_errors_name_the_action_the_space_and_the_fix(noisy):
    noisy.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\).*Box.*pass an array of shape \(1,\)"):
        noisy.step(np.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(\).*reshape it to \(1,\)"):
        noisy.step(0.5)
    with pytest.raises(ValueError, match=r"outside the action space.*np.clip"):
        noisy.step(np.array([1.5]))
    with pytest.raises(ValueError, match="contains NaN"):
        noisy.step(np.array([np.nan]))
    noisy.step(np.array([1.0]))  # the bounds themselves are fine


def test_step_before_reset_and_after_the_end_raise():
    env = to_gymnasium(NOISY, NoisyParams(max_steps=1))
    with pytest.raises(gymnasium.error.ResetNeeded, match="before reset"):
        env.step(np.zeros(1))
    env.reset(seed=0)
    assert env.step(np.zeros(1))[3]
    with pytest.raises(gymnasium.error.ResetNeeded, match="after the episode ended"):
        env.step(np.zeros(1))


def test_nan_reward_raises_naming_env_step_and_objective():
    env = to_gymnasium(NOISY, NoisyParams(max_steps=4, nan_at=2))
    env.reset(seed=0)
    env.step(np.zeros(1))
    with pytest.raises(FloatingPointError, match=r"NoisyLine.*step 2 of episode 1.*'progress', 'effort'"):
        env.step(np.zeros(1))
    env.reset(seed=0)
    env.step(np.zeros(1))
    with pytest.raises(FloatingPointError, match="episode 2"):
        env.step(np.zeros(1))


# ================================================================== to_gymnasium inside MO-Gymnasium tools
def test_mo_record_episode_statistics_matches_direct_returns():
    gamma = 0.9
    env = MORecordEpisodeStatistics(to_gymnasium("deep-sea-treasure-v0"), gamma=gamma)
    for ep in range(3):
        actions = dst_actions(ep)
        _, rew_d, *_ = direct_episode(DST, DST_PARAMS, jax.random.PRNGKey(ep), actions)
        env.reset(seed=ep)
        for a in actions:
            _, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        stats = info["episode"]
        np.testing.assert_allclose(stats["r"], rew_d.sum(0), rtol=1e-6)
        discounts = gamma ** np.arange(len(rew_d))
        np.testing.assert_allclose(stats["dr"], (discounts[:, None] * rew_d).sum(0), rtol=1e-5)
        assert stats["l"] == len(rew_d)


def test_linear_reward_scalarises_the_vector_reward():
    w = np.array([0.8, 0.2])
    env = LinearReward(to_gymnasium("deep-sea-treasure-v0"), weight=w)
    actions = dst_actions(5)
    _, rew_d, *_ = direct_episode(DST, DST_PARAMS, jax.random.PRNGKey(5), actions)
    env.reset(seed=5)
    for t, a in enumerate(actions[: len(rew_d)]):
        _, r, *_, info = env.step(a)
        assert np.isscalar(r) or np.ndim(r) == 0
        np.testing.assert_allclose(r, rew_d[t] @ w, rtol=1e-6)
        np.testing.assert_array_equal(info["vector_reward"], rew_d[t])


def test_mo_sync_vector_env_matches_direct_and_single_rollouts():
    n, steps, seed = 3, 12, 10
    params = NoisyParams(max_steps=4)
    fresh = NoisyLine()
    vec = MOSyncVectorEnv([lambda: to_gymnasium(fresh, params) for _ in range(n)])
    assert vec.reward_space.shape == (2,)
    singles = [to_gymnasium(fresh, params) for _ in range(n)]
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, n, 1)).astype(np.float32)

    obs, _ = vec.reset(seed=seed)
    for i, s in enumerate(singles):
        np.testing.assert_array_equal(obs[i], s.reset(seed=seed + i)[0])  # copy i is seeded with seed + i
    vec_rewards = []
    done = np.zeros(n, bool)
    for t in range(steps):
        obs, rewards, term, trunc, _ = vec.step(actions[t])
        assert rewards.shape == (n, 2) and rewards.dtype == np.float32
        vec_rewards.append(rewards)
        for i, s in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step resets copy i and returns a zero reward
                o = s.reset()[0]
                np.testing.assert_array_equal(rewards[i], 0.0)
                assert not term[i] and not trunc[i]
                done[i] = False
            else:
                o, r, te, tr, _ = s.step(actions[t, i])
                np.testing.assert_array_equal(rewards[i], r)
                assert (term[i], trunc[i]) == (te, tr)
                done[i] = te or tr
            np.testing.assert_array_equal(obs[i], o)
    # the first episode of each copy equals a direct rollout from PRNGKey(seed + i)
    for i in range(n):
        _, rew_d, *_ = direct_episode(fresh, params, jax.random.PRNGKey(seed + i), actions[:, i])
        np.testing.assert_array_equal(np.array(vec_rewards)[: len(rew_d), i], rew_d)
    fns = _compiled(fresh)  # n + n wrappers, one compile
    assert fns.reset._cache_size() == 1 and fns.step._cache_size() == 1


# ================================================================== env-declared gymnasium views
class _HalfDeclaredView(NoisyLine):
    def to_gymnasium_observation(self, obs, params):
        return {"pos": obs}


class _BadRewardView(NoisyLine):
    def gymnasium_reward_space(self, params):
        return gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)


def test_env_declared_views_are_checked_and_pickle():
    with pytest.raises(
        TypeError, match="declares to_gymnasium_observation but no callable gymnasium_observation_space"
    ):
        to_gymnasium(_HalfDeclaredView())
    with pytest.raises(TypeError, match=r"gymnasium_reward_space\(params\) returned .*shape \(2,\)"):
        to_gymnasium(_BadRewardView())
    env = to_gymnasium("breakable-bottles-v0", prob_drop=0.0)
    env.reset(seed=0)
    obs = env.step(0)[0]
    back = pickle.loads(pickle.dumps(env))
    assert back.observation_space == env.observation_space and back.params == env.params
    back.reset(seed=0)
    again = back.step(0)[0]
    assert list(again) == list(obs)
    for k, v in obs.items():
        assert type(again[k]) is type(v) and np.asarray(again[k]).dtype == np.asarray(v).dtype, k
        np.testing.assert_array_equal(again[k], v)
