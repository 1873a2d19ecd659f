"""GPI-LS / GPI-PD: hand-computed twins of their blocks (GPI action, pessimistic and GPI targets, Huber), the
registration, learning DST's whole front, determinism, one compile per chunk kind, and GPI-PD's model path with
prioritised replay switched off (MORL-Baselines' ``per=False`` GPI-PD crashes; this one must run)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import morl
import morl.envs  # noqa: F401  (registers the envs)
from morl.agent import agent_spec, make_config, make_trainer
from morl.agents.gpi import GPILSConfig, envelope_target, gpi_action, huber, min_over_nets
from morl.evaluate import EvalProtocol, evaluate

# ----------------------------------------------------------------------------------------------- twins by hand
#: two support policies x three actions x two objectives
Q = np.array(
    [
        [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]],  # Q(s, ., w_0)
        [[0.2, 0.9], [0.8, 0.1], [0.6, 0.6]],  # Q(s, ., w_1)
    ],
    np.float32,
)


@pytest.mark.parametrize(
    "w, mask, action, policy",
    [
        # w . Q: policy 0 -> (.5, .5, .5), policy 1 -> (.55, .45, .6): the best is policy 1's action 2
        ((0.5, 0.5), (True, True), 2, 1),
        # policy 0 -> (1, 0, .5), policy 1 -> (.2, .8, .6): policy 0's action 0
        ((1.0, 0.0), (True, True), 0, 0),
        # policy 0 -> (0, 1, .5), policy 1 -> (.9, .1, .6): policy 0's action 1
        ((0.0, 1.0), (True, True), 1, 0),
        # policy 0 masked out: policy 1's best at w = (1, 0) is action 1 (.8)
        ((1.0, 0.0), (False, True), 1, 1),
    ],
)
def test_gpi_action_by_hand(w, mask, action, policy):
    a, i = gpi_action(jnp.asarray(Q), jnp.asarray(w, jnp.float32), jnp.asarray(mask))
    assert (int(a), int(i)) == (action, policy)
    # batched: a leading axis of observations
    a, i = gpi_action(jnp.stack([Q, Q]), jnp.asarray([w, w], jnp.float32), jnp.asarray([mask, mask]))
    assert a.tolist() == [action, action] and i.tolist() == [policy, policy]


def test_min_over_nets_and_gpi_target_by_hand():
    # two nets, one row, two actions: per action the net with the smaller w . Q (w = (.5, .5))
    q = jnp.asarray([[[[1.0, 1.0], [0.0, 4.0]]], [[[2.0, 2.0], [1.0, 0.0]]]])  # [N=2, B=1, A=2, m=2]
    w = jnp.asarray([[0.5, 0.5]])
    # action 0: net 0 (1.0) < net 1 (2.0); action 1: net 1 (0.5) < net 0 (2.0)
    np.testing.assert_array_equal(min_over_nets(q, w)[0], [[1.0, 1.0], [1.0, 0.0]])
    # GPI target over K = 2 preferences: the vector of the (k, a) maximising w . Q(s', a, w_k)
    q_next = jnp.asarray([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 3.0], [0.2, 0.2]]]])  # [B=1, K=2, A=2, m=2]
    both = jnp.asarray([True, True])
    # w = (.9, .1): .9, 0, .3, .2 -> k = 0, a = 0
    np.testing.assert_array_equal(envelope_target(q_next, jnp.asarray([[0.9, 0.1]]), both)[0], [1.0, 0.0])
    # w = (.1, .9): .1, 0, 2.7, .18 -> k = 1, a = 0
    np.testing.assert_array_equal(envelope_target(q_next, jnp.asarray([[0.1, 0.9]]), both)[0], [0.0, 3.0])
    # preference 1 masked out: k = 0, whose best action at w = (.1, .9) is a = 0 (.1 > 0)
    only0 = jnp.asarray([True, False])
    np.testing.assert_array_equal(envelope_target(q_next, jnp.asarray([[0.1, 0.9]]), only0)[0], [1.0, 0.0])


def test_huber_by_hand():
    """MORL-Baselines' huber(|td|, 0.01): .5 x^2 below .01, .01 x above; the mean over elements."""
    x = jnp.asarray([0.005, 0.02, 1.0])
    want = (0.5 * 0.005**2 + 0.01 * 0.02 + 0.01 * 1.0) / 3
    assert float(huber(x, 0.01)) == pytest.approx(want, rel=1e-6)


# ----------------------------------------------------------------------------------------------- registration
def test_gpi_agents_register_with_morl_baselines_defaults():
    for name in ("gpi-ls", "gpi-pd"):
        assert agent_spec(name).action_kinds == ("discrete",)
        cfg = make_config(name)
        assert (
            cfg.learning_rate,
            cfg.net_arch,
            cfg.num_nets,
            cfg.batch_size,
            cfg.gradient_updates,
            cfg.target_net_update_freq,
            cfg.timesteps_per_iter,
            cfg.per,
            cfg.alpha_per,
            cfg.min_priority,
            cfg.drop_rate,
            cfg.layer_norm,
            cfg.corner_top_k,
        ) == (3e-4, (256, 256, 256, 256), 2, 128, 20, 1000, 10_000, True, 0.6, 0.01, 0.01, True, 4)
    assert make_config("gpi-ls").gpi_priority is False and not hasattr(make_config("gpi-ls"), "dyna")
    pd = make_config("gpi-pd")
    assert pd.gpi_priority and pd.dyna and pd.dynamics_ensemble_size == 5 and pd.dynamics_rollout_batch_size == 25000
    # the GPI-PD paper's minecart settings (MORL-Baselines' examples/gpi_pd_minecart.py) per env
    assert make_config("gpi-pd", "minecart-v0").gamma == 0.98
    with pytest.raises(ValueError, match="less than one iteration"):
        GPILSConfig(total_timesteps=500, timesteps_per_iter=1000)
    with pytest.raises(ValueError, match="multiple of steps_per_chunk"):
        GPILSConfig(timesteps_per_iter=1000, steps_per_chunk=300)
    env, _ = morl.make("mo-mountaincarcontinuous-v0")
    with pytest.raises(ValueError, match="discrete"):
        make_trainer("gpi-ls", env)
    env, _ = morl.make("resource-gathering-v0")
    with pytest.raises(ValueError, match="does not know where episodes"):
        make_trainer("gpi-pd", env)


# ----------------------------------------------------------------------------------------------- learning DST
#: the CI settings: MORL-Baselines' defaults except a smaller network (64-64-64) and minibatch (32), 1,000-step
#: iterations and 5 gradient steps per env step from the start (MORL-Baselines: 10,000-step iterations, 20 steps
#: after 5,000 env steps), so that a run fits the CI budget on 2 CPU cores; experiments/gpi_dst.py runs the same
#: settings (and --reference the defaults) until 100%.
#: Threshold and budget: the run stops at its first evaluation (one per iteration) at >= 95% of the true HV. Measured
#: (seed 0, jax 0.10.2, CPU): 95.3% first at 8k steps, then at 10k, 12k and from 16k on (98.5% at 19k); between
#: them the HV swings down to 93.8% (a far treasure lost and found again); seed 1 first reaches 95.3% at 15k steps.
#: 20k steps leave 2.5x over seed 0's first hit (the CI seed) and 1.3x over seed 1's.
DST_CONFIG = dict(
    net_arch=(64, 64, 64),
    batch_size=32,
    timesteps_per_iter=1000,
    gradient_updates=5,
    gradient_updates_starts=0,
    eval_episodes=1,
    buffer_size=20_000,
)
DST_BUDGET = 20_000
DST_TRUE_HV = 360.40
DST_FRACTION = 0.95
DST_SEED = 0


def test_gpi_ls_reaches_95_percent_of_dst_hypervolume():
    """Acceptance (CI scale): >= 95% of DST's true hypervolume (gamma .99, ref [0, -25]) within the budget; every
    chunk runs one compiled program. 100% and its time: experiments/gpi_dst.py (docs/algorithms/gpi.md)."""
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer("gpi-ls", env, params, total_timesteps=DST_BUDGET, **DST_CONFIG)
    state = trainer.init(jax.random.PRNGKey(DST_SEED))
    quick = EvalProtocol(gamma=0.99, episodes=1)  # DST and the greedy GPI policy are deterministic
    history, it = [], 0
    while not trainer.done(state):
        state, _ = trainer.update(state)
        if int(state.iteration) != it and trainer.env_steps(state) % DST_CONFIG["timesteps_per_iter"] == 0:
            it = int(state.iteration)
            hv = evaluate(trainer.solution(state), env, protocol=quick).metrics["hypervolume"]
            history.append((trainer.env_steps(state), round(hv, 2)))
            if hv >= DST_FRACTION * DST_TRUE_HV:
                break
    assert history[-1][1] >= DST_FRACTION * DST_TRUE_HV, history
    # the CCS linear support keeps is a subset of the GPI policy's front (GPI combines the support's policies)
    assert 1 <= int(state.ls["ccs_count"]) <= len(env.pareto_front(0.99))
    assert trainer._chunks[(True, False)]._cache_size() == 1


# ----------------------------------------------------------------------------------------------- GPI-PD
def test_gpi_pd_without_per_learns_a_model_and_spends_only_real_steps():
    """``per=False`` runs (the reference's crashes), the model is fitted on real transitions, its imagined DST steps
    agree with the real env, and imagined transitions fill the model buffer without spending the budget."""
    env, params = morl.make("deep-sea-treasure-v0")
    trainer = make_trainer(
        "gpi-pd",
        env,
        params,
        per=False,
        total_timesteps=1000,
        timesteps_per_iter=500,
        net_arch=(32, 32),
        batch_size=16,
        gradient_updates=2,
        gradient_updates_starts=500,
        eval_episodes=1,
        dynamics_net_arch=(64, 64),
        dynamics_rollout_starts=500,
        dynamics_rollout_batch_size=400,
        dynamics_buffer_size=2000,
    )
    state, logs = _train(trainer, 0)
    assert trainer.env_steps(state) == 1000
    assert 0 < int(state.learner.model_replay.size) <= 2 * 400  # rollouts at 500 and 750 steps
    # the model beats predicting "no change, no reward" on the real data by far
    x, y = trainer._fit_data(state.learner.replay)
    n = int(state.learner.replay.size)
    zero_mse = float(np.mean(np.square(np.asarray(y)[:n])))
    assert logs["model_holdout_mse"] < 0.5 * zero_mse, (logs["model_holdout_mse"], zero_mse)
    # imagined transitions: the next cell the model predicts is the env's for most of them
    mb = jax.tree.map(lambda a: np.asarray(a)[: int(state.learner.model_replay.size)], state.learner.model_replay.data)
    pos = jnp.asarray(mb["obs"])
    step = jax.vmap(
        lambda p, a: env.step(
            jax.random.PRNGKey(0), env.reset(jax.random.PRNGKey(0), params)[1].replace(pos=p), a, params
        )[0]
    )
    real_next = np.asarray(step(pos, jnp.asarray(mb["action"])))
    agree = np.mean(np.all(real_next == mb["next_obs"], axis=1))
    assert agree > 0.9, agree
    # same seed, same run: the CCS, the model buffer and the front (the compiled programs are reused)
    again, _ = _train(trainer, 0)
    np.testing.assert_array_equal(again.ls["ccs"], state.ls["ccs"])
    imagined = again.learner.model_replay.data["next_obs"]
    np.testing.assert_array_equal(imagined, state.learner.model_replay.data["next_obs"])
    quick = EvalProtocol(gamma=0.99, episodes=1, front_weights=8)
    np.testing.assert_array_equal(
        evaluate(trainer.solution(again), env, protocol=quick).returns,
        evaluate(trainer.solution(state), env, protocol=quick).returns,
    )
    # before 500 steps: one gradient step, real data; after: two, with model data: one program each, two runs
    sizes = {k: f._cache_size() for k, f in trainer._chunks.items()}
    assert sizes == {(False, False): 1, (False, True): 0, (True, False): 0, (True, True): 1}


def _train(trainer, seed):
    state = trainer.init(jax.random.PRNGKey(seed))
    while not trainer.done(state):
        state, logs = trainer.update(state)
    return state, logs


def test_the_training_chunk_updates_the_replay_buffer_in_place():
    # GPI-LS's step samples a batch, sets its priorities and stores the new transition, inside a scan. Without
    # XLA's region analysis for copy insertion (morl turns it on at import: morl.DEFAULT_XLA_FLAGS) the CPU
    # compiler copies the stores and the priority tree on every step: O(capacity) per step, chunks 5.5x slower at
    # a 1M buffer (Envelope's 3.2x). Guarded on the compiled chunk: no copy of an array of the buffer's size.
    import os
    import re

    import morl

    assert all(f in os.environ["XLA_FLAGS"].split() for f in morl.DEFAULT_XLA_FLAGS), os.environ["XLA_FLAGS"]
    env, params = morl.make("deep-sea-treasure-v0")
    capacity = 30_000  # the budget bounds the buffer: 30,001 slots, a priority tree of 32,768 leaves
    trainer = make_trainer("gpi-ls", env, params, total_timesteps=capacity, net_arch=(16, 16), num_nets=1)
    state = trainer.init(jax.random.PRNGKey(0))
    hlo = trainer._chunks[(True, False)].lower(state.learner).compile().as_text()
    # the loop's computations (a copy in ENTRY happens once per chunk call, not once per step)
    inner = [c for c in re.split(r"\n(?=\S)", hlo) if not c.startswith("ENTRY")]
    big = [n for c in inner for n in re.findall(r"= \w+\[(\d+)[^\]]*\][^ ]* copy\(", c) if int(n) >= capacity]
    assert not big, f"whole-buffer copies in the training scan: {big}"
