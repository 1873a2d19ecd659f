"""Envelope Q-learning: registration and defaults, and learning on DST (its blocks: test_replay.py, test_td.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.envelope import EnvelopeConfig
from morl.evaluate import EvalProtocol, evaluate


# ----------------------------------------------------------------------------------------------- agent
def test_envelope_registers_with_morl_baselines_defaults():
    spec = agent_spec("envelope")
    cfg = make_config("envelope")
    assert spec.action_kinds == ("discrete",)
    assert (
        cfg.learning_rate,
        cfg.net_arch,
        cfg.batch_size,
        cfg.target_net_update_freq,
        cfg.num_sample_w,
        cfg.gamma,
        cfg.max_grad_norm,
        cfg.per,
        cfg.buffer_size,
    ) == (3e-4, (256, 256, 256, 256), 256, 200, 4, 0.99, 1.0, True, 1_000_000)
    with pytest.raises(ValueError, match="num_sample_w"):
        EnvelopeConfig(num_sample_w=1)
    env, _ = morl.make("mo-mountaincarcontinuous-v0")
    with pytest.raises(ValueError, match="discrete"):
        make_trainer("envelope", env)


#: the CI learning test's settings: MORL-Baselines' defaults, but minibatches of 32 transitions (x 4 preferences)
#: instead of 256 so that a gradient step costs ~5 ms on 2 CPU cores (256: ~40 ms)
#: Budget: the run stops at its first full-HV evaluation (as the 530 s MORL-Baselines figure does), so the budget is
#: a cap that only slow trajectories reach. When 100% first comes is trajectory luck: under this protocol an exact
#: policy scores 99.68%, and 100% needs a Q error in the 20.3 treasure's favour at one preference
#: (test_dst_full_hv_under_the_100_preference_protocol_needs_a_lucky_error_...). Latest measurement (AVX-512 Xeon,
#: jax 0.10.2, docs/algorithms/envelope.md): seeds 1-7 first reach 100% at 28k / 26k / 34k / 3k / 30k / 3k / 2k env
#: steps; seed 0 not within 60k (best 98.5%). 60k leaves 1.8x over the slowest seed that reached it; another CPU's
#: float kernels give another trajectory, i.e. another draw from this spread. Seed 2 is the CI seed (~80 s).
DST_CONFIG = dict(batch_size=32, total_timesteps=60_000, steps_per_chunk=1000)
DST_TRUE_HV = 360.40
DST_SEED = 2


def test_envelope_reaches_the_whole_dst_front():
    """Acceptance: 100% of DST's true hypervolume (gamma 0.99, ref [0, -25]) with a fixed seed within the budget
    (see DST_CONFIG for the budget and the seeds measured). Its speed (MORL-Baselines: 530 s) is a benchmark, not a
    timed test: `python experiments/preference_conditioned.py envelope-dst --seed 1 --stop-at-full`."""
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("envelope", env, params, **DST_CONFIG)
    state = trainer.init(jax.random.PRNGKey(DST_SEED))
    # MORL-Baselines' front: 100 equally spaced preferences, discounted returns. DST and the greedy policy are
    # deterministic, so one episode per preference gives the same front as five (checked on the final front)
    quick = EvalProtocol(gamma=0.99, episodes=1)
    history = []
    while not trainer.done(state):
        state, logs = trainer.update(state)
        front = evaluate(trainer.solution(state), env, protocol=quick)
        history.append((trainer.env_steps(state), round(front.metrics["hypervolume"], 2)))
        if front.metrics["hypervolume"] >= DST_TRUE_HV - 0.01:
            break
    front = evaluate(trainer.solution(state), env, protocol=EvalProtocol(gamma=0.99))
    assert front.metrics["hypervolume"] == pytest.approx(DST_TRUE_HV, abs=0.01), history
    found = np.abs(front.front[:, None, :] - env.pareto_front(0.99)[None]).max(-1).min(0)
    assert (found < 1e-3).all(), f"treasures not reached: {env.pareto_front(0.99)[found >= 1e-3]}"


def test_dst_full_hv_under_the_100_preference_protocol_needs_a_lucky_error_not_an_exact_policy():
    # Why "time to 100% of DST's HV" swings so much between seeds: the 20.3 treasure (discounted (17.81, -13.13)) is
    # the argmax of w . F only for w_treasure in [0.6658, 0.6721], and none of MORL-Baselines' 100 equally spaced
    # preferences lies there (the nearest, 0.6654, prefers the 19.6 treasure by 0.0005, 7e-5 of the value). An exact
    # conditioned policy therefore scores 359.26 (99.68% of 360.40); 100% needs the Q-network to err in that
    # treasure's favour at that one preference while still choosing its neighbours elsewhere. A plain 100-point
    # linspace would select every treasure: it is the set's spacing, not its size.
    from morl.metrics import hypervolume

    env, _ = morl.make("deep-sea-treasure-v0")
    front = np.asarray(env.pareto_front(0.99))
    w = np.asarray(EvalProtocol(gamma=0.99).front_preferences(2))
    scores = w @ front.T
    chosen = np.unique(np.argmax(scores, axis=1))
    missing = sorted(set(range(len(front))) - set(chosen))
    assert len(missing) == 1 and np.allclose(front[missing[0]], [17.8137, -13.1254], atol=1e-3), front[missing]
    exact_hv = hypervolume(front[chosen], env.ref_point)
    assert abs(exact_hv - 359.264) < 1e-2 and abs(hypervolume(front, env.ref_point) - DST_TRUE_HV) < 1e-2
    shortfall = scores.max(axis=1) - scores[:, missing[0]]
    assert 0 < shortfall.min() < 1e-3
    lin = np.linspace(0.0, 1.0, 100)
    assert len(np.unique(np.argmax(np.stack([lin, 1 - lin], 1) @ front.T, axis=1))) == len(front)


def test_envelope_seeds_in_one_program_match_their_single_seed_runs():
    """The run driver trains seeds as ``jit(vmap(update))``: every seed's state equals its single-seed run's, integer
    leaves (steps, replay heads, stored transitions) exactly, floats up to float32 rounding. XLA's batched kernels sum
    small products in another order than the one-seed kernels (measured here: |diff| <= 8e-6 after 500 gradient
    steps), so bit-equality is not what vmap gives; equal integer leaves show every action and minibatch was the
    same."""
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = dict(
        total_timesteps=600,
        batch_size=16,
        net_arch=(16, 16),
        learning_starts=100,
        steps_per_chunk=200,
        buffer_size=1000,
    )
    trainer = make_trainer("envelope", env, params, **cfg)
    seeds = [0, 1]
    singles = []
    for s in seeds:
        state = trainer.init(jax.random.PRNGKey(s))
        while not trainer.done(state):
            state, _ = trainer.update(state)
        singles.append(state)
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))
    state = vinit(jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds]))
    while not trainer.done(jax.tree.map(lambda x: x[0], state)):
        state, _ = vupdate(state)
    for i, single in enumerate(singles):
        member = [np.asarray(x)[i] for x in jax.tree.leaves(state)]
        for a, b in zip(jax.tree.leaves(single), member, strict=True):
            a = np.asarray(a)
            if np.issubdtype(a.dtype, np.floating):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
            else:
                np.testing.assert_array_equal(b, a)


def test_target_copies_count_learner_iterations_not_transitions():
    """With N envs in lockstep the target is copied every ``target_net_update_freq`` vector steps (gradient steps),
    as MORL-Baselines' one env does; counting transitions copied it N times as often and made DST's front collapse
    (docs/algorithms/envelope.md). 4 envs, a copy every 3 vector steps: after 5 vector steps (20 transitions) the
    last copy was at vector step 3, so the target is the online net of then, not of now."""
    env, params = morl.make("deep-sea-treasure-v0")
    cfg = dict(
        total_timesteps=1000,
        num_envs=4,
        target_net_update_freq=3,
        learning_starts=0,
        batch_size=8,
        net_arch=(8,),
        steps_per_chunk=1,
        per=False,
    )
    trainer = make_trainer("envelope", env, params, **cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    online = []
    for _ in range(5):
        state, _ = trainer.update(state)
        online.append(state.q_params)
    same = lambda a, b: all(  # noqa: E731
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert int(state.updates) == 5 and trainer.env_steps(state) == 20
    assert same(state.target_params, online[2])  # copied at vector step 3
    assert not same(state.target_params, online[4])  # not at 4 or 5 (transitions 16 and 20 cross multiples of 3)
