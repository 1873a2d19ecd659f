"""Registry, env protocol and rollout engine: a test env defined here, registered, run through the engine."""

from __future__ import annotations

import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import morl
from morl import registry
from morl.env import Environment, EnvParams, time_limit
from morl.rollout import episode_limit, finished_episode_returns, make_rollout, random_policy
from morl.spaces import Box, Discrete

TRACES = {"step": 0}


@struct.dataclass
class CounterState:
    position: jax.Array
    time: jax.Array


@struct.dataclass
class CounterParams(EnvParams):
    max_steps: int = 6
    goal: int = 3


class CounterEnv(Environment):
    """Walk right (action 1) or stay (0). Reaching `goal` terminates; reward [1 if moved, -1]."""

    reward_names = ("moves", "time")
    ref_point = (0.0, -10.0)

    @property
    def default_params(self):
        return CounterParams()

    @property
    def observation_space(self):
        return Box(0, 10, (1,), jnp.int32)

    @property
    def action_space(self):
        return Discrete(2)

    @property
    def reward_space(self):
        return Box(np.array([0.0, -1.0]), np.array([1.0, -1.0]), (2,))

    def reset(self, key, params):
        state = CounterState(jnp.int32(0), jnp.int32(0))
        return state.position[None], state

    def step(self, key, state, action, params):
        TRACES["step"] += 1  # Python side effect: runs once per trace, never per step
        position = state.position + action
        time = state.time + 1
        reward = jnp.stack([action.astype(jnp.float32), jnp.float32(-1.0)])
        terminated = position >= params.goal
        new = CounterState(position, time)
        return position[None], new, reward, terminated, time_limit(time, params), {}

    def pareto_front(self, gamma=1.0):
        return np.array([[3.0, -3.0]])


morl.register("test-counter-v0", CounterEnv)


def always(action):
    def policy(params, obs, key):
        return jnp.full((obs.shape[0],), action, jnp.int32), ()

    return policy


def test_registered_test_env_runs_through_engine():
    env, params = morl.make("test-counter-v0")
    assert "test-counter-v0" in morl.list_envs() and env.name == "test-counter-v0"
    rollout = make_rollout(env, always(1), num_envs=2, num_steps=7, gamma=0.5)
    state = rollout.init(jax.random.PRNGKey(0))
    _, traj = rollout.run((), state, jax.random.PRNGKey(1))
    term = np.asarray(traj.terminated[:, 0])
    # goal at 3: episodes end at steps 3 and 6 (index 2 and 5), auto-reset in between
    assert term.tolist() == [False, False, True, False, False, True, False]
    assert not np.asarray(traj.truncated).any()
    # the final observation is kept in next_obs; obs after the reset starts at 0 again
    assert int(traj.next_obs[2, 0, 0]) == 3 and int(traj.obs[3, 0, 0]) == 0
    np.testing.assert_allclose(traj.episode_return[2, 0], [3.0, -3.0])
    np.testing.assert_allclose(traj.episode_discounted_return[2, 0], [1 + 0.5 + 0.25, -1.75])
    assert int(traj.episode_length[2, 0]) == 3


def test_truncation_and_termination_kept_apart():
    env, params = morl.make("test-counter-v0", max_steps=4)
    assert int(params.max_steps) == 4
    rollout = make_rollout(env, always(0), num_envs=1, num_steps=9)
    _, traj = rollout.run((), rollout.init(jax.random.PRNGKey(0), params), jax.random.PRNGKey(1), params)
    assert np.flatnonzero(np.asarray(traj.truncated[:, 0])).tolist() == [3, 7]
    assert not np.asarray(traj.terminated).any()
    np.testing.assert_allclose(traj.episode_return[3, 0], [0.0, -4.0])


def test_both_flags_on_the_same_step_like_gymnasium_time_limit():
    env, params = morl.make("test-counter-v0", max_steps=3)
    rollout = make_rollout(env, always(1), num_envs=1, num_steps=3)
    _, traj = rollout.run((), rollout.init(jax.random.PRNGKey(0), params), jax.random.PRNGKey(1), params)
    assert bool(traj.terminated[2, 0]) and bool(traj.truncated[2, 0])


def test_population_axis_runs_members_with_their_own_params():
    env, params = morl.make("test-counter-v0")

    def policy(p, obs, key):  # each member's params is its action
        return jnp.broadcast_to(p, (obs.shape[0],)).astype(jnp.int32), ()

    rollout = make_rollout(env, policy, num_envs=3, num_steps=6, population=2)
    state = rollout.init(jax.random.PRNGKey(0))
    _, traj = rollout.run(jnp.array([0, 1]), state, jax.random.PRNGKey(1))
    assert traj.reward.shape == (6, 2, 3, 2)
    assert not np.asarray(traj.terminated[:, 0]).any()
    assert np.asarray(traj.terminated[:, 1]).sum() == 2 * 3


def test_then_and_fresh_then_match_init_and_run():
    """`Rollout.starter` / `then` / `fresh_then` (what agents call instead of asking for the env kind) give the
    values of `init` + `run` + the agent's function; `finished_episode_returns` averages the finished episodes per
    member; `episode_limit` puts the cap into a pure-JAX env's params."""
    env, params = morl.make("test-counter-v0")
    limited, cap = episode_limit(env, params, 5)
    assert cap == 5 and int(limited.max_steps) == 5 and episode_limit(env)[1] == int(env.default_params.max_steps)

    def policy(p, obs, key):
        return jnp.broadcast_to(p, (obs.shape[0],)).astype(jnp.int32), ()

    rollout = make_rollout(env, policy, num_envs=3, num_steps=7, gamma=0.5, population=2)
    members = jnp.array([0, 1])

    def after(x, traj, fallback):
        return finished_episode_returns(traj, fallback)

    fallback = jnp.full((2, 2), -9.0)
    state = rollout.init(jax.random.PRNGKey(0), limited)
    for a, b in zip(jax.tree.leaves(rollout.starter(limited)(jax.random.PRNGKey(0))), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    new_state, (ret, count) = rollout.then(lambda x: x, after, limited)(members, state, jax.random.PRNGKey(1), fallback)
    expected_state, traj = rollout.run(members, state, jax.random.PRNGKey(1), limited)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(expected_state)):
        np.testing.assert_array_equal(a, b)
    # member 0 never reaches the goal: its 5-step episode is truncated once per env; member 1 finishes at step 3
    assert np.asarray(count).tolist() == [3, 6]
    np.testing.assert_allclose(ret[1], [1 + 0.5 + 0.25, -1.75])
    np.testing.assert_allclose(ret[0], [0.0, -(1 + 0.5 + 0.25 + 0.125 + 0.0625)])
    k_init, k_run = jax.random.split(jax.random.PRNGKey(2))
    _, traj = rollout.run(members, rollout.init(k_init, limited), k_run, limited)
    fresh = rollout.fresh_then(lambda x: x, after, limited)(members, jax.random.PRNGKey(2), fallback)
    for a, b in zip(fresh, finished_episode_returns(traj, fallback)):
        np.testing.assert_array_equal(a, b)


def test_summary_matches_transitions():
    env, params = morl.make("deep-sea-treasure-v0")
    pol = random_policy(env)
    full = make_rollout(env, pol, 16, 200, gamma=0.9)
    light = make_rollout(env, pol, 16, 200, gamma=0.9, emit="summary")
    key = jax.random.PRNGKey(3)
    _, traj = full.run((), full.init(key), key)
    _, summary = light.run((), light.init(key), key)
    done = np.asarray(traj.done)
    assert np.array_equal(done.sum(0), np.asarray(summary.episodes))
    np.testing.assert_allclose(
        np.where(done[..., None], traj.episode_discounted_return, 0).sum(0), summary.discounted_return_sum, rtol=1e-5
    )
    first = done.argmax(0)
    np.testing.assert_allclose(np.asarray(traj.episode_return)[first, np.arange(16)], summary.first_return)


def test_engine_compiles_step_once():
    env, params = morl.make("test-counter-v0")
    rollout = make_rollout(env, always(1), num_envs=4, num_steps=5)
    state = rollout.init(jax.random.PRNGKey(0))
    before = TRACES["step"]
    for i in range(5):
        state, _ = rollout.run((), state, jax.random.PRNGKey(i))
    # one trace for the step, one for nothing else: repeated calls hit the compiled program
    assert TRACES["step"] - before == 1


def test_wrong_action_shape_is_a_clear_error():
    env, _ = morl.make("test-counter-v0")

    def bad(params, obs, key):
        return jnp.zeros((obs.shape[0], 2), jnp.int32), ()

    rollout = make_rollout(env, bad, num_envs=2, num_steps=2)
    with pytest.raises(ValueError, match=r"actions of shape \(2, 2\).*expected \(2,\)"):
        rollout.run((), rollout.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(0))


def test_unknown_id_names_closest_matches():
    with pytest.raises(morl.UnknownEnvError) as err:
        morl.make("deep-sea-treasur-v0")
    assert "deep-sea-treasure-v0" in str(err.value) and "morl envs" in str(err.value)


def test_register_rejects_unversioned_ids_and_unknown_kwargs():
    with pytest.raises(ValueError, match="not versioned"):
        morl.register("no-version", CounterEnv)
    with pytest.raises(TypeError, match="unknown argument"):
        morl.make("test-counter-v0", colour="blue")


def test_third_party_entry_point_group(tmp_path, monkeypatch):
    """A package that declares a `morl.envs` entry point gets its envs registered on first use."""
    pkg = tmp_path / "my_morl_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        import morl
        def register_all():
            morl.register("plugin-dst-v0", "morl.envs.deep_sea_treasure:DeepSeaTreasure", map_name="concave")
    """)
    )
    dist = tmp_path / "my_morl_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-morl-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[morl.envs]\nmine = my_morl_plugin:register_all\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.delitem(sys.modules, "my_morl_plugin", raising=False)
    assert "plugin-dst-v0" in morl.list_envs()
    env, _ = morl.make("plugin-dst-v0")
    assert env.map_name == "concave"


def test_host_path_returns_the_same_trajectory_type_and_values():
    """The same call on `gym:deep-sea-treasure-v0` (MOSyncVectorEnv on the host) equals the JAX path."""
    jax_env, _ = morl.make("deep-sea-treasure-v0")
    host_env, _ = morl.make("gym:deep-sea-treasure-v0")

    def zigzag(params, obs, key):  # deterministic in the observation: down on even columns, right on odd
        return jnp.where(obs[:, 1] % 2 == 0, 1, 3).astype(jnp.int32) * jnp.ones(obs.shape[0], jnp.int32), ()

    outs = []
    for env in (jax_env, host_env):
        rollout = make_rollout(env, zigzag, num_envs=3, num_steps=40, gamma=0.99, seed=0)
        _, traj = rollout.run((), rollout.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
        outs.append(traj)
    a, b = outs
    assert type(a) is type(b)
    for field in ("obs", "reward", "terminated", "truncated", "next_obs", "episode_return", "episode_length"):
        np.testing.assert_allclose(
            np.asarray(getattr(a, field), np.float64), np.asarray(getattr(b, field), np.float64), err_msg=field
        )
    np.testing.assert_allclose(a.episode_discounted_return, b.episode_discounted_return, rtol=1e-5)
    assert np.asarray(a.terminated).sum() > 0


@pytest.mark.parametrize("env_id", ["deep-sea-treasure-v0", "gym:deep-sea-treasure-v0"])
def test_episode_context_gives_the_policy_the_running_return_and_length(env_id):
    """A policy built with ``episode_context`` sees, before each step, what the episode has earned so far: the
    running stats after the previous step, zeros right after a reset (PCN follows a return-to-go with them)."""
    env, _ = morl.make(env_id)

    def down_then_right(params, obs, key, episode_return, episode_length):  # the context also decides the action
        action = jnp.where(episode_length % 3 == 2, 3, 1).astype(jnp.int32)
        return action, (episode_return, episode_length)

    rollout = make_rollout(env, down_then_right, num_envs=2, num_steps=30, gamma=0.99, seed=0, episode_context=True)
    _, traj = rollout.run((), rollout.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    seen_return, seen_length = (np.asarray(x) for x in traj.extras)
    done = np.asarray(traj.terminated | traj.truncated)
    assert done[:-1].any() and (seen_length[0] == 0).all() and (seen_return[0] == 0).all()
    after_return = np.where(done[:-1, :, None], 0.0, np.asarray(traj.episode_return)[:-1])
    np.testing.assert_allclose(seen_return[1:], after_return)
    np.testing.assert_array_equal(seen_length[1:], np.where(done[:-1], 0, np.asarray(traj.episode_length)[:-1]))
    np.testing.assert_array_equal(np.asarray(traj.action), np.where(seen_length % 3 == 2, 3, 1))


def test_episode_return_logs_average_the_episodes_that_ended():
    from morl.agent import episode_return_logs

    # two steps where one episode ended each, one step where none did: the mean of the two, per objective
    returns = jnp.array([[3.0, -2.0], [0.0, 0.0], [5.0, -4.0]], jnp.float32)
    logs = episode_return_logs(returns, jnp.int32(2))
    assert sorted(logs) == ["episode_return_0", "episode_return_1"]
    assert float(logs["episode_return_0"]) == 4.0 and float(logs["episode_return_1"]) == -3.0
    none = episode_return_logs(jnp.zeros((3, 2), jnp.float32), jnp.int32(0))
    assert float(none["episode_return_0"]) == 0.0 and float(none["episode_return_1"]) == 0.0


@pytest.mark.parametrize(
    ("user_flags", "expected"),
    [
        (None, "--xla_cpu_copy_insertion_use_region_analysis=true"),
        # the user's own setting of the flag wins, with or without a value
        ("--xla_cpu_copy_insertion_use_region_analysis=false", "--xla_cpu_copy_insertion_use_region_analysis=false"),
        ("--xla_cpu_copy_insertion_use_region_analysis", "--xla_cpu_copy_insertion_use_region_analysis"),
        # a flag whose name only starts with morl's is another flag: morl's default is still added
        (
            "--xla_cpu_copy_insertion_use_region_analysis_x=1",
            "--xla_cpu_copy_insertion_use_region_analysis_x=1 --xla_cpu_copy_insertion_use_region_analysis=true",
        ),
    ],
)
def test_import_adds_morls_xla_flags_unless_the_user_named_them(user_flags, expected):
    """XLA reads XLA_FLAGS once, when its backend starts, so `import morl` sets its defaults in a fresh process."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if user_flags is not None:
        env["XLA_FLAGS"] = user_flags
    code = "import os, morl; print(os.environ['XLA_FLAGS']); print(repr(morl.user_xla_flags()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    flags, user = out.splitlines()
    assert flags == expected
    assert user == repr(user_flags or "")  # what a reproduce command sets: the user's flags, not morl's
