"""Conformance of minecart-v0 and minecart-deterministic-v0 with MO-Gymnasium 1.3.2.

- Twin runs, 200 episodes each, every step compared (obs, reward, flags). A biased driver reads the
  reference cart and heads for mines, mines and drives home in most episodes, and rides walls or wanders
  for up to 1000 steps in the rest. Ore draws of minecart-v0 are replayed: the reference draws them from
  numpy's *global* RNG, which is seeded before every reference MINE step; the same normals go into our
  ``state.ore_noise`` (with ``state.noise_given``).
- No tolerance, no resynchronisation: observations and reward vectors are compared bit for bit (as
  uint32 words), flags exactly, and before every step our float64 state (position, speed, content)
  must equal the reference cart's exactly. The wall ties that float64 rounding decides are
  also replayed directly (``test_wall_ties_decided_as_the_reference_does``).
- The float64 blocks (emulated fma, ``np.dot``'s rounding, the contraction stop, the sqrt thresholds)
  against exact rational arithmetic.
- Ore draw statistics of our env, known fronts (MO-Gymnasium's approximate fronts and CCS, and their
  hypervolumes), jit + vmap over 1024 copies for 1000 steps, traced once.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import mo_gymnasium as mo_gym
import numpy as np
import pytest
from mo_gymnasium.envs.minecart import minecart as ref_minecart

import morl
import morl.envs  # noqa: F401  (registers the ids)
from morl.envs import float64, minecart
from morl.metrics import hypervolume
from morl.testing import TwinCase, run_twin

pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting:UserWarning")

TWIN_EPISODES = 200
REF_DIR = Path(ref_minecart.__file__).parent
MINES = np.array([m for m, _ in minecart._MINES])


# ----------------------------------------------------------------------------- driver
class Pilot:
    """Biased random driver (``TwinCase.sample_action``) that steers by the reference cart.

    Modes per episode: "mine" (66%): drive to a random mine at a random cruise speed, brake inside it,
    mine 1-10 steps, drive home; "wall" (30%): head for a random point beyond a wall at up to 0.1 per
    frame and ride along it for 50-300 steps, then home; "wander" (4%): turn/accelerate-heavy random
    actions (walls, speeds up to 0.06 a frame) that brake and turn away when heading back into the base, so they run
    into the 1000-step limit. Every mode takes a random action with a per-episode probability.
    """

    def __init__(self):
        self.cart = None
        self.mode = None

    def start(self, ref) -> None:
        self.cart, self.mode = ref.cart, None

    def _plan(self, rng: np.random.Generator) -> None:
        self.mode = rng.choice(["mine", "wall", "wander"], p=[0.66, 0.3, 0.04])
        self.phase, self.t = "go", 0
        self.eps = rng.uniform(0.0, 0.15)
        if self.mode == "mine":
            self.target = MINES[rng.integers(len(MINES))]
            self.cruise = rng.uniform(0.005, 0.03)
            self.n_mine = int(rng.integers(1, 11))
        elif self.mode == "wall":
            u = rng.uniform(0.0, 1.0)
            self.target = [np.array([1.4, u]), np.array([u, 1.4]), np.array([-0.4, u]), np.array([u, -0.4])][
                rng.integers(4)
            ]
            self.cruise = rng.uniform(0.01, 0.1)
            self.ride = int(rng.integers(50, 301))
            self.eps = rng.uniform(0.05, 0.3)

    def _steer(self, target, cruise) -> int:
        c = self.cart
        d = np.asarray(target) - c.pos
        diff = (math.degrees(math.atan2(d[1], d[0])) - c.angle + 180.0) % 360.0 - 180.0
        if abs(diff) > 20:
            return minecart.ACT_RIGHT if diff > 0 else minecart.ACT_LEFT
        return minecart.ACT_ACCEL if c.speed < cruise else minecart.ACT_NONE

    def __call__(self, space, rng: np.random.Generator) -> np.int64:
        if self.mode is None:
            self._plan(rng)
        self.t += 1
        if self.mode == "wander":
            c = self.cart
            heading = np.array([math.cos(math.radians(c.angle)), math.sin(math.radians(c.angle))])
            if c.departed and np.hypot(*c.pos) < 0.45 and heading @ c.pos < 0.5 * np.hypot(*c.pos):
                if c.speed > 0:
                    return np.int64(minecart.ACT_BRAKE)
                return np.int64(self._steer(3 * c.pos, 1.0))
            action = rng.choice(6, p=[0.08, 0.2, 0.2, 0.25, 0.05, 0.22])
            return np.int64(minecart.ACT_NONE if action == minecart.ACT_ACCEL and c.speed > 0.06 else action)
        if rng.random() < self.eps:
            return np.int64(rng.integers(6))
        if self.phase == "home":
            return np.int64(self._steer((0.0, 0.0), self.cruise))
        if self.mode == "wall":
            if self.t > self.ride:
                self.phase = "home"
            return np.int64(self._steer(self.target, self.cruise))
        if self.phase == "mine":
            self.n_mine -= 1
            self.phase = "home" if self.n_mine <= 0 else "mine"
            return np.int64(minecart.ACT_MINE)
        if np.hypot(*(self.target - self.cart.pos)) < 0.1:
            if self.cart.speed > 0:
                return np.int64(minecart.ACT_BRAKE)
            self.phase = "mine"
            return self(space, rng)
        return np.int64(self._steer(self.target, self.cruise))


# ----------------------------------------------------------------------------- synchronisation
class Sync:
    """Hooks of a twin run: pilot start, exact state check, ore draw replay. Nothing is repaired: the
    hooks only compare our state with the reference's and hand over the reference's ore draws."""

    def __init__(self, replay_draws: bool, frame_skip: int = 4):
        self.pilot = Pilot()
        self.replay_draws = replay_draws
        self.frame_skip = frame_skip
        self.seeds = itertools.count(12345)
        self.n_checked = 0

    def reset(self, ref, state, params):
        self.pilot.start(ref)
        return state

    def step(self, ref, state, params, action):
        # our float64 state (after the previous step) equals the reference cart's, bit for bit
        c = ref.cart
        pos, speed, content, angle, departed, end = jax.device_get(
            (state.pos, state.speed, state.content, state.angle, state.departed, state.end)
        )
        np.testing.assert_array_equal(minecart.bits_f64(pos), np.asarray(c.pos, np.float64))
        assert minecart.bits_f64(speed) == np.float64(c.speed), (minecart.bits_f64(speed), c.speed)
        np.testing.assert_array_equal(minecart.bits_f64(content), np.asarray(c.content, np.float64))
        assert angle == c.angle and bool(departed) == c.departed and bool(end) == ref.end
        self.n_checked += 1
        if self.replay_draws and action == minecart.ACT_MINE:  # the reference draws only when mining
            # the reference's norm(mu, sigma).rvs() is mu + sigma * standard_normal() of numpy's global
            # RandomState, drawn ore by ore, frame by frame: seed it and give us the same normals
            seed = next(self.seeds)
            np.random.seed(seed)
            z = np.random.RandomState(seed).standard_normal((self.frame_skip, 2))
            state = state.replace(ore_noise=minecart.f64_bits(z), noise_given=np.bool_(True))
        return state, params


def _twin(
    env_id: str,
    replay_draws: bool,
    episodes: int = TWIN_EPISODES,
    seed: int = 0,
    kwargs=None,
    gym_kwargs=None,
    pilot: bool = True,
):
    sync = Sync(replay_draws, (kwargs or {}).get("frame_skip", 4))
    case = TwinCase(
        env_id,
        env_id,
        kwargs=kwargs or {},
        gym_kwargs=gym_kwargs or {},
        sync_reset=sync.reset,
        sync_step=sync.step,
        sample_action=sync.pilot if pilot else None,
    )
    saved = np.random.get_state()
    try:
        report = run_twin(case, episodes=episodes, seed=seed)
    finally:
        np.random.set_state(saved)
    assert report.episodes == episodes
    assert sync.n_checked == report.steps
    return report, sync


def _check_coverage(report) -> None:
    ore = report.returns[:, :2].sum(axis=1)
    brought_ore = int(np.sum(ore > 0))
    # most "mine" episodes bring ore home; some episodes reach the 1000-step limit
    assert brought_ore >= 0.3 * report.episodes, f"only {brought_ore} episodes brought ore home"
    assert report.truncated >= 3, f"only {report.truncated} episodes reached the time limit"
    assert report.terminated >= 0.5 * report.episodes
    assert report.steps >= 40 * report.episodes  # long episodes


def test_twin_deterministic():
    report, sync = _twin("minecart-deterministic-v0", replay_draws=False)
    _check_coverage(report)
    # deterministic ore: every return is a non-negative combination of the mines' per-frame means
    ore = report.returns[:, :2]
    assert np.all(ore >= 0) and np.all(ore.sum(axis=1) <= 1.5 + 1e-6)


def test_twin_stochastic_with_replayed_draws():
    report, sync = _twin("minecart-v0", replay_draws=True, seed=1)
    _check_coverage(report)
    ore = report.returns[:, :2]
    full = ore[ore.sum(axis=1) > 0]
    # random ore: the amounts brought home vary
    assert len(np.unique(np.round(full, 6), axis=0)) > 0.8 * len(full)


def test_twin_non_incremental_frame_skip():
    """The reference's ``incremental_frane_skip=False``: one action of 4x effect, then 4 moves."""
    report, _ = _twin(
        "minecart-v0",
        replay_draws=True,
        episodes=25,
        seed=1,
        kwargs={"incremental_frame_skip": False},
        gym_kwargs={"incremental_frane_skip": False},
    )
    assert np.sum(report.returns[:, :2].sum(axis=1) > 0) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("env_id, replay", [("minecart-deterministic-v0", False), ("minecart-v0", True)])
def test_twin_long_runs(env_id, replay):
    """Long runs: 1000 pilot episodes from seed 9173 (whose episodes reach wall ties that only float64
    rounding decides) and 200 episodes of uniformly random actions (~150 steps each: random carts
    soon roll back into the base), every step bit-equal with our float64 state equal to the reference's."""
    report, _ = _twin(env_id, replay_draws=replay, episodes=1000, seed=9173)
    _check_coverage(report)
    report, _ = _twin(env_id, replay_draws=replay, episodes=200, seed=9173, pilot=False)
    assert report.steps >= 20_000 and np.sum(report.returns[:, :2].sum(axis=1) > 0) >= 10  # some mined


@pytest.mark.parametrize("angle, pos", [(345, (0.5, 1.0)), (15, (0.5, 0.0)), (75, (1.0, 0.5)), (105, (0.0, 0.5))])
def test_wall_ties_decided_as_the_reference_does(angle, pos):
    """A cart on a wall turning across the wall's direction (345 -> 355 -> 5 degrees on the top wall)
    comes back to exactly the wall coordinate in real arithmetic (sin 355 + sin 5 = 0); float64
    rounding decides whether it is on the wall and slides (y = 1 - 3.4e-17 rounds to 1).
    Ours follows the reference step by step from such starts, at 40 speeds."""
    env, params = morl.make("minecart-deterministic-v0")
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    turn = minecart.ACT_RIGHT if angle in (345, 75) else minecart.ACT_LEFT
    for speed in np.linspace(0.01, 0.2, 40):
        ref = mo_gym.make("minecart-deterministic-v0").unwrapped
        ref.reset(seed=0)
        ref.cart.pos, ref.cart.speed, ref.cart.angle, ref.cart.departed = np.array(pos), float(speed), angle, True
        _, s = reset(jax.random.PRNGKey(0), params)
        s = s.replace(
            pos=minecart.f64_bits(pos), speed=minecart.f64_bits(speed), angle=np.int32(angle), departed=np.bool_(True)
        )
        for action in [turn, minecart.ACT_NONE, minecart.ACT_NONE, turn, minecart.ACT_NONE]:
            ref_obs, ref_r, ref_term, _, _ = ref.step(action)
            obs, s, r, term, *_ = step(jax.random.PRNGKey(1), s, np.int32(action), params)
            np.testing.assert_array_equal(np.asarray(obs).view(np.uint32), ref_obs.view(np.uint32))
            np.testing.assert_array_equal(minecart.bits_f64(s.pos), ref.cart.pos)
            assert minecart.bits_f64(s.speed) == ref.cart.speed and int(s.angle) == ref.cart.angle
            assert bool(term) == ref_term


# ----------------------------------------------------------------------------- constants and config
def test_config_matches_reference_json():
    for name, path in [("default", "mine_config.json"), ("deterministic", "mine_config_det.json")]:
        with open(REF_DIR / path) as f:
            data = json.load(f)
        ours = minecart.CONFIGS[name]
        assert ours["capacity"] == data["capacity"] and ours["ore_cnt"] == data["ore_cnt"]
        assert ours["mine_cnt"] == data["mine_cnt"] == len(ours["mines"])
        for a, b in zip(ours["mines"], data["mines"]):
            assert (a["x"], a["y"]) == (b["x"], b["y"])
            np.testing.assert_array_equal(a["distributions"], b["distributions"])
    for name in [
        "EPS_SPEED",
        "ROTATION",
        "ACCELERATION",
        "MAX_SPEED",
        "MINE_RADIUS",
        "BASE_RADIUS",
        "FUEL_IDLE",
        "FUEL_ACC",
        "FUEL_MINE",
        "ACT_MINE",
        "ACT_LEFT",
        "ACT_RIGHT",
        "ACT_ACCEL",
        "ACT_BRAKE",
        "ACT_NONE",
    ]:
        assert getattr(minecart, name) == getattr(ref_minecart, name), name
    # the scales MO-Gymnasium multiplies in are all 1
    assert ref_minecart.CART_SCALE == ref_minecart.MINE_SCALE == ref_minecart.BASE_SCALE == 1.0
    assert ref_minecart.DECELERATION >= ref_minecart.MAX_SPEED  # brake always stops the cart


def test_declarations_and_fuel():
    env, params = morl.make("minecart-v0")
    det, _ = morl.make("minecart-deterministic-v0")
    assert env.ref_point == (-1.0, -1.0, -200.0) and det.ref_point == (0.0, 0.0, -200.0)
    assert env.reward_names == ("ore1", "ore2", "fuel") and env.max_steps == 1000
    assert env.observation_space.shape == (7,) and env.action_space.n == 6
    ref = mo_gym.make("minecart-v0")
    np.testing.assert_array_equal(env.reward_space.low, ref.unwrapped.reward_space.low)
    np.testing.assert_array_equal(env.reward_space.high, ref.unwrapped.reward_space.high)
    # the documented fuel costs (-0.22 mine, -0.12 accelerate, -0.02 otherwise), bit for bit as the
    # reference's float32 reward vector holds them
    step = jax.jit(env.step)
    _, s = env.reset(jax.random.PRNGKey(0), params)
    for a, fuel in [(0, -0.22), (1, -0.02), (2, -0.02), (3, -0.12), (4, -0.02), (5, -0.02), (7, -0.02)]:
        _, _, r, *_ = step(jax.random.PRNGKey(1), s, np.int32(a), params)
        assert abs(float(r[2]) - fuel) < 1e-7
        if a < 6:  # 7 is not an action: ours does nothing (the reference would do the same)
            ref.reset(seed=0)
            assert np.float32(r[2]) == ref.step(a)[1][2], a
    ref.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown minecart config"):
        minecart.Minecart(config="nope")
    with pytest.raises(ValueError, match="frame_skip"):
        minecart.Minecart(frame_skip=0)
    with pytest.raises(ValueError, match="list every mine"):
        minecart.Minecart(config={"capacity": 1.5, "mine_cnt": 5, "ore_cnt": 2, "mines": []})
    env = minecart.Minecart()
    bad = copy.deepcopy(minecart.CONFIGS["default"])
    bad["mines"] = bad["mines"][:3]
    bad["mine_cnt"] = 3
    with pytest.raises(ValueError, match="make a new Minecart"):
        env.params_from_config(bad)
    with pytest.raises(ValueError, match="draws no ore noise"):
        minecart.Minecart("deterministic").make_params(ore_std=np.full((5, 2), 0.1))
    near_wall = copy.deepcopy(minecart.CONFIGS["default"])
    near_wall["mines"][0]["x"] = 0.1
    with pytest.raises(ValueError, match="within 0.14 of a wall"):
        minecart.Minecart(config=near_wall)


def test_params_from_reference_json_equal_defaults():
    env = minecart.Minecart("deterministic")
    from_json = env.params_from_config(str(REF_DIR / "mine_config_det.json"))
    for a, b in zip(jax.tree.leaves(from_json), jax.tree.leaves(env.default_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_float64_blocks_are_exact_under_jit():
    """The float64 blocks the step relies on (``envs/float64.py``), jitted and vmapped as the step uses them:
    the emulated fma and ``dot2`` (emulated, and as the env runs it on this backend) equal exact rational
    arithmetic rounded once and numpy's ``np.dot`` (the reference's ``mag``); ``rn`` stops XLA from
    fusing a product into the following add; the sqrt thresholds decide ``sqrt(s) < 0.15`` /
    ``sqrt(s) <= 0.14`` exactly as numpy's sqrt does."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    n = 4096
    a = rng.uniform(-1, 1, n) * 10.0 ** rng.integers(-8, 1, n)
    c = a * a * rng.uniform(0, 4, n) * 10.0 ** rng.integers(-3, 4, n)
    # near-ties: c = fl(a^2) - a^2 + (multiples of quarter ulps), where one rounding differs from two
    ulp = np.spacing(a * a)
    c[:512] = np.array([float(Fraction(x * x) - Fraction(x) ** 2) for x in a[:512]]) + ulp[:512] * (
        rng.integers(-6, 7, 512) / 4
    )
    with jax.enable_x64(True):
        fma = np.asarray(jax.jit(jax.vmap(lambda a, c: float64.fma_square(a, c)))(a, c))
        emulated = np.asarray(jax.jit(jax.vmap(float64.dot2))(c, a))  # emulated fma(a, a, c * c)
        plain = np.asarray(jax.jit(jax.vmap(lambda x, y: float64.dot2(x, y, "plain")))(c, a))
        rounding = float64.dot_rounding()  # as the env runs it here (numpy's rounding, backend's fma)
        env_dot = np.asarray(jax.jit(jax.vmap(lambda x, y: float64.dot2(x, y, rounding)))(c, a))
        mul_add = np.asarray(jax.jit(jax.vmap(lambda a, c: float64.rn(a * a) + c))(a, c))
    exact = np.array([float(Fraction(x) ** 2 + Fraction(y)) for x, y in zip(a, c)])
    np.testing.assert_array_equal(fma, exact)
    np.testing.assert_array_equal(emulated, [float(Fraction(x) ** 2 + Fraction(float(y * y))) for x, y in zip(a, c)])
    np.testing.assert_array_equal(plain, c * c + a * a)
    # the reference's mag(): np.dot as this machine's OpenBLAS kernel rounds it (fma or plain, probed)
    np.testing.assert_array_equal(env_dot, [np.dot(v, v) for v in np.stack([c, a], 1)])
    np.testing.assert_array_equal(mul_add, a * a + c)
    assert np.mean(exact != a * a + c) > 0.05  # the cases do tell one rounding from two
    for radius, t, strict in [
        (minecart.BASE_RADIUS, minecart.BASE_SQ, True),
        (minecart.MINE_RADIUS, minecart.MINE_SQ, False),
    ]:
        s = np.array([np.nextafter(t, 0.0), t, np.nextafter(t, 1.0)])
        inside = np.sqrt(s) < radius if strict else np.sqrt(s) <= radius
        np.testing.assert_array_equal(inside, s < t if strict else s <= t)
        assert inside[0] and inside[1] != strict and not inside[2]


def test_mining_under_vmap_runs_per_lane():
    """Under vmap only the mining carts run the mining (gathered into 1/64 or 1/16 of the lanes, or all
    lanes when more mine): every lane's result equals the same step taken alone, in each case."""
    env, params = morl.make("minecart-v0")
    n = 64
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), n), params)
    at_mines = np.asarray(params.mine_pos)[np.arange(n) % 5]
    state = state.replace(pos=jnp.asarray(at_mines), departed=jnp.ones(n, bool))
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    batched = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    single = jax.jit(env.step)
    for n_mining in (1, 3, 40):  # 1 slot (64 // 64), 4 slots (64 // 16), every lane
        actions = np.where(np.arange(n) < n_mining, minecart.ACT_MINE, minecart.ACT_NONE).astype(np.int32)
        obs, new, reward, *_ = jax.device_get(batched(keys, state, actions, params))
        assert np.sum(obs[:, 5:].sum(1) > 0) >= n_mining - n_mining // 5  # carts at mines mined (mine 0: no ore 2)
        for i in list(range(n_mining + 2)) + [n - 1]:
            lane = jax.tree.map(lambda x, i=i: x[i], state)
            o, s1, r, *_ = jax.device_get(single(keys[i], lane, actions[i], params))
            np.testing.assert_array_equal(o, obs[i])
            np.testing.assert_array_equal(s1.content, new.content[i])


def test_params_variants_vmap():
    """Mine layouts and distributions are data: one jitted call vmaps over three variants."""
    env = minecart.Minecart()
    moved = copy.deepcopy(minecart.CONFIGS["default"])
    moved["mines"][2]["x"] = moved["mines"][2]["y"] = 0.5  # mine 3 is no longer at (0.84, 0.84)
    variants = [env.default_params, env.params_from_config("deterministic"), env.params_from_config(moved)]
    params = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *variants)

    def park_and_mine(key, params):
        _, s = env.reset(key, params)
        s = s.replace(pos=jnp.asarray(minecart.f64_bits([0.84, 0.84])))
        _, s, *_ = env.step(key, s, jnp.int32(minecart.ACT_MINE), params)
        return s.content

    content = minecart.bits_f64(jax.jit(jax.vmap(park_and_mine, in_axes=(None, 0)))(jax.random.PRNGKey(3), params))
    # deterministic: 3 frames of (0.2, 0.2), then the 4th is scaled to the 0.3 left: (0.75, 0.75)
    np.testing.assert_allclose(content[1], [0.75, 0.75], rtol=0, atol=1e-15)
    assert np.abs(content[0] - 0.75).max() > 1e-4 and content[0].sum() == pytest.approx(1.5, abs=1e-5)
    np.testing.assert_array_equal(content[2], [0.0, 0.0])  # nothing to mine there any more


# ----------------------------------------------------------------------------- ore statistics
N_DRAWS = 4096
N_REF_DRAWS = 1000  # scipy draws one at a time: slow


def test_ore_draw_statistics():
    """One MINE step of 4096 vmapped carts parked at each mine (capacity raised so nothing is scaled):
    the content is the sum of 4 draws of max(0, N(mu, sigma)); its first two moments per ore match the
    reference distribution's (closed form, checked against the reference's own draws) within 5
    standard errors."""
    from scipy.stats import norm

    env, params = morl.make("minecart-v0")
    params = env.make_params(capacity=1000.0)
    fs = env.frame_skip

    @jax.jit
    def mine_once(key, mine):
        def one(k):
            k0, k1 = jax.random.split(k)
            _, s = env.reset(k0, params)
            s = s.replace(pos=params.mine_pos[mine], departed=jnp.bool_(True))
            _, s, *_ = env.step(k1, s, jnp.int32(minecart.ACT_MINE), params)
            return s.content

        return jax.vmap(one)(jax.random.split(key, N_DRAWS))

    saved = np.random.get_state()
    ref = ref_minecart.Minecart()
    np.random.seed(7)

    def close(samples, expected) -> bool:  # sample mean within 5 standard errors
        return abs(samples.mean() - expected) < 5 * samples.std() / math.sqrt(len(samples))

    for m, ((x, y), means) in enumerate(minecart._MINES):
        content = minecart.bits_f64(mine_once(jax.random.PRNGKey(m), m))
        mine = min(ref.mines, key=lambda mi: np.hypot(*(mi.pos - (x, y))))
        ref_draws = np.array([mine.mine() for _ in range(N_REF_DRAWS)])  # one draw per ore
        for o, mu in enumerate(means):
            sigma = 0.05
            # Y = max(0, X), X ~ N(mu, sigma): E[Y] = mu Phi(a) + sigma phi(a),
            # E[Y^2] = (mu^2 + sigma^2) Phi(a) + mu sigma phi(a), a = mu / sigma
            a = mu / sigma
            m1 = mu * norm.cdf(a) + sigma * norm.pdf(a)
            m2 = (mu**2 + sigma**2) * norm.cdf(a) + mu * sigma * norm.pdf(a)
            # ours: S = sum of fs independent draws
            s = content[:, o]
            assert close(s, fs * m1), (m, o, s.mean(), fs * m1)
            assert close(s**2, fs * m2 + fs * (fs - 1) * m1**2), (m, o, s.std())
            assert s.std() > 0.5 * math.sqrt(fs * (m2 - m1**2))  # a real spread, not constant draws
            # the reference's own draws have these one-draw moments too
            assert close(ref_draws[:, o], m1) and close(ref_draws[:, o] ** 2, m2), (m, o)
    np.random.set_state(saved)


# ----------------------------------------------------------------------------- fronts
def _as_set(points) -> np.ndarray:
    p = np.asarray(points, np.float64)
    return p[np.lexsort(p.T[::-1])]


@pytest.fixture(scope="module")
def reference_envs():
    saved = np.random.get_state()
    envs = {
        name: ref_minecart.Minecart(config=str(REF_DIR / path))
        for name, path in [("default", "mine_config.json"), ("deterministic", "mine_config_det.json")]
    }
    np.random.set_state(saved)
    return envs


@pytest.mark.parametrize(
    "name, env_id, gamma, ref_point, hv",
    [
        ("default", "minecart-v0", 0.98, (-1, -1, -200), 668.18),
        ("deterministic", "minecart-deterministic-v0", 1.0, (0, 0, -200), 147.84),
    ],
)
def test_pareto_front_and_ccs_equal_reference(reference_envs, name, env_id, gamma, ref_point, hv):
    env, _ = morl.make(env_id)
    ref = reference_envs[name]
    ours, theirs = _as_set(env.pareto_front(gamma)), _as_set(ref.pareto_front(gamma))
    assert ours.shape == theirs.shape and ours.shape[1] == 3
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    ccs, ref_ccs = _as_set(env.convex_coverage_set(gamma)), _as_set(ref.convex_coverage_set(gamma))
    np.testing.assert_allclose(ccs, ref_ccs, rtol=0, atol=1e-12)
    assert len(ccs) < len(ours)
    assert hypervolume(ours, ref_point) == pytest.approx(hv, abs=0.005)
    assert tuple(env.ref_point) == tuple(map(float, ref_point))
    # the other gamma and the asymmetric variant too
    other = 1.0 if gamma != 1.0 else 0.98
    np.testing.assert_allclose(_as_set(env.pareto_front(other)), _as_set(ref.pareto_front(other)), atol=1e-12)
    np.testing.assert_allclose(
        _as_set(env.pareto_front(gamma, symmetric=False)), _as_set(ref.pareto_front(gamma, symmetric=False)), atol=1e-12
    )


def test_pareto_front_follows_params():
    env, params = morl.make("minecart-deterministic-v0")
    np.testing.assert_allclose(
        _as_set(env.pareto_front(0.98, params=params)), _as_set(env.pareto_front(0.98)), atol=1e-12
    )
    richer = env.make_params(ore_mean=2 * minecart.bits_f64(params.ore_mean))
    assert _as_set(env.pareto_front(0.98, params=richer))[:, :2].max() > env.pareto_front(0.98)[:, :2].max()


# ----------------------------------------------------------------------------- jit, vmap, scan
N_ENVS, N_STEPS = 1024, 1000
TRACES = {"step": 0}


@pytest.fixture(scope="module")
def rollout():
    env, params = morl.make("minecart-v0")

    def counted_step(key, state, action, params):
        TRACES["step"] += 1  # runs only while tracing
        return env.step(key, state, action, params)

    step = jax.vmap(counted_step, in_axes=(0, 0, 0, None))

    @jax.jit
    def run(key, params):
        k0, key = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k0, N_ENVS), params)

        def body(state, key):
            ka, ks = jax.random.split(key)
            # accelerate-heavy random actions so carts reach walls, mines and high speeds
            action = jax.random.choice(ka, 6, (N_ENVS,), p=jnp.array([0.15, 0.2, 0.2, 0.25, 0.05, 0.15]))
            obs, state, reward, term, trunc, _ = step(jax.random.split(ks, N_ENVS), state, action, params)
            ok = jnp.isfinite(obs).all() & jnp.isfinite(reward).all()
            inside = ((obs >= -1) & (obs <= 1)).all()
            return state, (ok & inside, term.sum(), reward.sum(0), (state.content != 0).any((-2, -1)).sum())

        state, (ok, term, reward, loaded) = jax.lax.scan(body, state, jax.random.split(key, N_STEPS))
        return ok.all(), term[-1], reward.sum(0), loaded.max(), state.time

    return run, params, env


def test_jit_vmap_scan_finite_and_traced_once(rollout):
    run, params, env = rollout
    ok, terminated, reward, loaded, time = jax.device_get(run(jax.random.PRNGKey(0), params))
    assert ok, "non-finite or out-of-space values"
    assert np.all(time == N_STEPS)
    assert terminated > 0 and loaded > 0  # carts mined and came back (ends stay terminated: no reset)
    assert reward[2] < 0 and reward[0] > 0 and reward[1] > 0
    ok2, *_ = jax.device_get(run(jax.random.PRNGKey(1), env.make_params(capacity=1.0)))
    assert ok2
    assert TRACES["step"] == 1, f"step traced {TRACES['step']} times"
