"""Classic control envs (mountain cars, water reservoir) against MO-Gymnasium 1.3.2.

Twin tests step our env and MO-Gymnasium's on the same actions and compare every step (observations and
rewards bit for bit where stated, terminated, truncated). The random start and the random inflow are
synchronised from the reference; statistical tests check that our own draws have the reference's
distribution. Last, every env runs jitted and vmapped (1024 copies x 1000 steps) with finite values
only and a `step` traced once.

Mountain cars: no tolerance. Observations and reward vectors equal the references' bit for bit, and
before every step our float64 state equals the reference's (``_Pilot.check``): the envs run the
references' float64 / float32 arithmetic operation for operation (see ``envs/mountain_car.py``).
Water reservoir: no tolerance either. The reference's inflow draw (float64) is read from its generator
(then rewound) and injected through params as float64 words, so our level ``state + inflow - release``
is computed in float64 as the reference's and cast to float32 at the same place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mo_gymnasium as mo_gym  # the reference (a core dependency)
import numpy as np
import pytest

import morl
from morl.env import select_tree
from morl.envs.mountain_car import bits_f64, f64_bits
from morl.envs.water_reservoir import S_INIT
from morl.spaces import Discrete
from morl.testing import TwinCase, run_twin

# the references' reward Boxes are declared in float64 and cast by gymnasium, which warns about it
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting:UserWarning")

EPISODES = 200

MC_IDS = ["mo-mountaincar-v0", "mo-mountaincar-3d-v0", "mo-mountaincar-timemove-v0", "mo-mountaincar-timespeed-v0"]
ALL_IDS = MC_IDS + ["mo-mountaincarcontinuous-v0", "water-reservoir-v0"]
# (kwargs, reference max steps) per registered id, MO-Gymnasium's registration
MAX_STEPS = {**{i: 200 for i in MC_IDS}, "mo-mountaincarcontinuous-v0": 999, "water-reservoir-v0": 100}


# ---------------------------------------------------------------------------------------------- twin tests
class _Pilot:
    """Action sampler with access to the reference's live state (handed over by ``sync_reset``).

    A share of the episodes (``pump``) is flown by an energy-pumping controller (push along the
    velocity, with a share ``explore`` of uniformly random actions mixed in): uniformly random actions
    almost never reach the goal, and the goal step (time reward 0, terminated) must be covered too.
    The other episodes take uniformly random actions throughout.
    """

    def __init__(self, pump: float, explore: float, continuous: bool, seed: int = 1234):
        self.pump = pump
        self.explore = explore
        self.continuous = continuous
        self.modes = np.random.default_rng(seed)
        self.ref = None
        self.pumping = False
        self.checked = 0

    def sync_reset(self, ref, state, params):
        """The reference's float64 start (gymnasium's uniform draw) goes into our state, as is."""
        self.ref = ref
        self.pumping = bool(self.modes.random() < self.pump)
        position, velocity = (np.float64(x) for x in ref.state)
        return state.replace(position=f64_bits(position), velocity=f64_bits(velocity))

    def check(self, ref, state, params, action):
        """Before each step: our float64 state equals the reference's exactly (nothing is repaired)."""
        position, velocity = jax.device_get((state.position, state.velocity))
        theirs = np.array([np.float64(x) for x in ref.state])
        np.testing.assert_array_equal([bits_f64(position), bits_f64(velocity)], theirs)
        self.checked += 1
        return state, params

    def sample(self, space, rng: np.random.Generator):
        if self.continuous:
            if self.pumping and rng.random() >= self.explore:
                # magnitudes above 1 exercise the force clipping (the fuel cost uses the raw action)
                return np.array([np.copysign(rng.uniform(0.5, 1.2), self.ref.state[1])], np.float32)
            return rng.uniform(-1.0, 1.0, (1,)).astype(np.float32)
        if self.pumping and rng.random() >= self.explore:
            return np.int64(2 if self.ref.state[1] >= 0 else 0)
        return np.int64(rng.integers(3))


@pytest.mark.parametrize("env_id", MC_IDS)
def test_twin_mountain_car(env_id):
    pilot = _Pilot(pump=0.85, explore=0.1, continuous=False)
    case = TwinCase(env_id, env_id, sync_reset=pilot.sync_reset, sync_step=pilot.check, sample_action=pilot.sample)
    report = run_twin(case, episodes=EPISODES)
    assert report.episodes == EPISODES and pilot.checked == report.steps
    # goal-reaching episodes (time reward 0 on the last step) and 200-step truncations both occur
    assert report.terminated >= 50, report
    assert report.truncated >= 20, report
    assert report.returns[:, 0].max() > -200 and report.returns[:, 0].min() == -200


def test_twin_mountain_car_continuous():
    env_id = "mo-mountaincarcontinuous-v0"
    pilot = _Pilot(pump=0.95, explore=0.2, continuous=True)
    case = TwinCase(env_id, env_id, sync_reset=pilot.sync_reset, sync_step=pilot.check, sample_action=pilot.sample)
    report = run_twin(case, episodes=EPISODES)
    assert pilot.checked == report.steps
    assert report.terminated >= 100, report
    assert report.truncated >= 5, report  # uniformly random episodes run the full 999 steps
    assert report.returns[:, 0].min() == -999


@pytest.mark.slow
@pytest.mark.parametrize("env_id", MC_IDS + ["mo-mountaincarcontinuous-v0"])
def test_twin_mountain_car_long_runs(env_id):
    """1000 episodes per id (85% energy-pumping, the rest uniformly random), and for the continuous car
    actions up to 1.2 in magnitude (clipped forces), bit-equal on every step."""
    continuous = "continuous" in env_id
    pilot = _Pilot(pump=0.85, explore=0.1, continuous=continuous, seed=9173)
    case = TwinCase(env_id, env_id, sync_reset=pilot.sync_reset, sync_step=pilot.check, sample_action=pilot.sample)
    report = run_twin(case, episodes=1000, seed=9173)
    assert pilot.checked == report.steps and report.terminated >= 500 and report.truncated >= 50


def _water_sync_reset(ref, state, params):
    return state.replace(level=jnp.float32(float(ref.state[0])))


def _water_sync_step(ref, state, params, action):
    """Replay the reference's coming inflow: draw it from its ``np_random``, then rewind the generator."""
    bitgen = ref.np_random.bit_generator
    saved = bitgen.state
    inflow = ref.np_random.normal(ref.DAM_INFLOW_MEAN, ref.DAM_INFLOW_STD, 1)[0]
    bitgen.state = saved
    return state, params.replace(inflow_mean=f64_bits(inflow), inflow_std=f64_bits(0.0))


def _releases(space, rng):
    """Releases in [0, 200): both below max(s - 100, 0) and above s happen (clipping, penalties)."""
    return rng.uniform(0.0, 200.0, (1,)).astype(np.float32)


def _fractions(space, rng):
    return rng.uniform(0.0, 1.0, (1,)).astype(np.float32)


# (kwargs, action sampler, episodes): the default, every objective with penalties and integer starts,
# and the normalized action (which ignores the penalty but keeps the integer starts)
WATER_CASES = {
    "nO2": ({}, _releases, EPISODES),
    "nO4-penalize": ({"nO": 4, "penalize": True}, _releases, EPISODES // 2),
    "nO3-normalized-penalize": ({"nO": 3, "normalized_action": True, "penalize": True}, _fractions, EPISODES // 2),
}


@pytest.mark.parametrize("name", list(WATER_CASES))
def test_twin_water_reservoir(name):
    kwargs, sampler, episodes = WATER_CASES[name]
    case = TwinCase(
        "water-reservoir-v0",
        "water-reservoir-v0",
        kwargs,
        kwargs,
        sync_reset=_water_sync_reset,
        sync_step=_water_sync_step,
        sample_action=sampler,
    )
    report = run_twin(case, episodes=episodes)
    assert report.steps == episodes * 100 and report.truncated == episodes and report.terminated == 0
    assert np.all(report.returns <= 0.0)
    if kwargs.get("penalize") and not kwargs.get("normalized_action"):
        # out-of-bounds releases were penalised: the water deficit can only reach -50 per step without it
        assert report.returns[:, 1].min() < -50 * 100


# ---------------------------------------------------------------------------------------- distributions
N_DRAWS = 4096


@pytest.mark.parametrize("env_id", ["mo-mountaincar-v0", "mo-mountaincarcontinuous-v0"])
def test_mountain_car_start_distribution(env_id):
    """Start positions U[-0.6, -0.4), v = 0: ours vs the reference's (4096 draws each, fixed seeds).

    Tolerances are about 5 standard errors of the difference: U[-0.6, -0.4] has std 0.2 / sqrt(12) =
    0.0577, so the mean's difference has SE 0.0577 * sqrt(2 / 4096) = 0.0013 (tol 0.0065), and the
    std's difference SE ~ 0.0577 * sqrt(2 * 0.8 / (4 * 4096)) = 0.00057 (tol 0.003).
    """
    env, params = morl.make(env_id)
    obs, _ = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.PRNGKey(7), N_DRAWS), params)
    ours = np.asarray(obs)
    ref = mo_gym.make(env_id).unwrapped
    theirs = np.array([ref.reset(seed=s)[0] for s in range(N_DRAWS)])
    for sample in (ours, theirs):
        assert sample.dtype == np.float32
        assert np.all(sample[:, 1] == 0.0)
        assert np.all((sample[:, 0] >= -0.6) & (sample[:, 0] <= -0.4))
    assert abs(ours[:, 0].mean() - theirs[:, 0].mean()) < 0.0065
    assert abs(ours[:, 0].std() - theirs[:, 0].std()) < 0.003
    assert abs(ours[:, 0].mean() + 0.5) < 0.0045 and abs(ours[:, 0].std() - 0.2 / np.sqrt(12)) < 0.002


def test_water_inflow_distribution():
    """Inflow N(40, 10): ours (info["inflow"], and the level it adds) vs the reference's draws.

    4096 draws each; tolerances ~5 SE of the difference: mean 10 * sqrt(2 / 4096) = 0.22 -> 1.1,
    std 10 / sqrt(4096) = 0.16 -> 0.8.
    """
    env, params = morl.make("water-reservoir-v0", normalized_action=True)
    _, state = env.reset(jax.random.PRNGKey(0), params)
    state = state.replace(level=jnp.float32(80.0))
    # fraction 0 releases max(80 - 100, 0) = 0: the new level is 80 + inflow (clipped at 0)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
    obs, _, _, _, _, info = step(jax.random.split(jax.random.PRNGKey(1), N_DRAWS), state, jnp.zeros(1), params)
    ours = np.asarray(info["inflow"], np.float64)
    np.testing.assert_allclose(np.asarray(obs)[:, 0], np.maximum(80.0 + ours, 0.0), atol=1e-5)

    ref = mo_gym.make("water-reservoir-v0", normalized_action=True, time_limit=N_DRAWS + 1).unwrapped
    ref.reset(seed=3)
    theirs = []
    for _ in range(N_DRAWS):
        ref.step(np.zeros(1, np.float32))
        theirs.append(ref.dam_inflow)
    theirs = np.array(theirs)
    assert abs(ours.mean() - theirs.mean()) < 1.1 and abs(ours.std() - theirs.std()) < 0.8
    assert abs(ours.mean() - 40.0) < 0.8 and abs(ours.std() - 10.0) < 0.6


@pytest.mark.parametrize("penalize", [False, True])
def test_water_start_distribution(penalize):
    """Start levels: uniform over the 10 ``S_INIT`` values, or integers U[0, 160) with ``penalize``."""
    env, params = morl.make("water-reservoir-v0", penalize=penalize)
    obs, _ = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(jax.random.PRNGKey(5), N_DRAWS), params)
    ours = np.asarray(obs)[:, 0]
    ref = mo_gym.make("water-reservoir-v0", penalize=penalize).unwrapped
    theirs = np.array([ref.reset(seed=s)[0][0] for s in range(N_DRAWS)])
    if not penalize:
        assert set(ours) <= set(S_INIT) and set(theirs) <= set(S_INIT)
        # each value has frequency 0.1, SE sqrt(.09 / 4096) = 0.0047: 5 SE
        for sample in (ours, theirs):
            freq = np.array([(sample == v).mean() for v in S_INIT])
            assert np.all(np.abs(freq - 0.1) < 0.024), freq
    else:
        for sample in (ours, theirs):
            assert np.all(sample == np.round(sample)) and sample.min() >= 0 and sample.max() <= 159
        # U{0..159}: mean 79.5, std 46.2, SE of the difference 46.2 * sqrt(2 / 4096) = 1.0: 5 SE
        assert abs(ours.mean() - theirs.mean()) < 5.0 and abs(ours.std() - theirs.std()) < 3.0
        assert set(np.unique(ours)) == set(range(160))


# ------------------------------------------------------------------------------------ declarations, input
@pytest.mark.parametrize(
    "env_id,kwargs",
    [(i, {}) for i in ALL_IDS]
    + [
        ("water-reservoir-v0", {"nO": 3}),
        ("water-reservoir-v0", {"nO": 4, "normalized_action": True}),
        ("mo-mountaincar-v0", {"add_speed_objective": True}),
        ("mo-mountaincar-v0", {"remove_move_penalty": True}),
    ],
)
def test_declarations_match_reference(env_id, kwargs):
    env, params = morl.make(env_id, **kwargs)
    ref = mo_gym.make(env_id, **kwargs)
    assert env.reward_dim == ref.unwrapped.reward_dim == len(env.reward_names) == len(env.ref_point)
    assert env.max_steps == params.max_steps == MAX_STEPS[env_id]
    assert env.observation_space.shape == ref.observation_space.shape
    assert env.action_space.shape == ref.action_space.shape
    if isinstance(env.action_space, Discrete):
        assert env.action_space.n == ref.action_space.n
    else:
        np.testing.assert_allclose(env.action_space.low, ref.action_space.low)
        np.testing.assert_allclose(env.action_space.high, ref.action_space.high)
    np.testing.assert_allclose(env.observation_space.low, ref.observation_space.low, rtol=1e-6)
    np.testing.assert_allclose(env.observation_space.high, ref.observation_space.high, rtol=1e-6)
    # the reference point is strictly worse than any return: per-step lower bound x horizon
    worst = np.minimum(env.reward_space.low, 0.0) * env.max_steps
    assert np.all(np.array(env.ref_point) < np.where(np.isfinite(worst), worst, np.inf))
    assert env.pareto_front() is None
    gym_space = env.observation_space.to_gymnasium()
    assert gym_space.shape == ref.observation_space.shape


def test_water_reference_point_bounds_what_episodes_reach():
    """The derived point (-14001, -5001, -437, -16001) lies below the returns of extreme policies:
    hold all the water (flooding upstream), release all of it (deficits, flooding downstream), random."""
    env, _ = morl.make("water-reservoir-v0", nO=4, normalized_action=True)
    assert env.ref_point == (-14001.0, -5001.0, -437.0, -16001.0)
    ref = mo_gym.make("water-reservoir-v0", nO=4, normalized_action=True, penalize=True)  # starts up to 159
    rng = np.random.default_rng(0)
    lowest = np.full(4, np.inf)
    for policy in (lambda: 0.0, lambda: 1.0, lambda: rng.random()):
        for seed in range(10):
            ref.reset(seed=seed)
            ret, done = np.zeros(4), False
            while not done:
                _, r, term, trunc, _ = ref.step(np.array([policy()], np.float32))
                ret, done = ret + r, term or trunc
            lowest = np.minimum(lowest, ret)
    assert np.all(lowest > np.array(env.ref_point)), lowest


def test_bad_input_is_rejected_clearly():
    with pytest.raises(ValueError, match="nO"):
        morl.make("water-reservoir-v0", nO=5)
    with pytest.raises(ValueError, match="penalize"):
        morl.make("water-reservoir-v0", penalize=-1.0)
    with pytest.raises(ValueError, match="initial_state"):
        morl.make("water-reservoir-v0", initial_state=-3.0)
    env, params = morl.make("mo-mountaincar-v0")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    with pytest.raises(ValueError, match="integer action"):
        env.step(jax.random.PRNGKey(0), state, 3, params)
    cenv, cparams = morl.make("mo-mountaincarcontinuous-v0")
    _, cstate = cenv.reset(jax.random.PRNGKey(0), cparams)
    with pytest.raises(ValueError, match="shape"):
        cenv.step(jax.random.PRNGKey(0), cstate, jnp.zeros(2), cparams)


def test_water_kwargs_and_injected_inflow():
    env, params = morl.make("water-reservoir-v0", time_limit=7, initial_state=120.0, nO=4)
    assert params.max_steps == 7
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert float(obs[0]) == 120.0
    params = env.make_params(inflow_mean=12.5, inflow_std=0.0)
    # release 10 is below max(120 - 100, 0) = 20: clipped up to 20, no penalty (penalize False)
    obs, state, reward, term, trunc, info = env.step(jax.random.PRNGKey(1), state, jnp.array([10.0]), params)
    assert float(info["inflow"]) == 12.5 and float(obs[0]) == 120.0 + 12.5 - 20.0
    power = 9810.0 * 112.5 * 20.0 / 3.6e6
    np.testing.assert_allclose(reward, [-(112.5 - 50.0), -(50.0 - 20.0), min(power - 4.36, 0.0), 0.0], atol=1e-5)
    assert not bool(term) and not bool(trunc)
    for t in range(2, 8):  # truncated exactly at step time_limit = 7, never terminated
        obs, state, reward, term, trunc, info = env.step(jax.random.PRNGKey(t), state, jnp.array([10.0]), params)
        assert not bool(term) and bool(trunc) == (t == 7)


# --------------------------------------------------------------------------------- jit, vmap, trace once
def _sample_actions(env, key, n):
    space = env.action_space
    if isinstance(space, Discrete):
        return jax.random.randint(key, (n,), 0, space.n)
    high = np.where(np.isfinite(space.high), space.high, 200.0)  # unbounded releases: [0, 200)
    return jax.random.uniform(key, (n, *space.shape), minval=space.low, maxval=high)


def _rollout(env, num_envs, num_steps, counter=None):
    """Jitted vmapped scan with random actions and auto-reset: (all finite, n_term, n_trunc, obs in bounds)."""
    low = jnp.asarray(env.observation_space.low, jnp.float32)
    high = jnp.asarray(env.observation_space.high, jnp.float32)

    def counted_step(*args):
        if counter is not None:
            counter["step"] += 1
        return env.step(*args)

    @jax.jit
    def run(key, params):
        k0, key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k0, num_envs), params)
        init = (state, jnp.bool_(True), jnp.int32(0), jnp.int32(0), jnp.bool_(True))

        def body(carry, key):
            state, finite, n_term, n_trunc, inside = carry
            ka, ks, kr = jax.random.split(key, 3)
            action = _sample_actions(env, ka, num_envs)
            obs, state, r, term, trunc, _ = jax.vmap(counted_step, in_axes=(0, 0, 0, None))(
                jax.random.split(ks, num_envs), state, action, params
            )
            done = term | trunc
            _, fresh = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(kr, num_envs), params)
            state = jax.vmap(select_tree)(done, fresh, state)
            finite = finite & jnp.all(jnp.isfinite(obs)) & jnp.all(jnp.isfinite(r))
            inside = inside & jnp.all((obs >= low) & (obs <= high))
            return (state, finite, n_term + term.sum(), n_trunc + trunc.sum(), inside), None

        carry, _ = jax.lax.scan(body, init, jax.random.split(key, num_steps))
        return carry[1:]

    return run


@pytest.mark.parametrize(
    "env_id,kwargs,param_change",
    [
        ("mo-mountaincar-v0", {}, {"goal_velocity": 0.01}),
        ("mo-mountaincar-3d-v0", {}, {"force": 0.0015}),
        ("mo-mountaincar-timespeed-v0", {}, {"max_steps": 150}),
        ("mo-mountaincarcontinuous-v0", {}, {"power": 0.002}),
        ("water-reservoir-v0", {"nO": 4, "penalize": True}, {"inflow_std": 20.0}),
    ],
)
def test_jit_vmap_1024_envs_1000_steps(env_id, kwargs, param_change):
    env, params = morl.make(env_id, **kwargs)
    counter = {"step": 0}
    run = _rollout(env, 1024, 1000, counter)
    finite, n_term, n_trunc, inside = run(jax.random.PRNGKey(0), params)
    assert bool(finite) and bool(inside)
    assert int(n_term) + int(n_trunc) >= 1024  # every copy finished an episode (limits 100 / 200 / 999)
    # a new key and new param values (data, not code) reuse the compiled step
    changed = env.make_params(**param_change) if hasattr(env, "make_params") else params.replace(**param_change)
    finite2, *_ = run(jax.random.PRNGKey(1), changed)
    assert bool(finite2)
    assert counter["step"] == 1


def test_xla_cos_equals_math_cos_on_reachable_positions():
    """The mountain cars' slope term is ``math.cos(3 * position)`` (the C library's float64 cos); ours is
    XLA's float64 cos. Both are bit-equal on 3 * position for 200k float64 positions in [-1.2, 0.6] and
    200k float32 ones (the continuous car's later steps): the twin tests' exactness rests on it."""
    import math

    rng = np.random.default_rng(0)
    x64 = 3 * rng.uniform(-1.2, 0.6, 200_000)
    x32 = (3 * rng.uniform(-1.2, 0.6, 200_000).astype(np.float32)).astype(np.float64)
    with jax.enable_x64(True):
        cos = jax.jit(jnp.cos)
        ours = np.concatenate([np.asarray(cos(x64)), np.asarray(cos(x32))])
    theirs = np.array([math.cos(v) for v in np.concatenate([x64, x32])])
    np.testing.assert_array_equal(ours, theirs)
