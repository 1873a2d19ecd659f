"""The replay buffer (`agents.replay`): ring writes, masked writes, uniform and prioritised sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from morl.agents import replay as rb


def _item(v):
    return {"x": jnp.asarray(v, jnp.float32), "a": jnp.asarray(v, jnp.int32)}


def _batch(values):
    return {"x": jnp.asarray(values, jnp.float32), "a": jnp.asarray(values, jnp.int32)}


#: one compiled sampler for the statistical tests (the batch size is static)
_sample = jax.jit(rb.sample, static_argnums=2)

#: a correct sampler fails a test below with probability < 1e-6 (each bound is set at that level)
FALSE_ALARM = 1e-6


def _check_frequencies(idx: np.ndarray, probs: np.ndarray) -> None:
    """``idx`` are draws from ``probs`` (a distribution over slots): a chi-square goodness-of-fit test over the
    slots of non-zero probability at level ``FALSE_ALARM``, each slot's count within its binomial bound (z-score
    of the two-sided ``FALSE_ALARM / k`` level, Bonferroni over the k slots), and no draw from a zero slot."""
    n = len(idx)
    counts = np.bincount(idx, minlength=len(probs))
    assert counts[probs == 0].sum() == 0, counts
    live = probs > 0
    expected = n * probs[live]
    chi2 = float(np.sum((counts[live] - expected) ** 2 / expected))
    assert chi2 < stats.chi2.ppf(1 - FALSE_ALARM, df=live.sum() - 1), (chi2, counts, expected)
    z = stats.norm.isf(FALSE_ALARM / (2 * live.sum()))
    sd = np.sqrt(n * probs[live] * (1 - probs[live]))
    assert np.all(np.abs(counts[live] - expected) <= z * sd), (counts, expected, z * sd)


def test_ring_buffer_wraps_and_keeps_the_newest():
    buf = rb.init(_item(0), capacity=5)
    buf = rb.add(buf, _batch([1, 2, 3]))
    assert int(buf.size) == 3 and int(buf.pos) == 3
    buf = rb.add(buf, _batch([4, 5, 6, 7]))  # overwrites the two oldest (1, 2)
    assert int(buf.size) == 5 and int(buf.pos) == 2
    assert sorted(np.asarray(buf.data["x"]).tolist()) == [3, 4, 5, 6, 7]
    assert np.asarray(buf.data["a"]).dtype == np.int32
    items, idx = rb.sample(buf, jax.random.PRNGKey(0), 1000)
    assert set(np.asarray(items["x"]).astype(int).tolist()) == {3, 4, 5, 6, 7}
    np.testing.assert_array_equal(np.asarray(items["x"]), np.asarray(buf.data["x"])[np.asarray(idx)])


def test_transition_example_lays_out_a_stored_transition():
    obs = jnp.zeros((3,), jnp.float32)
    example = rb.transition_example(obs, jnp.int32(0), 2, w=jnp.zeros((2,), jnp.float32))
    assert sorted(example) == ["action", "next_obs", "obs", "reward", "terminated", "w"]
    buf = rb.init(example, capacity=4)
    shapes = {k: (v.shape, v.dtype) for k, v in buf.data.items()}
    assert shapes["obs"] == shapes["next_obs"] == ((4, 3), jnp.float32)
    assert shapes["action"] == ((4,), jnp.int32) and shapes["terminated"] == ((4,), jnp.float32)
    assert shapes["reward"] == shapes["w"] == ((4, 2), jnp.float32)


def test_ring_buffer_samples_only_valid_items_and_jits():
    buf = rb.init(_item(0), capacity=100)
    add = jax.jit(rb.add)
    buf = add(buf, _batch([7, 8]))
    items, idx = jax.jit(rb.sample, static_argnums=2)(buf, jax.random.PRNGKey(1), 500)
    assert set(np.asarray(idx).tolist()) == {0, 1}
    assert set(np.asarray(items["a"]).tolist()) == {7, 8}


def test_ring_buffer_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        rb.init(_item(0), capacity=0)
    buf = rb.init(_item(0), capacity=2)
    with pytest.raises(ValueError, match="exceeds the buffer capacity"):
        rb.add(buf, _batch([1, 2, 3]))
    with pytest.raises(ValueError, match="prioritized=True"):
        rb.update_priorities(buf, jnp.array([0]), jnp.array([1.0]))
    with pytest.raises(ValueError, match="does not support prioritised"):
        rb.add_masked(rb.init(_item(0), capacity=2, prioritized=True), _batch([1]), jnp.array([True]))


def test_add_masked_packs_the_kept_items_in_order():
    buf = rb.init(_item(0), capacity=4)
    buf = rb.add_masked(buf, _batch([1, 2, 3]), jnp.array([True, False, True]))
    assert int(buf.size) == 2 and int(buf.pos) == 2
    np.testing.assert_array_equal(np.asarray(buf.data["x"])[:2], [1, 3])
    buf = rb.add_masked(buf, _batch([4, 5, 6]), jnp.array([True, True, True]))  # wraps: 6 overwrites 1
    np.testing.assert_array_equal(np.asarray(buf.data["x"]), [6, 3, 4, 5])
    assert int(buf.size) == 4 and int(buf.pos) == 1


def test_uniform_sampling_is_uniform_over_the_valid_items():
    buf = rb.add(rb.init(_item(0), capacity=8), _batch([0, 1, 2, 3, 4]))  # 5 valid slots of 8
    _, idx = _sample(buf, jax.random.PRNGKey(7), 50_000)
    _check_frequencies(np.asarray(idx), np.array([0.2] * 5 + [0.0] * 3))


def test_prioritized_sum_tree_and_max_priority():
    buf = rb.init(_item(0), capacity=6, prioritized=True)  # 8 leaves: padding past capacity
    assert [len(level) for level in buf.tree] == [1, 2, 4, 8]
    buf = rb.add(buf, _batch([0, 1, 2, 3]))
    np.testing.assert_allclose(np.asarray(rb.priorities(buf))[:4], 1e-5)  # new items get max_priority
    buf = rb.update_priorities(buf, jnp.array([0, 1, 2, 3, 3]), jnp.array([1.0, 0.0, 3.0, 4.0, 4.0]))
    assert float(buf.max_priority) == pytest.approx(4.0)
    # every node is the sum of its children (a duplicate index in one update is not counted twice)
    for parent, child in zip(buf.tree[:-1], buf.tree[1:], strict=True):
        np.testing.assert_allclose(np.asarray(parent), np.asarray(child).reshape(-1, 2).sum(axis=1))
    assert float(buf.tree[0][0]) == pytest.approx(8.0)
    buf = rb.add(buf, _batch([9]))  # the next item enters with the largest priority seen
    assert float(rb.priorities(buf)[4]) == pytest.approx(4.0)
    # lowering priorities never lowers max_priority
    buf = rb.update_priorities(buf, jnp.array([3]), jnp.array([0.5]))
    assert float(buf.max_priority) == pytest.approx(4.0)


def test_priority_update_switched_off_leaves_the_buffer_as_it_was():
    buf = rb.add(rb.init(_item(0), capacity=4, prioritized=True), _batch([0, 1, 2]))
    buf = rb.update_priorities(buf, jnp.array([0, 1, 2]), jnp.array([1.0, 2.0, 3.0]))
    idx, prio = jnp.array([0, 2]), jnp.array([7.0, 0.5])
    update = jax.jit(rb.update_priorities)
    off = update(buf, idx, prio, jnp.bool_(False))
    for a, b in zip(jax.tree.leaves(off), jax.tree.leaves(buf), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    on = update(buf, idx, prio, jnp.bool_(True))
    for a, b in zip(jax.tree.leaves(on), jax.tree.leaves(rb.update_priorities(buf, idx, prio)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(on.max_priority) == 7.0 and np.asarray(rb.priorities(on)).tolist() == [7.0, 2.0, 0.5, 0.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prioritized_sampling_is_proportional_to_priority_to_the_alpha(seed):
    """Envelope stores ``priority ** alpha`` (MORL-Baselines' proportional PER); the buffer must then draw slot i
    with probability ``p_i^alpha / sum_j p_j^alpha``. Checked by a chi-square test and per-slot binomial bounds
    (false-alarm level 1e-6 each), on three seeds: a fixed tolerance tuned to one run would say nothing."""
    alpha = 0.6
    raw = np.array([0.5, 0.0, 3.0, 8.0, 1.0, 0.05, 2.0])  # slot 1: zero priority, never drawn
    buf = rb.init(_item(0), capacity=7, prioritized=True)  # 8 leaves, the last one padding
    buf = rb.add(buf, _batch(np.arange(7)))
    buf = rb.update_priorities(buf, jnp.arange(7), jnp.asarray(raw**alpha, jnp.float32))
    _, idx = _sample(buf, jax.random.PRNGKey(seed), 50_000)
    probs = np.append(raw**alpha, 0.0)
    _check_frequencies(np.asarray(idx), probs / probs.sum())


def test_prioritized_sampling_follows_priority_updates():
    """After an update the old distribution is gone: the slot that held most of the mass is now the rarest."""
    buf = rb.add(rb.init(_item(0), capacity=4, prioritized=True), _batch([0, 1, 2, 3]))
    buf = rb.update_priorities(buf, jnp.arange(4), jnp.array([10.0, 1.0, 1.0, 1.0]))
    buf = rb.update_priorities(buf, jnp.array([0]), jnp.array([0.25]))
    _, idx = _sample(buf, jax.random.PRNGKey(5), 50_000)
    _check_frequencies(np.asarray(idx), np.array([0.25, 1.0, 1.0, 1.0]) / 3.25)
