"""Foundation envs (deep sea treasure x3, fruit tree, resource gathering) against MO-Gymnasium 1.3.2.

Twin tests step our env and MO-Gymnasium's on the same random actions and compare every step; the
rest checks what a twin test cannot see: the kill frequency, the known fronts, spaces, and that the
envs jit, vmap and scan without retracing.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mo_gymnasium as mo_gym  # the reference (a core dependency)
import numpy as np
import pytest

import morl
from morl.env import select_tree
from morl.testing import TwinCase, run_twin

# the references' reward Boxes are declared in float64 and cast by gymnasium, which warns about it
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting:UserWarning")

# (our id, our kwargs, MO-Gymnasium id, MO-Gymnasium kwargs)
CASES = {
    "dst": ("deep-sea-treasure-v0", {}, "deep-sea-treasure-v0", {}),
    "dst-concave": ("deep-sea-treasure-concave-v0", {}, "deep-sea-treasure-concave-v0", {}),
    "dst-mirrored": ("deep-sea-treasure-mirrored-v0", {}, "deep-sea-treasure-mirrored-v0", {}),
    "fruit-tree-5": ("fruit-tree-v0", {"depth": 5}, "fruit-tree-v0", {"depth": 5}),
    "fruit-tree-6": ("fruit-tree-v0", {"depth": 6}, "fruit-tree-v0", {"depth": 6}),
    "fruit-tree-7": ("fruit-tree-v0", {"depth": 7}, "fruit-tree-v0", {"depth": 7}),
    "resource-gathering": ("resource-gathering-v0", {}, "resource-gathering-v0", {}),
}
EPISODES = 200

# `morl.make` builds a new env each call, and jitted functions are cached per env object: make each once.
_ENVS: dict[str, tuple] = {}
_REFS: dict[str, object] = {}


def _env(name: str):
    if name not in _ENVS:
        env_id, kwargs, _, _ = CASES[name]
        _ENVS[name] = morl.make(env_id, **kwargs)
    return _ENVS[name]


def _ref(name: str):
    if name not in _REFS:
        _, _, gym_id, gym_kwargs = CASES[name]
        _REFS[name] = mo_gym.make(gym_id, **gym_kwargs).unwrapped
    return _REFS[name]


# ---------------------------------------------------------------------------------------------- twin tests
def _rg_sync_step(ref, state, params, action):
    """Force our kill outcome to the reference's: peek at the uniform its ``np_random`` will draw next.

    The reference draws only on enemy cells and kills iff ``u < 0.1``; a kill probability of 1.0 or 0.0
    makes ours do the same there (and changes nothing elsewhere).
    """
    u = copy.deepcopy(ref.np_random).random()
    return state, params.replace(enemy_kill_prob=1.0 if u < 0.1 else 0.0)


def _dst_actions(space, rng: np.random.Generator) -> np.int64:
    """Random actions biased away from the start (up .3, down .25, left .15, right .3): uniform ones end
    most episodes on the first treasure and rarely reach the 100-step limit."""
    return np.int64(rng.choice(4, p=[0.3, 0.25, 0.15, 0.3]))


def test_twin_deep_sea_treasure_variants():
    for name in ("dst", "dst-concave", "dst-mirrored"):
        env_id, kwargs, gym_id, gym_kwargs = CASES[name]
        case = TwinCase(env_id, gym_id, kwargs, gym_kwargs, sample_action=_dst_actions)
        report = run_twin(case, episodes=EPISODES)
        assert report.episodes == EPISODES
        treasure, time = report.returns[:, 0], report.returns[:, 1]
        # both endings occur: treasures (terminated, positive treasure) and the 100-step TimeLimit
        assert report.terminated >= 100 and report.truncated >= 5, (name, report.terminated, report.truncated)
        assert report.terminated + report.truncated == EPISODES
        assert np.sum(treasure > 0) == report.terminated, name
        assert np.all(time[treasure == 0] == -100.0), name
        # treasures far from the start are reached too
        assert len(np.unique(treasure[treasure > 0])) >= 7, (name, np.unique(treasure))


def test_twin_fruit_tree_depths():
    for depth in (5, 6, 7):
        name = f"fruit-tree-{depth}"
        env_id, kwargs, gym_id, gym_kwargs = CASES[name]
        report = run_twin(TwinCase(env_id, gym_id, kwargs, gym_kwargs), episodes=EPISODES)
        assert report.terminated == EPISODES and report.truncated == 0
        assert report.steps == EPISODES * depth  # every episode lasts exactly `depth` steps
        # random paths reach many different leaves
        assert len(np.unique(report.returns, axis=0)) > min(2**depth // 2, 40), name


def test_twin_resource_gathering():
    env_id, kwargs, gym_id, gym_kwargs = CASES["resource-gathering"]
    report = run_twin(TwinCase(env_id, gym_id, kwargs, gym_kwargs, sync_step=_rg_sync_step), episodes=EPISODES)
    enemy, gold, gem = report.returns.T
    # every kind of ending is exercised: deaths, gold and gem brought home, the time limit
    assert np.sum(enemy < 0) > 0, "no enemy death in the random episodes"
    assert np.sum(gold > 0) > 0 and np.sum(gem > 0) > 0, "no resource brought home"
    assert np.sum((gold > 0) & (gem > 0)) > 0, "no episode brought both resources home"
    assert report.truncated > 0, "no episode hit the 100-step time limit"


# ---------------------------------------------------------------------------------------------- unit tests
def test_resource_gathering_kill_frequency():
    """Stepping onto an enemy kills with probability enemy_kill_prob: binomial test with a fixed key."""
    env, params = _env("resource-gathering")
    n = 100_000
    # (start, action, enemy cell): below E1 moving up, right of E2 moving left
    starts = [((2, 2), 0, (1, 2)), ((0, 4), 2, (0, 3))]
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    for prob in (0.1, 0.3):
        p = params.replace(enemy_kill_prob=prob)
        for i, (pos, action, enemy) in enumerate(starts):
            _, state = env.reset(jax.random.PRNGKey(0), p)
            state = state.replace(pos=jnp.array(pos, jnp.int32))
            keys = jax.random.split(jax.random.PRNGKey(100 + i), n)
            obs, _, reward, term, trunc, _ = step(keys, state, jnp.int32(action), p)
            killed = np.asarray(term)
            freq = killed.mean()
            sigma = np.sqrt(prob * (1 - prob) / n)  # binomial std of the frequency (~0.001 at 0.1)
            assert abs(freq - prob) < 4 * sigma, (prob, pos, freq)
            r = np.asarray(reward)
            np.testing.assert_array_equal(r[killed], np.tile([-1.0, 0.0, 0.0], (killed.sum(), 1)))
            np.testing.assert_array_equal(r[~killed], 0.0)
            assert not np.asarray(trunc).any()
            assert np.all(np.asarray(obs)[:, :2] == np.array(enemy))  # on the enemy cell either way


def test_resource_gathering_home_wall_bump_and_gold_return():
    env, params = _env("resource-gathering")
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(obs, [4, 2, 0, 0])
    obs, _, r, term, trunc, _ = env.step(jax.random.PRNGKey(1), state, 1, params)  # down: into the wall at home
    assert bool(term) and not bool(trunc)
    np.testing.assert_array_equal(obs, [4, 2, 0, 0])
    np.testing.assert_array_equal(r, [0.0, 0.0, 0.0])
    # carrying the gold one cell above home, stepping down brings it home
    state = state.replace(pos=jnp.array([3, 2], jnp.int32), has_gold=jnp.int32(1))
    obs, _, r, term, _, _ = env.step(jax.random.PRNGKey(2), state, 1, params)
    assert bool(term)
    np.testing.assert_array_equal(r, [0.0, 1.0, 0.0])


def test_fruit_tree_rejects_bad_depth():
    for bad in (4, 8, 6.0, "6", True):
        with pytest.raises(ValueError, match="depth must be one of"):
            morl.make("fruit-tree-v0", depth=bad)


def test_fruit_tree_never_truncates_and_params_bound():
    for depth in (5, 6, 7):
        env, params = _env(f"fruit-tree-{depth}")
        assert params.max_steps == depth + 1 == env.max_steps
        _, state = env.reset(jax.random.PRNGKey(0), params)
        for t in range(depth):
            obs, state, r, term, trunc, _ = env.step(jax.random.PRNGKey(t), state, 1, params)
            assert not bool(trunc)
            assert bool(term) == (t == depth - 1)
        np.testing.assert_array_equal(obs, [depth, 2**depth - 1])  # always right: the last leaf
        np.testing.assert_allclose(r, env.pareto_front(1.0)[-1].astype(np.float32))


@pytest.mark.parametrize("gamma", [0.9, 0.99, 1.0])
def test_pareto_fronts_equal_mo_gymnasium(gamma):
    for name in CASES:
        env, _ = _env(name)
        ours = np.asarray(env.pareto_front(gamma), dtype=np.float64)
        ref = np.asarray(_ref(name).pareto_front(gamma), dtype=np.float64)
        assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
        if name == "resource-gathering":  # MO-Gymnasium returns its points in set order
            ref = ref[np.lexsort(ref.T[::-1])]
            ours = ours[np.lexsort(ours.T[::-1])]
        np.testing.assert_array_equal(ours, ref, err_msg=f"{name} gamma={gamma}")


def test_spaces_equal_mo_gymnasium():
    for name in CASES:
        env, _ = _env(name)
        ref = _ref(name)
        for ours, theirs in (
            (env.observation_space, ref.observation_space),
            (env.action_space, ref.action_space),
            (env.reward_space, ref.reward_space),
        ):
            assert ours.to_gymnasium() == theirs, (name, ours, theirs)
        assert len(env.reward_names) == env.reward_dim == ref.reward_dim
        assert len(env.ref_point) == env.reward_dim


# ---------------------------------------------------------------------------------------------- jit/vmap/scan
N_ENVS, N_STEPS = 1024, 1000
_TRACES: dict[str, int] = {}
_ROLLOUTS: dict[str, object] = {}


def _rollout(name: str):
    """jit(vmap(scan)) of random-action episodes with manual reset; counts how often ``step`` is traced."""
    if name in _ROLLOUTS:
        return _ROLLOUTS[name]
    env, _ = _env(name)
    obs_low, obs_high = env.observation_space.low, env.observation_space.high
    r_low, r_high = env.reward_space.low, env.reward_space.high
    _TRACES[name] = 0

    def counted_step(key, state, action, params):
        _TRACES[name] += 1  # Python side effect: runs once per trace, never per call
        return env.step(key, state, action, params)

    def one_env(key, params):
        key, k_reset = jax.random.split(key)
        obs, state = env.reset(k_reset, params)

        def body(carry, _):
            key, state, stats = carry
            key, k_act, k_step, k_reset = jax.random.split(key, 4)
            action = env.action_space.sample(k_act)
            obs, next_state, reward, term, trunc, _ = counted_step(k_step, state, action, params)
            done = term | trunc
            _, reset_state = env.reset(k_reset, params)
            state = select_tree(done, reset_state, next_state)
            ok = (
                jnp.all(jnp.isfinite(reward))
                & jnp.all(jnp.isfinite(obs.astype(jnp.float32)))
                & jnp.all((obs >= obs_low) & (obs <= obs_high))
                & jnp.all((reward >= r_low) & (reward <= r_high))
            )
            ret, episodes, all_ok = stats
            return (key, state, (ret + reward, episodes + done.astype(jnp.int32), all_ok & ok)), None

        stats0 = (jnp.zeros(env.reward_dim, jnp.float32), jnp.int32(0), jnp.bool_(True))
        (_, _, stats), _ = jax.lax.scan(body, (key, state, stats0), None, length=N_STEPS)
        return stats

    fn = jax.jit(jax.vmap(one_env, in_axes=(0, None)))
    _ROLLOUTS[name] = fn
    return fn


# params variants that must reuse the compiled rollout (same pytree structure, different values)
_OTHER_PARAMS = {"resource-gathering": {"enemy_kill_prob": 0.5, "max_steps": 50}}


@pytest.mark.parametrize("name", list(CASES))
def test_jit_vmap_scan_finite_and_compiles_once(name):
    env, params = _env(name)
    fn = _rollout(name)
    keys = jax.random.split(jax.random.PRNGKey(0), N_ENVS)
    returns, episodes, ok = jax.block_until_ready(fn(keys, params))
    assert returns.shape == (N_ENVS, env.reward_dim)
    assert bool(np.all(ok)), f"{name}: non-finite or out-of-space obs/reward in a vmapped rollout"
    assert np.all(np.isfinite(np.asarray(returns)))
    assert np.all(np.asarray(episodes) > 0)  # episodes finish and the manual reset starts new ones
    other = params.replace(**_OTHER_PARAMS.get(name, {"max_steps": params.max_steps - 1}))
    fn(jax.random.split(jax.random.PRNGKey(1), N_ENVS), other)[0].block_until_ready()
    assert _TRACES[name] == 1, f"{name}: step traced {_TRACES[name]} times, expected once"
