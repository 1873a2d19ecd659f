"""PCN: registration and defaults, the episode buffer's ranking, eviction and command choice against MORL-Baselines'
formulas on a hand-made set of episodes, budget accounting, one compile per program, and learning on DST."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl import metrics
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents import pcn
from morl.agents.pcn import EpisodeBuffer, PCNConfig, choose_command
from morl.evaluate import EvalProtocol, evaluate

# the buffer's pieces run jitted, as in training (op-by-op they take seconds each)
crowding_distance_mb = jax.jit(pcn.crowding_distance_mb)
rank_episodes = jax.jit(pcn.rank_episodes, static_argnums=2)
add_episodes = jax.jit(pcn.add_episodes)


# ----------------------------------------------------------------------------------------------- config
def test_pcn_registers_with_morl_baselines_defaults():
    spec = agent_spec("pcn")
    cfg = make_config("pcn")
    assert spec.action_kinds == ("discrete",)
    assert (
        cfg.learning_rate,
        cfg.gamma,
        cfg.batch_size,
        cfg.hidden_dim,
        cfg.num_er_episodes,
        cfg.num_step_episodes,
        cfg.num_model_updates,
        cfg.max_buffer_size,
        cfg.crowding_threshold,
        cfg.num_points_pf,
    ) == (1e-3, 1.0, 256, 64, 20, 10, 50, 100, 0.2, 100)
    assert make_config("pcn", "deep-sea-treasure-v0").obs_encoding == "onehot"
    with pytest.raises(ValueError, match="max_buffer_size"):
        PCNConfig(num_er_episodes=50, max_buffer_size=20)
    with pytest.raises(ValueError, match="obs_encoding"):
        PCNConfig(obs_encoding="pixels")
    env, _ = morl.make("mo-mountaincarcontinuous-v0")
    with pytest.raises(ValueError, match="discrete"):
        make_trainer("pcn", env)
    dst, _ = morl.make("deep-sea-treasure-v0")
    with pytest.raises(ValueError, match="scaling_factor needs 3 values"):
        make_trainer("pcn", dst, scaling_factor=(1.0, 1.0))


# ----------------------------------------------------------------------------------------------- twin checks
#: five episodes' returns: 2 duplicates 1 (first copy kept), 3 is dominated by 1, 0 / 1 / 4 are the front
RETURNS = np.array([[1.0, -1.0], [5.0, -3.0], [5.0, -3.0], [3.0, -4.0], [8.0, -8.0]], np.float32)


def test_crowding_distance_is_morl_baselines_formula():
    """Hand-computed: both objectives span 7; objective 0 normalised is [0, 4/7, 4/7, 2/7, 1], sorted 0, 3, 1, 2, 4
    (stable), so the interior gaps are 4/7 (row 3), 2/7 (row 1), 3/7 (row 2); objective 1 is [1, 5/7, 5/7, 4/7, 0],
    sorted 4, 3, 1, 2, 0: gaps 5/7 (row 3), 1/7 (row 1), 2/7 (row 2). The ends get 1 per objective (NSGA-II: inf)."""
    valid = jnp.ones(5, bool)
    got = np.asarray(crowding_distance_mb(jnp.asarray(RETURNS), valid))
    np.testing.assert_allclose(got, [2.0, 3 / 7, 5 / 7, 9 / 7, 2.0], rtol=1e-6)
    # padding rows change nothing and get +inf
    padded = jnp.concatenate([jnp.asarray(RETURNS), jnp.full((3, 2), 99.0)])
    got_pad = np.asarray(crowding_distance_mb(padded, jnp.arange(8) < 5))
    np.testing.assert_allclose(got_pad[:5], got, rtol=1e-6)
    assert np.isinf(got_pad[5:]).all()


def test_episode_ranking_is_morl_baselines_nlargest():
    """``_nlargest``'s priorities by hand: minus the distance to the closest front return (row 3: |(3,-4)-(5,-3)| =
    sqrt 5), 1e-5 less for all but the first copy of each front return (rows 2 and 3), doubled where the crowding
    distance is <= the threshold (0.75 here: rows 1 (3/7) and 2 (5/7); row 1's 0 stays 0)."""
    got = np.asarray(rank_episodes(jnp.asarray(RETURNS), jnp.ones(5, bool), 0.75))
    np.testing.assert_allclose(got, [0.0, 0.0, -2e-5, -(math.sqrt(5) + 1e-5), 0.0], rtol=1e-6, atol=1e-9)
    # with MORL-Baselines' threshold 0.2 nothing here is crowded
    got = np.asarray(rank_episodes(jnp.asarray(RETURNS), jnp.ones(5, bool), 0.2))
    np.testing.assert_allclose(got, [0.0, 0.0, -1e-5, -(math.sqrt(5) + 1e-5), 0.0], rtol=1e-6, atol=1e-9)


def _buffer(priority, step):
    c, length = len(priority), 3
    return EpisodeBuffer(
        obs=jnp.zeros((c, length, 1)),
        action=jnp.zeros((c, length), jnp.int32),
        rtg=jnp.zeros((c, length, 2)),
        length=jnp.arange(1, c + 1, dtype=jnp.int32),
        priority=jnp.asarray(priority, jnp.float32),
        step=jnp.asarray(step, jnp.int32),
        size=jnp.int32(c),
    )


def test_full_buffer_evicts_like_heappushpop():
    """A full heap pops its smallest ``(priority, step)``; a new episode enters with priority 1, so it stays until
    the next ranking. Priorities of the hand-made set above (threshold 0.75), steps 10..50: the first new episode
    replaces row 3 (-2.236), the second row 2 (-2e-5), the third the oldest of the 0-priority rows (row 0, step 10)."""
    buf = _buffer([0.0, 0.0, -2e-5, -2.236, 0.0], [10, 20, 30, 40, 50])
    eps = {
        "obs": jnp.ones((3, 3, 1)),
        "action": jnp.ones((3, 3), jnp.int32),
        "rtg": jnp.ones((3, 3, 2)),
        "length": jnp.array([7, 8, 9], jnp.int32),
    }
    out = add_episodes(buf, eps, jnp.array([True, True, True]), jnp.array([60, 70, 80], jnp.int32))
    assert out.length.tolist() == [9, 2, 8, 7, 5]
    assert out.step.tolist() == [80, 20, 70, 60, 50]
    assert out.priority.tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert int(out.size) == 5
    # an episode that did not end is not stored; a buffer with room fills its next slot
    roomy = buf.replace(size=jnp.int32(3))
    out = add_episodes(roomy, eps, jnp.array([False, True, False]), jnp.array([60, 70, 80], jnp.int32))
    assert out.length.tolist() == [1, 2, 3, 8, 5] and int(out.size) == 4


def test_command_choice_is_morl_baselines_choose_commands():
    """Top 3 by priority are rows 0, 1, 4 (all on the front); the command is one of them with horizon - 2 and one
    objective raised by U(0, std), std over the three returns: sqrt(74/9) = 2.8674 and sqrt(26/3) = 2.9439 (by
    hand). Over 3000 keys each row is picked ~1/3 of the time (binomial sd 26: +-130 is 5 sd) and the largest raise
    comes within 1% of the std (the chance that 1500 uniform draws all miss the top 1% is 0.99^1500 < 1e-6)."""
    priority = jnp.asarray([0.0, 0.0, -2e-5, -2.236, 0.0])
    horizons = jnp.asarray([1, 3, 3, 4, 8], jnp.int32)
    std = np.array([math.sqrt(74 / 9), math.sqrt(26 / 3)])
    keys = jax.random.split(jax.random.PRNGKey(0), 3000)
    choose = jax.jit(
        jax.vmap(lambda k: choose_command(k, jnp.asarray(RETURNS), horizons, priority, jnp.ones(5, bool), 3))
    )
    desired, horizon = choose(keys)
    desired, horizon = np.asarray(desired), np.asarray(horizon)
    front = RETURNS[[0, 1, 4]]
    diff = desired[:, None, :] - front[None]  # [keys, 3, m]: the picked row is raised in at most one objective
    fits = (diff >= 0).all(-1) & ((diff > 0).sum(-1) <= 1) & (diff <= std * (1 + 1e-6)).all(-1)
    assert fits.sum(1).min() >= 1, desired[fits.sum(1) == 0][:5]
    row = np.argmax(fits, axis=1)
    np.testing.assert_array_equal(horizon, np.asarray(horizons)[[0, 1, 4]][row] - 2)
    counts = np.bincount(row, minlength=3)
    assert np.all(np.abs(counts - 1000) < 130), counts
    raised = diff[np.arange(len(row)), row]  # [keys, m]
    for j in range(2):
        assert 0.99 * std[j] <= raised[:, j].max() <= std[j] * (1 + 1e-6)


# ----------------------------------------------------------------------------------------------- learning on DST
#: The CI run: DST's env defaults (MORL-Baselines' settings, coordinates one-hot encoded) and a 15k budget.
#: Measured (experiments/pcn_dst.py, docs/algorithms/pcn.md): seeds 0 / 1 / 2 first reach >= 95% of the true HV at
#: 2.4k / 8.2k / 4.8k steps and end 100k steps at 98.5 / 100 / 98.2%; the HV is evaluated after every chunk of 20
#: iterations (~1-3k steps), so 15k is 1.8x the slowest seed's first chunk past 95%. Seed 0 is the CI seed.
DST_BUDGET = 15_000
DST_TRUE_HV = 360.40
DST_SEED = 0


@pytest.fixture(scope="module")
def dst_run():
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("pcn", env, params, total_timesteps=DST_BUDGET)
    state = trainer.init(jax.random.PRNGKey(DST_SEED))
    chunks = 0
    while not trainer.done(state):
        state, logs = trainer.update(state)
        chunks += 1
    return env, trainer, state, chunks


def test_pcn_reaches_95_percent_of_dst_hv(dst_run):
    """Acceptance: >= 95% of DST's true hypervolume (gamma 0.99, ref [0, -25]) within the budget (MORL-Baselines:
    77% at 95k steps). Every command of the solution is followed greedily with its return-to-go tracked."""
    env, trainer, state, _ = dst_run
    evaluated = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99))
    front = trainer.front(state, 0.99)
    # the evaluator (act given each episode's running return and length) and PCN's own command loop agree
    np.testing.assert_allclose(evaluated.returns, front, rtol=1e-5)
    hv = evaluated.metrics["hypervolume"]
    assert hv >= 0.95 * DST_TRUE_HV, (hv, front)
    assert hv == pytest.approx(metrics.hypervolume(front, env.ref_point, strict=False), rel=1e-6)
    # each point is a treasure reached by a shortest path: exactly a point of the true front
    true = env.pareto_front(0.99)
    assert (np.abs(front[:, None, :] - true[None]).max(-1).min(1) < 1e-3).all(), front
    sol = trainer.solution(state)
    assert sol.num_candidates == len(front)
    np.testing.assert_allclose(sol.candidate_returns[:, 1], -sol.params["hor"])  # DST: time return = -length


def test_budget_and_determinism(dst_run):
    """The budget bounds every transition (the random first episodes included) to within one vector step; the update
    compiles once; the same seed gives the same buffer."""
    env, trainer, state, chunks = dst_run
    cfg = trainer.config
    assert cfg.total_timesteps <= trainer.env_steps(state) < cfg.total_timesteps + cfg.num_step_episodes
    assert chunks > 1 and trainer._update._cache_size() == 1
    again = trainer.init(jax.random.PRNGKey(DST_SEED))
    for _ in range(2):
        again, _ = trainer.update(again)
    first = trainer.init(jax.random.PRNGKey(DST_SEED))
    for _ in range(2):
        first, _ = trainer.update(first)
    np.testing.assert_array_equal(np.asarray(again.buffer.rtg), np.asarray(first.buffer.rtg))
    assert trainer._update._cache_size() == 1


def test_seeds_vmap_to_the_same_runs(dst_run):
    """``vmappable``: two seeds trained as one vmapped program end each chunk with the buffers of two separate runs."""
    _, trainer, _, _ = dst_run
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    both = jax.jit(jax.vmap(trainer.init))(keys)
    both, _ = jax.jit(jax.vmap(trainer.update))(both)
    for i in range(2):
        one, _ = trainer.update(trainer.init(keys[i]))
        assert int(both.env_steps[i]) == trainer.env_steps(one)
        np.testing.assert_array_equal(np.asarray(both.buffer.rtg[i]), np.asarray(one.buffer.rtg))
