"""What an agent hands back: a set of candidate policies, or one preference-conditioned policy.

The evaluator needs nothing else: for a policy set it evaluates every candidate; for a
preference-conditioned policy it evaluates the policy at each evaluation preference. ``act_for(w)``
serves a user's preference at run time (by assignment for a policy set: the candidate with the largest
``w . G``, as C-MORL does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from morl.weights import check_preference

PyTree = Any
#: act(params, w[m], obs[N, ...], key) -> action[N, ...]; deterministic (evaluation mode)
ActFn = Callable[[PyTree, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class Solution:
    act: ActFn
    #: stacked over candidates (leading axis K) for a policy set; one set of params when conditioned
    params: PyTree
    #: [K, m] the preference each candidate was trained for (policy set), or None (conditioned)
    candidate_weights: np.ndarray | None = None
    #: True when ``params`` serve every preference (PD-MORL, Envelope, ...)
    conditioned: bool = False
    #: [K, m] vector returns the agent measured for its candidates, when it has them
    candidate_returns: np.ndarray | None = None
    #: True when ``act`` also takes ``(episode_return[N, m], episode_length[N])``: the running undiscounted return
    #: and step count of each episode (PCN conditions on the return still to earn)
    episode_context: bool = False
    #: True when ``act`` never uses its key (argmax, the mode of a distribution): on a ``deterministic`` env every
    #: evaluation episode of a candidate is then the same, and the evaluator runs one
    greedy: bool = False

    @property
    def num_candidates(self) -> int | None:
        if self.conditioned:
            return None
        return int(jax.tree.leaves(self.params)[0].shape[0])

    def candidate(self, i: int) -> PyTree:
        return jax.tree.map(lambda x: x[i], self.params)

    def act_for(self, w) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """A policy ``(obs[N, ...], key) -> action[N, ...]`` for preference ``w``."""
        m = (
            self.candidate_returns.shape[1]
            if self.candidate_returns is not None
            else None
            if self.candidate_weights is None
            else self.candidate_weights.shape[1]
        )
        w = check_preference(w, m) if m is not None else jnp.asarray(w, jnp.float32)
        if self.conditioned:
            params = self.params
        else:
            scores = (
                self.candidate_returns if self.candidate_returns is not None else self.candidate_weights
            ) @ np.asarray(w)
            params = self.candidate(int(np.argmax(scores)))
        return lambda obs, key, *context: self.act(params, jnp.asarray(w, jnp.float32), obs, key, *context)
