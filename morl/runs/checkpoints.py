"""Checkpoints of a train state: orbax step folders that restore bit for bit.

Checkpoints are orbax (``CheckpointManager``, synchronous saves: a save returns once the step folder is
committed, and orbax finalises a step by renaming its temporary folder, so a kill mid-save leaves the
previous step intact). Every leaf is written as a numpy array of its own dtype and read back as one, then
turned back into what it was (jax array, numpy host buffer, typed PRNG key, Python scalar) from a record in
the step's JSON metadata; zero-size leaves, which orbax refuses to write, live in that record too. So host
buffers keep float64/int64 exactly with x64 off, and a resumed run is bit-identical. The state's tree
structure comes from the trainer (``jax.eval_shape(trainer.init, key)``, see `state_template`), shapes from
the checkpoint, so agents whose state grows (a policy archive) restore too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from morl.runs.files import RunError
from morl.store import clean_json


def _key_is_typed(x) -> bool:
    import jax

    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


class Checkpointer:
    """orbax ``CheckpointManager`` over a run's ``checkpoints/`` folder (the last ``max_to_keep`` kept)."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Save ``state`` as step ``step`` (no-op if that step exists). Every leaf is stored as a numpy array of
        its own dtype (host buffers keep float64/int64); what it was (jax array, numpy array, typed PRNG key,
        Python scalar) and zero-size leaves (which orbax cannot write) go into the step's JSON metadata."""
        import jax

        ocp = self._ocp
        if step in self.manager.all_steps():
            return
        kinds: dict[str, str] = {}
        empty: dict[str, list] = {}

        def encode(path, x):
            name = jax.tree_util.keystr(path)
            if _key_is_typed(x):
                kinds[name] = "key:" + str(jax.random.key_impl(x))
                x = jax.random.key_data(x)
            elif isinstance(x, jax.Array):
                kinds[name] = "jax"
            elif isinstance(x, (np.ndarray, np.generic)):
                kinds[name] = "numpy"
            elif isinstance(x, (bool, int, float)):
                kinds[name] = "python:" + type(x).__name__
            else:
                raise RunError(f"train state leaf {name} is a {type(x).__name__}; a train state holds arrays only")
            a = np.asarray(x)
            if a.size == 0:
                empty[name] = [list(a.shape), a.dtype.str]
                return None
            return a

        plain = jax.tree_util.tree_map_with_path(encode, state)
        with _sigint_deferred():  # Ctrl-C mid-save would leave orbax's threads and event loop half torn down
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeSave(plain),
                    meta=ocp.args.JsonSave(clean_json(meta | {"leaf_kinds": kinds, "empty_leaves": empty})),
                ),
                force=True,
            )
            self.manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """The state saved at ``step`` (default: the latest), with ``template``'s tree structure, and its meta.

        Shapes and dtypes come from the checkpoint (so a state that grew restores), the tree structure and
        node types from ``template`` (e.g. ``jax.eval_shape(trainer.init, key)``)."""
        import jax
        import jax.numpy as jnp

        ocp = self._ocp
        step = self.latest() if step is None else step
        if step is None:
            raise RunError(f"no checkpoint in {self.directory}")
        item = self.manager.item_metadata(step)["state"]
        args = {"meta": ocp.args.JsonRestore()}
        if jax.tree.leaves(item):  # restore every leaf as numpy, with its saved dtype
            args["state"] = ocp.args.PyTreeRestore(
                restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
            )
        raw = self.manager.restore(step, args=ocp.args.Composite(**args))
        meta = dict(raw["meta"])
        saved = raw["state"] if "state" in args else None
        kinds, empty = meta.get("leaf_kinds", {}), meta.get("empty_leaves", {})
        flat, treedef = jax.tree_util.tree_flatten_with_path(template)
        leaves = []
        for path, tmpl in flat:
            name = jax.tree_util.keystr(path)
            if name in empty:
                shape, dtype = empty[name]
                value = np.zeros(shape, np.dtype(dtype))
            else:
                value = saved
                for entry in path:
                    value = _lookup(value, entry, path)
            kind = kinds.get(name) or ("key:" + str(jax.random.key_impl(tmpl)) if _key_is_typed(tmpl) else "jax")
            if kind.startswith("key:"):
                leaves.append(jax.random.wrap_key_data(jnp.asarray(value), impl=kind[4:]))
            elif kind == "numpy":
                leaves.append(np.array(value))  # a writable host copy, dtype as saved
            elif kind.startswith("python:"):
                leaves.append({"bool": bool, "int": int, "float": float}[kind[7:]](np.asarray(value).item()))
            else:
                leaves.append(jnp.asarray(value))
        return jax.tree_util.tree_unflatten(treedef, leaves), meta

    def close(self) -> None:
        self.manager.close()


class _sigint_deferred:
    """Hold SIGINT (Ctrl-C) back while a checkpoint is written; raise KeyboardInterrupt once it is committed.

    Only in the main thread (the only one Python delivers signals to); elsewhere a no-op."""

    def __enter__(self):
        import signal
        import threading

        self.pending = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._hold)
            except (ValueError, TypeError):
                self.old = None
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, exc_type, exc, tb):
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending and exc_type is None:
            raise KeyboardInterrupt
        return False


def _lookup(node: Any, entry: Any, path: Any) -> Any:
    import jax

    tu = jax.tree_util
    if isinstance(entry, tu.GetAttrKey):
        keys = [entry.name]
    elif isinstance(entry, tu.DictKey):
        keys = [entry.key, str(entry.key)]
    elif isinstance(entry, (tu.SequenceKey, tu.FlattenedIndexKey)):
        keys = [entry.idx, str(entry.idx)]
    else:
        keys = [entry]
    for k in keys:
        try:
            return node[k]
        except (KeyError, IndexError, TypeError):
            continue
    raise RunError(
        f"checkpoint does not match the agent's state at {jax.tree_util.keystr(path)}: was it written "
        "by another version of the agent? (the state's tree structure must not change)"
    )


def state_template(trainer, key) -> Any:
    """The tree structure of ``trainer``'s state, for `Checkpointer.restore` (shapes only, when init traces)."""
    import jax

    try:
        return jax.eval_shape(trainer.init, key)
    except Exception:  # an init with host logic: build a real one
        return trainer.init(key)
