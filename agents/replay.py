"""Replay buffers as fixed-size device arrays: a ring buffer, optionally with proportional priorities.

Everything is a pure function over a `Replay` pytree, so the buffer lives inside a jitted training loop (no
Python lists, no host round trips): ``add`` writes a batch at the write head with one scatter, ``sample``
draws indices on the device. The stored item is any pytree of arrays (one transition); every leaf gets a
leading ``capacity`` axis.

Prioritised replay (``prioritized=True``) keeps a **sum tree** over the slots, one array per level (level
``l`` has ``2**l`` nodes, the last level ``P`` leaves, ``P`` the next power of two >= capacity), sampled
proportionally to priority by a descent of ``log2(P)`` gathers and updated by recomputing parents level by
level (duplicate indices in one update are harmless: a parent is recomputed from its children, never
incremented). One array per level means every update reads one array and writes another, so XLA updates
them in place inside a jitted loop (a single flat array read and written by the same scatter gets copied). New
items get the largest priority seen so far (``max_priority``), as MORL-Baselines' ``PrioritizedReplayBuffer``
(there named ``min_priority``). No importance-sampling weights are returned, also as MORL-Baselines.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

PyTree = Any


@struct.dataclass
class Replay:
    """A ring buffer of ``capacity`` items (leaves ``[capacity, ...]``) and its write head."""

    data: PyTree
    pos: jax.Array  # int32: next slot to write
    size: jax.Array  # int32: number of valid items (<= capacity)
    tree: tuple  # sum tree of priorities, levels root..leaves (float32 [2**l]); () when not prioritised
    max_priority: jax.Array  # float32: priority given to new items (largest seen so far)

    @property
    def capacity(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])

    @property
    def prioritized(self) -> bool:
        return len(self.tree) > 0


def _tree_leaves_count(capacity: int) -> int:
    p = 1
    while p < capacity:
        p *= 2
    return p


def init(example: PyTree, capacity: int, prioritized: bool = False, initial_priority: float = 1e-5) -> Replay:
    """An empty buffer holding ``capacity`` items shaped like ``example`` (one item, no batch axis).

    ``initial_priority``: priority of the first items (MORL-Baselines' ``min_priority`` default, 1e-5).
    """
    if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
        raise ValueError(f"replay capacity must be a positive int, got {capacity!r}")
    capacity = int(capacity)
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    depth = _tree_leaves_count(capacity).bit_length() - 1
    tree = tuple(jnp.zeros((2**level,), jnp.float32) for level in range(depth + 1)) if prioritized else ()
    return Replay(data, jnp.int32(0), jnp.int32(0), tree, jnp.float32(initial_priority))


def transition_example(obs: jax.Array, action: jax.Array, num_objectives: int, **extra: jax.Array) -> dict:
    """One transition as the off-policy agents store it, the ``example`` for `init`: ``obs`` and ``next_obs`` shaped
    like ``obs``, ``action`` as given (its shape and dtype are stored), a float32 vector ``reward``, a float32
    ``terminated`` flag, and any ``extra`` leaves (a preference ``w``)."""
    return {
        "obs": obs,
        "action": action,
        "reward": jnp.zeros((num_objectives,), jnp.float32),
        "next_obs": obs,
        "terminated": jnp.float32(0.0),
        **extra,
    }


def add(buffer: Replay, items: PyTree) -> Replay:
    """Write a batch of items (leaves ``[B, ...]``, ``B <= capacity``) at the write head, overwriting the oldest."""
    leaves = jax.tree.leaves(items)
    if not leaves:
        raise ValueError("replay.add got an empty pytree of items")
    b = int(leaves[0].shape[0])
    cap = buffer.capacity
    if b > cap:
        raise ValueError(f"replay.add: batch of {b} items exceeds the buffer capacity {cap}; use a larger capacity")
    idx = (buffer.pos + jnp.arange(b, dtype=jnp.int32)) % cap
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype)), buffer.data, items)
    buffer = buffer.replace(data=data, pos=(buffer.pos + b) % cap, size=jnp.minimum(buffer.size + b, cap))
    if buffer.prioritized:
        buffer = _set_priorities(buffer, idx, jnp.full((b,), buffer.max_priority, jnp.float32))
    return buffer


def add_masked(buffer: Replay, items: PyTree, mask: jax.Array) -> Replay:
    """Write only the items whose ``mask`` is True (leaves ``[B, ...]``, mask ``[B]``), packed in order at the
    write head. Static shapes with a dynamic count: HER copies that are switched on during training use it."""
    if buffer.prioritized:
        raise ValueError("replay.add_masked does not support prioritised buffers; use add")
    leaves = jax.tree.leaves(items)
    b = int(leaves[0].shape[0])
    cap = buffer.capacity
    if b > cap:
        raise ValueError(f"replay.add_masked: batch of {b} items exceeds the buffer capacity {cap}")
    mask = mask.astype(bool)
    count = jnp.sum(mask.astype(jnp.int32))
    slot = (buffer.pos + jnp.cumsum(mask.astype(jnp.int32)) - 1) % cap
    idx = jnp.where(mask, slot, cap)  # out of range: dropped by the scatter
    data = jax.tree.map(lambda store, x: store.at[idx].set(x.astype(store.dtype), mode="drop"), buffer.data, items)
    return buffer.replace(data=data, pos=(buffer.pos + count) % cap, size=jnp.minimum(buffer.size + count, cap))


def sample(buffer: Replay, key: jax.Array, batch_size: int) -> tuple[PyTree, jax.Array]:
    """``batch_size`` items drawn with replacement and their slot indices.

    Uniform over the valid items, or proportional to priority for a prioritised buffer. An empty buffer
    returns slot 0 (zeros): callers gate learning on ``size`` (``learning_starts``).
    """
    if buffer.prioritized:
        idx = _sample_tree(buffer, key, batch_size)
    else:
        idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1), dtype=jnp.int32)
    return jax.tree.map(lambda store: store[idx], buffer.data), idx


def update_priorities(
    buffer: Replay, idx: jax.Array, priorities: jax.Array, enabled: jax.Array | None = None
) -> Replay:
    """Set the priorities of slots ``idx``; ``max_priority`` becomes the largest priority seen.

    ``enabled`` (a traced flag: whether the gradient step that computed them counts) False leaves the priorities
    and ``max_priority`` as they were, by a `where` rather than a `cond`, so XLA still updates the tree in place."""
    if not buffer.prioritized:
        raise ValueError("update_priorities needs a buffer made with prioritized=True")
    if enabled is not None:
        keep = buffer.tree[-1][: buffer.capacity][idx]
        updated = update_priorities(buffer, idx, jnp.where(enabled, priorities, keep))
        return updated.replace(max_priority=jnp.where(enabled, updated.max_priority, buffer.max_priority))
    priorities = priorities.astype(jnp.float32)
    buffer = buffer.replace(max_priority=jnp.maximum(buffer.max_priority, jnp.max(priorities)))
    return _set_priorities(buffer, idx, priorities)


def priorities(buffer: Replay) -> jax.Array:
    """The priority of every slot, ``[capacity]`` (0 for empty slots)."""
    return buffer.tree[-1][: buffer.capacity]


def _set_priorities(buffer: Replay, idx: jax.Array, values: jax.Array) -> Replay:
    levels = list(buffer.tree)
    node = idx.astype(jnp.int32)
    levels[-1] = levels[-1].at[node].set(values)
    for level in range(len(levels) - 2, -1, -1):
        node = node // 2
        child = levels[level + 1]
        levels[level] = levels[level].at[node].set(child[2 * node] + child[2 * node + 1])
    return buffer.replace(tree=tuple(levels))


def _sample_tree(buffer: Replay, key: jax.Array, batch_size: int) -> jax.Array:
    levels = buffer.tree
    query = jax.random.uniform(key, (batch_size,), jnp.float32) * levels[0][0]
    node = jnp.zeros((batch_size,), jnp.int32)
    for child in levels[1:]:
        left = child[2 * node]
        right = query > left
        query = jnp.where(right, query - left, query)
        node = 2 * node + right.astype(jnp.int32)
    # float rounding can walk into an empty slot past the valid items: clamp to the last valid one
    return jnp.minimum(node, jnp.maximum(buffer.size - 1, 0))
